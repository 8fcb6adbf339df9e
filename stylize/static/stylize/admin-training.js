// The Training section of a style's admin page (stylize/admin.py) while a run goes on.
// Every few seconds it fetches the page again and swaps in the new section, leaving the
// rest of the form (and anything staff are typing there) alone. When the run has ended
// it reloads the whole page, unless the form has been edited: then it only shows the
// final section. A file, not an inline <script>, for the Content-Security-Policy.
// The admin loads it in <head>: it starts once the page is parsed.
document.addEventListener("DOMContentLoaded", function () {
  "use strict";

  var SECTION = "fieldset.training";
  var MARKER = "[data-training-refresh]";
  var section = document.querySelector(SECTION);
  var marker = section && section.querySelector(MARKER);
  if (!marker) {
    return;
  }
  var seconds = Number(marker.getAttribute("data-training-refresh")) || 10;
  var form = section.closest("form");
  var edited = false;
  if (form) {
    var onEdit = function () { edited = true; };
    form.addEventListener("input", onEdit);
    form.addEventListener("change", onEdit);
  }

  function schedule() {
    window.setTimeout(update, seconds * 1000);
  }

  function update() {
    fetch(window.location.href, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").querySelector(SECTION);
        if (!fresh) {
          schedule();
          return;
        }
        var running = !!fresh.querySelector(MARKER);
        if (!running && !edited) {
          window.location.reload();  // the status and the live version changed too
          return;
        }
        section.innerHTML = fresh.innerHTML;
        if (running) {
          schedule();
        }
      })
      .catch(schedule);  // a blip (the server restarting): try again later
  }

  schedule();
});
