// Upload page: drag-and-drop onto the file input, a preview, the strength and mix values,
// a size/type check before sending, and only the second styles that can be mixed with
// the chosen style. The form works without this; the server checks anyway.
(function (gettext, interpolate) {
  "use strict";
  var form = document.querySelector(".upload-form");
  if (!form) return;
  var input = form.querySelector("input[type=file]");
  var zone = document.getElementById("drop-zone");
  var check = document.getElementById("image-check");
  var preview = document.getElementById("image-preview");
  var maxBytes = parseInt(input.dataset.maxBytes, 10) || 0;
  // The accept list holds content types and file name extensions: a HEIC photo has no
  // content type where the system does not know the name, so its extension counts.
  var accepted = (input.getAttribute("accept") || "").split(",").filter(Boolean);
  var allowedTypes = accepted.filter(function (item) { return item.charAt(0) !== "."; });
  var allowedExtensions = accepted.filter(function (item) { return item.charAt(0) === "."; });
  var formats = input.dataset.formats || "JPEG, PNG or WebP";

  function megabytes(bytes) {
    if (bytes < 1024 * 1024) return Math.max(1, Math.round(bytes / 1024)) + " KB";
    return (bytes / (1024 * 1024)).toFixed(1) + " MB";
  }

  function isAllowed(file) {
    if (allowedTypes.indexOf(file.type) !== -1) return true;
    var name = (file.name || "").toLowerCase();
    return allowedExtensions.some(function (extension) {
      return name.slice(-extension.length) === extension;
    });
  }

  function problemWith(file) {
    if (!file) return gettext("Please choose a photo.");
    if (file.size === 0) return gettext("This file is empty.");
    if (accepted.length && !isAllowed(file))
      return interpolate(gettext("This is not a %(formats)s photo."), { formats: formats }, true);
    if (maxBytes && file.size > maxBytes)
      return interpolate(gettext("This photo is %(size)s; the limit is %(limit)s."),
        { size: megabytes(file.size), limit: megabytes(maxBytes) }, true);
    return "";
  }

  function ready(file) {
    return interpolate(gettext("%(name)s (%(size)s) is ready."),
      { name: file.name, size: megabytes(file.size) }, true);
  }

  // Photos most browsers cannot show, which the server reads all the same.
  var NOT_SHOWN = /\.(heic|heif|avif)$/i;

  // previews.js paints a photo that passed these checks in every style.
  function photoReady(file) {
    form.dispatchEvent(new CustomEvent("prisma:photo-ready", { detail: { file: file } }));
  }

  function checkFile() {
    var file = input.files && input.files[0];
    var problem = file ? problemWith(file) : "";
    input.setCustomValidity(problem);
    input.setAttribute("aria-invalid", problem ? "true" : "false");
    check.textContent = problem || (file ? ready(file) : "");
    check.className = "check" + (problem ? " bad" : "");
    var kept = document.getElementById("kept-photo");
    if (kept && file) kept.hidden = true;
    if (file && !problem && window.URL) {
      // Most browsers cannot show a HEIC photo: then there is no preview, and the job
      // page shows the photo once it has been read.
      preview.onerror = function () {
        preview.hidden = true;
        check.textContent = ready(file) + " " +
          gettext("This browser cannot preview it; it is shown once uploaded.");
        if (NOT_SHOWN.test(file.name || "") || /hei[cf]|avif/.test(file.type)) photoReady(file);
      };
      preview.onload = function () { photoReady(file); };
      preview.src = URL.createObjectURL(file);
      preview.hidden = false;
    } else {
      preview.hidden = true;
    }
    return problem;
  }

  input.addEventListener("change", checkFile);
  // A photo chosen while the page was still loading, before this script ran, had its
  // "change" event go by unheard: check it now.
  if (input.files && input.files.length) checkFile();
  ["dragenter", "dragover"].forEach(function (name) {
    zone.addEventListener(name, function (event) {
      event.preventDefault();
      zone.classList.add("dragging");
    });
  });
  ["dragleave", "drop"].forEach(function (name) {
    zone.addEventListener(name, function () { zone.classList.remove("dragging"); });
  });
  zone.addEventListener("drop", function (event) {
    event.preventDefault();
    var dropped = event.dataTransfer && event.dataTransfer.files;
    if (dropped && dropped.length) {
      var one = new DataTransfer();  // the form sends one photo: keep the first
      one.items.add(dropped[0]);
      input.files = one.files;
      checkFile();
    }
  });

  form.addEventListener("submit", function (event) {
    var file = input.files && input.files[0];
    var previewed = form.querySelector("input[name=preview]");
    // A photo kept from before (its preview) needs no new one.
    var problem = !file && previewed && previewed.value ? "" : problemWith(file);
    if (problem) {
      event.preventDefault();
      input.setCustomValidity(problem);
      check.textContent = problem;
      check.className = "check bad";
      input.focus();
      return;
    }
    var button = form.querySelector("button[type=submit]");
    button.disabled = true;
    button.textContent = gettext("Uploading…");
  });

  function showValue(rangeId, outputId) {
    var range = document.getElementById(rangeId);
    var output = document.getElementById(outputId);
    if (range && output) {
      range.addEventListener("input", function () { output.textContent = range.value; });
    }
  }
  showValue("id_strength", "strength-value");
  showValue("id_blend", "blend-value");

  // A second style must share the first one's bank (one network): offer only those.
  var second = document.getElementById("id_blend_with");
  var share = document.getElementById("id_blend");
  if (second) {
    var styles = form.querySelectorAll("input[name=style]");
    var updateMix = function () { window.prisma.offerMixes(form, second, share); };
    Array.prototype.forEach.call(styles, function (radio) {
      radio.addEventListener("change", updateMix);
    });
    second.addEventListener("change", updateMix);
    updateMix();
  }
})(window.prisma.gettext, window.prisma.interpolate);
