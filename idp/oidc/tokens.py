"""Access and refresh tokens (RFC 6749 sections 1.4, 1.5, 6) as stored by the provider.

Tokens are stored as SHA-256 hashes. Every token belongs to a *family*: the tokens descending from
one authorization code. Refresh tokens rotate (each use returns a new one and spends the old);
presenting a spent refresh token again is reuse, the sign of a stolen token, and ends the whole
family (RFC 9700 section 4.14.2). A code presented twice ends its family too (RFC 6749 4.1.2).

Tokens end with the browser session they were issued in (:class:`IssuedToken`,
:func:`end_session_tokens`), except the refresh token of an ``offline_access`` grant (OIDC Core 11),
which lives until it expires or is revoked (RFC 7009).
"""

from __future__ import annotations

import datetime
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from authlib.oauth2.rfc6749 import TokenMixin
from sqlalchemy import Connection, Engine, bindparam, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from idp.models import OAuthClient, OAuthToken, WebSession

# the token endpoint's and userinfo's statements: Core, built once from the mapped classes (the ORM's
# unit of work would cost several times the statement)
#: a token with the session it was issued in, if that still exists (``session_*`` None otherwise)
_TOKEN_COLUMNS = (OAuthToken.id, OAuthToken.client_id, OAuthToken.uid, OAuthToken.family, OAuthToken.scope,
                  OAuthToken.auth_time, OAuthToken.amr, OAuthToken.issued_at, OAuthToken.expires_in,
                  OAuthToken.refresh_expires_at, OAuthToken.access_revoked, OAuthToken.refresh_used_at,
                  OAuthToken.sid, OAuthToken.offline, WebSession.uid.label("session_uid"),
                  WebSession.created_at.label("session_created_at"),
                  WebSession.last_seen_at.label("session_last_seen_at"))
_WITH_SESSION = select(*_TOKEN_COLUMNS).outerjoin(WebSession, WebSession.sid == OAuthToken.sid)
_BY_ACCESS = _WITH_SESSION.where(OAuthToken.access_token_hash == bindparam("h"))
_BY_REFRESH = _WITH_SESSION.where(OAuthToken.refresh_token_hash == bindparam("h"))
#: a refresh counts as the session's activity (its idle timeout starts again), as Keycloak's does
_TOUCH_SESSION = (update(WebSession).where(WebSession.sid == bindparam("session"))
                  .values(last_seen_at=bindparam("now")))
#: one per login (the token endpoint)
_INSERT = insert(OAuthToken)
#: a service account's access token with its account's name (the join fails once the account is
#: removed); one per verification API call
_SERVICE = (select(OAuthToken.client_id, OAuthToken.uid, OAuthToken.scope, OAuthToken.issued_at, OAuthToken.expires_in,
                   OAuthToken.access_revoked, OAuthClient.name)
            .join(OAuthClient, OAuthClient.client_id == OAuthToken.client_id)
            .where(OAuthToken.access_token_hash == bindparam("h")))
_SPEND = (update(OAuthToken).where(OAuthToken.id == bindparam("token"), OAuthToken.refresh_used_at.is_(None))
          .values(refresh_used_at=bindparam("now")))

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


#: the kinds of token a client may present for revocation or introspection (RFC 7009 and RFC 7662
#: section 2.1 ``token_type_hint``), each with the statement that finds it
ACCESS, REFRESH = "access_token", "refresh_token"
_BY_KIND = {ACCESS: _BY_ACCESS, REFRESH: _BY_REFRESH}


#: whether a session created and last seen then is within its timeouts now (idp.sessions.SessionStore.alive)
SessionTimeouts = Callable[[datetime.datetime, datetime.datetime, datetime.datetime], bool]


class IssuedToken(TokenMixin):
    """A stored token as Authlib's grants, resource protector, revocation and introspection
    endpoints see it. ``presented``: which of the row's two credentials was shown (its expiry and
    revocation are that credential's).

    A token issued in a browser session (``sid``) lives only as long as that session: the row
    exists, belongs to the token's person (another person's login in the same browser ends the
    first one's tokens) and is within its idle and absolute timeouts, so a timeout nobody noticed
    ends the tokens too. The refresh token of an ``offline_access`` grant is exempt (OIDC Core 11)."""

    def __init__(self, row: Any, now: datetime.datetime, load_user: Callable[[str], Any],
                 load_client: Callable[[str], Any], presented: str = ACCESS,
                 within_timeouts: SessionTimeouts | None = None) -> None:
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
        self.sid = row.sid
        self.offline = bool(row.offline)
        self.presented = presented
        self._now = now
        self.session_alive = self._session_alive(row, now, within_timeouts)
        self._load_user = load_user
        self._load_client = load_client

    def _session_alive(self, row: Any, now: datetime.datetime, within_timeouts: SessionTimeouts | None) -> bool:
        if self.sid is None:  # a service account's, or issued before sessions were named
            return True
        if row.session_created_at is None or (row.session_uid != self.uid and not self.uid.startswith("citizen:")):
            return False  # ended, or another person logged in over it (a citizen's login keeps no uid there)
        return within_timeouts is None or within_timeouts(row.session_created_at, row.session_last_seen_at, now)

    def check_client(self, client: Any) -> bool:
        return bool(client.get_client_id() == self.client_id)

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_in

    def expires_at(self) -> datetime.datetime | None:
        """When the presented credential expires (a refresh token without a lifetime: None)."""
        if self.presented == REFRESH:
            return self.refresh_expires_at
        return self.issued_at + datetime.timedelta(seconds=self.expires_in)

    def is_expired(self) -> bool:
        expires = self.expires_at()
        return expires is None or self._now >= expires

    def is_revoked(self) -> bool:
        if self.presented == REFRESH:
            return self.refresh_used_at is not None or not (self.offline or self.session_alive)
        return self.access_revoked or not self.session_alive

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
                 load_user: Callable[[str], Any], load_client: Callable[[str], Any],
                 within_timeouts: SessionTimeouts | None = None) -> None:
        self.sessions = sessions
        self.engine: Engine = sessions.kw["bind"]
        self.clock = clock
        self.load_user = load_user
        self.load_client = load_client
        #: the sessions' timeouts (None: a session lives as long as its row)
        self.within_timeouts = within_timeouts

    def save(self, token: dict[str, Any], client_id: str, uid: str, family: str, auth_time: int, amr: str,
             sid: str | None = None, offline: bool = False) -> None:
        """Store a token response's tokens; ``sid``: the session they end with, ``offline``: the
        refresh token outlives it."""
        now = self.clock()
        refresh = token.get("refresh_token")
        with self.engine.begin() as conn:
            conn.execute(_INSERT, {
                "client_id": client_id, "uid": uid, "family": family, "access_token_hash": token_hash(token["access_token"]),
                "refresh_token_hash": token_hash(refresh) if refresh else None, "scope": token.get("scope", ""),
                "auth_time": auth_time, "amr": amr, "issued_at": now,
                "expires_in": int(token.get("expires_in", ACCESS_TOKEN_SECONDS)),
                "refresh_expires_at": now + REFRESH_TOKEN_LIFETIME if refresh else None, "access_revoked": False,
                "sid": sid, "offline": offline})

    def touch_session(self, sid: str) -> None:
        """A refresh in the session ``sid``: the session was active now (its idle timeout restarts)."""
        with self.engine.begin() as conn:
            conn.execute(_TOUCH_SESSION, {"session": sid, "now": self.clock()})

    def _wrap(self, row: Any, presented: str = ACCESS) -> IssuedToken | None:
        return None if row is None else IssuedToken(row, self.clock(), self.load_user, self.load_client, presented,
                                                    self.within_timeouts)

    def find(self, value: str, hint: str | None = None) -> IssuedToken | None:
        """The token ``value`` whatever its kind, the hinted kind looked up first (RFC 7009 and RFC
        7662 section 2.1: the hint only speeds the search up; an unknown hint is ignored)."""
        kinds = (REFRESH, ACCESS) if hint == REFRESH else (ACCESS, REFRESH)
        digest = token_hash(value)
        with self.engine.connect() as conn:
            for kind in kinds:
                row = conn.execute(_BY_KIND[kind], {"h": digest}).first()
                if row is not None:
                    return self._wrap(row, kind)
        return None

    def revoke(self, token: IssuedToken) -> int:
        """RFC 7009 section 2.1: a refresh token ends every token of its grant (its family); an
        access token only itself. The number of access tokens revoked."""
        if token.presented == REFRESH:
            return self.revoke_family(token.family)
        with self.engine.begin() as conn:
            return int(conn.execute(update(OAuthToken).where(OAuthToken.id == token.id, OAuthToken.access_revoked.is_(False))
                                    .values(access_revoked=True)).rowcount or 0)

    def by_access_token(self, value: str) -> IssuedToken | None:
        with self.engine.connect() as conn:
            return self._wrap(conn.execute(_BY_ACCESS, {"h": token_hash(value)}).first())

    def service_token(self, value: str) -> ServiceToken | None:
        """The service account behind a bearer access token (RFC 6750 section 2.1), read now: None
        when unknown, expired, revoked, not a service's or its account was removed."""
        with self.engine.connect() as conn:
            row = conn.execute(_SERVICE, {"h": token_hash(value)}).first()
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
            return self._wrap(conn.execute(_BY_REFRESH, {"h": token_hash(value)}).first(), REFRESH)

    def spend_refresh_token(self, token_id: int) -> bool:
        """Mark a refresh token used; False if it already was (a concurrent or repeated use)."""
        with self.engine.begin() as conn:
            return bool(conn.execute(_SPEND, {"token": token_id, "now": self.clock()}).rowcount == 1)

    def revoke_family(self, family: str) -> int:
        """End every access and refresh token of a family; the number of tokens touched."""
        with self.engine.begin() as conn:
            access = conn.execute(update(OAuthToken).where(OAuthToken.family == family, OAuthToken.access_revoked.is_(False))
                                  .values(access_revoked=True)).rowcount
            conn.execute(update(OAuthToken).where(OAuthToken.family == family, OAuthToken.refresh_used_at.is_(None))
                         .values(refresh_used_at=self.clock()))
            return int(access or 0)

    def revoke_user(self, uid: str) -> int:
        """End every token of a staff member (a leaver, log out everywhere), offline grants' too."""
        with self.engine.begin() as conn:
            return revoke_user_tokens(conn, uid, self.clock())


def end_session_tokens(conn: Connection, sids: list[str], now: datetime.datetime) -> int:
    """The sessions ``sids`` ended (logout, timeout, help desk, leaver), in the caller's transaction:
    every access token issued in them is revoked, and every refresh token but an offline grant's
    (OIDC Core 11: ``offline_access`` outlives the session). The number of access tokens revoked."""
    if not sids:
        return 0
    in_them = OAuthToken.sid.in_(sids)
    revoked = conn.execute(update(OAuthToken).where(in_them, OAuthToken.access_revoked.is_(False))
                           .values(access_revoked=True)).rowcount
    conn.execute(update(OAuthToken).where(in_them, OAuthToken.offline.is_(False), OAuthToken.refresh_used_at.is_(None))
                 .values(refresh_used_at=now))
    return int(revoked or 0)


def revoke_user_tokens(conn: Connection, uid: str, now: datetime.datetime) -> int:
    """End every access and refresh token of ``uid``, offline grants' included, in the caller's
    transaction; the number of access tokens revoked."""
    revoked = conn.execute(update(OAuthToken).where(OAuthToken.uid == uid, OAuthToken.access_revoked.is_(False))
                           .values(access_revoked=True)).rowcount
    conn.execute(update(OAuthToken).where(OAuthToken.uid == uid, OAuthToken.refresh_used_at.is_(None))
                 .values(refresh_used_at=now))
    return int(revoked or 0)
