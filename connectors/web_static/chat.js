// Rapport web chat: talks to the web channel's webhook on the same server; no outside
// requests. The conversation id and history stay in this browser's localStorage, so a
// reload shows the same conversation and continues it. What the support team sends (their
// replies, the rating question after a hand-back) is collected from the inbox with a long
// poll: one request at a time, waiting on the server for up to ~20 s.
(function () {
  "use strict";
  var SENDER_KEY = "rapport.chat.sender";
  var HISTORY_KEY = "rapport.chat.history";
  var root = document.querySelector(".chat");
  var webhook = root.getAttribute("data-webhook");
  var inbox = root.getAttribute("data-inbox");
  var POLL_GIVE_UP_MS = 35000; // the server answers within ~20 s; a request stuck longer is dropped
  var POLL_GAP_MS = 1000;      // never a tight loop, even if something answers at once
  var MAX_BACKOFF_MS = 60000;
  var polling = null;          // the AbortController of the inbox request in flight
  var pollTimer = null;
  var failures = 0;
  var log = document.getElementById("log");
  var form = document.getElementById("composer");
  var input = document.getElementById("message");
  var status = document.getElementById("status");

  function newId() {
    if (window.crypto && crypto.randomUUID) return "web-" + crypto.randomUUID();
    var bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return "web-" + Array.prototype.map.call(bytes, function (b) {
      return ("0" + b.toString(16)).slice(-2);
    }).join("");
  }

  function senderId() {
    var id = localStorage.getItem(SENDER_KEY);
    if (!id) { id = newId(); localStorage.setItem(SENDER_KEY, id); }
    return id;
  }

  function loadHistory() {
    try { return JSON.parse(localStorage.getItem(HISTORY_KEY)) || []; } catch (e) { return []; }
  }

  var history = loadHistory();

  function save() { localStorage.setItem(HISTORY_KEY, JSON.stringify(history.slice(-200))); }

  function render() {
    log.textContent = "";
    history.forEach(function (entry, index) {
      var item = document.createElement("li");
      item.className = entry.from === "you" ? "from-you" : "from-bot";
      var bubble = document.createElement("div");
      bubble.className = "bubble";
      bubble.textContent = entry.text || "";
      var who = document.createElement("span");
      who.className = "visually-hidden";
      who.textContent = entry.from === "you" ? "You said: "
        : entry.agent ? "Support team: " : "Assistant: ";
      bubble.prepend(who);
      item.appendChild(bubble);
      if (entry.buttons && entry.buttons.length) {
        var group = document.createElement("div");
        group.className = "buttons";
        group.setAttribute("role", "group");
        group.setAttribute("aria-label", "Suggested replies");
        var last = index === history.length - 1;
        entry.buttons.forEach(function (button) {
          var el = document.createElement("button");
          el.type = "button";
          el.textContent = button.title;
          el.disabled = !last;
          el.addEventListener("click", function () { send(button.payload, button.title); });
          group.appendChild(el);
        });
        item.appendChild(group);
      }
      log.appendChild(item);
    });
    log.scrollTop = log.scrollHeight;
  }

  function showStatus(text) {
    status.textContent = text;
    status.hidden = !text;
  }

  // A proof of identity in the page's address: ?link=<token> (a link made from the CRM)
  // or ?shop_token=<JWT> (the shop's signed login). Taken once, then removed from the
  // address bar so that it is not bookmarked, shared or kept in the browser's history.
  function takeProof() {
    var params = new URLSearchParams(window.location.search);
    var proof = null;
    if (params.get("link")) proof = { link_token: params.get("link") };
    else if (params.get("shop_token")) proof = { shop_token: params.get("shop_token") };
    if (proof) {
      params.delete("link"); params.delete("shop_token");
      var rest = params.toString();
      window.history.replaceState(null, "", window.location.pathname + (rest ? "?" + rest : ""));
    }
    return proof;
  }

  // shown: the customer's bubble (null: none, e.g. a proof sent by the page itself).
  function send(payload, shown, metadata) {
    var mine = shown === null ? null : { from: "you", text: shown };
    if (mine) history.push(mine);
    save(); render(); showStatus("");
    var body = { sender: senderId(), message: payload };
    if (metadata) body.metadata = metadata;
    return fetch(webhook, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body)
    }).then(function (response) {
      return response.json().then(function (body) {
        if (!response.ok) throw new Error(body.error || "The assistant could not take that message.");
        return body;
      });
    }).then(function (replies) {
      replies.forEach(function (reply) {
        history.push({ from: "bot", text: reply.text || "", buttons: reply.buttons || [] });
      });
      save(); render();
    }).catch(function (error) {
      // Keep what the customer typed so nothing is lost; let them retry. (Not pop(): a
      // message from the team may have arrived after it.)
      var at = history.indexOf(mine);
      if (at >= 0) history.splice(at, 1);
      save(); render();
      if (mine) input.value = shown;
      showStatus("Sorry, that didn't go through: " + error.message + " Please try again.");
    });
  }

  function schedulePoll(delay) {
    clearTimeout(pollTimer);
    pollTimer = setTimeout(pollInbox, delay);
  }

  function pollInbox() {
    if (polling) return;
    var sender = senderId();
    var controller = new AbortController();
    var giveUp = setTimeout(function () { controller.abort(); }, POLL_GIVE_UP_MS);
    polling = controller;
    fetch(inbox + "?sender=" + encodeURIComponent(sender), {
      cache: "no-store", signal: controller.signal
    }).then(function (response) {
      if (!response.ok) throw new Error("The inbox answered " + response.status);
      return response.json();
    }).then(function (messages) {
      // A request replaced meanwhile ("Start a new conversation") delivers nothing.
      if (polling !== controller) return true;
      messages.forEach(function (message) {
        history.push({ from: "bot", agent: !!message.agent, text: message.text || "",
                       buttons: message.buttons || [] });
      });
      if (messages.length) { save(); render(); }
      return true;
    }).catch(function () {
      return false;
    }).then(function (ok) {
      clearTimeout(giveUp);
      if (polling !== controller) return;
      polling = null;
      // On errors, wait longer each time (up to a minute) instead of hammering the server.
      failures = ok ? 0 : failures + 1;
      schedulePoll(ok ? POLL_GAP_MS : Math.min(MAX_BACKOFF_MS, 1000 * Math.pow(2, failures)));
    });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text) return;
    input.value = "";
    send(text, text);
  });

  document.getElementById("new-conversation").addEventListener("click", function () {
    localStorage.removeItem(SENDER_KEY);
    localStorage.removeItem(HISTORY_KEY);
    history = []; render(); input.focus();
    if (polling) { polling.abort(); polling = null; }
    failures = 0;
    schedulePoll(0);
  });

  render();
  var proof = takeProof();
  if (proof) send("/prove_identity", null, proof);
  else if (!history.length) send("/greet", "Hi");
  pollInbox();
})();
