"""CSRF protection for every form: OWASP's synchronizer token pattern, and its signed double-submit
cookie pattern for visitors who have no session yet.

A session's forms carry the session's random token. A visitor with no session (the staff login
form, the card login page) gets no server-side record just for a form: the token is an HMAC,
under a key derived from the deployment's data key, of a random value the browser keeps in a
cookie of its own (HttpOnly, SameSite=Lax, ``__Host-`` under TLS). Another site can neither read
nor set that cookie, so it cannot produce a matching pair; and loading the login page fills no
table. A post is accepted with the session's token or, while the session holds none, with the
token that matches the cookie; both compared in constant time.

Every state-changing request to a browser-facing endpoint must send the token back (form field
``csrf_token`` or header ``X-CSRF-Token``). Endpoints called by relying parties with their own
credentials (the token endpoint, userinfo, the TSA) are exempt: they use no cookies. Other
requests are checked when they are a form post (always, so a forged login cannot log a victim in
as the attacker) or carry the session cookie; an API call with neither carries no ambient
credential a forgery could borrow.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

from flask import Flask, Response, abort, current_app, g, request, session

FIELD = "csrf_token"
HEADER = "X-CSRF-Token"
_KEY = "_csrf"
#: the random value of a visitor without a session (secrets.token_urlsafe(32))
_NONCE = re.compile(r"[A-Za-z0-9_-]{43}")

#: endpoints authenticated by other means than the browser session
EXEMPT = {"pki.tsa", "oidc.token", "oidc.userinfo", "oidc.end_session"}


class _PreSessionTokens:
    """The signed double-submit tokens of visitors without a session."""

    def __init__(self, data_key: bytes, secure: bool) -> None:
        self._key = hmac.new(data_key, b"tessera csrf token of a visitor without a session v1", hashlib.sha256).digest()
        self.secure = secure
        self.cookie_name = "__Host-tessera_csrf" if secure else "tessera_csrf"

    def sign(self, nonce: str) -> str:
        return base64.urlsafe_b64encode(hmac.new(self._key, nonce.encode(), hashlib.sha256).digest()).decode().rstrip("=")

    def matches(self, nonce: str | None, sent: str) -> bool:
        if nonce is None or _NONCE.fullmatch(nonce) is None:
            return False
        return hmac.compare_digest(self.sign(nonce), sent)


def token() -> str:
    """The CSRF token for a form on this page: the session's (created on first use), or, when
    nothing is stored for this visitor, the signed token of their cookie."""
    value = session.get(_KEY)
    if value:
        return str(value)
    if not session and getattr(session, "sid", None) is None:
        return _pre_session_token()
    value = secrets.token_urlsafe(32)
    session[_KEY] = value
    return value


def _pre_session_token() -> str:
    tokens: _PreSessionTokens = current_app.extensions["tessera.csrf"]
    nonce = g.get("csrf_nonce")
    if nonce is None:
        cookie = request.cookies.get(tokens.cookie_name, "")
        nonce = cookie if _NONCE.fullmatch(cookie) else secrets.token_urlsafe(32)
        g.csrf_nonce = nonce
        g.csrf_new_cookie = nonce != cookie
    return tokens.sign(nonce)


def install(app: Flask, data_key: bytes, secure: bool) -> None:
    tokens = _PreSessionTokens(data_key, secure)
    app.extensions["tessera.csrf"] = tokens
    app.jinja_env.globals["csrf_token"] = token

    @app.before_request
    def _check() -> Response | None:
        current = request._get_current_object()  # type: ignore[attr-defined]  # one context lookup, not one per attribute
        if current.method in ("GET", "HEAD", "OPTIONS") or current.endpoint in EXEMPT or current.endpoint is None:
            return None
        form_post = current.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data", "text/plain")
        cookie = getattr(app.session_interface, "cookie_name", app.config.get("SESSION_COOKIE_NAME", "session"))
        if not form_post and cookie not in current.cookies:
            return None
        expected = session.get(_KEY)
        sent = current.form.get(FIELD) or current.headers.get(HEADER) or ""
        if expected:
            valid = hmac.compare_digest(str(expected), sent)
        else:
            valid = tokens.matches(current.cookies.get(tokens.cookie_name), sent)
        if not valid:
            abort(400, description="The form has expired or did not come from this site (CSRF check). "
                                   "Go back, reload the page and try again.")
        return None

    @app.after_request
    def _set_cookie(response: Response) -> Response:
        if g.get("csrf_new_cookie"):
            response.set_cookie(tokens.cookie_name, g.csrf_nonce, path="/", secure=tokens.secure, httponly=True,
                                samesite="Lax")
        return response
