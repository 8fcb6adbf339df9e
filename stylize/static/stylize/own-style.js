// An own style's page: poll how far learning is, move the progress bar, show the latest
// sample, and reload once it is ready or failed (docs/design/own-styles.md; common.js
// polls).
(function (gettext) {
  "use strict";
  var box = document.getElementById("own-style-status");
  if (!box || box.dataset.finished) return;
  var state = document.getElementById("own-style-state");
  var figure = document.getElementById("own-style-sample-figure");
  var sample = document.getElementById("own-style-sample");
  var progress = window.prisma.progressRow(box);

  function show(status) {
    state.textContent = status.state_text;
    box.dataset.state = status.state;
    progress(status.detail, status.fraction);
    if (status.sample_url && sample && sample.getAttribute("src") !== status.sample_url) {
      sample.setAttribute("src", status.sample_url);
      figure.hidden = false;
    }
  }

  window.prisma.pollUntilFinished(box, 2000, show, function (message) {
    state.textContent = message;
  }, gettext("This style no longer exists, or you are no longer logged in."));
})(window.prisma.gettext);
