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

  // the page's words (in its language), by message name or by refusal code
  function words(kind, name) {
    var node = document.querySelector("#card-messages [data-" + kind + "=\"" + name + "\"]");
    return node ? node.textContent : null;
  }

  function refusal(answer) {
    var code = String(answer.type || "").split("/card-login/")[1];
    return (code && words("refusal", code)) || words("message", "failed");
  }

  function findCard() {
    fetch(agent + "/card", { method: "GET", mode: "cors", credentials: "omit" })
      .then(function (r) { if (!r.ok) { throw new Error("agent " + r.status); } return r.json(); })
      .then(function (card) {
        document.getElementById("card-number").textContent = card.card;
        document.getElementById("card-holder").textContent = card.holder;
        details.hidden = false;
        status.textContent = words("message", "agent-ready");
        status.className = "";
      })
      .catch(function () {
        status.textContent = words("message", "agent-missing");
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
      .then(function (r) { if (!r.ok) { throw new Error(words("message", "no-challenge")); } return r.json(); })
      .then(function (c) {
        nonce = c.nonce;
        return fetch(agent + "/authenticate", { method: "POST", mode: "cors", credentials: "omit",
          headers: { "Content-Type": "application/json" }, body: JSON.stringify({ nonce: nonce, pin: pin }) });
      })
      .then(function (r) {
        return r.json().then(function (answer) {
          if (!r.ok) {  // the agent's own words (tries left) after ours
            var said = answer.detail || answer.error;
            throw new Error(words("message", "card-refused") + (said ? " (" + said + ")" : ""));
          }
          return answer;
        });
      })
      .then(function (token) { return post(root.dataset.token, { token: token, nonce: nonce, next: root.dataset.next }, csrf); })
      .then(function (r) {
        return r.json().then(function (answer) {
          if (!r.ok) { throw new Error(refusal(answer)); }
          window.location.assign(answer.redirect);
        });
      })
      .catch(function (err) {
        showError(err && err.message ? err.message : words("message", "failed"));
        button.disabled = false;
      });
  });

  findCard();
})();
