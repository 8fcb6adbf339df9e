// An own style's page: poll how far learning is, move the progress bar, show the latest
// sample, and reload once it is ready or failed (docs/design/own-styles.md).
(function () {
  "use strict";
  var gettext = window.gettext || function (text) { return text; };
  var box = document.getElementById("own-style-status");
  if (!box || box.dataset.finished) return;
  var url = box.dataset.statusUrl;
  var interval = parseInt(box.dataset.pollMs, 10) || 2000;
  var state = document.getElementById("own-style-state");
  var detail = document.getElementById("own-style-detail");
  var bar = document.getElementById("own-style-progress");
  var percent = document.getElementById("own-style-percent");
  var figure = document.getElementById("own-style-sample-figure");
  var sample = document.getElementById("own-style-sample");
  var failures = 0;

  function show(status) {
    state.textContent = status.state_text;
    box.dataset.state = status.state;
    if (detail) detail.textContent = status.detail;
    if (bar) bar.value = status.fraction;
    if (percent) percent.textContent = Math.round(status.fraction * 100) + " %";
    if (status.sample_url && sample && sample.getAttribute("src") !== status.sample_url) {
      sample.setAttribute("src", status.sample_url);
      figure.hidden = false;
    }
  }

  function poll() {
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (response) {
        if (response.status === 404 || response.status === 403) {
          state.textContent = gettext("This style no longer exists, or you are no longer logged in.");
          return null;
        }
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (status) {
        if (!status) return;
        failures = 0;
        show(status);
        if (status.finished) {
          window.location.reload();  // the page shows what is next: use it, or why not
        } else {
          window.setTimeout(poll, interval);
        }
      })
      .catch(function () {
        failures += 1;
        state.textContent = gettext("Checking… (connection problem, retrying)");
        window.setTimeout(poll, Math.min(interval * Math.pow(2, failures), 30000));
      });
  }
  window.setTimeout(poll, interval);
})();
