// Live updates for the agent pages over the agent socket (/ws/agent/).
//
// The socket carries ids and states only. When something changes, the page fetches itself
// again over HTTP (through the same gate and policy as any page view) and swaps the parts
// marked data-live-region, so the server stays the only judge of what the agent may see.
// When the server withdraws trust (session ended, access revoked), the live view closes.
"use strict";

(function () {
  var root = document.querySelector("[data-live]");
  var bar = document.querySelector("[data-live-bar]");
  if (!root || !bar || !window.WebSocket) {
    return;
  }
  var page = root.getAttribute("data-live");
  var conversationId = Number(root.getAttribute("data-conversation-id")) || null;
  var myId = Number(root.getAttribute("data-user-id")) || null;
  var stateLabel = bar.querySelector("[data-live-state]");
  var announce = bar.querySelector("[data-live-announce]");
  var presenceSelect = bar.querySelector("[data-presence]");
  var typingLine = document.getElementById("typing");
  var socket = null;
  var retry = 0;
  var ended = false;
  var refreshTimer = null;
  var typingTimer = null;
  var lastTypingSent = 0;
  var PRESENCE_KEY = "portcullis:presence";
  var LIST_EVENTS = ["message.created", "conversation.created", "conversation.assigned", "conversation.status", "conversation.labels", "conversation.read"];

  bar.hidden = false;
  try {
    presenceSelect.value = window.localStorage.getItem(PRESENCE_KEY) || "online";
  } catch (e) { /* storage blocked: online by default */ }

  function send(data) {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify(data));
    }
  }

  function say(text) {
    announce.textContent = text;
  }

  function connected(yes) {
    if (yes) {
      bar.setAttribute("data-connected", "");
    } else {
      bar.removeAttribute("data-connected");
    }
    stateLabel.textContent = yes ? "Live" : "Reconnecting…";
  }

  // The server withdrew trust: take the live view down, leaving nothing sensitive on screen.
  function close(message, linkText, href) {
    ended = true;
    window.clearTimeout(refreshTimer);
    if (socket) {
      socket.onclose = null;
      socket.close();
    }
    var notice = document.createElement("section");
    notice.className = "card live-ended";
    notice.setAttribute("role", "alert");
    var text = document.createElement("p");
    text.textContent = message;
    var link = document.createElement("a");
    link.href = href;
    link.textContent = linkText;
    notice.append(text, link);
    var main = document.getElementById("main");
    main.replaceChildren(notice);
  }

  function sessionEnded() {
    close("Your session has ended. Sign in again to continue.", "Sign in", "/accounts/login/");
  }

  function accessRevoked() {
    close("You no longer have access to this conversation.", "Back to the inbox", "/");
  }

  function lastInboundId() {
    var entries = document.querySelectorAll('#thread [data-direction="in"]');
    return entries.length ? Number(entries[entries.length - 1].getAttribute("data-message-id")) : 0;
  }

  function markRead() {
    var last = lastInboundId();
    if (conversationId && last && document.visibilityState === "visible") {
      send({ type: "read", conversation_id: conversationId, message_id: last });
    }
  }

  // Fetch this page again and swap its live regions; the server decides what is in them.
  // Bursts of events are coalesced; a withdrawal of access is acted on at once.
  function refresh(delay) {
    window.clearTimeout(refreshTimer);
    refreshTimer = window.setTimeout(function () {
      fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (response) {
          if (response.redirected && response.url.indexOf("/accounts/") !== -1) {
            sessionEnded();
            return null;
          }
          if (response.status === 404 || response.status === 403) {
            if (page === "conversation") {
              accessRevoked();
            }
            return null;
          }
          return response.ok ? response.text() : null;
        })
        .then(function (html) {
          if (!html || ended) {
            return;
          }
          var fresh = new DOMParser().parseFromString(html, "text/html");
          var seen = {};
          document.querySelectorAll("#thread [data-message-id]").forEach(function (li) {
            seen[li.getAttribute("data-message-id")] = true;
          });
          document.querySelectorAll("[data-live-region]").forEach(function (region) {
            var replacement = fresh.getElementById(region.id);
            if (replacement) {
              region.replaceWith(document.importNode(replacement, true));
            }
          });
          var added = 0;
          document.querySelectorAll("#thread [data-message-id]").forEach(function (li) {
            if (!seen[li.getAttribute("data-message-id")]) {
              li.classList.add("fresh");
              added += 1;
            }
          });
          document.querySelectorAll("[data-color]").forEach(function (element) {
            var color = element.getAttribute("data-color");
            if (/^#[0-9a-fA-F]{6}$/.test(color)) {
              element.style.setProperty("--label-color", color);
            }
          });
          if (added) {
            say(added === 1 ? "New message." : added + " new messages.");
          } else if (page === "list") {
            say("Inbox updated.");
          }
          markRead();
        })
        .catch(function () { /* the next event or reconnect refreshes again */ });
    }, delay === undefined ? 250 : delay);
  }

  function showTyping(event) {
    if (!typingLine || event.user_id === myId) {
      return;
    }
    typingLine.textContent = (event.visitor ? "The visitor" : event.name || "A colleague") + " is typing…";
    window.clearTimeout(typingTimer);
    typingTimer = window.setTimeout(function () { typingLine.textContent = ""; }, 4000);
  }

  function onEvent(event) {
    if (page === "list") {
      if (LIST_EVENTS.indexOf(event.event) !== -1) {
        refresh();
      }
      return;
    }
    if (event.conversation_id !== conversationId) {
      return;
    }
    if (event.event === "typing") {
      showTyping(event);
    } else if (event.event !== "presence") {
      if (event.event === "message.created" && typingLine) {
        typingLine.textContent = "";
      }
      refresh();
    }
  }

  function connect() {
    if (ended) {
      return;
    }
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + window.location.host + "/ws/agent/");
    socket.onopen = function () {
      retry = 0;
      connected(true);
      send({ type: "presence", status: presenceSelect.value });
      // Whatever happened while disconnected: catch up once.
      refresh();
    };
    socket.onmessage = function (message) {
      var data;
      try {
        data = JSON.parse(message.data);
      } catch (e) {
        return;
      }
      if (data.type === "event") {
        onEvent(data);
      } else if (data.type === "access.changed") {
        refresh(0);
      } else if (data.type === "session.ended") {
        sessionEnded();
      }
    };
    socket.onclose = function (event) {
      connected(false);
      if (event.code === 4401) {
        sessionEnded();
        return;
      }
      // A refused handshake looks like a dropped connection: the refresh finds out which.
      retry = Math.min(retry + 1, 5);
      refresh();
      window.setTimeout(connect, 500 * Math.pow(2, retry));
    };
  }

  presenceSelect.addEventListener("change", function () {
    try {
      window.localStorage.setItem(PRESENCE_KEY, presenceSelect.value);
    } catch (e) { /* not remembered, still sent */ }
    send({ type: "presence", status: presenceSelect.value });
  });

  var reply = document.getElementById("id_reply");
  if (reply && conversationId) {
    reply.addEventListener("input", function () {
      var now = Date.now();
      if (now - lastTypingSent > 2500) {
        lastTypingSent = now;
        send({ type: "typing", conversation_id: conversationId });
      }
    });
  }

  document.addEventListener("visibilitychange", markRead);
  // Presence lapses without a heartbeat: a closed laptop goes offline by itself.
  window.setInterval(function () { send({ type: "presence", status: presenceSelect.value }); }, 25000);
  connect();
})();
