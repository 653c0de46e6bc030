"""HTTP endpoints of the OpenID Connect provider.

/.well-known/openid-configuration (Discovery 1.0 section 4) and /.well-known/oauth-authorization-server
(RFC 8414 section 3, the same document), /oidc/jwks.json (RFC 7517),
/oidc/authorize (Core 3.1.2, with prompt and max_age; :mod:`idp.oidc.authorization` decides),
/oidc/token (Core 3.1.3), /oidc/userinfo (Core 5.3), /oidc/logout (RP-Initiated Logout 1.0),
/oidc/revoke (RFC 7009) and /oidc/introspect (RFC 7662).
Errors that may not be redirected (unknown client, unregistered redirect_uri) are a page here and
never a redirect (RFC 6749 4.1.2.1).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import unquote, urlencode

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import scope_to_list
from flask import Blueprint, Response, jsonify, redirect, render_template, request, session, url_for
from flask_login import current_user

from idp import csrf, events
from idp.citizen_login import citizen_user
from idp.login import login_form
from idp.oidc.authorization import CONTROL_CHARACTER, authorization, malformed_parameter_error, save_consent
from idp.oidc.provider import SCOPE_CLAIMS, current_provider
from idp.sessions import StaffSession

bp = Blueprint("oidc", __name__)
# the back-channel endpoints authenticate the client, never by a cookie: CSRF does not apply to them
csrf.EXEMPT.update({"oidc.revoke", "oidc.introspect"})


def _basic_credentials_error() -> Response | None:
    """RFC 6749 section 2.3.1 / RFC 7617: Basic credentials are base64 of UTF-8 ``id:secret``
    (each form-urlencoded); anything else is ``invalid_client`` with 401 (section 5.2), decided here
    because Authlib's own decoding raises on bytes that are not UTF-8."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        text = base64.b64decode(token.strip(), validate=True).decode("utf-8")
        client_id, secret = text.split(":", 1)
        if CONTROL_CHARACTER.search(unquote(client_id)) or CONTROL_CHARACTER.search(unquote(secret)):
            raise ValueError("control character")
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        response = jsonify(error="invalid_client",
                           error_description="the Basic credentials are not base64 of UTF-8 client_id:client_secret")
        response.status_code = 401
        response.headers["WWW-Authenticate"] = 'Basic realm="tessera"'
        response.headers["Cache-Control"] = "no-store"
        return response
    return None


def _error_page(error: OAuth2Error) -> tuple[str, int]:
    return render_template("oauth_error.html", error=error.error, description=error.description or ""), \
        int(error.status_code or 400)


def _oauth_error(error: OAuth2Error) -> Any:
    """An authorization request's error: redirected to the client with ``iss`` (RFC 9207 section 2)
    when it may be, else a page."""
    if getattr(error, "redirect_uri", None):
        server = current_provider.server
        response = server.handle_error_response(None, error)
        current_provider.issuer_parameter.add_issuer_parameter(server, response)
        return response
    return _error_page(error)


@bp.get("/.well-known/openid-configuration")
@bp.get("/.well-known/oauth-authorization-server")
def discovery() -> Response:
    """The provider's metadata: OpenID Connect Discovery 1.0 section 4 and, the same document, RFC
    8414 section 3 (every OpenID field is registered in RFC 8414's metadata registry, and section 2
    lets a server publish more than the OAuth fields)."""
    response = jsonify(current_provider.metadata())
    response.headers["Cache-Control"] = "public, max-age=300"
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


@bp.get("/oidc/jwks.json")
def jwks() -> Response:
    response = jsonify(current_provider.keys.jwks())
    response.headers["Cache-Control"] = "public, max-age=300"
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


def _ask_login(card: bool = False) -> Any:
    """The login form, posting back to this request after a (re-)login; prompt=login and max_age are
    satisfied by it.

    ``card``: the application asked for a card login (acr_values ``urn:tessera:acr:card``), so the
    browser goes to the ID-card login instead of the staff login."""
    if "prompt" in request.args or "max_age" in request.args:
        params = [(k, v) for k, v in request.args.items(multi=True) if k not in ("prompt", "max_age")]
        prompts = [p for p in (request.args.get("prompt") or "").split() if p != "login"]
        if prompts:
            params.append(("prompt", " ".join(prompts)))
        back = url_for("oidc.authorize") + "?" + urlencode(params)
    else:  # nothing to take out: the query as it came (encoding it again cost more than the form)
        back = url_for("oidc.authorize") + "?" + request.query_string.decode("latin-1")
    if card:
        return redirect(url_for("citizen_login.login_page", next=back))
    return login_form(back)  # in place, not a redirect to /login: one round trip fewer per login


def _subject(user: Any) -> str:
    """The audit subject of a user: ``citizen:<id>`` as it is, staff as ``staff:<uid>``."""
    return user.uid if ":" in user.uid else f"staff:{user.uid}"


@bp.route("/oidc/authorize", methods=["GET", "POST"])
def authorize() -> Any:
    """Authorization endpoint (OIDC Core 3.1.2.1): login, prompt, max_age, consent, code."""
    refused = malformed_parameter_error(request.args, request.form)
    if refused is not None:  # never redirected: the redirect_uri itself may be the bad value
        return _error_page(refused)
    server = current_provider.server
    try:
        found = authorization(request.values)
        if found.needs_login:
            return _ask_login(found.card)
        user, client = found.user, found.grant.client
        if found.needs_consent:
            scope = client.get_allowed_scope(found.grant.request.payload.scope or "")  # what it would get
            if request.method == "GET":
                return render_template("consent.html", client=client, scopes=scope_to_list(scope) or [],
                                       claims=SCOPE_CLAIMS, user=user, action=request.full_path)
            if request.form.get("decision") != "allow":
                events.record("oidc.consent", _subject(user), f"client:{client.client_id}", "failure", reason="denied")
                return server.create_authorization_response(found.grant.request, None, found.grant)
            save_consent(user.uid, client.client_id, scope)
            events.record("oidc.consent", _subject(user), f"client:{client.client_id}", "success", scope=scope)
        return server.create_authorization_response(found.grant.request, user, found.grant)
    except OAuth2Error as error:
        return _oauth_error(error)


@bp.post("/oidc/token")
def token() -> Any:
    """Token endpoint (RFC 6749 section 3.2, OIDC Core 3.1.3)."""
    refused = _basic_credentials_error()
    if refused is not None:
        return refused
    return current_provider.server.create_token_response()


@bp.post("/oidc/revoke")
def revoke() -> Any:
    """Revocation endpoint (RFC 7009 section 2; :mod:`idp.oidc.revocation`)."""
    return _basic_credentials_error() or current_provider.server.create_endpoint_response("revocation")


@bp.post("/oidc/introspect")
def introspect() -> Any:
    """Introspection endpoint (RFC 7662 section 2; :mod:`idp.oidc.introspection`)."""
    return _basic_credentials_error() or current_provider.server.create_endpoint_response("introspection")


@bp.route("/oidc/userinfo", methods=["GET", "POST"])
def userinfo() -> Any:
    """UserInfo endpoint (OIDC Core 5.3), bearer token in the Authorization header (RFC 6750
    section 2.1). A request without one is challenged with no error code (section 3.1: no
    authentication information, no error information); a token that is not valid is
    ``invalid_token`` (Authlib's resource protector)."""
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        response = jsonify({})  # nothing to say (and JSON, as every answer of this endpoint)
        response.status_code = 401
        response.headers["WWW-Authenticate"] = f'Bearer realm="{current_provider.issuer}"'
        response.headers["Cache-Control"] = "no-store"
        return response
    response = current_provider.server.create_endpoint_response("userinfo")
    response.headers.setdefault("Cache-Control", "no-store")  # the signed answer (5.3.2) holds claims too
    return response


#: the endpoints a public client's web page may call from the browser: their methods and request headers
_CORS = {"oidc.token": ("POST", "Content-Type"), "oidc.userinfo": ("GET, POST", "Authorization, Content-Type")}


@bp.after_request
def cross_origin(response: Response) -> Response:
    """CORS (WHATWG Fetch, "CORS protocol") on the token and userinfo endpoints for the origins of
    the public clients' registered redirect URIs, and only those (no wildcard): a single-page
    application exchanges its code and asks userinfo from its own origin. A preflight (OPTIONS,
    answered by Flask) learns the method and headers; ``WWW-Authenticate`` may be read."""
    allowed = _CORS.get(request.endpoint or "")
    if allowed is None:
        return response
    response.vary.add("Origin")
    origin = request.headers.get("Origin")
    if not origin or origin not in current_provider.clients.public_client_origins():
        return response
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Access-Control-Expose-Headers"] = "WWW-Authenticate"
    if request.method == "OPTIONS":
        methods, headers = allowed
        response.headers["Access-Control-Allow-Methods"] = methods
        response.headers["Access-Control-Allow-Headers"] = headers
        response.headers["Access-Control-Max-Age"] = "600"
    return response


def end_browser_session(end_session_request: Any) -> None:
    """RP-Initiated Logout: end this browser's session, with the tokens issued in it
    (:mod:`idp.sessions`), if it belongs to the token's subject: the staff member or the citizen
    logged in there."""
    claims = end_session_request.id_token_claims or {}
    staff = current_user._get_current_object() if current_user.is_authenticated else None
    ending = [user for user in (staff, citizen_user()) if user is not None and (not claims or claims.get("sub") == user.uid)]
    if not ending:
        return
    if isinstance(session, StaffSession):
        session.end()
    for user in ending:
        events.record("logout", _subject(user), f"client:{claims.get('aud')}", "success", via="end_session_endpoint")


@bp.route("/oidc/logout", methods=["GET", "POST"])
def end_session() -> Any:
    """end_session_endpoint (RP-Initiated Logout 1.0 section 2)."""
    try:
        req = current_provider.server.validate_endpoint_request("end_session")
    except OAuth2Error as error:
        return _error_page(error)
    if req.needs_confirmation:
        return render_template("logout_confirm.html", client=req.client)
    response = current_provider.server.create_endpoint_response("end_session", req)
    return response or render_template("logged_out.html")
