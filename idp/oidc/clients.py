"""The client registry: relying parties allowed to log staff in, and service accounts.

A *service account* is a confidential client of the client credentials grant only (RFC 6749
section 4.4): no redirect URIs, no user, scopes among :data:`SERVICE_SCOPES` (the verification
API's ``verify``), limited to those it was registered for.

Metadata names are those of OpenID Connect Dynamic Client Registration 1.0 section 2 and RFC 7591
section 2 (``redirect_uris``, ``token_endpoint_auth_method``, ``jwks``, ...). Redirect URIs are
matched exactly (RFC 9700 section 2.1). Client secrets are 256-bit random values shown once and
stored as SHA-256 (a slow hash adds nothing to a random secret and would cost every token call).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from authlib.oauth2.rfc6749 import ClientMixin, scope_to_list
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from idp.models import OAuthClient
from idp.oidc.keys import ALGORITHMS

#: the scope of a refresh token that outlives the browser session (OIDC Core 11); asked for, it is
#: always consented to by the person (idp.oidc.authorization)
OFFLINE_ACCESS = "offline_access"
SCOPES = ("openid", "profile", "email", "department", "roles", OFFLINE_ACCESS)
#: what a service account may be granted: ``verify`` is the verification API (/api/v1)
SERVICE_SCOPES = ("verify",)
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt", "none")
#: a service account authenticates itself: never "none" (RFC 6749 4.4: confidential clients only)
SERVICE_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt")
#: called inside the registration's transaction with the client id: raising undoes the change (the audit entry)
ChangeSink = Callable[[Session, str], None]
#: the algorithms a client may register as ``userinfo_signed_response_alg`` (OIDC Registration 1.0
#: section 2): the provider's signing keys', advertised as ``userinfo_signing_alg_values_supported``
USERINFO_ALGORITHMS = ALGORITHMS
#: the metadata flag of a client that may call the introspection endpoint (RFC 7662 has no registered name)
INTROSPECTION = "introspection_allowed"
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._~-]{3,128}$")


class ClientRegistrationError(ValueError):
    """Invalid client metadata (RFC 7591 section 3.2.2: invalid_client_metadata / invalid_redirect_uri)."""


@dataclass(frozen=True)
class NewClient:
    client_id: str
    client_secret: str | None  # shown once


class RegisteredClient(ClientMixin):
    """A client as Authlib sees it (the ClientMixin contract of RFC 6749 checks)."""

    def __init__(self, row: OAuthClient) -> None:
        self.client_id = row.client_id
        self.name = row.name
        self.trusted = row.trusted
        self._secret_hash = row.secret_hash
        self.client_metadata: dict[str, Any] = json.loads(row.metadata_json)
        self.created_at = row.created_at

    # -- ClientMixin ---------------------------------------------------------------------
    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        uris = self.redirect_uris
        return uris[0] if len(uris) == 1 else None

    def get_allowed_scope(self, scope: str) -> str:
        if not scope:
            return ""
        allowed = set(scope_to_list(self.client_metadata.get("scope", "")))
        return " ".join(s for s in scope_to_list(scope) if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris  # exact string comparison

    def check_client_secret(self, client_secret: str) -> bool:
        if not self._secret_hash:
            return False
        return hmac.compare_digest(self._secret_hash, _secret_hash(client_secret))

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        """The token, revocation (RFC 7009 section 2.1) and introspection (RFC 7662 section 2.1)
        endpoints all authenticate a client as registered: a confidential client never gets in
        with its client_id alone."""
        return bool(method == self.token_endpoint_auth_method)

    def check_response_type(self, response_type: str) -> bool:
        return response_type in self.client_metadata.get("response_types", ["code"])

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.client_metadata.get("grant_types", [])

    # -- metadata ------------------------------------------------------------------------
    @property
    def redirect_uris(self) -> list[str]:
        return list(self.client_metadata.get("redirect_uris", []))

    @property
    def token_endpoint_auth_method(self) -> str:
        return str(self.client_metadata.get("token_endpoint_auth_method", "client_secret_basic"))

    @property
    def is_public(self) -> bool:
        return self.token_endpoint_auth_method == "none"

    @property
    def is_service(self) -> bool:
        """A service account: the client credentials grant and nothing else."""
        return self.client_metadata.get("grant_types") == ["client_credentials"]

    @property
    def scopes(self) -> list[str]:
        return list(scope_to_list(self.client_metadata.get("scope", "")) or [])

    @property
    def id_token_signed_response_alg(self) -> str:
        return str(self.client_metadata.get("id_token_signed_response_alg", "ES256"))

    @property
    def userinfo_signed_response_alg(self) -> str | None:
        """The algorithm of its signed userinfo responses (OIDC Core 5.3.2), None for plain JSON.
        Authlib's :class:`UserInfoEndpoint` reads the same metadata name."""
        alg = self.client_metadata.get("userinfo_signed_response_alg")
        return str(alg) if alg else None

    @property
    def backchannel_logout_uri(self) -> str | None:
        """Where the client takes logout tokens (Back-Channel Logout 1.0 section 2.2), if anywhere."""
        uri = self.client_metadata.get("backchannel_logout_uri")
        return str(uri) if uri else None

    @property
    def may_introspect(self) -> bool:
        """A resource server registered for token introspection (RFC 7662 section 2.1: the endpoint
        answers only clients authorised for it)."""
        return bool(self.client_metadata.get(INTROSPECTION))


def new_client_id() -> str:
    """128 random bits, URL-safe, never starting with "-" (it would read as an option on a command line)."""
    while True:
        candidate = secrets.token_urlsafe(16)
        if not candidate.startswith("-"):
            return candidate


def _secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _check_uri(uri: str, what: str) -> str:
    parts = urlsplit(uri)
    if parts.scheme not in ("https", "http") or not parts.netloc or parts.fragment:
        raise ClientRegistrationError(f"{what} must be an absolute http(s) URL without a fragment: {uri!r}")
    if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise ClientRegistrationError(f"{what} must use https (http only for loopback): {uri!r}")
    return uri


def origin_of(uri: str) -> str:
    """The ASCII serialisation of a URL's origin (RFC 6454 section 6.2), as a browser sends it in
    ``Origin``: scheme and host lower-cased, the port only when it is not the scheme's default."""
    parts = urlsplit(uri)
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    default = {"http": 80, "https": 443}.get(scheme)
    return f"{scheme}://{host}" + (f":{port}" if port is not None and port != default else "")


#: how long a process keeps a client it looked up (registration changes reach every worker within this)
CACHE_SECONDS = 5.0


class ClientRegistry:
    def __init__(self, sessions: sessionmaker[Session], clock: Callable[[], datetime.datetime]) -> None:
        self.sessions = sessions
        self.clock = clock
        self._cache: dict[str, tuple[float, RegisteredClient | None]] = {}
        self._origins: tuple[float, frozenset[str]] | None = None

    def add(self, name: str, redirect_uris: Sequence[str], *, client_id: str | None = None,
            auth_method: str = "client_secret_basic", post_logout_redirect_uris: Sequence[str] = (),
            scopes: Sequence[str] = SCOPES, trusted: bool = False, jwks: dict[str, Any] | None = None,
            id_token_alg: str = "ES256", userinfo_alg: str | None = None, refresh_tokens: bool = True,
            introspection: bool = False, backchannel_logout_uri: str | None = None,
            on_change: ChangeSink | None = None) -> NewClient:
        """Register a client; its secret (for the client_secret_* methods) is returned once.
        ``introspection``: it may ask the introspection endpoint about tokens (RFC 7662; a
        confidential client only). ``backchannel_logout_uri``: where it is told of the end of a
        session it took part in (OpenID Connect Back-Channel Logout 1.0 section 2.2).
        ``userinfo_alg``: its userinfo answers are a JWT signed with this algorithm (OIDC
        Registration 1.0 section 2 ``userinfo_signed_response_alg``, one of those discovery
        advertises), else JSON.

        ``on_change`` runs inside the transaction (the audit entry): if it raises, nothing is registered."""
        client_id = client_id or new_client_id()
        self._check_identity(client_id, name)
        if not redirect_uris:
            raise ClientRegistrationError("at least one redirect URI is required")
        if auth_method not in AUTH_METHODS:
            raise ClientRegistrationError(f"token_endpoint_auth_method must be one of {', '.join(AUTH_METHODS)}")
        if auth_method == "private_key_jwt" and not (jwks and jwks.get("keys")):
            raise ClientRegistrationError("private_key_jwt needs the client's public keys (jwks)")
        if introspection and auth_method not in SERVICE_AUTH_METHODS:
            raise ClientRegistrationError("a client that introspects tokens must authenticate (not --auth-method none)")
        if id_token_alg not in ALGORITHMS:
            raise ClientRegistrationError(f"id_token_signed_response_alg must be one of {', '.join(ALGORITHMS)}")
        if userinfo_alg is not None and userinfo_alg not in USERINFO_ALGORITHMS:
            raise ClientRegistrationError(
                f"userinfo_signed_response_alg must be one of {', '.join(USERINFO_ALGORITHMS)}")
        unknown = [s for s in scopes if s not in SCOPES]
        if unknown or "openid" not in scopes:
            raise ClientRegistrationError(f"scopes must include openid and be among {', '.join(SCOPES)}")
        grant_types = ["authorization_code"] + (["refresh_token"] if refresh_tokens else [])
        metadata: dict[str, Any] = {
            "client_name": name,
            "redirect_uris": [_check_uri(u, "redirect URI") for u in redirect_uris],
            "post_logout_redirect_uris": [_check_uri(u, "post-logout redirect URI") for u in post_logout_redirect_uris],
            "token_endpoint_auth_method": auth_method,
            "grant_types": grant_types,
            "response_types": ["code"],
            "scope": " ".join(scopes),
            "id_token_signed_response_alg": id_token_alg,
        }
        if userinfo_alg is not None:
            metadata["userinfo_signed_response_alg"] = userinfo_alg
        if jwks:
            metadata["jwks"] = jwks
        if introspection:
            metadata[INTROSPECTION] = True
        if backchannel_logout_uri:
            metadata["backchannel_logout_uri"] = _check_uri(backchannel_logout_uri, "back-channel logout URI")
            metadata["backchannel_logout_session_required"] = True  # every logout token carries sid
        return self._register(client_id, name, metadata, trusted, on_change)

    def add_service(self, name: str, scopes: Sequence[str] = SERVICE_SCOPES, *, client_id: str | None = None,
                    auth_method: str = "client_secret_basic", jwks: dict[str, Any] | None = None,
                    on_change: ChangeSink | None = None) -> NewClient:
        """Register a service account: a confidential client of the client credentials grant only
        (RFC 6749 section 4.4), no redirect URIs, granted at most ``scopes``; its secret (for the
        client_secret_* methods) is returned once. ``on_change`` as in :meth:`add`."""
        client_id = client_id or new_client_id()
        self._check_identity(client_id, name)
        if auth_method not in SERVICE_AUTH_METHODS:
            raise ClientRegistrationError(f"a service account authenticates with one of {', '.join(SERVICE_AUTH_METHODS)}")
        if auth_method == "private_key_jwt" and not (jwks and jwks.get("keys")):
            raise ClientRegistrationError("private_key_jwt needs the service's public keys (jwks)")
        unknown = [s for s in scopes if s not in SERVICE_SCOPES]
        if unknown or not scopes:
            raise ClientRegistrationError(f"a service account's scopes are among {', '.join(SERVICE_SCOPES)}")
        metadata: dict[str, Any] = {
            "client_name": name,
            "redirect_uris": [],
            "token_endpoint_auth_method": auth_method,
            "grant_types": ["client_credentials"],
            "response_types": [],
            "scope": " ".join(dict.fromkeys(scopes)),
        }
        if jwks:
            metadata["jwks"] = jwks
        return self._register(client_id, name, metadata, False, on_change)

    @staticmethod
    def _check_identity(client_id: str, name: str) -> None:
        if not _CLIENT_ID.match(client_id) or client_id.startswith("-"):
            raise ClientRegistrationError("client id: 3-128 characters of A-Z a-z 0-9 . _ ~ -, not starting with -")
        if not name.strip() or len(name) > 200:
            raise ClientRegistrationError("a client needs a name of at most 200 characters")

    def _register(self, client_id: str, name: str, metadata: dict[str, Any], trusted: bool,
                  on_change: ChangeSink | None) -> NewClient:
        method = metadata["token_endpoint_auth_method"]
        secret = secrets.token_urlsafe(32) if method in ("client_secret_basic", "client_secret_post") else None
        with self.sessions.begin() as session:
            if session.get(OAuthClient, client_id) is not None:
                raise ClientRegistrationError(f"client {client_id!r} already exists")
            session.add(OAuthClient(client_id=client_id, name=name.strip(), secret_hash=_secret_hash(secret) if secret else None,
                                    metadata_json=json.dumps(metadata), trusted=trusted, created_at=self.clock()))
            if on_change is not None:
                session.flush()
                on_change(session, client_id)
        self._cache.pop(client_id, None)
        return NewClient(client_id, secret)

    def get(self, client_id: str) -> RegisteredClient | None:
        """The client, from a per-process cache of a few seconds (every token request asks)."""
        if not isinstance(client_id, str) or len(client_id) > 128:
            return None
        cached = self._cache.get(client_id)
        if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1]
        with self.sessions() as session:
            row = session.get(OAuthClient, client_id)
            client = RegisteredClient(row) if row else None
        if client is not None:
            if len(self._cache) > 1000:
                self._cache.clear()
            self._cache[client_id] = (time.monotonic(), client)
        return client

    def public_client_origins(self) -> frozenset[str]:
        """The origins (RFC 6454: scheme, host, port) of the public clients' redirect URIs: the web
        pages that may call the token and userinfo endpoints from a browser (CORS). Kept for
        :data:`CACHE_SECONDS`, as clients are."""
        cached = self._origins
        if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1]
        origins = frozenset(origin_of(uri) for client in self.list() if client.is_public for uri in client.redirect_uris)
        self._origins = (time.monotonic(), origins)
        return origins

    def list(self) -> list[RegisteredClient]:
        with self.sessions() as session:
            return [RegisteredClient(r) for r in session.scalars(select(OAuthClient).order_by(OAuthClient.created_at))]

    def remove(self, client_id: str, on_change: ChangeSink | None = None) -> bool:
        """Remove the client with its codes, tokens and consents (cascade): its access tokens stop
        working at once. ``on_change`` runs inside the transaction (the audit entry)."""
        from idp.models import AuthorizationCode, Consent, OAuthToken

        with self.sessions.begin() as session:
            row = session.get(OAuthClient, client_id)
            if row is None:
                return False
            for model in (AuthorizationCode, OAuthToken, Consent):
                session.query(model).filter(model.client_id == client_id).delete()
            session.delete(row)
            if on_change is not None:
                session.flush()
                on_change(session, client_id)
        self._cache.pop(client_id, None)
        return True
