"""Access and refresh tokens (RFC 6749 sections 1.4, 1.5, 6) as stored by the provider.

Tokens are stored as SHA-256 hashes. Every token belongs to a *family*: the tokens descending from
one authorization code. Refresh tokens rotate (each use returns a new one and spends the old);
presenting a spent refresh token again is reuse, the sign of a stolen token, and ends the whole
family (RFC 9700 section 4.14.2). A code presented twice ends its family too (RFC 6749 4.1.2).
"""

from __future__ import annotations

import datetime
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from authlib.oauth2.rfc6749 import TokenMixin
from sqlalchemy import Engine, bindparam, text, update
from sqlalchemy.orm import Session, sessionmaker

from store.held_connection import HeldStatement
from store.types import UtcDateTime
from idp.models import OAuthToken

# the token endpoint's and userinfo's statements in plain SQL (several times cheaper than the ORM)
_T = UtcDateTime()
_COLUMNS = ("id, client_id, uid, family, scope, auth_time, amr, issued_at, expires_in, refresh_expires_at, "
            "access_revoked, refresh_used_at")
_TYPES = {"issued_at": _T, "refresh_expires_at": _T, "refresh_used_at": _T}
_BY_ACCESS = text(f"SELECT {_COLUMNS} FROM idp_oauth_token WHERE access_token_hash = :h").columns(**_TYPES)
_BY_REFRESH = text(f"SELECT {_COLUMNS} FROM idp_oauth_token WHERE refresh_token_hash = :h").columns(**_TYPES)
#: one per login (the token endpoint): on the held driver connection
_INSERT = ("INSERT INTO idp_oauth_token (client_id, uid, family, access_token_hash, refresh_token_hash, scope, auth_time, "
           "amr, issued_at, expires_in, refresh_expires_at, access_revoked) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
#: a service account's access token with its account's name (the join fails once the account is removed);
#: on the held driver connection (one per API call: SQLAlchemy's statement overhead would be four times the query)
_SERVICE = ("SELECT t.client_id, t.uid, t.scope, t.issued_at, t.expires_in, t.access_revoked, c.name "
            "FROM idp_oauth_token t JOIN idp_oauth_client c ON c.client_id = t.client_id "
            "WHERE t.access_token_hash = ?")
_SPEND = text("UPDATE idp_oauth_token SET refresh_used_at = :now WHERE id = :id AND refresh_used_at IS NULL").bindparams(
    bindparam("now", type_=_T))

ACCESS_TOKEN_SECONDS = 900
REFRESH_TOKEN_LIFETIME = datetime.timedelta(hours=12)


def new_token(*_args: object, **_kwargs: object) -> str:
    """A fresh opaque credential (authorization code, access or refresh token): 256 bits from the OS
    CSPRNG, base64url (RFC 6749 section 10.10; RFC 6750's b64token characters). Authlib's default
    draws each character with its own ``SystemRandom().choice`` call (one getrandom per character,
    a tenth of a millisecond per token); this is one call."""
    return secrets.token_urlsafe(32)


def token_hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class IssuedToken(TokenMixin):  # type: ignore[misc]
    """A stored token as Authlib's grants and resource protector see it."""

    def __init__(self, row: Any, now: datetime.datetime, load_user: Callable[[str], Any],
                 load_client: Callable[[str], Any]) -> None:
        self.id = row.id
        self.client_id = row.client_id
        self.uid = row.uid
        self.family = row.family
        self.scope = row.scope
        self.auth_time = row.auth_time
        self.amr = row.amr
        self.issued_at = row.issued_at
        self.expires_in = row.expires_in
        self.refresh_expires_at = row.refresh_expires_at
        self.access_revoked = bool(row.access_revoked)
        self.refresh_used_at = row.refresh_used_at
        self._now = now
        self._load_user = load_user
        self._load_client = load_client

    def check_client(self, client: Any) -> bool:
        return bool(client.get_client_id() == self.client_id)

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_in

    def is_expired(self) -> bool:
        return self._now >= self.issued_at + datetime.timedelta(seconds=self.expires_in)

    def is_revoked(self) -> bool:
        return self.access_revoked

    def refresh_is_expired(self) -> bool:
        return self.refresh_expires_at is None or self._now >= self.refresh_expires_at

    def get_user(self) -> Any:
        return self._load_user(self.uid)

    def get_client(self) -> Any:
        return self._load_client(self.client_id)


@dataclass(frozen=True)
class ServiceToken:
    """A live access token of a service account (client credentials, RFC 6749 section 4.4)."""

    client_id: str
    name: str
    scopes: frozenset[str]
    expires_at: datetime.datetime


class TokenStore:
    def __init__(self, sessions: sessionmaker[Session], clock: Callable[[], datetime.datetime],
                 load_user: Callable[[str], Any], load_client: Callable[[str], Any]) -> None:
        self.sessions = sessions
        self.engine: Engine = sessions.kw["bind"]
        self.clock = clock
        self.load_user = load_user
        self.load_client = load_client
        self._insert = HeldStatement(self.engine, _INSERT, "token issue", params=(None,) * 8 + (_T, None, _T))
        self._service = HeldStatement(self.engine, _SERVICE, "service token", results=(None, None, None, _T))

    def save(self, token: dict[str, Any], client_id: str, uid: str, family: str, auth_time: int, amr: str) -> None:
        now = self.clock()
        refresh = token.get("refresh_token")
        self._insert.run((client_id, uid, family, token_hash(token["access_token"]),
                          token_hash(refresh) if refresh else None, token.get("scope", ""), auth_time, amr, now,
                          int(token.get("expires_in", ACCESS_TOKEN_SECONDS)),
                          now + REFRESH_TOKEN_LIFETIME if refresh else None, False))

    def _wrap(self, row: Any) -> IssuedToken | None:
        return None if row is None else IssuedToken(row, self.clock(), self.load_user, self.load_client)

    def by_access_token(self, value: str) -> IssuedToken | None:
        with self.engine.connect() as conn:
            return self._wrap(conn.execute(_BY_ACCESS, {"h": token_hash(value)}).first())

    def service_token(self, value: str) -> ServiceToken | None:
        """The service account behind a bearer access token (RFC 6750 section 2.1), read now: None
        when unknown, expired, revoked, not a service's or its account was removed."""
        row = self._service.run((token_hash(value),)).row
        if row is None:
            return None
        client_id, uid, scope, issued_at, expires_in, revoked, name = row
        if revoked or uid != f"service:{client_id}":
            return None
        expires_at = issued_at + datetime.timedelta(seconds=int(expires_in))
        if self.clock() >= expires_at:
            return None
        return ServiceToken(client_id, name, frozenset(str(scope).split()), expires_at)

    def by_refresh_token(self, value: str) -> IssuedToken | None:
        with self.engine.connect() as conn:
            return self._wrap(conn.execute(_BY_REFRESH, {"h": token_hash(value)}).first())

    def spend_refresh_token(self, token_id: int) -> bool:
        """Mark a refresh token used; False if it already was (a concurrent or repeated use)."""
        with self.engine.begin() as conn:
            return bool(conn.execute(_SPEND, {"id": token_id, "now": self.clock()}).rowcount == 1)

    def revoke_family(self, family: str) -> int:
        """End every access and refresh token of a family; the number of tokens touched."""
        with self.sessions.begin() as session:
            access = session.execute(update(OAuthToken).where(OAuthToken.family == family, OAuthToken.access_revoked.is_(False))
                                     .values(access_revoked=True)).rowcount
            session.execute(update(OAuthToken).where(OAuthToken.family == family, OAuthToken.refresh_used_at.is_(None))
                            .values(refresh_used_at=self.clock()))
            return int(access or 0)

    def revoke_user(self, uid: str) -> int:
        """End every token of a staff member (a leaver, log out everywhere)."""
        with self.sessions.begin() as session:
            access = session.execute(update(OAuthToken).where(OAuthToken.uid == uid, OAuthToken.access_revoked.is_(False))
                                     .values(access_revoked=True)).rowcount
            session.execute(update(OAuthToken).where(OAuthToken.uid == uid, OAuthToken.refresh_used_at.is_(None))
                            .values(refresh_used_at=self.clock()))
            return int(access or 0)
