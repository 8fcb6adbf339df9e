// What the pages' scripts share, as window.prisma: the translation functions, the mix
// choices a picked style allows (upload.js, previews.js), and the status box of a page
// that reloads once its work is finished (job.js, own-style.js). A template loads it
// after Django's JavaScript catalogue (/jsi18n/) and before the scripts that use it.
(function () {
  "use strict";
  // Django's JavaScript catalogue gives gettext, ngettext and interpolate; without it the
  // English text stands.
  var gettext = window.gettext || function (text) { return text; };
  var ngettext = window.ngettext || function (one, many, n) { return n === 1 ? one : many; };
  var interpolate = window.interpolate || function (text, values) {
    return text.replace(/%\((\w+)\)s/g, function (_, key) { return String(values[key]); });
  };

  // A second style must share the picked one's bank (one network): offer only those in
  // the <select> `second`, and let the mix share (`share`, a range) be set only with one.
  function offerMixes(form, second, share) {
    var chosen = form.querySelector("input[name=style]:checked");
    var bank = chosen ? chosen.dataset.bank || "" : "";
    var available = 0;
    Array.prototype.forEach.call(second.options, function (option) {
      if (!option.value) return;
      var ok = bank !== "" && option.dataset.bank === bank && option.value !== chosen.value;
      option.hidden = option.disabled = !ok;
      if (ok) available += 1;
      if (!ok && option.selected) second.value = "";
    });
    second.disabled = available === 0;
    if (share) share.disabled = second.disabled || !second.value;
  }

  // A status box while its work goes on (job.html, own_style.html): asks the JSON status
  // at its data-status-url every data-poll-ms (else defaultMs), backing off while the
  // connection fails, until an answer says it is finished; then reloads the page, which
  // the server renders with the outcome. show(status) paints each answer; say(text) puts
  // a message where the state is written; `gone` is said when the thing (or the session)
  // is gone.
  function pollUntilFinished(box, defaultMs, show, say, gone) {
    var url = box.dataset.statusUrl;
    var interval = parseInt(box.dataset.pollMs, 10) || defaultMs;
    var failures = 0;

    function poll() {
      fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (response) {
          if (response.status === 404 || response.status === 403) {
            say(gone);
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
            window.location.reload();
          } else {
            window.setTimeout(poll, interval);
          }
        })
        .catch(function () {
          failures += 1;
          say(gettext("Checking… (connection problem, retrying)"));
          window.setTimeout(poll, Math.min(interval * Math.pow(2, failures), 30000));
        });
    }
    window.setTimeout(poll, interval);
  }

  // The progress row of a status box (.job-progress: a label, the <progress> and the
  // percent after it), as a function that sets the label's text and the fraction done.
  function progressRow(box) {
    var row = box.querySelector(".job-progress");
    var label = row && row.querySelector("label");
    var bar = row && row.querySelector("progress");
    var percent = row && row.querySelector("progress ~ span");
    return function (text, fraction) {
      if (label) label.textContent = text;
      if (bar) bar.value = fraction;
      if (percent) percent.textContent = Math.round(fraction * 100) + " %";
    };
  }

  window.prisma = {
    gettext: gettext,
    ngettext: ngettext,
    interpolate: interpolate,
    offerMixes: offerMixes,
    pollUntilFinished: pollUntilFinished,
    progressRow: progressRow,
  };
})();
