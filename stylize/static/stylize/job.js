// Job page: poll the job's status and show the result once it is ready.
(function () {
  "use strict";
  var box = document.getElementById("job-status");
  if (!box) return;
  var url = box.dataset.statusUrl;
  var interval = parseInt(box.dataset.pollMs, 10) || 1500;
  var text = document.getElementById("job-status-text");
  var failures = 0;

  function poll() {
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (response) {
        if (response.status === 404 || response.status === 403) {
          text.textContent = "This job no longer exists, or you are no longer logged in.";
          return null;
        }
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (job) {
        if (!job) return;
        failures = 0;
        text.textContent = job.status_display;
        if (job.finished) {
          // The server renders the result (or the reason it failed) with its download link.
          window.location.reload();
        } else {
          window.setTimeout(poll, interval);
        }
      })
      .catch(function () {
        failures += 1;
        text.textContent = "Checking… (connection problem, retrying)";
        window.setTimeout(poll, Math.min(interval * Math.pow(2, failures), 30000));
      });
  }
  window.setTimeout(poll, interval);
})();
