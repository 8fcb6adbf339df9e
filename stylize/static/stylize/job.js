// Job page: poll the job's status, move the progress bar, show the result once ready.
(function () {
  "use strict";
  // Django's JavaScript catalogue (/jsi18n/) gives gettext, ngettext and interpolate.
  var gettext = window.gettext || function (text) { return text; };
  var ngettext = window.ngettext || function (one, many, n) { return n === 1 ? one : many; };
  var interpolate = window.interpolate || function (text, values, named) {
    return text.replace(/%\((\w+)\)s/g, function (_, key) { return String(values[key]); });
  };
  var box = document.getElementById("job-status");
  if (!box) return;
  var url = box.dataset.statusUrl;
  var interval = parseInt(box.dataset.pollMs, 10) || 1500;
  var text = document.getElementById("job-status-text");
  var stage = document.getElementById("job-stage-text");
  var bar = document.getElementById("job-progress");
  var percent = document.getElementById("job-progress-percent");
  var ahead = document.getElementById("jobs-ahead");
  var failures = 0;

  function showProgress(job) {
    if (stage) stage.textContent = job.stage_display;
    if (bar) bar.value = job.progress;
    if (percent) percent.textContent = Math.round(job.progress * 100) + " %";
    if (ahead) {
      ahead.hidden = job.jobs_ahead < 1;
      ahead.textContent = interpolate(ngettext(
        "%(ahead)s job is ahead of yours in the queue.",
        "%(ahead)s jobs are ahead of yours in the queue.", job.jobs_ahead),
        { ahead: job.jobs_ahead }, true);
    }
  }

  function poll() {
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (response) {
        if (response.status === 404 || response.status === 403) {
          text.textContent = gettext("This job no longer exists, or you are no longer logged in.");
          return null;
        }
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (job) {
        if (!job) return;
        failures = 0;
        text.textContent = job.status_display;
        showProgress(job);
        if (job.finished) {
          // The server renders the result (or the reason it failed) with its downloads.
          window.location.reload();
        } else {
          window.setTimeout(poll, interval);
        }
      })
      .catch(function () {
        failures += 1;
        text.textContent = gettext("Checking… (connection problem, retrying)");
        window.setTimeout(poll, Math.min(interval * Math.pow(2, failures), 30000));
      });
  }
  window.setTimeout(poll, interval);
})();
