// Live updates for the agent pages over the agent socket (/ws/agent/).
//
// The socket carries ids and states only. When something changes, the workspace fetches the
// affected pane again over HTTP (through the same gate and policy as any page view) and
// swaps the parts marked data-live-region, so the server stays the only judge of what the
// agent may see. The composer and the filters are not live regions: typing is never lost.
// When the server withdraws trust (session ended, access revoked), the live view closes.
"use strict";

(function () {
  var root = document.querySelector("[data-live]");
  var bar = document.querySelector("[data-live-bar]");
  if (!root || !bar || !window.WebSocket) {
    return;
  }
  var myId = Number(root.getAttribute("data-user-id")) || null;
  var stateLabel = bar.querySelector("[data-live-state]");
  var announce = bar.querySelector("[data-live-announce]");
  var presenceSelect = bar.querySelector("[data-presence]");
  var socket = null;
  var retry = 0;
  var ended = false;
  var refreshTimer = null;
  var pending = { conversation: false, list: false };
  var typingTimer = null;
  var lastTypingSent = 0;
  var PRESENCE_KEY = "portcullis:presence";
  var LIST_EVENTS = ["message.created", "conversation.created", "conversation.assigned", "conversation.status", "conversation.priority", "conversation.labels", "conversation.read"];

  // The workspace's panes come and go (htmx swaps them): always ask the page.
  function pane(name) {
    return document.querySelector('[data-pane="' + name + '"]');
  }

  function openConversationId() {
    var conversation = pane("conversation");
    return conversation ? Number(conversation.getAttribute("data-conversation-id")) : null;
  }

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
    var conversationId = openConversationId();
    if (conversationId && last && document.visibilityState === "visible") {
      send({ type: "read", conversation_id: conversationId, message_id: last });
    }
  }

  // Fetch one pane again (as the in-place request the workspace makes) and swap its live
  // regions; the server decides what is in them. Resolves false when trust was withdrawn.
  function refreshPane(name) {
    var element = pane(name);
    if (!element) {
      return Promise.resolve(true);
    }
    return fetch(element.getAttribute("data-pane-url"), {
      credentials: "same-origin",
      headers: { Accept: "text/html", "HX-Request": "true" },
    })
      .then(function (response) {
        if (response.redirected && response.url.indexOf("/accounts/") !== -1) {
          sessionEnded();
          return null;
        }
        if (response.status === 404 || response.status === 403) {
          if (name === "conversation") {
            accessRevoked();
          }
          return null;
        }
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (!html || ended || pane(name) !== element) {
          return !ended;
        }
        var fresh = new DOMParser().parseFromString(html, "text/html");
        var seen = {};
        element.querySelectorAll("#thread [data-message-id]").forEach(function (li) {
          seen[li.getAttribute("data-message-id")] = true;
        });
        fresh.querySelectorAll("[data-live-region]").forEach(function (replacement) {
          var region = document.getElementById(replacement.id);
          if (region) {
            var node = document.importNode(replacement, true);
            region.replaceWith(node);
            if (window.htmx) {
              window.htmx.process(node); // its links and forms work in place too
            }
            node.dispatchEvent(new CustomEvent("portcullis:swapped", { bubbles: true }));
          }
        });
        var added = 0;
        document.querySelectorAll("#thread [data-message-id]").forEach(function (li) {
          if (!seen[li.getAttribute("data-message-id")]) {
            li.classList.add("fresh");
            added += 1;
          }
        });
        if (added) {
          say(added === 1 ? "New message." : added + " new messages.");
          var typingLine = document.getElementById("typing");
          if (typingLine) {
            typingLine.textContent = "";
          }
        } else if (name === "list") {
          say("Inbox updated.");
        }
        if (name === "conversation") {
          markRead();
        }
        return true;
      })
      .catch(function () { return true; /* the next event or reconnect refreshes again */ });
  }

  // Bursts of events are coalesced. The conversation goes first: opening it marks it read,
  // which the list then shows.
  function refresh(which, delay) {
    pending.conversation = pending.conversation || which !== "list";
    pending.list = pending.list || which !== "conversation";
    schedule(delay === undefined ? 250 : delay);
  }

  function schedule(delay) {
    window.clearTimeout(refreshTimer);
    refreshTimer = window.setTimeout(function () {
      if (actionsInFlight > 0) {
        // An action's own answer is on its way and replaces the pane: refreshing first would
        // show its result early, and the answer then reset what the agent did meanwhile.
        schedule(100);
        return;
      }
      var wanted = pending;
      pending = { conversation: false, list: false };
      (wanted.conversation ? refreshPane("conversation") : Promise.resolve(true)).then(function (go) {
        if (go && wanted.list) {
          refreshPane("list");
        }
      });
    }, delay);
  }

  function showTyping(event) {
    var typingLine = document.getElementById("typing");
    if (!typingLine || event.user_id === myId) {
      return;
    }
    // Someone else is writing in the conversation open here: say so before two replies cross.
    typingLine.textContent = event.visitor ? "The visitor is typing…" : (event.name || "A colleague") + " is replying…";
    window.clearTimeout(typingTimer);
    typingTimer = window.setTimeout(function () { typingLine.textContent = ""; }, 4000);
  }

  function onEvent(event) {
    var here = event.conversation_id === openConversationId();
    if (here && event.event === "typing") {
      showTyping(event);
      return;
    }
    var forList = LIST_EVENTS.indexOf(event.event) !== -1;
    if (here && event.event !== "presence") {
      refresh(forList ? "both" : "conversation");
    } else if (forList) {
      refresh("list");
    }
  }

  // The server numbers events; one was lost on the way (a full queue, a Redis restart):
  // say so until both panes are reloaded from the server, rather than silently miss it.
  function catchUp() {
    stateLabel.textContent = "Catching up…";
    refreshPane("conversation")
      .then(function (go) { return go ? refreshPane("list") : false; })
      .then(function () {
        if (!ended) {
          connected(Boolean(socket) && socket.readyState === WebSocket.OPEN);
        }
      });
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
      refresh("both");
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
        refresh("both", 0);
      } else if (data.type === "resync") {
        catchUp();
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
      refresh("both");
      window.setTimeout(connect, 500 * Math.pow(2, retry));
    };
  }

  presenceSelect.addEventListener("change", function () {
    try {
      window.localStorage.setItem(PRESENCE_KEY, presenceSelect.value);
    } catch (e) { /* not remembered, still sent */ }
    send({ type: "presence", status: presenceSelect.value });
  });

  // The reply box comes and goes with the conversation pane: listen on the document.
  document.addEventListener("input", function (event) {
    var conversationId = openConversationId();
    if (event.target.id !== "id_reply" || !conversationId) {
      return;
    }
    var now = Date.now();
    if (now - lastTypingSent > 2500) {
      lastTypingSent = now;
      send({ type: "typing", conversation_id: conversationId });
    }
  });
  var actionsInFlight = 0;
  document.addEventListener("htmx:beforeSend", function (event) {
    actionsInFlight += 1;
    // loadend comes after htmx's own load handler (the swap) and also on error or abort.
    event.detail.xhr.addEventListener("loadend", function () { actionsInFlight -= 1; });
  });
  // An action in the workspace changed something the list shows.
  document.addEventListener("inbox:list-changed", function () { refresh("list", 0); });
  // A conversation was opened in place: its contact's messages are now seen.
  document.addEventListener("htmx:afterSettle", function (event) {
    if (event.detail.target && event.detail.target.id === "conversation-slot") {
      markRead();
    }
  });

  document.addEventListener("visibilitychange", markRead);
  // Presence lapses without a heartbeat: a closed laptop goes offline by itself.
  window.setInterval(function () { send({ type: "presence", status: presenceSelect.value }); }, 25000);
  connect();
})();
