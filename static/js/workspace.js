// The agent workspace: the composer's reply / note toggle, drafts kept per conversation,
// canned responses with "/", keyboard shortcuts, the open row and the tab-title badge.
//
// Everything here is presentation: every action is a form that htmx posts in place (or the
// browser posts without this script), so the server and its policy decide each one.
"use strict";

(function () {
  var workspace = document.querySelector(".workspace");
  if (!workspace || !window.htmx) {
    return;
  }
  var DRAFT_PREFIX = "portcullis:draft:";
  var baseTitle = document.title.replace(/^\(\d+\) /, "");
  var shortcuts = document.getElementById("shortcuts");

  function conversationPane() {
    return document.querySelector('[data-pane="conversation"]');
  }

  // --- Composer: one box, reply or note --------------------------------------------------

  function setMode(composer, mode, focus) {
    composer.setAttribute("data-mode", mode);
    composer.querySelectorAll("[data-mode-button]").forEach(function (button) {
      var selected = button.getAttribute("data-mode-button") === mode;
      button.setAttribute("aria-selected", selected ? "true" : "false");
      button.tabIndex = selected ? 0 : -1;
    });
    ["reply", "note"].forEach(function (name) {
      var form = composer.querySelector('[data-draft="' + name + '"]');
      form.hidden = name !== mode;
    });
    if (focus) {
      var field = composer.querySelector('[data-draft="' + mode + '"] textarea');
      if (field) {
        field.focus();
      }
    }
  }

  function draftKey(composer, form) {
    return DRAFT_PREFIX + composer.getAttribute("data-conversation-id") + ":" + form.getAttribute("data-draft");
  }

  function storage(action, key, value) {
    try {
      if (action === "get") {
        return window.localStorage.getItem(key);
      }
      if (action === "set") {
        window.localStorage.setItem(key, value);
      } else {
        window.localStorage.removeItem(key);
      }
    } catch (e) { /* storage blocked: no drafts, nothing else lost */ }
    return null;
  }

  function enhanceComposer(root) {
    var composer = root.querySelector("[data-composer]");
    if (!composer || composer.hasAttribute("data-enhanced")) {
      return;
    }
    composer.setAttribute("data-enhanced", "");
    composer.querySelector("[data-composer-modes]").hidden = false;
    composer.querySelectorAll("[data-mode-heading]").forEach(function (heading) {
      heading.classList.add("visually-hidden");
    });
    composer.querySelectorAll("[data-mode-button]").forEach(function (button) {
      button.addEventListener("click", function () {
        setMode(composer, button.getAttribute("data-mode-button"), true);
      });
    });
    composer.querySelector("[data-composer-modes]").addEventListener("keydown", function (event) {
      if (event.key === "ArrowRight" || event.key === "ArrowLeft") {
        event.preventDefault();
        var next = composer.getAttribute("data-mode") === "reply" ? "note" : "reply";
        setMode(composer, next, false);
        composer.querySelector('[data-mode-button="' + next + '"]').focus();
      }
    });
    setMode(composer, composer.getAttribute("data-mode") || "reply", false);

    // Drafts: kept per conversation and mode across reloads and a sign-out, in this browser
    // only. A text the server sent back (a refused post) wins over an older draft.
    composer.querySelectorAll("[data-draft]").forEach(function (form) {
      var field = form.querySelector("textarea");
      if (!field) {
        return;
      }
      var key = draftKey(composer, form);
      var saved = storage("get", key);
      if (saved && !field.value) {
        field.value = saved;
      }
      field.addEventListener("input", function () {
        if (field.value) {
          storage("set", key, field.value);
        } else {
          storage("remove", key);
        }
      });
    });
    enhanceCanned(composer);
  }

  // A post that went through leaves no draft behind. Dropped before the fresh pane is
  // swapped in, so that pane finds nothing to restore.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var form = event.detail.requestConfig && event.detail.requestConfig.elt;
    var composer = form && form.closest && form.closest("[data-composer]");
    var status = event.detail.xhr.status;
    if (composer && form.hasAttribute("data-draft") && status >= 200 && status < 300) {
      storage("remove", draftKey(composer, form));
    }
  });

  // --- Canned responses: "/" and a shortcut at the start of the reply --------------------

  function enhanceCanned(composer) {
    var picker = composer.querySelector("[data-canned-picker]");
    var field = picker && document.getElementById(picker.getAttribute("data-target"));
    if (!picker || !field) {
      return;
    }
    var options = Array.prototype.slice.call(picker.querySelectorAll("option[value]")).filter(function (option) {
      return option.value;
    });
    var list = document.createElement("ul");
    list.className = "canned-suggestions";
    list.id = field.id + "-canned";
    list.setAttribute("role", "listbox");
    list.setAttribute("aria-label", "Canned responses");
    list.hidden = true;
    field.insertAdjacentElement("afterend", list);
    field.setAttribute("aria-controls", list.id);
    field.setAttribute("aria-autocomplete", "list");
    var active = 0;

    function matches() {
      var typed = /^\/(\S*)$/.exec(field.value);
      if (!typed) {
        return null;
      }
      return options.filter(function (option) {
        return option.textContent.indexOf(typed[1]) === 0;
      });
    }

    function render() {
      var found = matches();
      list.replaceChildren();
      if (!found || !found.length) {
        list.hidden = true;
        field.removeAttribute("aria-activedescendant");
        return;
      }
      active = Math.min(active, found.length - 1);
      found.forEach(function (option, index) {
        var item = document.createElement("li");
        item.id = list.id + "-" + option.value;
        item.setAttribute("role", "option");
        item.setAttribute("aria-selected", index === active ? "true" : "false");
        item.textContent = "/" + option.textContent;
        var preview = document.createElement("span");
        preview.className = "muted";
        preview.textContent = " " + (option.getAttribute("data-text") || "").slice(0, 80);
        item.append(preview);
        item.addEventListener("mousedown", function (event) {
          event.preventDefault();
          insert(option);
        });
        list.append(item);
      });
      list.hidden = false;
      field.setAttribute("aria-activedescendant", list.id + "-" + found[active].value);
    }

    function insert(option) {
      field.value = option.getAttribute("data-text") || "";
      field.dispatchEvent(new Event("input", { bubbles: true }));
      list.hidden = true;
      field.focus();
    }

    field.addEventListener("input", function () {
      active = 0;
      render();
    });
    field.addEventListener("keydown", function (event) {
      var found = list.hidden ? null : matches();
      if (!found || !found.length) {
        return;
      }
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        event.preventDefault();
        active = (active + (event.key === "ArrowDown" ? 1 : found.length - 1)) % found.length;
        render();
      } else if (event.key === "Enter" || event.key === "Tab") {
        event.preventDefault();
        insert(found[active]);
      } else if (event.key === "Escape") {
        event.stopPropagation();
        list.hidden = true;
      }
    });
  }

  // --- The list: ticks for bulk actions, the open row, unread in the tab title -----------

  // Live updates replace the rows: the ticks the agent made are put back on the new ones.
  var ticked = {};
  document.addEventListener("change", function (event) {
    if (event.target.classList && event.target.classList.contains("row-select")) {
      ticked[event.target.value] = event.target.checked;
    }
  });
  function restoreTicks() {
    document.querySelectorAll(".row-select").forEach(function (box) {
      box.checked = Boolean(ticked[box.value]);
    });
  }
  document.addEventListener("htmx:afterRequest", function (event) {
    if (event.detail.elt && event.detail.elt.id === "bulk-form" && event.detail.successful) {
      ticked = {};
      restoreTicks();
    }
  });

  function markOpenRow() {
    var open = conversationPane();
    var id = open ? open.getAttribute("data-conversation-id") : null;
    document.querySelectorAll("[data-row]").forEach(function (row) {
      var link = row.querySelector("[data-open]");
      if (row.getAttribute("data-conversation-id") === id) {
        row.classList.add("open");
        link.setAttribute("aria-current", "true");
      } else {
        row.classList.remove("open");
        link.removeAttribute("aria-current");
      }
    });
    if (open) {
      workspace.setAttribute("data-open", "");
    }
  }

  function updateTitle() {
    var list = document.getElementById("live-list");
    var unread = list ? Number(list.getAttribute("data-unread")) || 0 : 0;
    var heading = document.getElementById("conversation-heading");
    var title = heading ? heading.textContent.trim() + " · Portcullis" : baseTitle;
    document.title = (unread ? "(" + unread + ") " : "") + title;
  }

  function afterChange(root) {
    enhanceComposer(root);
    markOpenRow();
    updateTitle();
  }

  document.addEventListener("htmx:afterSettle", function (event) {
    afterChange(event.detail.target);
  });
  document.addEventListener("portcullis:swapped", function () {
    restoreTicks();
    markOpenRow();
    updateTitle();
  });

  // --- A request that failed: said, not swallowed -------------------------------------

  var failure = document.querySelector("[data-workspace-error]");
  function failed(text) {
    failure.textContent = text;
    failure.hidden = false;
    window.clearTimeout(failed.timer);
    failed.timer = window.setTimeout(function () { failure.hidden = true; }, 8000);
  }
  document.addEventListener("htmx:responseError", function () {
    failed("That did not go through: the server had a problem. Nothing was lost; try again.");
  });
  document.addEventListener("htmx:sendError", function () {
    failed("That did not go through: the server could not be reached. Check your connection and try again.");
  });

  // --- Keyboard --------------------------------------------------------------------------

  function typing(target) {
    return target.closest("input, textarea, select, [contenteditable]") !== null;
  }

  function moveInList(step) {
    var links = Array.prototype.slice.call(document.querySelectorAll("[data-row] [data-open]"));
    if (!links.length) {
      return;
    }
    var current = links.findIndex(function (link) {
      return link === document.activeElement || link.getAttribute("aria-current") === "true";
    });
    var next = current === -1 ? 0 : Math.max(0, Math.min(links.length - 1, current + step));
    if (next === current && links[current] === document.activeElement) {
      return;
    }
    links[next].focus();
    links[next].click();
  }

  function press(selector) {
    var pane = conversationPane();
    var target = pane && pane.querySelector(selector);
    if (target) {
      target.click();
    }
    return Boolean(target);
  }

  function compose(mode) {
    var pane = conversationPane();
    var composer = pane && pane.querySelector("[data-composer]");
    if (composer) {
      setMode(composer, mode, true);
    }
  }

  var KEYS = {
    j: function () { moveInList(1); },
    k: function () { moveInList(-1); },
    r: function () { compose("reply"); },
    n: function () { compose("note"); },
    a: function () { press('[data-shortcut="a"]'); },
    e: function () { press('[data-shortcut="e"]'); },
    s: function () {
      var first = document.querySelector('[data-shortcut="s"]');
      if (first) {
        first.focus();
      }
    },
    p: function () {
      var current = document.querySelector('[data-shortcut="p"]');
      if (current) {
        current.focus();
      }
    },
    "/": function () {
      var search = document.getElementById("id_q");
      if (search) {
        search.focus();
        search.select();
      }
    },
    "?": function () {
      if (shortcuts && !shortcuts.open) {
        shortcuts.showModal();
      }
    },
  };

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) {
      return;
    }
    if (typing(event.target)) {
      // Escape leaves the field, so the next key is a shortcut again.
      if (event.key === "Escape" && event.target.blur) {
        event.target.blur();
      }
      return;
    }
    if (shortcuts && shortcuts.open) {
      return;
    }
    var handler = KEYS[event.key];
    if (handler) {
      event.preventDefault();
      handler();
    }
  });

  afterChange(document);
})();
