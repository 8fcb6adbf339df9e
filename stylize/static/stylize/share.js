// Share links (the job page and the shared page): "Copy link" puts the link on the
// clipboard (the Clipboard API, else the selected field and the copy command), and
// "Share…" opens the system's share sheet (a phone's apps and contacts) where the
// browser has the Web Share API: the button is shown only when navigator.share exists.
// Without this script the link stays in its field, to select and copy by hand.
(function () {
  "use strict";
  // Django's JavaScript catalogue (/jsi18n/) gives gettext.
  var gettext = window.gettext || function (text) { return text; };

  function say(status, text) {
    status.textContent = "";  // read out again when the same words come twice
    window.setTimeout(function () { status.textContent = text; }, 50);
  }

  function copyBySelection(field) {
    field.focus();
    field.select();
    field.setSelectionRange(0, field.value.length);
    try {
      return document.execCommand("copy");
    } catch (error) {
      return false;
    }
  }

  Array.prototype.forEach.call(document.querySelectorAll(".share-link"), function (box) {
    var url = box.dataset.shareUrl;
    var title = box.dataset.shareTitle || document.title;
    var field = box.querySelector(".share-url");
    var copy = box.querySelector(".share-copy");
    var native = box.querySelector(".share-native");
    var status = box.querySelector(".share-status");
    if (!url || !field || !copy || !status) return;

    var copied = function () { say(status, gettext("Link copied. Paste it into a message.")); };
    var failed = function () {
      say(status, gettext("Could not copy: select the link and copy it."));
      field.focus();
      field.select();
    };
    copy.hidden = false;
    copy.addEventListener("click", function () {
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(url).then(copied, function () {
          if (copyBySelection(field)) copied(); else failed();
        });
      } else if (copyBySelection(field)) {
        copied();
      } else {
        failed();
      }
    });
    field.addEventListener("focus", function () { field.select(); });

    if (native && typeof navigator.share === "function") {
      native.hidden = false;
      native.addEventListener("click", function () {
        navigator.share({ title: title, url: url }).catch(function (error) {
          // Closing the sheet is no error; anything else: the link can still be copied.
          if (!error || error.name !== "AbortError") failed();
        });
      });
    }
  });
})();
