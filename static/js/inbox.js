// Small enhancements for the agent pages. The pages work without this script; the CSP
// allows scripts from /static only, so all behaviour lives here, none inline. Run on the
// page, then again on every part the workspace or the live updates swap in.
"use strict";

(function () {
  function enhance(root) {
    // Canned responses: the picker stays hidden without JavaScript, since it could do nothing.
    root.querySelectorAll("[data-canned-picker]").forEach(function (picker) {
      var select = picker.querySelector("select");
      var button = picker.querySelector("[data-canned-insert]");
      var target = document.getElementById(picker.getAttribute("data-target"));
      if (!select || !button || !target || picker.hasAttribute("data-enhanced")) {
        return;
      }
      picker.setAttribute("data-enhanced", "");
      picker.hidden = false;
      button.addEventListener("click", function () {
        var option = select.options[select.selectedIndex];
        if (!option || !option.value) {
          select.focus();
          return;
        }
        var text = option.getAttribute("data-text") || "";
        target.setRangeText(text, target.selectionStart, target.selectionEnd, "end");
        target.focus();
      });
    });

    // Label colours come from data. They are set through the CSSOM, which the CSP permits,
    // never as inline style attributes, which it forbids; only plain #rrggbb is accepted.
    root.querySelectorAll("[data-color]").forEach(function (element) {
      var color = element.getAttribute("data-color");
      if (/^#[0-9a-fA-F]{6}$/.test(color)) {
        element.style.setProperty("--label-color", color);
      }
    });

    // After a refused action, move focus to the explanation so screen readers announce it.
    var alert = root.querySelector("[data-focus-on-load]");
    if (alert) {
      alert.focus();
    }
  }

  enhance(document);
  document.addEventListener("htmx:afterSettle", function (event) {
    enhance(event.detail.target);
  });
  // live.js swaps regions without htmx and says so with this event.
  document.addEventListener("portcullis:swapped", function (event) {
    enhance(event.target);
  });
})();
