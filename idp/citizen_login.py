"""Citizen login with the ID card: challenge, Web eID token, citizen session.

1. The "Log in with ID card" page (``/citizen/login``) shows the card the local agent talks to.
2. Its JavaScript asks ``POST /citizen/login/challenge`` for a nonce: 32 random bytes (base64),
   single use, valid five minutes, bound to this browser session (the session holds a random
   binding value; the store holds only hashes of nonce and binding).
3. It gives the nonce and the PIN to the card agent on 127.0.0.1, which returns a ``web-eid:1.0``
   token (:mod:`cardsim.agent`).
4. ``POST /citizen/login/token`` validates the token (:class:`idp.webeid.TokenValidator`) and,
   when good, rotates the session id and records a citizen session: the national identity number
   from the certificate's subject serialNumber, the card from the registry, ``amr`` ["sc", "pin"]
   (RFC 8176: smart card, PIN) and the card-login ``acr``. Every attempt goes to the audit trail.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from flask import (
    Blueprint,
    Response,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from cardsim.identity_schemes import mask_any
from idp.card_login_nonces import NONCE_LIFETIME
from idp.citizen_blueprints import services
from idp.json_input import JsonInputError, parse_json
from idp.redirect_target import local_path
from idp.problems import problem
from idp.sessions import StaffSession
from idp.staff import StaffUser

bp = Blueprint("citizen_login", __name__)

#: the acr value an application asks for to get a card login (OIDC Core 3.1.2.1 acr_values)
from idp.oidc.grants import ACR_CARD  # noqa: E402  (one value for the login and the id_token)

AMR_CARD = ("sc", "pin")
_BINDING = "card_login_binding"

class CitizenUser(StaffUser):
    """A citizen logged in with the card, in the shape the OpenID Connect provider expects."""

    @property
    def national_id(self) -> str:
        return str(self.claims["national_id"])


def current_citizen() -> dict[str, Any] | None:
    """The citizen of this browser session (``sub``, ``national_id``, ``name``, ``card``, ``auth_time``, ``amr``, ``acr``)."""
    value = session.get("citizen")
    return value if isinstance(value, dict) and value.get("national_id") else None


def citizen_user() -> CitizenUser | None:
    """The citizen as a user object for the OIDC provider (``sub`` = ``citizen:<pseudonym>``, webeid.CitizenLogin)."""
    citizen = current_citizen()
    if citizen is None:
        return None
    claims = {"sub": citizen["sub"], "name": citizen["name"], "national_id": citizen["national_id"]}
    return CitizenUser(claims, int(citizen["auth_time"]), tuple(citizen["amr"]))


def _safe_next(value: str | None) -> str:
    """A same-origin path by construction (idp.redirect_target), else the portal."""
    return local_path(value) or url_for("portal.overview")


def _csp() -> str:
    agent = services().agent_url
    return ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            f"connect-src 'self' {agent}; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def _audit(result: str, subject: str, obj: str | None, action: str = "login.card", **details: Any) -> None:
    from audit.trail import AuditEvent

    services().trail.record(AuditEvent(action, subject, result, subject_role="citizen", object=obj,
                                       source_address=(request.remote_addr or "")[:64] or None,
                                       details=details))


@bp.get("/citizen/login")
def login_page() -> Response:
    nxt = _safe_next(request.args.get("next"))
    html = render_template("citizen_login.html", next=nxt, agent_url=services().agent_url, origin=services().origin)
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = _csp()
    return response


@bp.post("/citizen/login/challenge")
def challenge() -> Response:
    """A fresh nonce for this browser session (Web eID "challenge nonce")."""
    binding = session.get(_BINDING)
    if not binding:
        binding = secrets.token_urlsafe(32)
        session[_BINDING] = binding
    nonce = services().nonces.issue(str(binding))
    response = jsonify(nonce=nonce, expires_in=int(NONCE_LIFETIME.total_seconds()))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/citizen/login/token")
def token() -> Response:
    """Validate the Web eID token against the nonce of this session; log the citizen in."""
    from idp.webeid import LoginRefused

    try:  # bounded: a deeply nested body is refused, never a RecursionError (idp.json_input)
        body = parse_json(request.get_data(cache=False))
    except JsonInputError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("nonce"), str):
        return problem(400, "Bad request", "expected {\"token\": {...web-eid:1.0...}, \"nonce\": text}", "bad-request")
    binding = str(session.get(_BINDING) or "")
    nonce = body["nonce"][:256]
    svc = services()
    try:
        login = svc.tokens.validate(body.get("token"), nonce,
                                    lambda n: bool(binding) and svc.nonces.consume(n, binding))
    except LoginRefused as refused:
        _audit("refused", "citizen:unknown", None, reason=refused.code)
        return problem(403, "Card login refused", refused.detail, "card-login/" + refused.code)
    session.pop(_BINDING, None)
    if isinstance(session, StaffSession):
        session.rotate()  # a new session id at the privilege change (session fixation)
    session["citizen"] = {"sub": login.subject, "national_id": login.national_id,
                          "name": login.name, "card": login.card_number, "certificate": login.certificate_serial,
                          "auth_time": int(time.time()), "amr": list(AMR_CARD), "acr": ACR_CARD}
    _audit("success", login.subject, f"card:{login.card_number}",
           certificate=login.certificate_serial)
    return jsonify(ok=True, redirect=_safe_next(body.get("next") if isinstance(body.get("next"), str) else None),
                   citizen={"national_id": mask_any(login.national_id), "name": login.name, "card": login.card_number})


@bp.post("/citizen/logout")
def logout() -> Any:
    """End the browser session (server-side, as staff /logout does) and with it the tokens the
    citizen's applications were given in it (idp.sessions), audited ``logout.card``."""
    citizen = session.get("citizen")
    if isinstance(session, StaffSession):
        session.end()
    else:
        session.pop("citizen", None)
    if isinstance(citizen, dict) and citizen.get("sub"):
        _audit("success", str(citizen["sub"]), f"card:{citizen.get('card')}", action="logout.card")
    return redirect(url_for("citizen_login.login_page"))
