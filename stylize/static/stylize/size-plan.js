// Upload page: once the chosen photo's size is known (its preview has loaded), say what
// the size and brush-stroke choices will do for this very photo: a photo is never
// enlarged, so a "Huge" result of a 640 px photo is 640 px; and a photo no longer than
// a stroke's working side is painted at its own size, so several strokes look the same.
// The same rule as stylize.imaging.size_plan, which the job page states afterwards.
(function (gettext, interpolate) {
  "use strict";
  var form = document.querySelector(".upload-form");
  var preview = document.getElementById("image-preview");
  var sizeNote = document.getElementById("size-plan");
  var strokeNote = document.getElementById("stroke-plan");
  var sizeSelect = document.getElementById("id_max_side");
  if (!form || !preview || !sizeNote || !strokeNote || !sizeSelect) return;
  var strokes = JSON.parse(sizeNote.dataset.strokes || "{}");  // value → {side, label}
  var photo = null;  // {width, height} of the chosen photo, upright, once known

  function fitted(width, height, side) {
    var scale = side / Math.max(width, height);
    if (scale >= 1) return [width, height];
    return [Math.max(1, Math.round(width * scale)), Math.max(1, Math.round(height * scale))];
  }

  function show(note, text) {
    note.textContent = text;
    note.hidden = !text;
  }

  function update() {
    if (!photo) {
      show(sizeNote, "");
      show(strokeNote, "");
      return;
    }
    var side = parseInt(sizeSelect.value, 10);
    var longer = Math.max(photo.width, photo.height);
    var result = fitted(photo.width, photo.height, side);
    var size = [interpolate(gettext("Your photo is %(width)s × %(height)s px."),
      { width: photo.width, height: photo.height }, true)];
    if (result[0] !== photo.width || result[1] !== photo.height) {
      size.push(interpolate(gettext("The result will be %(width)s × %(height)s px: at most " +
        "%(side)s px on the longer side, as you chose."),
        { width: result[0], height: result[1], side: side }, true));
    } else if (side > longer) {
      size.push(interpolate(gettext("The result keeps that size: photos are never enlarged, " +
        "so the %(side)s px you chose makes no difference."), { side: side }, true));
    }
    show(sizeNote, size.join(" "));

    var checked = form.querySelector("input[name=stroke]:checked");
    var resultLonger = Math.max(result[0], result[1]);
    var painted = function (value) { return Math.min(resultLonger, strokes[value].side); };
    if (!checked || !strokes[checked.value]) {
      show(strokeNote, "");
      return;
    }
    var mine = painted(checked.value);
    var alike = Object.keys(strokes).filter(function (value) { return painted(value) === mine; });
    var text = [interpolate(gettext("It is painted at %(side)s px on the longer side."),
      { side: mine }, true)];
    if (alike.length === 3) {
      text.push(gettext("On a photo this small, fine, medium and bold brush strokes all " +
        "look the same."));
    } else if (alike.length === 2) {
      text.push(interpolate(gettext("On a photo this small, %(one)s and %(other)s brush " +
        "strokes look the same."),
        { one: strokes[alike[0]].label, other: strokes[alike[1]].label }, true));
    }
    show(strokeNote, text.join(" "));
  }

  preview.addEventListener("load", function () {
    if (preview.naturalWidth && preview.naturalHeight) {
      photo = { width: preview.naturalWidth, height: preview.naturalHeight };
    }
    update();
  });
  preview.addEventListener("error", function () { photo = null; update(); });
  var input = form.querySelector("input[type=file]");
  if (input) input.addEventListener("change", function () { photo = null; update(); });
  sizeSelect.addEventListener("change", update);
  Array.prototype.forEach.call(form.querySelectorAll("input[name=stroke]"), function (radio) {
    radio.addEventListener("change", update);
  });
})(window.prisma.gettext, window.prisma.interpolate);
