"""The demo departmental application (Flask): a page of verified claims behind a Tessera login."""

from __future__ import annotations

import secrets
from typing import Any

from flask import Flask, Response, redirect, render_template, request, session, url_for

from demo.config import DemoConfig
from demo.relying_party import AuthorizationRequest, LoginFailed, RelyingParty

#: what the application asks for when a citizen logs in with the ID card (OIDC Core 3.1.2.1 acr_values)
CARD_ACR = "urn:tessera:acr:card"


def create_app(config: DemoConfig | None = None) -> Flask:
    config = config or DemoConfig.from_env()
    app = Flask(__name__)
    app.secret_key = secrets.token_bytes(32)  # one process: sessions end when it restarts
    app.config.update(SESSION_COOKIE_NAME="demo_session", SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                      SESSION_COOKIE_SECURE=config.base_url.startswith("https://"))
    rp = RelyingParty(config)

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
