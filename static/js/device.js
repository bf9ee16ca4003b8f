// The device key: made once per browser profile with WebCrypto (ECDSA P-256, the private
// half non-extractable, kept in IndexedDB), it signs a proof for every state-changing
// request of the pages — form posts, fetch and XMLHttpRequest calls (htmx), websocket
// connects — and renews the short-lived bound cookie that reads need. A stolen session
// cookie is useless without this key, which script cannot export.
//
// Loaded in <head> before every other script, so their requests are hooked from the start.
// The server is the judge (accounts/devices): this script only signs.
"use strict";

(function () {
  var meta = document.querySelector('meta[name="device-binding"]');
  if (!meta || !window.crypto || !window.crypto.subtle || !window.indexedDB || !window.Promise) {
    // No WebCrypto or IndexedDB: nothing is signed, and the server applies its policy for
    // such browsers (refused, or a weaker device cookie).
    return;
  }
  var DB_NAME = "portcullis-device";
  var STORE = "keys";
  var KEY_ID = "device";
  var UNSAFE = /^(POST|PUT|PATCH|DELETE)$/i;
  var NONCE_MAX_AGE_MS = 5 * 60 * 1000;
  var SOCKET_PROOF_MAX_AGE_MS = 30 * 1000;
  var nonce = meta.getAttribute("data-nonce");
  var nonceAt = Date.now();
  var refreshUrl = meta.getAttribute("data-refresh-url");
  var refreshMs = Number(meta.getAttribute("data-refresh-seconds")) * 1000;
  // Signed in by a redirect (single sign-on), which could carry no proof: the first
  // refresh binds the session to this browser's key.
  var bindNow = meta.getAttribute("data-bind-now") === "1";
  var bound = meta.getAttribute("data-bound") === "1" || bindNow;
  var encoder = new TextEncoder();
  var originalFetch = window.fetch ? window.fetch.bind(window) : null;
  var keyPromise = null;

  function openDb() {
    return new Promise(function (resolve, reject) {
      var request = indexedDB.open(DB_NAME, 1);
      request.onupgradeneeded = function () { request.result.createObjectStore(STORE); };
      request.onsuccess = function () { resolve(request.result); };
      request.onerror = function () { reject(request.error); };
    });
  }

  function storeOp(mode, op) {
    return openDb().then(function (db) {
      return new Promise(function (resolve, reject) {
        var request = op(db.transaction(STORE, mode).objectStore(STORE));
        request.onsuccess = function () { resolve(request.result); };
        request.onerror = function () { reject(request.error); };
      });
    });
  }

  function createKey() {
    // extractable: false — the private key can sign but can never be read out.
    return crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, ["sign", "verify"])
      .then(function (pair) {
        return crypto.subtle.exportKey("jwk", pair.publicKey).then(function (jwk) {
          var record = { privateKey: pair.privateKey, jwk: { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y } };
          return storeOp("readwrite", function (store) { return store.put(record, KEY_ID); })
            .then(function () { return record; });
        });
      });
  }

  function deviceKey() {
    if (!keyPromise) {
      keyPromise = storeOp("readonly", function (store) { return store.get(KEY_ID); })
        .then(function (record) { return record || createKey(); });
    }
    return keyPromise;
  }

  function b64url(bytes) {
    var text = "";
    for (var i = 0; i < bytes.length; i += 1) {
      text += String.fromCharCode(bytes[i]);
    }
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function b64json(value) {
    return b64url(encoder.encode(JSON.stringify(value)));
  }

  function jti() {
    return b64url(crypto.getRandomValues(new Uint8Array(16)));
  }

  // htu: scheme, host and path; the query and fragment are not part of it (RFC 9449).
  function htu(url) {
    var parsed = new URL(url, window.location.href);
    return parsed.protocol + "//" + parsed.host + parsed.pathname;
  }

  function sameOrigin(url) {
    var parsed = new URL(url, window.location.href);
    return parsed.host === window.location.host;
  }

  function sign(method, url) {
    return deviceKey().then(function (key) {
      var header = { typ: "dpop+jwt", alg: "ES256", jwk: key.jwk };
      var claims = { htm: method.toUpperCase(), htu: htu(url), iat: Math.floor(Date.now() / 1000), jti: jti(), nonce: nonce };
      var input = b64json(header) + "." + b64json(claims);
      // WebCrypto's ECDSA signature is r||s, which is exactly JWS's ES256 form.
      return crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, key.privateKey, encoder.encode(input))
        .then(function (signature) { return input + "." + b64url(new Uint8Array(signature)); });
    });
  }

  function takeNonce(headers) {
    var fresh = headers && headers.get ? headers.get("Device-Nonce") : null;
    if (fresh) {
      nonce = fresh;
      nonceAt = Date.now();
    }
  }

  // --- fetch ------------------------------------------------------------------------
  function signedFetch(input, init, retried) {
    var request = new Request(input, init);
    return sign(request.method, request.url).then(function (proof) {
      var headers = new Headers(request.headers);
      headers.set("Device-Proof", proof);
      return originalFetch(new Request(request, { headers: headers }));
    });
  }

  if (originalFetch) {
    window.fetch = function (input, init) {
      var method = (init && init.method) || (input && input.method) || "GET";
      var url = typeof input === "string" || input instanceof URL ? String(input) : input.url;
      if (!UNSAFE.test(method) || !sameOrigin(url)) {
        return originalFetch(input, init);
      }
      // A Request's body can be read once: keep a copy for the retry after a stale nonce.
      var retryable = new Request(input, init);
      var spare = retryable.clone();
      return signedFetch(retryable).then(function (response) {
        takeNonce(response.headers);
        if (response.status !== 401) {
          return response;
        }
        return response.clone().json().then(function (body) {
          if (body && (body.code === "device_nonce" || body.code === "device_proof_required")) {
            return signedFetch(spare).then(function (again) { takeNonce(again.headers); return again; });
          }
          return response;
        }, function () { return response; });
      });
    };
  }

  // --- XMLHttpRequest (htmx) ----------------------------------------------------------
  var open = XMLHttpRequest.prototype.open;
  var send = XMLHttpRequest.prototype.send;
  XMLHttpRequest.prototype.open = function (method, url) {
    this.portcullisTarget = { method: String(method), url: String(url) };
    return open.apply(this, arguments);
  };
  XMLHttpRequest.prototype.send = function (body) {
    var xhr = this;
    var target = xhr.portcullisTarget;
    if (!target || !UNSAFE.test(target.method) || !sameOrigin(target.url)) {
      return send.call(xhr, body);
    }
    xhr.addEventListener("load", function () {
      var fresh = xhr.getResponseHeader("Device-Nonce");
      if (fresh) {
        nonce = fresh;
        nonceAt = Date.now();
      }
    });
    // Sent once the proof is signed; send() returns nothing either way.
    sign(target.method, target.url).then(function (proof) {
      xhr.setRequestHeader("Device-Proof", proof);
      send.call(xhr, body);
    }, function () { send.call(xhr, body); });
  };

  // --- forms ------------------------------------------------------------------------
  function hidden(name, value) {
    var field = document.createElement("input");
    field.type = "hidden";
    field.name = name;
    field.value = value;
    return field;
  }

  // Bubbling on window: a script that handles a form itself (htmx) has prevented the
  // default by then, and its request is signed by the hooks above.
  window.addEventListener("submit", function (event) {
    var form = event.target;
    var method = (event.submitter && event.submitter.getAttribute("formmethod")) || form.getAttribute("method") || "GET";
    if (event.defaultPrevented || !UNSAFE.test(method)) {
      return;
    }
    var action = (event.submitter && event.submitter.getAttribute("formaction")) || form.action || window.location.href;
    if (!sameOrigin(action)) {
      return;
    }
    event.preventDefault();
    var submitter = event.submitter;
    fresh().then(function () { return sign("POST", action); }).then(function (proof) {
      // submit() sends no submitter (and requestSubmit() from here does not send at all in
      // Chromium): the proof, and the pressed button's name and value, go along as fields
      // that are there only while the entry list is built.
      var added = [hidden("device_proof", proof)];
      if (submitter && submitter.name) {
        added.push(hidden(submitter.name, submitter.value));
      }
      added.forEach(function (field) { form.appendChild(field); });
      HTMLFormElement.prototype.submit.call(form);
      added.forEach(function (field) { form.removeChild(field); });
    });
  });

  // --- sockets ----------------------------------------------------------------------
  // A constructor cannot wait for a signature: a proof for each known socket path is kept
  // ready — in sessionStorage, so a page's first connect finds the one its predecessor
  // made — used once, and replaced.
  var SOCKET_STORAGE_KEY = "portcullis:socket-proofs";
  var memoryProofs = {};
  function socketProofs() {
    try {
      return JSON.parse(window.sessionStorage.getItem(SOCKET_STORAGE_KEY) || "{}");
    } catch (e) {
      return memoryProofs;
    }
  }
  function saveSocketProofs(proofs) {
    memoryProofs = proofs;
    try {
      window.sessionStorage.setItem(SOCKET_STORAGE_KEY, JSON.stringify(proofs));
    } catch (e) { /* storage blocked: this page keeps its own */ }
  }
  function prepareSocket(url) {
    return sign("GET", url).then(function (proof) {
      var proofs = socketProofs();
      proofs[htu(url)] = { proof: proof, at: Date.now() };
      saveSocketProofs(proofs);
    });
  }
  function takeSocketProof(url) {
    var proofs = socketProofs();
    var ready = proofs[htu(url)];
    delete proofs[htu(url)];
    saveSocketProofs(proofs);
    return ready && Date.now() - ready.at < SOCKET_PROOF_MAX_AGE_MS ? ready.proof : null;
  }
  var NativeSocket = window.WebSocket;
  if (NativeSocket) {
    var PortcullisSocket = function (url, protocols) {
      var target = String(url);
      if (sameOrigin(target.replace(/^ws/, "http"))) {
        var proof = takeSocketProof(target);
        if (proof) {
          target += (target.indexOf("?") < 0 ? "?" : "&") + "device_proof=" + encodeURIComponent(proof);
        }
        prepareSocket(String(url));
      }
      return protocols === undefined ? new NativeSocket(target) : new NativeSocket(target, protocols);
    };
    PortcullisSocket.prototype = NativeSocket.prototype;
    ["CONNECTING", "OPEN", "CLOSING", "CLOSED"].forEach(function (name) { PortcullisSocket[name] = NativeSocket[name]; });
    window.WebSocket = PortcullisSocket;
  }

  // --- renewal ------------------------------------------------------------------------
  function refresh() {
    return window.fetch(refreshUrl, { method: "POST", credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) {
          throw new Error(String(response.status));
        }
        return response.json();
      })
      .then(function (body) {
        nonce = body.nonce;
        nonceAt = Date.now();
      });
  }

  // A form on a page older than the nonce's life gets a fresh nonce first.
  function fresh() {
    return Date.now() - nonceAt < NONCE_MAX_AGE_MS || !bound ? Promise.resolve() : refresh();
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (document.querySelector("[data-device-reset]")) {
      // The server refused this key (its device was revoked): the next sign-in makes a new one.
      keyPromise = null;
      storeOp("readwrite", function (store) { return store.delete(KEY_ID); });
    }
  });
  // Make (or load) the key now, so the first proof does not wait for it.
  deviceKey();
  if (!bound) {
    return;
  }
  if (bindNow) {
    refresh().then(function () { window.location.reload(); });
    return;
  }
  var socketPaths = (meta.getAttribute("data-socket-paths") || "").split(/\s+/).filter(Boolean);
  var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
  function prepareSockets() {
    socketPaths.forEach(function (path) { prepareSocket(scheme + window.location.host + path); });
  }
  prepareSockets();
  window.setInterval(prepareSockets, SOCKET_PROOF_MAX_AGE_MS / 2);
  window.setInterval(function () { refresh().catch(function () { /* the next page load asks again */ }); }, refreshMs / 2);

  // The server held this page back until the device proves its key again (its bound
  // cookie ran out while no tab was open): prove it, then load the page for real.
  document.addEventListener("DOMContentLoaded", function () {
    var confirm = document.querySelector("[data-device-confirm]");
    if (!confirm) {
      return;
    }
    refresh().then(function () {
      window.location.replace(confirm.getAttribute("data-device-confirm"));
    }, function () {
      var failed = confirm.querySelector("[data-device-confirm-failed]");
      if (failed) {
        failed.hidden = false;
      }
    });
  });
})();
