"""The Flask application factory."""

from __future__ import annotations

import datetime
import logging
import sys
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, render_template, request

from directory.config import DirectoryConfig
from directory.connection import configure as configure_breakers, deadline
from directory.errors import DirectoryError
from idp import (account, admin_blueprints, citizen_login, csrf, database_ids, health, i18n, login, metrics,
                 pki, portal, problems, verification_api)
from idp.citizen_blueprints import CitizenServices
from idp.audit_bridge import start_checkpoints
from idp.deployment import Deployment
from idp.ocsp_http import OcspHttpApp, PathDispatcher
from idp.oidc import endpoints as oidc_endpoints
from idp.oidc.provider import Provider
from idp.response_guard import ResponseGuard
from idp.sessions import StaffSessionInterface
from idp.settings import Settings

#: pages may load their own stylesheet and inline SVG images; nothing else, and no framing
CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; base-uri 'none'; "
       "frame-ancestors 'none'")  # no form-action: Chromium applies it to the redirect back to the RP


def _security_log(level: str) -> None:
    """Security events (idp.events) go to stderr, one JSON line each, unless logging is configured:
    failures at WARNING; successes at DEBUG, shown with TESSERA_SECURITY_LOG_LEVEL=DEBUG."""
    log = logging.getLogger("tessera.security")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(level)
        log.propagate = False


def _page_url_for(app: Flask) -> Callable[..., str]:
    """``url_for`` for templates, remembering the URLs that take no values but a static file name
    (every page's header links them: building each again cost a tenth of a page's rendering)."""
    known: dict[tuple[str, str, str | None], str] = {}

    def url_for(endpoint: str, **values: Any) -> str:
        if values.keys() - {"filename"}:
            return app.url_for(endpoint, **values)
        key = (request.script_root, endpoint, values.get("filename"))
        url = known.get(key)
        if url is None:
            url = known[key] = app.url_for(endpoint, **values)
        return url

    return url_for


class _DirectoryDeadline:
    """WSGI middleware: each request's directory work ends within ``TESSERA_LDAP_DEADLINE`` seconds
    (directory.connection.deadline), so a hung directory holds a request thread no longer; the
    breakers of the directory's servers take their limits from its settings on first use."""

    def __init__(self, app: Callable[..., Any], deployment: Deployment) -> None:
        self.app, self.deployment = app, deployment
        self.seconds: float | None = None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if self.seconds is None:
            self.seconds = self._configure()
        with deadline(self.seconds):
            return self.app(environ, start_response)

    def _configure(self) -> float:
        try:
            config = self.deployment.directory.config
        except DirectoryError:  # no directory configured: its own use says so, with its own words
            return DirectoryConfig.deadline
        configure_breakers(config)
        return config.deadline


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    _security_log(settings.security_log_level)
    app = Flask(__name__)
    database_ids.install(app)  # before any blueprint: every route may use <dbid:...>
    app.config.update(MAX_CONTENT_LENGTH=settings.max_request_bytes, JSON_SORT_KEYS=False,
                      SESSION_COOKIE_SECURE=settings.cookie_secure, SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SAMESITE="Lax", REMEMBER_COOKIE_SECURE=settings.cookie_secure,
                      REMEMBER_COOKIE_HTTPONLY=True)
    deployment = Deployment(settings)
    deployment.init_app(app)  # the views find it as idp.deployment.current_deployment
    _ = deployment.audit  # security events are audited from the first request on (idp.audit_bridge)
    start_checkpoints(deployment)  # witnessed checkpoints by time, in every worker (audit.checkpoint_schedule)
    app.session_interface = StaffSessionInterface(deployment.web_sessions, settings.cookie_secure)
    problems.install(app)
    i18n.init_app(app)
    csrf.install(app, settings.data_key(), settings.cookie_secure)
    login.login_manager.init_app(app)
    provider = Provider(settings.public_url, deployment.sessions, deployment.signing_keys, deployment.clients,
                        deployment.now, deployment.second_factor.claims, oidc_endpoints.end_browser_session,
                        deployment.staff_still_active, deployment.citizen_claims)
    provider.init_app(app)
    health.install(app, deployment)  # /healthz (liveness) and /readyz (readiness)
    app.register_blueprint(pki.bp)
    app.register_blueprint(login.bp)
    app.register_blueprint(account.bp)
    app.register_blueprint(oidc_endpoints.bp)
    # the citizen login, the citizen portal and the verification API share CitizenServices
    app.extensions["tessera.citizen"] = CitizenServices(deployment)
    app.register_blueprint(citizen_login.bp)
    app.register_blueprint(portal.bp)
    app.register_blueprint(verification_api.bp)
    verification_api.install(app)
    admin_blueprints.register(app)
    app.jinja_env.globals["now_year"] = datetime.date.today().year
    app.jinja_env.globals["url_for"] = _page_url_for(app)

    @app.get("/")
    def index() -> str:
        ca = deployment.ca
        # public: endpoints and counts only, never a certificate's subject (names and identity
        # numbers are personal information, PIPL art. 28)
        return render_template("index.html", authorities=ca.authorities(), urls=deployment.urls,
                               counts=ca.certificate_counts())

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status=204, headers={"Cache-Control": "public, max-age=86400"})

    always = [("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer"), ("X-Frame-Options", "DENY"),
              ("Content-Security-Policy", CSP), ("Cross-Origin-Opener-Policy", "same-origin")]
    hsts = ("Strict-Transport-Security", "max-age=31536000; includeSubDomains")

    @app.after_request
    def security_headers(response: Response) -> Response:
        # a view's own value wins; one pass over the headers instead of a search per header
        present = {name.lower() for name in response.headers.keys()}
        wanted = always + [hsts] if settings.cookie_secure or request.is_secure else always
        if response.mimetype == "text/html":
            wanted = wanted + [("Cache-Control", "no-store")]
        response.headers.extend([(k, v) for k, v in wanted if k.lower() not in present])
        return response

    app.wsgi_app = _DirectoryDeadline(app.wsgi_app, deployment)  # type: ignore[method-assign]
    app.wsgi_app = PathDispatcher(app.wsgi_app, OcspHttpApp(lambda: deployment.ocsp, deployment.now))  # type: ignore[method-assign]
    # every answer counted and timed, OCSP's too; /metrics served outside Flask (idp/metrics.py)
    app.wsgi_app = metrics.install(app, health.readiness_of(app), settings.secrets_dir)  # type: ignore[method-assign]
    if settings.proxy_hops > 0:
        # behind a TLS-terminating proxy: the client's address (per-address throttling, session
        # records) and https (HSTS) come from the proxy's headers, trusted for exactly that many hops
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.proxy_hops, x_proto=settings.proxy_hops)  # type: ignore[method-assign]
    # outermost: no status line or header the server cannot send (idp/response_guard.py)
    app.wsgi_app = ResponseGuard(app.wsgi_app)  # type: ignore[method-assign]
    return app
