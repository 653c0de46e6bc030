"""Access and refresh tokens (RFC 6749 sections 1.4, 1.5, 6) as stored by the provider.

Tokens are stored as SHA-256 hashes. Every token belongs to a *family*: the tokens descending from
one authorization code. Refresh tokens rotate (each use returns a new one and spends the old);
presenting a spent refresh token again is reuse, the sign of a stolen token, and ends the whole
family (RFC 9700 section 4.14.2). A code presented twice ends its family too (RFC 6749 4.1.2).
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Callable
from typing import Any

from authlib.oauth2.rfc6749 import TokenMixin
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from idp.models import OAuthToken

ACCESS_TOKEN_SECONDS = 900
REFRESH_TOKEN_LIFETIME = datetime.timedelta(hours=12)


def token_hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class IssuedToken(TokenMixin):  # type: ignore[misc]
    """A stored token as Authlib's grants and resource protector see it."""

    def __init__(self, row: OAuthToken, now: datetime.datetime, load_user: Callable[[str], Any],
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
        self.access_revoked = row.access_revoked
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


class TokenStore:
    def __init__(self, sessions: sessionmaker[Session], clock: Callable[[], datetime.datetime],
                 load_user: Callable[[str], Any], load_client: Callable[[str], Any]) -> None:
        self.sessions = sessions
        self.clock = clock
        self.load_user = load_user
        self.load_client = load_client

    def save(self, token: dict[str, Any], client_id: str, uid: str, family: str, auth_time: int, amr: str) -> None:
        now = self.clock()
        refresh = token.get("refresh_token")
        with self.sessions.begin() as session:
            session.add(OAuthToken(
                client_id=client_id, uid=uid, family=family, access_token_hash=token_hash(token["access_token"]),
                refresh_token_hash=token_hash(refresh) if refresh else None, scope=token.get("scope", ""),
                auth_time=auth_time, amr=amr, issued_at=now, expires_in=int(token.get("expires_in", ACCESS_TOKEN_SECONDS)),
                refresh_expires_at=now + REFRESH_TOKEN_LIFETIME if refresh else None, access_revoked=False))

    def _wrap(self, row: OAuthToken | None) -> IssuedToken | None:
        return None if row is None else IssuedToken(row, self.clock(), self.load_user, self.load_client)

    def by_access_token(self, value: str) -> IssuedToken | None:
        with self.sessions() as session:
            return self._wrap(session.scalar(select(OAuthToken).where(OAuthToken.access_token_hash == token_hash(value))))

    def by_refresh_token(self, value: str) -> IssuedToken | None:
        with self.sessions() as session:
            return self._wrap(session.scalar(select(OAuthToken).where(OAuthToken.refresh_token_hash == token_hash(value))))

    def spend_refresh_token(self, token_id: int) -> bool:
        """Mark a refresh token used; False if it already was (a concurrent or repeated use)."""
        with self.sessions.begin() as session:
            return bool(session.execute(update(OAuthToken).where(OAuthToken.id == token_id, OAuthToken.refresh_used_at.is_(None))
                                        .values(refresh_used_at=self.clock())).rowcount == 1)

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
