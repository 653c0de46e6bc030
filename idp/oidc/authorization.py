"""The authorization request's decisions (OpenID Connect Core 1.0 section 3.1.2): its parameters'
syntax, whether the user must log in or consent first, and the answer with a code.

No route here: :mod:`idp.oidc.endpoints` serves the authorization endpoint with them, and
:mod:`idp.login` answers the authorization request a login interrupted in the login's own request
(:func:`resume`), one round trip fewer per login.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import InvalidRequestError, OAuth2Request, scope_to_list
from authlib.oidc.core.errors import ConsentRequiredError, LoginRequiredError
from flask import Response
from flask_login import current_user
from werkzeug.datastructures import ImmutableMultiDict, MultiDict

from idp.citizen_login import ACR_CARD, citizen_user
from idp.deployment import current_deployment
from idp.models import Consent
from idp.oidc.clients import OFFLINE_ACCESS
from idp.oidc.provider import current_provider

#: a control character (C0, DEL, C1): never part of any OAuth parameter (RFC 6749 appendix A)
CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: the ABNF of the parameters Authlib echoes into error descriptions and Location headers
#: (RFC 6749 appendix A; redirect_uri: the characters of an RFC 3986 URI-reference)
_SYNTAX = {
    "response_type": re.compile(r"[A-Za-z0-9_ ]*"),
    "redirect_uri": re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*"),
    "client_id": re.compile(r"[\x20-\x7e]*"),
    "state": re.compile(r"[\x20-\x7e]*"),
    "scope": re.compile(r"[\x21\x23-\x5b\x5d-\x7e ]*"),
}


def malformed_parameter_error(*parameters: MultiDict[str, str]) -> OAuth2Error | None:
    """``invalid_request`` when a value (or name) of ``parameters`` has a control character, or a
    parameter breaks its RFC 6749 appendix A syntax; decided before Authlib, which would put the
    value into an error text (and raise on characters error_description may not carry)."""
    for values in parameters:
        for name, value in values.items(multi=True):
            syntax = _SYNTAX.get(name)
            if CONTROL_CHARACTER.search(name) or CONTROL_CHARACTER.search(value) or \
                    (syntax is not None and not syntax.fullmatch(value)):
                shown = name if name in _SYNTAX else "a parameter"
                return InvalidRequestError(f"{shown} contains characters OAuth 2.0 does not allow there")
    return None


def has_consent(uid: str, client_id: str, scope: str) -> bool:
    """Whether ``uid`` allowed ``client_id`` every scope of ``scope`` before (OIDC Core 3.1.2.4)."""
    with current_deployment.sessions() as s:
        row = s.get(Consent, (uid, client_id))
        return row is not None and set(scope_to_list(scope) or []) <= set(row.scope.split())


def save_consent(uid: str, client_id: str, scope: str) -> None:
    """Remember that ``uid`` allowed ``client_id`` ``scope`` (added to what it allowed before)."""
    with current_deployment.sessions.begin() as s:
        row = s.get(Consent, (uid, client_id))
        if row is None:
            s.add(Consent(uid=uid, client_id=client_id, scope=scope, granted_at=current_deployment.now()))
        else:
            row.scope = " ".join(sorted(set(row.scope.split()) | set(scope.split())))
            row.granted_at = current_deployment.now()


@dataclass(frozen=True)
class Authorization:
    """A validated authorization request and what it waits for before it can be answered."""

    #: Authlib's grant for the request (client, redirect_uri, scope and PKCE checked)
    grant: Any
    #: the logged-in user it is for; None until they log in
    user: Any
    #: the application asked for a card login (acr_values ``urn:tessera:acr:card``)
    card: bool
    #: the user must log in (again) first: none yet, prompt=login, or the login is older than max_age
    needs_login: bool
    #: the user must allow the application first (not trusted, not allowed before, or prompt=consent)
    needs_consent: bool


def authorization(values: MultiDict[str, str], request: OAuth2Request | None = None) -> Authorization:
    """Validate the authorization request whose parameters are ``values`` (OIDC Core 3.1.2.2:
    Authlib's checks, then prompt, max_age and acr_values); ``request``: Authlib's request for it,
    None for the request Flask is handling. An error Authlib may redirect is an :class:`OAuth2Error`
    carrying its redirect_uri (prompt=none included: login_required, consent_required)."""
    prompts = (values.get("prompt") or "").split()
    card = ACR_CARD in (values.get("acr_values") or "").split()
    if card:  # the application asks for a card login (OIDC Core 3.1.2.1 acr_values): only a citizen session counts
        user = citizen_user()
    else:
        user = current_user._get_current_object() if current_user.is_authenticated else None
    needs_login = user is None or "login" in prompts
    max_age = values.get("max_age")
    if user is not None and max_age is not None and max_age.isdigit():  # an invalid one is refused below
        needs_login = needs_login or time.time() - user.auth_time > int(max_age)
    grant = current_provider.server.get_consent_grant(request, end_user=None if needs_login else user)
    if max_age is not None and not max_age.isdigit():
        raise InvalidRequestError("max_age must be a non-negative integer", redirect_uri=grant.redirect_uri)
    if user is None or needs_login:
        if "none" in prompts:
            raise LoginRequiredError(redirect_uri=grant.redirect_uri)
        return Authorization(grant, None, card, needs_login=True, needs_consent=False)
    client = grant.client
    scope = client.get_allowed_scope(grant.request.payload.scope or "")  # what it would be granted
    # OIDC Core 11: a grant that outlives the session (offline_access) is the person's to allow, trusted
    # application or not; remembered like any consent
    offline = OFFLINE_ACCESS in (scope_to_list(scope) or [])
    needs_consent = "consent" in prompts or not (
        (client.trusted and not offline) or has_consent(user.uid, client.client_id, scope))
    if needs_consent and "none" in prompts:
        raise ConsentRequiredError(redirect_uri=grant.redirect_uri)
    return Authorization(grant, user, card, needs_login=False, needs_consent=needs_consent)


def resume(query: str) -> Response | None:
    """The answer to the authorization request with the URL query ``query`` that a login
    interrupted (OIDC Core 3.1.2.1), given in the login's own request: the redirect to the
    application with a code. None when the request needs a page (consent, another login) or is
    in error: the browser then goes to the authorization endpoint, which shows it at its own URL."""
    # as Werkzeug reads request.args (bytes that are not UTF-8 stay percent-encoded)
    args: MultiDict[str, str] = ImmutableMultiDict(parse_qsl(query, keep_blank_values=True,
                                                             errors="werkzeug.url_quote"))
    if malformed_parameter_error(args) is not None:
        return None
    try:
        found = authorization(args, current_provider.authorization_request(args))
    except OAuth2Error:
        return None
    if found.needs_login or found.needs_consent:
        return None
    return current_provider.server.create_authorization_response(found.grant.request, found.user, found.grant)
