// Job page: the before/after slider. The photo is clipped to the left of the split
// through the --split custom property (site.css). The range input holds the value:
// it takes the keyboard (Tab to it, then the arrow keys, Home, End), and a drag on the
// picture with a mouse, pen or finger sets it from where the pointer is (pointer
// events: the same on a phone, and vertical swipes still scroll the page).
(function (gettext, interpolate) {
  "use strict";
  var frame = document.querySelector(".compare-frame");
  var range = document.getElementById("compare-range");
  if (!frame || !range) return;
  var dragging = false;

  function show() {
    var value = Number(range.value);
    frame.style.setProperty("--split", value + "%");
    range.setAttribute("aria-valuetext",
      interpolate(gettext("%(share)s percent of your photo shown"), { share: value }, true));
  }

  function follow(event) {
    var box = frame.getBoundingClientRect();
    if (box.width <= 0) return;
    var value = Math.round(((event.clientX - box.left) / box.width) * 100);
    range.value = String(Math.min(100, Math.max(0, value)));
    show();
  }

  range.addEventListener("input", show);
  frame.addEventListener("pointerdown", function (event) {
    event.preventDefault(); // no native drag of the picture, no text selection
    dragging = true;
    if (frame.setPointerCapture) frame.setPointerCapture(event.pointerId);
    range.focus({ preventScroll: true });
    follow(event);
  });
  frame.addEventListener("pointermove", function (event) {
    if (dragging) follow(event);
  });
  ["pointerup", "pointercancel", "lostpointercapture"].forEach(function (name) {
    frame.addEventListener(name, function () { dragging = false; });
  });
  frame.classList.add("compare-live");
  show();
})(window.prisma.gettext, window.prisma.interpolate);
