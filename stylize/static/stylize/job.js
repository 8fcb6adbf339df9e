// Job page: poll the job's status, move the progress bar, show the result once ready
// (common.js polls: once the job is finished the page reloads, and the server renders
// the result, or the reason it failed, with its downloads).
(function (gettext, ngettext, interpolate) {
  "use strict";
  var box = document.getElementById("job-status");
  if (!box) return;
  var text = document.getElementById("job-status-text");
  var ahead = document.getElementById("jobs-ahead");
  var progress = window.prisma.progressRow(box);

  function show(job) {
    text.textContent = job.status_display;
    progress(job.stage_display, job.progress);
    if (ahead) {
      ahead.hidden = job.jobs_ahead < 1;
      ahead.textContent = interpolate(ngettext(
        "%(ahead)s job is ahead of yours in the queue.",
        "%(ahead)s jobs are ahead of yours in the queue.", job.jobs_ahead),
        { ahead: job.jobs_ahead }, true);
    }
  }

  window.prisma.pollUntilFinished(box, 1500, show, function (message) {
    text.textContent = message;
  }, gettext("This job no longer exists, or you are no longer logged in."));
})(window.prisma.gettext, window.prisma.ngettext, window.prisma.interpolate);
