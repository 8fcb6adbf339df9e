// Previews: the person's photo painted small in every style (docs/design/previews.md).
// On the upload page a photo that passed upload.js's checks is sent once to
// POST /api/v1/previews/; on a job's page, "Try another style" (or moving the strength)
// asks for a preview of the job's own photo. Each style's tile then shows the photo in
// that style as the worker paints it (GET /api/v1/previews/<id>/, polled); picking a
// tile picks the style, and the strength and mix re-paint the picked style's preview
// (POST /api/v1/previews/<id>/styles/<slug>/). The forms work without this script.
(function (gettext, ngettext, interpolate) {
  "use strict";
  var form = document.querySelector("form[data-previews-url]");
  if (!form || !window.fetch || !window.FormData) return;

  var FAST_MS = 250;        // polling while the grid is being painted
  var SLOW_MS = 1000;       // after FAST_FOR_MS
  var FAST_FOR_MS = 20000;
  var GIVE_UP_MS = 90000;   // a worker that never comes: stop asking
  var REPAINT_DELAY_MS = 150;  // a slider's burst of changes makes one re-paint

  var source = form.dataset.previewSource;  // "upload" or "job"
  var baseUrl = form.dataset.previewsUrl;
  var grid = form.querySelector(".preview-grid");
  var statusLine = document.getElementById("preview-status");
  var hiddenId = form.querySelector("input[name=preview]");
  var fileInput = form.querySelector("input[type=file]");
  var csrfInput = form.querySelector("input[name=csrfmiddlewaretoken]");
  var strength = form.querySelector("input[name=strength]");
  var colours = form.querySelector("input[name=preserve_colors]");
  var second = form.querySelector("select[name=blend_with]");
  var share = form.querySelector("input[name=blend]");
  var previewId = form.dataset.previewId || "";
  var rows = {};  // style slug → its painting as the API last said
  var generation = 0;  // a new photo makes older answers stale
  var pollTimer = null;
  var pollStarted = 0;
  var repaintTimer = null;
  var creating = null;

  function say(text, bad) {
    if (!statusLine) return;
    statusLine.textContent = text;
    statusLine.classList.toggle("bad", !!bad);
  }

  function firstError(data) {
    for (var key in data) {
      var value = data[key];
      if (Array.isArray(value) && value.length) return String(value[0]);
      if (typeof value === "string") return value;
    }
    return "";
  }

  function call(method, url, body) {
    var headers = { Accept: "application/json" };
    var options = { method: method, headers: headers, credentials: "same-origin" };
    if (method !== "GET") headers["X-CSRFToken"] = csrfInput ? csrfInput.value : "";
    if (body instanceof FormData) {
      options.body = body;
    } else if (body) {
      headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    return fetch(url, options).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (!response.ok) {
          var error = new Error(firstError(data) || gettext("The previews could not be made just now."));
          error.status = response.status;
          throw error;
        }
        return data;
      });
    });
  }

  function tileOf(slug) {
    if (!grid) return null;
    var radios = grid.querySelectorAll("input[name=style]");
    for (var i = 0; i < radios.length; i += 1) {
      if (radios[i].value === slug) return radios[i].closest(".style-choice");
    }
    return null;
  }

  function checkedSlug() {
    var radio = form.querySelector("input[name=style]:checked");
    return radio ? radio.value : "";
  }

  function showRow(row) {
    rows[row.style] = row;
    var tile = tileOf(row.style);
    if (!tile) return;
    var picture = tile.querySelector(".tile-preview");
    if (row.image_url) {
      if (picture.getAttribute("src") !== row.image_url) picture.src = row.image_url;
      picture.hidden = false;
      tile.classList.add("has-preview");
    }
    tile.classList.toggle("painting", row.status === "queued");
    tile.classList.toggle("failed", row.status === "failed");
    if (row.status === "failed") tile.title = row.error; else tile.removeAttribute("title");
  }

  // The job page's larger preview of the style picked, at the strength and mix set.
  function mirror() {
    var figure = document.getElementById("again-preview-figure");
    var row = rows[checkedSlug()];
    if (!figure || !row || !row.image_url) return;
    var picture = document.getElementById("again-preview");
    if (picture.getAttribute("src") !== row.image_url) picture.src = row.image_url;
    figure.hidden = false;
    figure.classList.toggle("painting", row.status === "queued");
    document.getElementById("again-preview-caption").textContent = interpolate(
      gettext("%(name)s at strength %(strength)s"),
      { name: row.name, strength: row.strength }, true);
  }

  function show(preview) {
    var done = 0;
    var failed = [];
    preview.styles.forEach(function (row) {
      showRow(row);
      if (row.status === "done") done += 1;
      if (row.status === "failed") failed.push(row.error);
    });
    mirror();
    var total = preview.styles.length;
    if (!preview.done) {
      say(interpolate(ngettext("%(done)s of %(total)s style painted…",
                               "%(done)s of %(total)s styles painted…", total),
                      { done: done, total: total }, true));
    } else if (total && failed.length === total) {
      say(interpolate(gettext("Your photo could not be painted: %(reason)s"),
                      { reason: failed[0] }, true), true);
    } else {
      say(gettext("Your photo in every style: pick the one you like."));
    }
  }

  function poll() {
    window.clearTimeout(pollTimer);
    var mine = generation;
    call("GET", baseUrl + previewId + "/").then(function (preview) {
      if (mine !== generation) return;
      show(preview);
      var elapsed = Date.now() - pollStarted;
      if (!preview.done && elapsed < GIVE_UP_MS) {
        pollTimer = window.setTimeout(poll, elapsed < FAST_FOR_MS ? FAST_MS : SLOW_MS);
      } else if (!preview.done) {
        say(gettext("The previews are taking long; you can still choose a style and go on."));
      }
    }).catch(function (error) {
      if (mine !== generation) return;
      if (error.status === 404 || error.status === 403) {
        forget();
        say(gettext("The previews have expired; choose the photo again to see them."));
        return;
      }
      if (Date.now() - pollStarted < GIVE_UP_MS) pollTimer = window.setTimeout(poll, SLOW_MS * 2);
    });
  }

  function startPolling() {
    pollStarted = Date.now();
    poll();
  }

  function forget() {
    generation += 1;
    window.clearTimeout(pollTimer);
    previewId = "";
    rows = {};
    creating = null;
    if (hiddenId) hiddenId.value = "";
    if (fileInput && source === "upload") fileInput.required = true;
    if (!grid) return;
    Array.prototype.forEach.call(grid.querySelectorAll(".style-choice"), function (tile) {
      tile.classList.remove("has-preview", "painting", "failed");
      tile.removeAttribute("title");
      var picture = tile.querySelector(".tile-preview");
      picture.hidden = true;
      picture.removeAttribute("src");
    });
  }

  function create(body) {
    forget();
    var mine = generation;
    say(gettext("Painting your photo in every style…"));
    creating = call("POST", baseUrl, body).then(function (preview) {
      if (mine !== generation) return null;
      previewId = preview.id;
      if (hiddenId) hiddenId.value = preview.id;
      show(preview);
      startPolling();
      // The grid is at full strength: the picked style at the strength and mix set.
      repaintSoon();
      return preview;
    }).catch(function (error) {
      if (mine !== generation) return null;
      creating = null;
      say(error.message, true);
      return null;
    });
    return creating;
  }

  // The job page asks for its preview once, when the person first wants one.
  function ensurePreview() {
    if (previewId) return Promise.resolve({ id: previewId });
    if (creating) return creating;
    var body = new FormData();
    body.append("source_job", form.dataset.sourceJob);
    return create(body);
  }

  function wanted() {
    var mixWith = second && !second.disabled ? second.value : "";
    return {
      strength: strength ? parseFloat(strength.value) : 1,
      preserve_colors: !!(colours && colours.checked),
      blend_with: mixWith || null,
      blend: mixWith && share ? parseFloat(share.value) : null,
    };
  }

  function differs(row, settings) {
    if (!row) return true;
    var close = function (a, b) { return Math.abs((a || 0) - (b || 0)) < 1e-6; };
    return !close(row.strength, settings.strength) ||
      (row.blend_with || null) !== settings.blend_with ||
      (settings.blend_with !== null && !close(row.blend, settings.blend)) ||
      !!row.preserve_colors !== settings.preserve_colors;
  }

  function repaint() {
    var slug = checkedSlug();
    if (!slug) return;
    if (!previewId) {
      if (source === "job") ensurePreview().then(function (preview) { if (preview) repaint(); });
      return;
    }
    var settings = wanted();
    if (rows[slug] && !differs(rows[slug], settings)) { mirror(); return; }
    var mine = generation;
    var url = baseUrl + previewId + "/styles/" + encodeURIComponent(slug) + "/";
    call("POST", url, settings).then(function (row) {
      if (mine !== generation) return;
      showRow(row);
      mirror();
      if (row.status === "queued") startPolling();
    }).catch(function (error) {
      if (mine === generation) say(error.message, true);
    });
  }

  function repaintSoon() {
    window.clearTimeout(repaintTimer);
    repaintTimer = window.setTimeout(repaint, REPAINT_DELAY_MS);
  }

  // A second style must share the picked one's bank (one network): offer only those
  // (on the upload page upload.js does it).
  function updateMix() {
    if (second && source === "job") window.prisma.offerMixes(form, second, share);
  }

  function showValue(range) {
    var output = range && document.querySelector('output[for="' + range.id + '"]');
    if (output) range.addEventListener("input", function () { output.textContent = range.value; });
  }

  if (grid) {
    Array.prototype.forEach.call(grid.querySelectorAll("input[name=style]"), function (radio) {
      radio.addEventListener("change", function () { updateMix(); mirror(); repaintSoon(); });
    });
  }
  [strength, share].forEach(function (range) {
    if (range) range.addEventListener("input", repaintSoon);
  });
  [colours, second].forEach(function (control) {
    if (control) control.addEventListener("change", function () { updateMix(); repaintSoon(); });
  });

  if (source === "upload") {
    form.addEventListener("prisma:photo-ready", function (event) {
      var body = new FormData();
      body.append("image", event.detail.file);
      create(body);
    });
    form.addEventListener("submit", function (event) {
      // The photo is on the server already: the job uses the preview's.
      if (!event.defaultPrevented && previewId && fileInput) fileInput.disabled = true;
    });
    if (previewId) {
      if (hiddenId) hiddenId.value = previewId;
      say(gettext("Painting your photo in every style…"));
      startPolling();
    }
  } else {
    var styles = document.getElementById("again-styles");
    var button = document.getElementById("try-another-style");
    if (styles && button) {
      styles.hidden = true;  // without this script the grid is simply shown
      button.hidden = false;
      button.addEventListener("click", function () {
        styles.hidden = false;
        button.setAttribute("aria-expanded", "true");
        button.hidden = true;
        ensurePreview();
      });
    }
    showValue(strength);
    showValue(share);
    updateMix();
  }
})(window.prisma.gettext, window.prisma.ngettext, window.prisma.interpolate);
