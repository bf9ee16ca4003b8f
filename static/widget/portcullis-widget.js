/* Portcullis chat widget. Drop into a page with:
 *   <script src="https://inbox.example.com/static/widget/portcullis-widget.js"
 *           data-portcullis-key="lc_..." defer></script>
 * Optional, for sites that sign their users in for us: data-user-id and data-user-hash
 * (hex HMAC-SHA256 of the user id under the channel's identity secret, computed by the
 * site's server). No build step, no dependencies; everything the visitor or an agent
 * typed is rendered as text, never as HTML. */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || !script.getAttribute("data-portcullis-key") || window.__portcullisWidget) return;
  window.__portcullisWidget = true;

  var KEY = script.getAttribute("data-portcullis-key");
  var BASE = new URL(script.src).origin;
  var SOCKET_URL = BASE.replace(/^http/, "ws") + "/ws/widget/" + encodeURIComponent(KEY) + "/";
  var UPLOAD_URL = BASE + "/livechat/" + encodeURIComponent(KEY) + "/upload/";
  var STORE = "portcullis:" + KEY;
  var ACCEPT = "image/png,image/jpeg,image/gif,image/webp,application/pdf,text/plain";
  // Close codes after which retrying cannot help.
  var FINAL = { 4403: "identity", 4404: "closed", 4429: "flood" };

  var socket = null, ready = false, retry = 0, stopped = false, lastOut = 0, unread = 0;
  var pending = {}; // client id -> text, resent after a reconnect until acknowledged
  var shown = {}; // message id -> element
  var typingTimer = null, lastTyping = 0, config = {};

  function storage(value) {
    try {
      if (value === undefined) return window.localStorage.getItem(STORE);
      if (value === null) window.localStorage.removeItem(STORE);
      else window.localStorage.setItem(STORE, value);
    } catch (e) { /* storage blocked: the chat lasts as long as the page */ }
    return null;
  }

  function newId() {
    var bytes = new Uint8Array(12);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) { node.setAttribute(name, attrs[name]); });
    if (text) node.textContent = text;
    return node;
  }

  // --- Building the widget (in a shadow root: the page's styles stay out) -------------------
  var host = el("div", { "data-portcullis-widget": "" });
  var root = host.attachShadow({ mode: "open" });
  root.appendChild(el("link", { rel: "stylesheet", href: BASE + "/static/widget/portcullis-widget.css" }));
  var launcher = el("button", { type: "button", class: "pc-launcher", "aria-expanded": "false", "aria-controls": "pc-panel" }, "Chat with us");
  var badge = el("span", { class: "pc-badge", "aria-hidden": "true", hidden: "" });
  launcher.appendChild(badge);
  var panel = el("section", { id: "pc-panel", class: "pc-panel", role: "dialog", "aria-labelledby": "pc-title", hidden: "" });
  var header = el("header", { class: "pc-header" });
  var title = el("h2", { id: "pc-title" }, script.getAttribute("data-title") || "Chat with us");
  var state = el("span", { class: "pc-state" }, "Connecting…");
  var close = el("button", { type: "button", class: "pc-close", "aria-label": "Close chat" }, "×");
  header.append(title, state, close);
  var log = el("ol", { class: "pc-log", role: "log", "aria-live": "polite", "aria-label": "Messages" });
  var typing = el("p", { class: "pc-typing", "aria-live": "polite" });
  var alertBox = el("p", { class: "pc-alert", role: "alert", hidden: "" });

  function field(form, name, label, type, required) {
    var id = "pc-" + form.className + "-" + name;
    var wrap = el("div", { class: "pc-field" });
    var input = el(type === "textarea" ? "textarea" : "input", { id: id, name: name });
    if (type !== "textarea") input.type = type;
    else input.rows = 3;
    if (required) input.required = true;
    wrap.append(el("label", { for: id }, label + (required ? "" : " (optional)")), input);
    form.appendChild(wrap);
    return input;
  }

  var prechat = el("form", { class: "pc-prechat", hidden: "", novalidate: "" });
  var offline = el("form", { class: "pc-offline", hidden: "", novalidate: "" });
  var offlineText = el("p", { class: "pc-note" });
  offline.appendChild(offlineText);
  var offlineEmail = field(offline, "email", "Your email", "email", true);
  var offlineBody = field(offline, "text", "Your message", "textarea", true);
  offline.appendChild(el("button", { type: "submit", class: "pc-primary" }, "Send"));

  var composer = el("form", { class: "pc-composer", novalidate: "" });
  composer.appendChild(el("label", { for: "pc-input", class: "pc-sr" }, "Message"));
  var input = el("textarea", { id: "pc-input", rows: "2", placeholder: "Type your message…", "aria-describedby": "pc-hint" });
  var hint = el("span", { id: "pc-hint", class: "pc-sr" }, "Enter sends, Shift+Enter starts a new line.");
  var attachLabel = el("label", { class: "pc-attach", title: "Send a file" });
  var file = el("input", { type: "file", accept: ACCEPT, "aria-label": "Send a file" });
  attachLabel.append(el("span", { "aria-hidden": "true" }, "+"), file);
  var send = el("button", { type: "submit", class: "pc-primary" }, "Send");
  composer.append(input, hint, attachLabel, send);

  var body = el("div", { class: "pc-body" });
  body.append(prechat, offline, log, typing, alertBox);
  panel.append(header, body, composer);
  root.append(launcher, panel);
  (document.body || document.documentElement).appendChild(host);

  // --- Showing things -----------------------------------------------------------------------
  function notice(text) {
    alertBox.textContent = text || "";
    alertBox.hidden = !text;
  }

  function stamp(iso) {
    var when = iso ? new Date(iso) : new Date();
    return when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function render(message, clientId) {
    var node = (message.id && shown[message.id]) || (clientId && log.querySelector('[data-client="' + clientId + '"]'));
    var mine = message.direction === "in";
    if (!node) {
      node = el("li", { class: "pc-msg " + (mine ? "pc-mine" : "pc-theirs") });
      log.appendChild(node);
    }
    node.textContent = "";
    if (clientId) node.setAttribute("data-client", clientId);
    var who = el("span", { class: "pc-who" }, mine ? "You" : message.author || "Support");
    var text = el("span", { class: "pc-text" }, message.text || "");
    node.append(who, text);
    (message.attachments || []).forEach(function (a) {
      node.appendChild(el("span", { class: "pc-file" }, a.name + " (" + Math.ceil(a.size / 1024) + " KB)"));
    });
    var meta = el("span", { class: "pc-meta" }, stamp(message.created_at));
    if (mine) meta.appendChild(el("span", { class: "pc-receipt" }, message.id ? (message.status === "read" ? " · Read" : " · Sent") : " · Sending…"));
    node.appendChild(meta);
    if (message.id) {
      node.setAttribute("data-id", String(message.id));
      shown[message.id] = node;
      if (!mine) lastOut = Math.max(lastOut, message.id);
    }
    log.scrollTop = log.scrollHeight;
    return node;
  }

  function receive(message) {
    if (shown[message.id]) return;
    render(message);
    if (message.direction === "out") {
      typing.textContent = "";
      if (panel.hidden) {
        unread += 1;
        badge.textContent = String(unread);
        badge.hidden = false;
      }
      markRead();
    }
  }

  function markRead() {
    if (!panel.hidden && lastOut && document.visibilityState === "visible") frame({ type: "read", up_to: lastOut });
  }

  function showForms() {
    var needPrechat = config.prechat && config.prechat.needed;
    var useOffline = !needPrechat && !config.online && config.offline_form && !(config.history || []).length;
    prechat.hidden = !needPrechat;
    offline.hidden = !useOffline;
    composer.hidden = needPrechat || useOffline;
    state.textContent = !ready ? "Reconnecting…" : config.online ? "We are online" : "Offline";
  }

  function buildPrechat() {
    prechat.textContent = "";
    prechat.appendChild(el("p", { class: "pc-note" }, config.welcome_text || ""));
    ["name", "email"].forEach(function (name) {
      var mode = config.prechat[name];
      if (mode !== "off") field(prechat, name, name === "name" ? "Your name" : "Your email", name === "name" ? "text" : "email", mode === "required");
    });
    prechat.appendChild(el("button", { type: "submit", class: "pc-primary" }, "Start chat"));
  }

  // --- The socket -----------------------------------------------------------------------------
  function frame(data) {
    if (socket && ready) socket.send(JSON.stringify(data));
  }

  function connect() {
    if (stopped) return;
    socket = new WebSocket(SOCKET_URL);
    socket.onopen = function () {
      var hello = { type: "hello", token: storage() || null };
      var userId = script.getAttribute("data-user-id"), userHash = script.getAttribute("data-user-hash");
      if (userId) { hello.user_id = userId; hello.user_hash = userHash || ""; }
      socket.send(JSON.stringify(hello));
    };
    socket.onmessage = function (event) {
      var data;
      try { data = JSON.parse(event.data); } catch (e) { return; }
      handle(data);
    };
    socket.onclose = function (event) {
      ready = false;
      showForms();
      if (FINAL[event.code]) {
        stopped = true;
        state.textContent = "Unavailable";
        return;
      }
      if (event.code === 4401) storage(null); // expired or foreign token: start afresh
      retry = Math.min(retry + 1, 6);
      window.setTimeout(connect, event.code === 4401 ? 0 : 500 * Math.pow(2, retry));
    };
  }

  function handle(data) {
    switch (data.type) {
      case "welcome":
        ready = true;
        retry = 0;
        config = data;
        storage(data.token);
        log.textContent = "";
        shown = {};
        if (data.welcome_text && !data.history.length) log.appendChild(el("li", { class: "pc-msg pc-theirs pc-welcome" }, data.welcome_text));
        data.history.forEach(function (m) { render(m); });
        offlineText.textContent = data.offline_text || "";
        input.maxLength = data.limits.text;
        if (data.prechat.needed) buildPrechat();
        showForms();
        Object.keys(pending).forEach(function (id) { frame({ type: "message", id: id, text: pending[id] }); });
        markRead();
        break;
      case "token":
        storage(data.token);
        config.prechat.needed = data.prechat_needed;
        showForms();
        input.focus();
        break;
      case "ack":
        delete pending[data.id];
        if (busyTries[data.id]) {
          delete busyTries[data.id];
          notice(""); // the "busy" notice is over
        }
        render(data.message, data.id);
        break;
      case "message":
        receive(data.message);
        break;
      case "sync": // a reply was lost on the way: the history as stored fills the gap
        data.history.forEach(receive);
        break;
      case "typing":
        typing.textContent = (data.name || "Support") + " is typing…";
        window.clearTimeout(typingTimer);
        typingTimer = window.setTimeout(function () { typing.textContent = ""; }, 4000);
        break;
      case "read":
        Object.keys(shown).forEach(function (id) {
          var receipt = shown[id].querySelector(".pc-receipt");
          if (receipt && Number(id) <= data.up_to) receipt.textContent = " · Read";
        });
        break;
      case "error":
        if (data.code === "busy" && data.id && pending[data.id]) {
          // Not taken yet: kept, shown as sending, and sent again after a growing pause.
          resendLater(data.id, data.retry_after_ms || 500);
          notice(data.message);
          break;
        }
        if (data.id) delete pending[data.id];
        if (data.id) {
          var failed = log.querySelector('[data-client="' + data.id + '"] .pc-receipt');
          if (failed) failed.textContent = " · Not sent";
        }
        notice(data.message);
        break;
      case "closed":
        notice(data.message);
        break;
    }
  }

  var busyTries = {}; // client id -> times the server was too busy to take it
  function resendLater(id, base) {
    var tries = (busyTries[id] = (busyTries[id] || 0) + 1);
    var delay = Math.min(base * Math.pow(2, tries - 1), 15000) * (0.5 + Math.random() / 2);
    window.setTimeout(function () {
      if (pending[id]) frame({ type: "message", id: id, text: pending[id] });
    }, delay);
  }

  // --- What the visitor does ------------------------------------------------------------------
  function submitMessage() {
    var text = input.value.trim();
    if (!text) return;
    var id = newId();
    pending[id] = text;
    render({ direction: "in", text: text }, id);
    input.value = "";
    notice("");
    frame({ type: "message", id: id, text: text });
  }

  function toggle(open) {
    panel.hidden = !open;
    launcher.setAttribute("aria-expanded", String(open));
    if (open) {
      unread = 0;
      badge.hidden = true;
      markRead();
      var first = panel.querySelector("form:not([hidden]) input, form:not([hidden]) textarea");
      (first || close).focus();
    } else {
      launcher.focus();
    }
  }

  launcher.addEventListener("click", function () { toggle(panel.hidden); });
  close.addEventListener("click", function () { toggle(false); });
  panel.addEventListener("keydown", function (event) {
    if (event.key === "Escape") toggle(false);
  });
  composer.addEventListener("submit", function (event) {
    event.preventDefault();
    submitMessage();
  });
  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submitMessage();
    }
  });
  input.addEventListener("input", function () {
    var now = Date.now();
    if (now - lastTyping > 2500) {
      lastTyping = now;
      frame({ type: "typing" });
    }
  });
  prechat.addEventListener("submit", function (event) {
    event.preventDefault();
    var data = { type: "prechat" };
    Array.prototype.forEach.call(prechat.elements, function (f) { if (f.name) data[f.name] = f.value; });
    frame(data);
  });
  offline.addEventListener("submit", function (event) {
    event.preventDefault();
    if (!offlineEmail.value || !offlineBody.value.trim()) {
      notice("Enter your email and a message.");
      return;
    }
    var id = newId();
    frame({ type: "offline", id: id, email: offlineEmail.value, text: offlineBody.value });
    offlineBody.value = "";
    notice("Thank you! We will write back by email.");
  });
  file.addEventListener("change", function () {
    var chosen = file.files && file.files[0];
    file.value = "";
    if (!chosen) return;
    if (config.limits && chosen.size > config.limits.upload) {
      notice("That file is too large.");
      return;
    }
    var id = newId();
    var form = new FormData();
    form.append("token", storage() || "");
    form.append("id", id);
    form.append("file", chosen);
    render({ direction: "in", text: chosen.name }, id);
    fetch(UPLOAD_URL, { method: "POST", body: form, credentials: "omit", mode: "cors" })
      .then(function (response) { return response.json().then(function (json) { return { ok: response.ok, json: json }; }); })
      .then(function (result) {
        if (!result.ok) throw new Error(result.json.message || "The file could not be sent.");
        render(result.json.message, id);
      })
      .catch(function (error) {
        notice(error.message || "The file could not be sent.");
        var failed = log.querySelector('[data-client="' + id + '"] .pc-receipt');
        if (failed) failed.textContent = " · Not sent";
      });
  });
  document.addEventListener("visibilitychange", markRead);
  window.setInterval(function () { frame({ type: "ping" }); }, 30000);
  connect();
})();
