"""CSRF protection for every form (OWASP synchronizer token pattern).

Each session has a random token; every state-changing request to a browser-facing endpoint must
send it back (form field ``csrf_token`` or header ``X-CSRF-Token``), compared in constant time.
Endpoints called by relying parties with their own credentials (the token endpoint, userinfo,
the TSA) are exempt: they use no cookies. Other requests are checked when they are a form post
(always, so a forged login cannot log a victim in as the attacker) or carry the session cookie;
an API call with neither carries no ambient credential a forgery could borrow.
"""

from __future__ import annotations

import hmac
import secrets

from flask import Flask, Response, abort, request, session

FIELD = "csrf_token"
HEADER = "X-CSRF-Token"
_KEY = "_csrf"

#: endpoints authenticated by other means than the browser session
EXEMPT = {"pki.tsa", "oidc.token", "oidc.userinfo", "oidc.end_session"}


def token() -> str:
    """The session's CSRF token (created on first use)."""
    value = session.get(_KEY)
    if not value:
        value = secrets.token_urlsafe(32)
        session[_KEY] = value
    return str(value)


def install(app: Flask) -> None:
    app.jinja_env.globals["csrf_token"] = token

    @app.before_request
    def _check() -> Response | None:
        if request.method in ("GET", "HEAD", "OPTIONS") or request.endpoint in EXEMPT or request.endpoint is None:
            return None
        form_post = request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data", "text/plain")
        cookie = getattr(app.session_interface, "cookie_name", app.config.get("SESSION_COOKIE_NAME", "session"))
        if not form_post and cookie not in request.cookies:
            return None
        expected = session.get(_KEY)
        sent = request.form.get(FIELD) or request.headers.get(HEADER) or ""
        if not expected or not hmac.compare_digest(str(expected), sent):
            abort(400, description="The form has expired or did not come from this site (CSRF check). "
                                   "Go back, reload the page and try again.")
        return None
