"""The Flask application factory."""

from __future__ import annotations

from flask import Flask, Response, render_template

from idp import pki, problems
from idp.ocsp_http import OcspHttpApp, PathDispatcher
from idp.deployment import Deployment
from idp.settings import Settings


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=settings.max_request_bytes, JSON_SORT_KEYS=False)
    deployment = Deployment(settings)
    app.extensions["tessera"] = deployment
    problems.install(app)
    app.register_blueprint(pki.bp)

    @app.get("/")
    def index() -> str:
        ca = deployment.ca
        return render_template("index.html", authorities=ca.authorities(), urls=deployment.urls,
                               certificates=ca.list_certificates(limit=20))

    @app.get("/healthz")
    def health() -> Response:
        return Response("ok\n", mimetype="text/plain")

    @app.after_request
    def security_headers(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Content-Security-Policy", "default-src 'none'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'")
        return response

    app.wsgi_app = PathDispatcher(app.wsgi_app, OcspHttpApp(lambda: deployment.ocsp, deployment.now))  # type: ignore[method-assign]
    return app
