// "Log in with ID card": challenge from the IdP, signature from the local card agent, token back.
(function () {
  "use strict";
  var root = document.getElementById("card-login");
  if (!root) { return; }
  var agent = root.dataset.agent;
  var status = document.getElementById("card-status");
  var details = document.getElementById("card-details");
  var errorBox = document.getElementById("card-error");
  var button = document.getElementById("card-login-button");

  function showError(text) { errorBox.textContent = text; errorBox.hidden = false; }

  function findCard() {
    fetch(agent + "/card", { method: "GET", mode: "cors", credentials: "omit" })
      .then(function (r) { if (!r.ok) { throw new Error("agent " + r.status); } return r.json(); })
      .then(function (card) {
        document.getElementById("card-number").textContent = card.card;
        document.getElementById("card-holder").textContent = card.holder;
        details.hidden = false;
        status.textContent = "The card agent is ready. Enter your PIN to log in with this card.";
        status.className = "";
      })
      .catch(function () {
        status.textContent = "No card agent found on this computer. Start it with `tessera card agent`, then reload.";
        status.className = "error";
      });
  }

  function post(url, body, headers) {
    return fetch(url, { method: "POST", credentials: "same-origin",
      headers: Object.assign({ "Content-Type": "application/json", "Accept": "application/json" }, headers || {}),
      body: JSON.stringify(body) });
  }

  document.getElementById("card-form").addEventListener("submit", function (event) {
    event.preventDefault();
    errorBox.hidden = true;
    button.disabled = true;
    var pinField = document.getElementById("pin");
    var pin = pinField.value;
    pinField.value = "";
    var csrf = { "X-CSRF-Token": root.dataset.csrf };
    var nonce;
    post(root.dataset.challenge, {}, csrf)
      .then(function (r) { if (!r.ok) { throw new Error("The login service did not give a challenge."); } return r.json(); })
      .then(function (c) {
        nonce = c.nonce;
        return fetch(agent + "/authenticate", { method: "POST", mode: "cors", credentials: "omit",
          headers: { "Content-Type": "application/json" }, body: JSON.stringify({ nonce: nonce, pin: pin }) });
      })
      .then(function (r) {
        return r.json().then(function (answer) {
          if (!r.ok) { throw new Error("The card refused: " + (answer.detail || answer.error)); }
          return answer;
        });
      })
      .then(function (token) { return post(root.dataset.token, { token: token, nonce: nonce, next: root.dataset.next }, csrf); })
      .then(function (r) {
        return r.json().then(function (answer) {
          if (!r.ok) { throw new Error("Login refused: " + (answer.detail || answer.title)); }
          window.location.assign(answer.redirect);
        });
      })
      .catch(function (err) {
        showError(err && err.message ? err.message : "The card login failed.");
        button.disabled = false;
      });
  });

  findCard();
})();
