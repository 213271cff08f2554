// Rapport web chat: talks to the web channel's webhook on the same server; no outside
// requests. The conversation id and history stay in this browser's localStorage, so a
// reload shows the same conversation and continues it.
(function () {
  "use strict";
  var SENDER_KEY = "rapport.chat.sender";
  var HISTORY_KEY = "rapport.chat.history";
  var root = document.querySelector(".chat");
  var webhook = root.getAttribute("data-webhook");
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
      who.textContent = entry.from === "you" ? "You said: " : "Assistant: ";
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

  function send(payload, shown) {
    history.push({ from: "you", text: shown });
    save(); render(); showStatus("");
    return fetch(webhook, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sender: senderId(), message: payload })
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
      // Keep what the customer typed so nothing is lost; let them retry.
      history.pop(); save(); render();
      input.value = shown;
      showStatus("Sorry, that didn't go through: " + error.message + " Please try again.");
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
  });

  render();
  if (!history.length) send("/greet", "Hi");
})();
