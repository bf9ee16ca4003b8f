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

    // Reveal: one masked item, asked of the API's reveal endpoint (recorded by the server),
    // shown in place. Text goes in as text; HTML is the part the server already renders as
    // it is, sanitised at ingest.
    root.querySelectorAll("[data-reveal-control]").forEach(function (control) {
      var button = control.querySelector("[data-reveal-url]");
      var item = control.closest("[data-reveal-item]");
      if (!button || !item || control.hasAttribute("data-enhanced") || !window.fetch) {
        return;
      }
      control.setAttribute("data-enhanced", "");
      control.hidden = false;
      button.addEventListener("click", function () {
        reveal(button, item, control.querySelector("[data-reveal-status]"));
      });
    });

    // After a refused action, move focus to the explanation so screen readers announce it.
    var alert = root.querySelector("[data-focus-on-load]");
    if (alert) {
      alert.focus();
    }
  }

  function paragraphs(body, text) {
    // As Django's linebreaks filter lays it out: blank lines part paragraphs, a newline breaks.
    body.replaceChildren();
    text.split(/\n{2,}/).forEach(function (block) {
      var paragraph = document.createElement("p");
      block.split("\n").forEach(function (line, index) {
        if (index) {
          paragraph.appendChild(document.createElement("br"));
        }
        paragraph.appendChild(document.createTextNode(line));
      });
      body.appendChild(paragraph);
    });
  }

  function showMessage(item, message) {
    var body = item.querySelector("[data-reveal-body]");
    var sender = item.querySelector("[data-reveal-sender]");
    if (body && body.getAttribute("data-reveal-body") === "html" && message.html) {
      body.innerHTML = message.html;
    } else if (body) {
      paragraphs(body, message.text || "");
    }
    if (sender && message.sender_name) {
      sender.textContent = message.sender_name;
    }
  }

  function showContact(item, contact) {
    var name = item.querySelector("[data-reveal-name]");
    if (name && contact.name) {
      name.textContent = contact.name;
    }
    // Identities come without ids: each row of a channel takes that channel's next handle.
    var handles = {};
    (contact.identities || []).forEach(function (identity) {
      (handles[identity.channel_kind] = handles[identity.channel_kind] || []).push(identity.handle);
    });
    item.querySelectorAll("[data-reveal-handle]").forEach(function (row) {
      var next = (handles[row.getAttribute("data-reveal-handle")] || []).shift();
      if (next) {
        row.textContent = next;
      }
    });
  }

  function reveal(button, item, status) {
    var csrf = document.querySelector("input[name=csrfmiddlewaretoken]");
    button.disabled = true;
    fetch(button.getAttribute("data-reveal-url"), {
      method: "POST",
      credentials: "same-origin",
      headers: { Accept: "application/json", "X-CSRFToken": csrf ? csrf.value : "" },
    })
      .then(function (response) {
        return response.json().then(function (body) { return { ok: response.ok, body: body }; });
      })
      .then(function (answer) {
        if (answer.ok) {
          (button.getAttribute("data-reveal-what") === "contact" ? showContact : showMessage)(item, answer.body);
          button.closest("[data-reveal-control]").remove();
          return;
        }
        button.disabled = false;
        if (answer.body && answer.body.code === "step_up_required") {
          var form = document.querySelector("[data-reveal-step-up]");
          if (form) {
            form.hidden = false;
            form.querySelector("input[name=token]").focus();
          }
        }
        status.textContent = (answer.body && answer.body.detail) || "This could not be revealed.";
      })
      .catch(function () {
        button.disabled = false;
        status.textContent = "This could not be revealed: the server did not answer.";
      });
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
