"""The OpenID Connect provider: Authlib's AuthorizationServer wired to Tessera's stores.

The provider knows no HTTP routes (see :mod:`idp.oidc.endpoints`); it owns the client registry,
the signing keys, the token store, and how a staff member becomes claims (OIDC Core 5.1, 5.4).
"""

from __future__ import annotations

import datetime
import secrets
from collections.abc import Callable
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector
from authlib.oauth2.rfc6749 import OAuth2Payload, OAuth2Request
from authlib.oauth2.rfc6749 import scope_to_list
from authlib.oauth2.rfc6750 import BearerTokenValidator, InvalidTokenError
from authlib.oauth2.rfc9207 import IssuerParameter
from authlib.oidc.core import UserInfo, UserInfoEndpoint
from authlib.oidc.rpinitiated import EndSessionEndpoint
from flask import Flask, Request, current_app
from flask import request as flask_request
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.datastructures import CombinedMultiDict, ImmutableMultiDict, MultiDict
from werkzeug.local import LocalProxy

from idp.deployment import EXTENSION
from idp.i18n import LANGUAGE_TAGS
from idp.oidc.backchannel import BackChannelLogout
from idp.oidc.clients import (OFFLINE_ACCESS, SCOPES, SERVICE_SCOPES, USERINFO_ALGORITHMS, ClientRegistry,
                              RegisteredClient)
from idp.oidc.grants import (SERVICE_TOKEN_SECONDS, CodeGrant, OpenIdCode, PrivateKeyJwt, RotatingRefreshGrant,
                             S256CodeChallenge, ServiceCredentialsGrant, client_still_registered, code_statements)
from idp.oidc.introspection import Introspection
from idp.oidc.keys import SigningKeys
from idp.oidc.revocation import Revocation
from idp.oidc.tokens import ACCESS_TOKEN_SECONDS, TokenStore, new_token
from idp.staff import StaffUser

#: which claims each scope releases (OIDC Core 5.4, plus Tessera's department and roles scopes)
SCOPE_CLAIMS: dict[str, tuple[str, ...]] = {
    "openid": ("sub",),
    "profile": ("name", "given_name", "family_name", "preferred_username", "title", "national_id"),
    "email": ("email", "email_verified"),
    "department": ("department", "department_name"),
    "roles": ("roles",),
}


class _Parameters(OAuth2Payload):
    """The parameters of a request as Authlib's grants read them (RFC 6749 section 3.1: each at most
    once, hence the lists)."""

    def __init__(self, values: MultiDict[str, str]) -> None:
        self._values = values

    @property
    def data(self) -> MultiDict[str, str]:
        return self._values

    @cached_property
    def datalist(self) -> dict[str, list[str]]:
        return {name: self._values.getlist(name) for name in self._values}


class _OAuth2Request(OAuth2Request):
    """Authlib's view of an OAuth request: what a framework integration provides
    (:meth:`AuthorizationServer.create_oauth2_request`), here from plain values rather than Flask's
    context-local proxy (the grants read the parameters some seventy times per login, each through
    the proxy otherwise). Its ``uri`` serves only Authlib's https check, so it is scheme, host and
    path: Werkzeug's full IRI-to-URI ``request.url`` cost more than the rest of the object."""

    def __init__(self, method: str, uri: str, headers: Any, args: MultiDict[str, str],
                 form: MultiDict[str, str]) -> None:
        super().__init__(method, uri)
        self.headers = headers  # after: OAuth2Request's `headers or {}` would count them
        self._args = args
        self._form = form
        # as Werkzeug's Request.values: the body's parameters count unless the method is GET
        self.payload = _Parameters(args if method == "GET" else CombinedMultiDict([args, form]))

    @classmethod
    def of(cls, current: Request) -> _OAuth2Request:
        """The request Flask is handling."""
        return cls(current.method, f"{current.scheme}://{current.host}{current.path}", current.headers,
                   current.args, current.form)

    @property
    def args(self) -> MultiDict[str, str]:
        return self._args

    @property
    def form(self) -> MultiDict[str, str]:
        return self._form


class _IssuerParameter(IssuerParameter):
    """RFC 9207 section 2: every authorization response, an error redirected to the client
    included, names its issuer in ``iss`` (Authlib's extension, after
    ``create_authorization_response``; :mod:`idp.oidc.endpoints` adds it to the errors it
    redirects itself)."""

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer

    def get_issuer(self) -> str:
        return self.issuer


class _Server(AuthorizationServer):
    #: the provider whose stores the grants use (idp.oidc.grants)
    provider: Provider

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        """The framework integration's part (Authlib's documented override point): the request
        Flask is handling, or one the caller built already (:meth:`Provider.authorization_request`)."""
        if isinstance(request, OAuth2Request):
            return request
        return _OAuth2Request.of(request if request is not None else flask_request._get_current_object())  # type: ignore[attr-defined]


class Provider:
    def __init__(self, issuer: str, sessions: sessionmaker[Session], keys: SigningKeys, clients: ClientRegistry,
                 clock: Callable[[], datetime.datetime], staff_claims: Callable[[str], dict[str, Any] | None],
                 end_staff_session: Callable[[Any], None],
                 still_active: Callable[[str], bool | None] = lambda _uid: None,
                 citizen_claims: Callable[[str], dict[str, Any] | None] = lambda _uid: None) -> None:
        self.issuer = issuer
        self.sessions = sessions
        self.engine = sessions.kw["bind"]
        self.keys = keys
        self.clients = clients
        self.clock = clock
        self.staff_claims = staff_claims
        self.end_staff_session = end_staff_session
        #: asks the directory whether a staff member may still get tokens (None: cannot tell now)
        self.still_active = still_active
        #: claims of a citizen (``citizen:<pseudonym>``) from the citizen and card registries, None without an active card
        self.citizen_claims = citizen_claims
        self.tokens = TokenStore(sessions, clock, self._token_user, clients.get)
        #: authorization codes stored and spent (idp.oidc.grants.CodeGrant)
        self.save_code, self.spend_code = code_statements(self.engine)
        self.server = _Server()
        self.server.provider = self  # grants reach the stores through their server
        #: adds ``iss`` to authorization responses (RFC 9207)
        self.issuer_parameter = _IssuerParameter(issuer)
        self.resource = ResourceProtector()

    def authorization_request(self, args: MultiDict[str, str]) -> OAuth2Request:
        """Authlib's request for the authorization request (RFC 6749 section 4.1.1) with the query
        parameters ``args``, as if the browser sent it to the authorization endpoint now, over this
        request's transport (scheme, host, headers)."""
        current = flask_request._get_current_object()  # type: ignore[attr-defined]
        return _OAuth2Request("GET", f"{current.scheme}://{current.host}{urlsplit(self.authorization_endpoint).path}",
                              current.headers, args, ImmutableMultiDict())

    # -- endpoints' URLs -------------------------------------------------------------------
    @property
    def authorization_endpoint(self) -> str:
        return self.issuer + "/oidc/authorize"

    @property
    def token_endpoint(self) -> str:
        return self.issuer + "/oidc/token"

    @property
    def userinfo_endpoint(self) -> str:
        return self.issuer + "/oidc/userinfo"

    @property
    def jwks_uri(self) -> str:
        return self.issuer + "/oidc/jwks.json"

    @property
    def end_session_endpoint(self) -> str:
        return self.issuer + "/oidc/logout"

    @property
    def revocation_endpoint(self) -> str:
        return self.issuer + "/oidc/revoke"

    @property
    def introspection_endpoint(self) -> str:
        return self.issuer + "/oidc/introspect"

    @property
    def service_audience(self) -> str:
        """The ``aud`` of service accounts' access tokens: the verification API (idp.verification_api)."""
        return self.issuer + "/api/v1"

    # -- wiring ----------------------------------------------------------------------------
    def init_app(self, app: Flask) -> None:
        """Serve ``app``'s OpenID Connect endpoints (Flask's extension pattern: ``app.extensions["tessera.oidc"]``)."""
        app.extensions["tessera.oidc"] = self
        app.config.setdefault("OAUTH2_ACCESS_TOKEN_GENERATOR", new_token)
        app.config.setdefault("OAUTH2_REFRESH_TOKEN_GENERATOR", new_token)
        app.config.setdefault("OAUTH2_TOKEN_EXPIRES_IN", {"authorization_code": ACCESS_TOKEN_SECONDS,
                                                          "refresh_token": ACCESS_TOKEN_SECONDS,
                                                          "client_credentials": SERVICE_TOKEN_SECONDS})
        app.config.setdefault("OAUTH2_SCOPES_SUPPORTED", list(SCOPES) + list(SERVICE_SCOPES))
        deployment = app.extensions.get(EXTENSION)
        if deployment is not None:  # tokens end with their session, its timeouts included (idp.oidc.tokens)
            self.tokens.within_timeouts = deployment.web_sessions.alive
            deployment.web_sessions.on_ended(BackChannelLogout(self.issuer, self.keys, self.clients, self.engine))
        self.server.init_app(app, query_client=self.clients.get, save_token=self._save_token)
        self.server.register_extension(self.issuer_parameter)
        self.server.register_grant(CodeGrant, [S256CodeChallenge(required=True), OpenIdCode(self)])
        self.server.register_grant(RotatingRefreshGrant)
        self.server.register_grant(ServiceCredentialsGrant)
        self.server.register_client_auth_method(PrivateKeyJwt.CLIENT_AUTH_METHOD, PrivateKeyJwt(self))
        provider = self

        class _Bearer(BearerTokenValidator):
            def authenticate_token(self, token_string: str) -> Any:
                return provider.tokens.by_access_token(token_string)

        class _UserInfo(UserInfoEndpoint):
            """OIDC Core 5.3: JSON, or for a client registered with ``userinfo_signed_response_alg``
            a JWT (``application/jwt``, 5.3.2) with ``iss`` and ``aud``, signed by Authlib with the
            provider's key for that algorithm, named by ``kid`` (:meth:`SigningKeys.signing_key_set`)."""

            def get_issuer(self) -> str:
                return provider.issuer

            def generate_user_info(self, user: Any, scope: str) -> UserInfo:
                if user is None:
                    raise InvalidTokenError(realm=provider.issuer)
                return provider.user_info(user, scope)

            def resolve_private_key(self) -> Any:
                return provider.keys.signing_key_set()

            def get_supported_algorithms(self) -> list[str]:
                return list(USERINFO_ALGORITHMS)

        class _EndSession(EndSessionEndpoint):
            def get_server_jwks(self) -> Any:
                return provider.keys.key_set()

            def end_session(self, end_session_request: Any) -> None:
                provider.end_staff_session(end_session_request)

        self.resource.register_token_validator(_Bearer(realm=self.issuer))
        self.server.register_endpoint(_UserInfo(resource_protector=self.resource))
        self.server.register_endpoint(_EndSession())
        self.server.register_endpoint(Revocation(self))
        self.server.register_endpoint(Introspection(self))

    # -- storage callbacks -----------------------------------------------------------------
    def _save_token(self, token: dict[str, Any], request: Any) -> None:
        with client_still_registered():
            self._store_token(token, request)

    def _store_token(self, token: dict[str, Any], request: Any) -> None:
        if request.payload.grant_type == ServiceCredentialsGrant.GRANT_TYPE:
            # a service account's token: no user, a family of its own (RFC 6749 4.4.3: no refresh token)
            client_id = request.client.get_client_id()
            self.tokens.save(token, client_id, f"service:{client_id}", secrets.token_hex(16), int(self.clock().timestamp()), "")
            return
        if request.authorization_code is not None:
            code = request.authorization_code
            family, auth_time, amr, sid = code.family, code.auth_time, code.amr, code.sid
            offline = OFFLINE_ACCESS in (scope_to_list(token.get("scope")) or [])
        else:  # a refresh: the grant's session, unless an offline grant outlived it (then it has none)
            old = request.refresh_token
            family, auth_time, amr, offline = old.family, old.auth_time, old.amr, old.offline
            sid = old.sid if old.session_alive else None
        self.tokens.save(token, request.client.get_client_id(), request.user.uid, family, auth_time, amr, sid, offline)

    def load_user(self, uid: str, auth_time: int = 0, amr: list[str] | tuple[str, ...] = ()) -> StaffUser | None:
        if uid.startswith("citizen:"):
            from idp.citizen_login import CitizenUser

            citizen = self.citizen_claims(uid)
            return None if citizen is None else CitizenUser(citizen, auth_time, tuple(amr))
        claims = self.staff_claims(uid)
        if claims is None:
            return None
        return StaffUser(claims, auth_time, tuple(amr))

    def _token_user(self, uid: str) -> StaffUser | None:
        return self.load_user(uid)

    def user_info(self, user: StaffUser, scope: str) -> UserInfo:
        """The claims ``scope`` releases (OIDC Core 5.4)."""
        released: dict[str, Any] = {"sub": user.uid}
        for name in scope_to_list(scope) or []:
            for claim in SCOPE_CLAIMS.get(name, ()):
                value = user.claims.get(claim)
                if value not in (None, ""):
                    released[claim] = value
        return UserInfo(released)

    def client(self, client_id: str) -> RegisteredClient | None:
        return self.clients.get(client_id)

    # -- discovery (OpenID Connect Discovery 1.0 section 3) --------------------------------
    def metadata(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": self.authorization_endpoint,
            "token_endpoint": self.token_endpoint,
            "userinfo_endpoint": self.userinfo_endpoint,
            "jwks_uri": self.jwks_uri,
            "end_session_endpoint": self.end_session_endpoint,
            "scopes_supported": list(SCOPES) + list(SERVICE_SCOPES),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256", "RS256"],
            "userinfo_signing_alg_values_supported": list(USERINFO_ALGORITHMS),  # OIDC Core 5.3.2
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
            "token_endpoint_auth_signing_alg_values_supported": ["ES256", "RS256"],
            "revocation_endpoint": self.revocation_endpoint,  # RFC 8414 section 2 (RFC 7009)
            "revocation_endpoint_auth_methods_supported": list(Revocation.CLIENT_AUTH_METHODS),
            "revocation_endpoint_auth_signing_alg_values_supported": ["ES256", "RS256"],
            "introspection_endpoint": self.introspection_endpoint,  # RFC 8414 section 2 (RFC 7662)
            "introspection_endpoint_auth_methods_supported": list(Introspection.CLIENT_AUTH_METHODS),
            "introspection_endpoint_auth_signing_alg_values_supported": ["ES256", "RS256"],
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": True,  # RFC 9207 section 3
            "prompt_values_supported": ["none", "login", "consent"],
            "acr_values_supported": ["urn:tessera:acr:pwd+otp", "urn:tessera:acr:card"],
            "claims_supported": sorted({c for claims in SCOPE_CLAIMS.values() for c in claims}
                                       | {"iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "at_hash"}),
            # Discovery 1.0 section 3: BCP 47 tags of the pages' languages and of the claims' values
            "ui_locales_supported": list(LANGUAGE_TAGS.values()),
            "claims_locales_supported": list(LANGUAGE_TAGS.values()),
            "claims_parameter_supported": False,
            "request_parameter_supported": False,
            "request_uri_parameter_supported": False,
            "frontchannel_logout_supported": False,
            "backchannel_logout_supported": True,  # Back-Channel Logout 1.0 section 2.1
            "backchannel_logout_session_supported": True,
        }


def _app_provider() -> Provider:
    return current_app.extensions["tessera.oidc"]


#: the provider of the application handling the current request (set by :meth:`Provider.init_app`)
current_provider: Provider = LocalProxy(_app_provider)  # type: ignore[assignment]
