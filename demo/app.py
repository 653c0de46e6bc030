"""The demo departmental application (Flask): a page of verified claims behind a Tessera login."""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any

from flask import Flask, Response, jsonify, redirect, render_template, request, session, url_for

from demo.config import DemoConfig
from demo.relying_party import AuthorizationRequest, LoginFailed, RelyingParty

#: what the application asks for when a citizen logs in with the ID card (OIDC Core 3.1.2.1 acr_values)
CARD_ACR = "urn:tessera:acr:card"
#: a logout token's ``jti`` and the sessions it ended are remembered this long (beyond any session's life)
LOGOUT_MEMORY_SECONDS = 24 * 3600


class LoggedOut:
    """The provider's sessions ended by back-channel logout (Back-Channel Logout 1.0 section 2.7),
    and the logout tokens seen (each accepted once). This application's sessions are cookies, so a
    login whose provider session is named here is cleared at its next request. One process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[tuple[str, str], float] = {}  # ("sid" or "sub", value) -> when
        self._jti: dict[str, float] = {}

    def add(self, claims: dict[str, Any]) -> bool:
        """Remember the logout; False if its token was seen before (a replay)."""
        now = time.time()
        with self._lock:
            for memory in (self._sessions, self._jti):
                for key in [k for k, at in memory.items() if now - at > LOGOUT_MEMORY_SECONDS]:
                    del memory[key]
            if claims["jti"] in self._jti:
                return False
            self._jti[claims["jti"]] = now
            # with a sid, only that session ended; without one, every session of the subject (section 2.4)
            key = ("sid", claims["sid"]) if isinstance(claims.get("sid"), str) else ("sub", claims["sub"])
            self._sessions[key] = now
            return True

    def ended(self, login: dict[str, Any]) -> bool:
        """Whether the provider ended the session ``login`` (verified id_token claims) came from."""
        claims = login.get("claims", {})
        with self._lock:
            if ("sid", claims.get("sid")) in self._sessions:
                return True
            at = self._sessions.get(("sub", claims.get("sub")))
            return at is not None and at >= float(claims.get("iat", 0))


def create_app(config: DemoConfig | None = None) -> Flask:
    config = config or DemoConfig.from_env()
    app = Flask(__name__)
    app.secret_key = secrets.token_bytes(32)  # one process: sessions end when it restarts
    app.config.update(SESSION_COOKIE_NAME="demo_session", SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                      SESSION_COOKIE_SECURE=config.base_url.startswith("https://"))
    rp = RelyingParty(config)
    logged_out = LoggedOut()

    @app.before_request
    def provider_logout() -> None:
        login = session.get("login")
        if login and logged_out.ended(login):
            session.clear()

    @app.post("/backchannel-logout")
    def backchannel_logout() -> Any:
        """The back-channel logout receiver (Back-Channel Logout 1.0 section 2.5, 2.8)."""
        try:
            claims = rp.verify_logout_token(request.form.get("logout_token", ""))
        except LoginFailed as exc:
            answer = jsonify(error="invalid_request", error_description=str(exc))
            answer.status_code = 400
        else:
            if logged_out.add(claims):
                answer = jsonify({})
            else:
                answer = jsonify(error="invalid_request", error_description="logout token seen before")
                answer.status_code = 400
        answer.headers["Cache-Control"] = "no-store"
        return answer

    @app.get("/")
    def home() -> str:
        login = session.get("login")
        return render_template("home.html", login=login, issuer=config.issuer, logged_out=request.args.get("state"))

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status=204)

    @app.get("/login")
    def login() -> Response:
        try:
            auth = rp.begin(CARD_ACR if request.args.get("with") == "card" else None)
        except Exception as exc:  # noqa: BLE001  (provider down or misconfigured: say so)
            return Response(render_template("error.html", message=f"Tessera is not reachable: {exc}"), status=502)
        session["pending"] = {"state": auth.state, "nonce": auth.nonce, "verifier": auth.code_verifier}
        return redirect(auth.url)  # type: ignore[return-value]

    @app.get("/callback")
    def callback() -> Any:
        pending = session.pop("pending", None)
        if request.args.get("error"):
            return render_template("error.html", message=f"Login refused: {request.args['error']}"), 400
        if not pending or request.args.get("state") != pending["state"]:
            return render_template("error.html", message="This login response does not belong to a login started here."), 400
        try:
            result = rp.finish(request.url, AuthorizationRequest("", pending["state"], pending["nonce"], pending["verifier"]))
        except LoginFailed as exc:
            return render_template("error.html", message=str(exc)), 400
        session.clear()
        session["login"] = result
        return redirect(url_for("home"))

    @app.post("/logout")
    def logout() -> Any:
        login = session.get("login")
        session.clear()
        if not login:
            return redirect(url_for("home"))
        return redirect(rp.logout_url(login["id_token"], secrets.token_urlsafe(8)))

    @app.after_request
    def headers(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response

    return app
