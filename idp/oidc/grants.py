"""The grants of the provider, as Authlib grant classes with the spec's steps as methods.

- :class:`CodeGrant`: authorization code grant (RFC 6749 section 4.1). Codes are single use and
  live ``CODE_SECONDS``; a code presented again ends the tokens issued from it (section 4.1.2).
- :class:`S256CodeChallenge`: PKCE (RFC 7636); only S256 is offered and public clients must use it
  (RFC 9700 section 2.1.1).
- :class:`OpenIdCode`: OpenID Connect Core 3.1: id_token with nonce, at_hash, auth_time, acr, amr.
- :class:`RotatingRefreshGrant`: refresh (RFC 6749 section 6) with rotation and reuse detection.
- :class:`ServiceCredentialsGrant`: client credentials (RFC 6749 section 4.4) for service accounts.
- :class:`PrivateKeyJwt`: private_key_jwt client authentication (RFC 7523 section 2.2, OIDC Core 9).
"""

from __future__ import annotations

import datetime
import functools
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NamedTuple

from authlib.oauth2.rfc6749 import (InvalidClientError, InvalidGrantError, InvalidRequestError, InvalidScopeError,
                                    UnauthorizedClientError, grants)
from authlib.oauth2.rfc6749 import scope_to_list
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from joserfc.jwk import KeySet
from sqlalchemy import Engine, bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from idp import events
from idp.models import AuthorizationCode, ClientAssertionJti
from idp.oidc.tokens import new_token, token_hash
from idp.sessions import StaffSession
from store.driver_read import DriverRead

if TYPE_CHECKING:
    from idp.oidc.provider import Provider

CODE_SECONDS = 60
ID_TOKEN_SECONDS = 600
AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]
#: a service account's access token lives this long (it asks again, with its credentials, after)
SERVICE_TOKEN_SECONDS = 300
ACR_TWO_FACTOR = "urn:tessera:acr:pwd+otp"
#: a citizen's login with the ID card and its PIN (amr ["sc", "pin"]); idp.citizen_login uses the same value
ACR_CARD = "urn:tessera:acr:card"


# the authorization and token endpoints' statements: Core, built once from the mapped class (the ORM's
# unit of work would cost several times the statement)
_CODE_COLUMNS = (AuthorizationCode.code_hash, AuthorizationCode.client_id, AuthorizationCode.uid,
                 AuthorizationCode.redirect_uri, AuthorizationCode.scope, AuthorizationCode.nonce,
                 AuthorizationCode.code_challenge, AuthorizationCode.code_challenge_method, AuthorizationCode.auth_time,
                 AuthorizationCode.acr, AuthorizationCode.amr, AuthorizationCode.family, AuthorizationCode.expires_at,
                 AuthorizationCode.sid)
_SAVE_CODE = insert(AuthorizationCode)
_FIND_CODE = select(*_CODE_COLUMNS).where(AuthorizationCode.code_hash == bindparam("h"))
#: find and spend in one statement (the token endpoint's hot path): a row comes back only for this
#: client's code, unspent until now
_SPEND_CODE = (update(AuthorizationCode)
               .where(AuthorizationCode.code_hash == bindparam("h"), AuthorizationCode.client_id == bindparam("client"),
                      AuthorizationCode.used_at.is_(None))
               .values(used_at=bindparam("now")).returning(*_CODE_COLUMNS))
_PURGE_CODES = delete(AuthorizationCode).where(AuthorizationCode.expires_at < bindparam("before"))
#: OIDC Core 3.1.2.1: a nonce this client used before (asked twice per login: run on the driver,
#: store.driver_read; its measured gain in docs/platform-notes.md)
_NONCE_SEEN = (select(AuthorizationCode.code_hash)
               .where(AuthorizationCode.client_id == bindparam("client"), AuthorizationCode.nonce == bindparam("nonce"))
               .limit(1))
#: spent codes are kept (hashed) this long, to recognise a code presented again (RFC 6749 4.1.2)
CODE_KEPT = datetime.timedelta(days=1)


def _provider(grant: Any) -> "Provider":
    return grant.server.provider


class AuthorizationCodes:
    """The codes in the store (table ``idp_authorization_code``, hashed): saved by the authorization
    endpoint, found and spent in one statement by the token endpoint (RFC 6749 sections 4.1.2, 4.1.3)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @functools.cached_property
    def _nonce_seen(self) -> DriverRead:
        return DriverRead(self.engine, _NONCE_SEEN)

    def save(self, code: Mapping[str, Any]) -> None:
        """Store a new code (the columns of :class:`idp.models.AuthorizationCode` by name); now and
        then, the codes expired longer than :data:`CODE_KEPT` go."""
        with self.engine.begin() as conn:
            conn.execute(_SAVE_CODE, code)
            if secrets.randbelow(256) == 0:
                conn.execute(_PURGE_CODES, {"before": code["created_at"] - CODE_KEPT})

    def spend(self, code_hash: str, client_id: str, now: datetime.datetime) -> "_CodeRow | None":
        """The code of ``client_id``, marked used now; None if unknown, another client's or spent."""
        with self.engine.begin() as conn:
            row = conn.execute(_SPEND_CODE, {"h": code_hash, "client": client_id, "now": now}).first()
        return None if row is None else _CodeRow._make(row)

    def find(self, code_hash: str) -> "_CodeRow | None":
        """The code whatever its state (to recognise one presented again)."""
        with self.engine.connect() as conn:
            row = conn.execute(_FIND_CODE, {"h": code_hash}).first()
        return None if row is None else _CodeRow._make(row)

    def nonce_seen(self, client_id: str, nonce: str) -> bool:
        return self._nonce_seen.first({"client": client_id, "nonce": nonce}) is not None


def code_statements(engine: Engine) -> tuple[Callable[[Mapping[str, Any]], None],
                                             Callable[[str, str, datetime.datetime], "_CodeRow | None"]]:
    """The save and spend of :class:`AuthorizationCodes` on ``engine``, as the provider holds them
    (the authorization and token endpoints' hot path)."""
    codes = AuthorizationCodes(engine)
    return codes.save, codes.spend


class _CodeRow(NamedTuple):
    code_hash: str
    client_id: str
    uid: str
    redirect_uri: str
    scope: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int
    acr: str | None
    amr: str
    family: str | None
    expires_at: datetime.datetime
    sid: str | None


class StoredCode:
    """An authorization code row as Authlib's grant and the OIDC extension see it."""

    def __init__(self, row: Any) -> None:
        self.code_hash = row.code_hash
        self.client_id = row.client_id
        self.uid = row.uid
        self.redirect_uri = row.redirect_uri
        self.scope = row.scope
        self.nonce = row.nonce
        self.code_challenge = row.code_challenge
        self.code_challenge_method = row.code_challenge_method
        self.auth_time = row.auth_time
        self.acr = row.acr
        self.amr = row.amr
        self.family = row.family or row.code_hash[:32]
        #: the browser session the code was issued in (idp.sessions.StaffSession.oidc_sid)
        self.sid = row.sid

    # AuthorizationCodeMixin (RFC 6749) and its OIDC extension
    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> str | None:
        return self.acr

    def get_amr(self) -> list[str]:
        return self.amr.split()


def _acr(amr: tuple[str, ...] | list[str]) -> str | None:
    """The authentication context class of a login from its methods (RFC 8176 names)."""
    if "sc" in amr:
        return ACR_CARD
    return ACR_TWO_FACTOR if "otp" in amr else None


def browser_session_sid() -> str | None:
    """The OpenID Connect ``sid`` of the browser session the request belongs to (the tokens of a
    code issued now end with it); None outside a server-side session."""
    from flask import session

    return session.oidc_sid if isinstance(session, StaffSession) else None


@contextmanager
def client_still_registered() -> Iterator[None]:
    """A code or token stored for a client removed a moment ago (another worker still had it in its
    cache, :meth:`ClientRegistry.get`) breaks the client foreign key: that is invalid_client (RFC 6749
    section 5.2, 401 as for any client whose authentication fails), never a 500."""
    try:
        yield
    except IntegrityError:
        raise InvalidClientError("the client was removed", status_code=401) from None


class CodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS

    def generate_authorization_code(self) -> str:
        return new_token()

    def save_authorization_code(self, code: str, request: Any) -> None:
        user = request.user
        provider = _provider(self)
        now = provider.clock()
        payload = request.payload.data
        with client_still_registered():
            provider.save_code({
                "code_hash": token_hash(code), "client_id": request.client.get_client_id(), "uid": user.uid,
                "redirect_uri": request.payload.redirect_uri or request.client.get_default_redirect_uri() or "",
                "scope": request.payload.scope or "", "nonce": payload.get("nonce"),
                "code_challenge": payload.get("code_challenge"),
                "code_challenge_method": payload.get("code_challenge_method"), "auth_time": int(user.auth_time),
                "acr": _acr(user.amr), "amr": " ".join(user.amr), "sid": browser_session_sid(),
                "created_at": now, "expires_at": now + datetime.timedelta(seconds=CODE_SECONDS)})

    def query_authorization_code(self, code: str, client: Any) -> StoredCode | None:
        """Find and spend the code in one step: a second presentation finds it spent, is refused
        and ends the tokens issued from it (RFC 6749 section 4.1.2)."""
        provider = _provider(self)
        now = provider.clock()
        digest = token_hash(code)
        spent = provider.spend_code(digest, client.get_client_id(), now)
        if spent is not None:
            return None if now >= spent.expires_at else StoredCode(spent)
        found = AuthorizationCodes(provider.engine).find(digest)  # unknown, another client's, or presented again
        if found is None or found.client_id != client.get_client_id():
            return None
        stored = StoredCode(found)
        ended = provider.tokens.revoke_family(stored.family)
        events.record("oidc.code_reuse", f"client:{stored.client_id}", f"staff:{stored.uid}", "failure",
                      tokens_revoked=ended)
        return None

    def delete_authorization_code(self, authorization_code: StoredCode) -> None:
        pass  # already spent in query_authorization_code; kept (hashed) to detect reuse until purged

    def authenticate_user(self, authorization_code: StoredCode) -> Any:
        return _provider(self).load_user(authorization_code.uid, authorization_code.auth_time,
                                         authorization_code.get_amr())


class S256CodeChallenge(CodeChallenge):
    """PKCE with S256 only; required when the client is public (it has no secret)."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        request = grant.request
        challenge = request.payload.data.get("code_challenge")
        method = request.payload.data.get("code_challenge_method")
        if challenge and not method:
            raise InvalidRequestError("code_challenge_method must be S256", redirect_uri=redirect_uri)
        if request.client.is_public and not challenge:
            raise InvalidRequestError("public clients must use PKCE (code_challenge with S256)", redirect_uri=redirect_uri)
        super().validate_code_challenge(grant, redirect_uri)

    def get_authorization_code_challenge(self, authorization_code: StoredCode) -> str | None:
        return authorization_code.code_challenge

    def get_authorization_code_challenge_method(self, authorization_code: StoredCode) -> str | None:
        return authorization_code.code_challenge_method


class OpenIdCode(OpenIDCode):
    def __init__(self, provider: "Provider") -> None:
        super().__init__(require_nonce=False)
        self.provider = provider
        #: checked at every authorization request of a login (OIDC Core 3.1.2.1 nonce replay)
        self._codes = AuthorizationCodes(provider.engine)

    def exists_nonce(self, nonce: str, request: Any) -> bool:
        if request.user is None:
            # nobody has logged in yet (the login form comes next): the request is validated again,
            # nonce included, before a code can be issued, so looking it up now would be done twice
            return False
        client_id = request.payload.client_id
        return self._codes.nonce_seen(client_id, nonce)

    def get_client_algorithm(self, client: Any) -> str:
        return str(client.id_token_signed_response_alg)

    def get_authorization_code_claims(self, authorization_code: StoredCode) -> dict[str, Any]:
        """Authlib's nonce, auth_time, acr, amr, and the session's ``sid`` (Back-Channel Logout 1.0
        section 2.1: the logout token names the same session)."""
        claims: dict[str, Any] = super().get_authorization_code_claims(authorization_code)
        if authorization_code.sid:
            claims["sid"] = authorization_code.sid
        return claims

    def resolve_client_private_key(self, client: Any) -> Any:
        return self.provider.keys.signing_key(self.get_client_algorithm(client))[1]

    def get_encode_header(self, client: Any) -> dict[str, str]:
        alg = self.get_client_algorithm(client)
        kid, _ = self.provider.keys.signing_key(alg)
        return {"alg": alg, "kid": kid, "typ": "JWT"}

    def get_client_claims(self, client: Any) -> dict[str, Any]:
        now = int(time.time())
        return {"iss": self.provider.issuer, "aud": client.get_client_id(), "iat": now, "exp": now + ID_TOKEN_SECONDS}

    def generate_user_info(self, user: Any, scope: str) -> UserInfo:
        return self.provider.user_info(user, scope)


class RotatingRefreshGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> Any:
        provider = _provider(self)
        token = provider.tokens.by_refresh_token(refresh_token)
        client = self.request.client
        if token is None or not token.check_client(client):
            return None
        if not (token.offline or token.session_alive):
            return None  # its session ended (idp.oidc.tokens): no reuse, the family ended with it
        if token.refresh_used_at is None and provider.still_active(token.uid) is False:
            # a leaver (deleted or disabled in the directory): no new tokens, and the old ones end
            ended = provider.tokens.revoke_user(token.uid)
            events.record("oidc.refresh_refused", f"client:{token.client_id}", f"staff:{token.uid}", "failure",
                          reason="not-active-in-directory", tokens_revoked=ended)
            return None
        if token.refresh_used_at is not None or not provider.tokens.spend_refresh_token(token.id):
            ended = provider.tokens.revoke_family(token.family)
            events.record("oidc.refresh_reuse", f"client:{token.client_id}", f"staff:{token.uid}", "failure",
                          tokens_revoked=ended)
            return None
        if token.refresh_is_expired():
            return None
        if token.sid is not None and token.session_alive:
            provider.tokens.touch_session(token.sid)
        return token

    def authenticate_user(self, refresh_token: Any) -> Any:
        user = _provider(self).load_user(refresh_token.uid, refresh_token.auth_time, refresh_token.amr.split())
        if user is None:
            raise InvalidGrantError("the staff member is no longer active")
        return user

    def revoke_old_credential(self, refresh_token: Any) -> None:
        pass  # spent in authenticate_refresh_token, before the new token was issued


class ServiceCredentialsGrant(grants.ClientCredentialsGrant):
    """Client credentials (RFC 6749 section 4.4) for service accounts: a confidential client
    (section 2.1) authenticated at the token endpoint (section 3.2.1) gets a short-lived bearer
    access token (RFC 6750), no refresh token (section 4.4.3). The scope (section 3.3) is what it
    asks for, each scope among those it was registered for (else ``invalid_scope``), or all of
    them when it asks for none.

    The access token is a JWT in the RFC 9068 profile (``typ`` at+jwt; ``iss``, ``aud`` the
    verification API, ``sub`` and ``client_id`` the account, ``scope``, ``iat``, ``exp``, ``jti``)
    signed with the provider's key, so the API checks audience and scope without a lookup; it is
    also stored (hashed) like every access token, and the API asks the store on each call, so a
    removed account's tokens stop working at once."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]

    def validate_token_request(self) -> None:
        client = self.authenticate_token_endpoint_client()
        if not client.is_service or not client.check_grant_type(self.GRANT_TYPE):
            raise UnauthorizedClientError("only a service account may use grant_type=client_credentials")
        self.request.client = client
        asked = scope_to_list(self.request.payload.scope) or []
        beyond = [s for s in asked if s not in client.scopes]
        if beyond:
            raise InvalidScopeError(f"not registered for: {' '.join(beyond)[:200]}")

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        from joserfc import jwt

        provider = _provider(self)
        client_id = self.request.client.get_client_id()
        scope = " ".join(scope_to_list(self.request.payload.scope) or self.request.client.scopes)
        now = int(time.time())
        kid, key = provider.keys.signing_key("ES256")
        claims = {"iss": provider.issuer, "aud": provider.service_audience, "sub": client_id, "client_id": client_id,
                  "scope": scope, "iat": now, "exp": now + SERVICE_TOKEN_SECONDS, "jti": secrets.token_urlsafe(16)}
        access_token = jwt.encode({"alg": "ES256", "kid": kid, "typ": "at+jwt"}, claims, key)
        token = {"access_token": access_token, "token_type": "Bearer", "expires_in": SERVICE_TOKEN_SECONDS, "scope": scope}
        self.save_token(token)
        events.record("oidc.service_token", f"client:{client_id}", f"client:{client_id}", "success", scope=scope)
        return 200, token, self.TOKEN_RESPONSE_HEADER


class PrivateKeyJwt(JWTBearerClientAssertion):
    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, provider: "Provider") -> None:
        super().__init__(validate_jti=True, leeway=30)
        self.provider = provider

    def get_audiences(self) -> list[str]:
        """RFC 7523 section 3: the token endpoint (or the issuer); at the revocation and introspection
        endpoints, which authenticate clients as the token endpoint does, their own URLs too."""
        p = self.provider
        return [p.token_endpoint, p.issuer, p.revocation_endpoint, p.introspection_endpoint]

    def resolve_client_public_key(self, client: Any) -> KeySet:
        return KeySet.import_key_set(client.client_metadata.get("jwks") or {"keys": []})  # type: ignore[arg-type]

    def validate_jti(self, claims: Any, jti: str) -> bool:
        now = self.provider.clock()
        expires = datetime.datetime.fromtimestamp(int(claims.get("exp", 0)), datetime.timezone.utc)
        with self.provider.sessions.begin() as session:
            session.execute(delete(ClientAssertionJti).where(ClientAssertionJti.expires_at < now - datetime.timedelta(minutes=5)))
            if session.get(ClientAssertionJti, (str(jti)[:255], str(claims["sub"])[:128])) is not None:
                return False
            session.add(ClientAssertionJti(jti=str(jti)[:255], client_id=str(claims["sub"])[:128], expires_at=expires))
        return True
