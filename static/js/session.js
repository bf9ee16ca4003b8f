// The idle warning: a dialog shortly before the server ends an inactive session, with a
// "Stay signed in" button that restarts the server's idle clock.
//
// The server is the judge: it ends the session and says why on the sign-in page. This
// script only keeps a copy of the clock the page was rendered with (#session-clock),
// refreshed by "Stay signed in", by live.js swapping in a fresh copy, and by other tabs of
// the same session. When the time is up it loads the page again, so the server decides.
"use strict";

(function () {
  var dialog = document.getElementById("session-warning");
  var announce = document.querySelector("[data-session-announce]");
  var stay = dialog && dialog.querySelector("[data-session-stay]");
  if (!dialog || !announce || !stay || !window.fetch) {
    return;
  }
  var STORAGE_KEY = "portcullis:session-deadlines";
  // The server ends the session strictly after its deadline; arriving a moment later
  // means the reload finds it ended rather than just about to end.
  var GRACE_MS = 1500;
  var csrf = dialog.querySelector("input[name=csrfmiddlewaretoken]");
  var errorLine = dialog.querySelector("[data-session-error]");
  var clockNode = null;
  var idleDeadline = 0;
  var absoluteDeadline = 0;
  var warningMs = 0;
  var returnFocus = null;
  var leaving = false;

  function share() {
    try {
      window.localStorage.setItem(STORAGE_KEY, JSON.stringify({ idle: idleDeadline, absolute: absoluteDeadline }));
    } catch (e) { /* storage blocked: this tab keeps its own clock */ }
  }

  function setClock(idleSeconds, absoluteSeconds) {
    var now = Date.now();
    idleDeadline = now + idleSeconds * 1000;
    absoluteDeadline = now + absoluteSeconds * 1000;
    share();
  }

  // Read the rendered clock again whenever live.js has replaced it with a fresher one.
  function readClock() {
    var node = document.getElementById("session-clock");
    if (!node || node === clockNode) {
      return;
    }
    clockNode = node;
    warningMs = Number(node.getAttribute("data-warning-seconds")) * 1000;
    setClock(Number(node.getAttribute("data-idle-seconds")), Number(node.getAttribute("data-absolute-seconds")));
  }

  function formatted(ms) {
    var seconds = Math.max(0, Math.ceil(ms / 1000));
    var rest = seconds % 60;
    return Math.floor(seconds / 60) + ":" + (rest < 10 ? "0" : "") + rest;
  }

  function inMinutes(ms) {
    var minutes = Math.max(1, Math.ceil(ms / 60000));
    return minutes === 1 ? "1 minute" : minutes + " minutes";
  }

  function show(reason, left) {
    dialog.querySelectorAll("[data-session-reason]").forEach(function (line) {
      line.hidden = line.getAttribute("data-session-reason") !== reason;
    });
    // Staying signed in cannot move the absolute limit: the button would promise too much.
    stay.hidden = reason === "absolute";
    if (dialog.hidden) {
      dialog.hidden = false;
      returnFocus = document.activeElement;
      announce.textContent = reason === "absolute"
        ? "Your session reaches its time limit in " + inMinutes(left) + ". Save your work."
        : "You will be signed out in " + inMinutes(left) + " for inactivity. Choose Stay signed in to continue.";
      (stay.hidden ? dialog.querySelector("button[type=submit]") : stay).focus();
    }
    dialog.querySelectorAll("[data-session-countdown]").forEach(function (countdown) {
      countdown.textContent = formatted(left);
    });
  }

  function hide() {
    if (dialog.hidden) {
      return;
    }
    dialog.hidden = true;
    errorLine.hidden = true;
    if (returnFocus && document.contains(returnFocus)) {
      returnFocus.focus();
    }
    returnFocus = null;
  }

  function tick() {
    if (leaving) {
      return;
    }
    readClock();
    var now = Date.now();
    var deadline = Math.min(idleDeadline, absoluteDeadline);
    if (now >= deadline + GRACE_MS) {
      leaving = true;
      window.location.assign(window.location.href);
    } else if (now >= deadline - warningMs) {
      show(absoluteDeadline <= idleDeadline ? "absolute" : "idle", deadline - now);
    } else {
      hide();
    }
  }

  function stayHere() {
    errorLine.hidden = true;
    fetch(dialog.getAttribute("data-keepalive-url"), {
      method: "POST",
      credentials: "same-origin",
      headers: { Accept: "application/json", "X-CSRFToken": csrf ? csrf.value : "" },
    })
      .then(function (response) {
        // Already ended: the gate redirected to the sign-in page, which says why.
        if (response.redirected) {
          leaving = true;
          window.location.assign(response.url);
          return null;
        }
        if (!response.ok) {
          throw new Error(String(response.status));
        }
        return response.json();
      })
      .then(function (clock) {
        if (!clock) {
          return;
        }
        setClock(clock.idle_seconds, clock.absolute_seconds);
        announce.textContent = "You are still signed in.";
        hide();
      })
      .catch(function () {
        errorLine.hidden = false;
      });
  }

  stay.addEventListener("click", stayHere);
  // Escape is an answer too: the person is there.
  dialog.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && !stay.hidden) {
      event.preventDefault();
      stayHere();
    }
  });
  // Another tab of this session moved the clock: the latest activity counts for all.
  window.addEventListener("storage", function (event) {
    if (event.key !== STORAGE_KEY || !event.newValue) {
      return;
    }
    try {
      var shared = JSON.parse(event.newValue);
      if (shared.idle > idleDeadline) {
        idleDeadline = shared.idle;
        tick();
      }
    } catch (e) { /* a value not ours: ignored */ }
  });

  readClock();
  window.setInterval(tick, 1000);
  tick();
})();
