"""Tables of the identity provider (directory-backed staff, sessions, OpenID Connect).

Every table uses :class:`store.base.Base`, so one metadata describes the whole schema; every change
is an Alembic migration (store/migrations/versions/0002_identity_provider.py).

Secrets are never stored in clear: TOTP secrets and signing keys are sealed (AES-GCM, see
:mod:`idp.secretbox`); session ids, authorization codes, access and refresh tokens, client secrets
and recovery codes are stored as hashes.
"""

from __future__ import annotations

import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, LargeBinary, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from store.base import Base
from store.types import UtcDateTime

__all__ = [
    "Base", "StaffAccount", "RecoveryCode", "WebSession", "LoginThrottle", "OAuthClient", "AuthorizationCode",
    "OAuthToken", "SigningKey", "Consent", "ClientAssertionJti",
]


class StaffAccount(Base):
    """What the IdP keeps about a directory user: the second factor and the last seen claims."""

    __tablename__ = "idp_staff_account"

    uid: Mapped[str] = mapped_column(String(128), primary_key=True)
    #: the directory entry's claims at the last login (JSON), for userinfo and certificates
    claims_json: Mapped[str] = mapped_column(Text, default="{}")
    totp_secret_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    totp_pending_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    totp_enrolled_at: Mapped[datetime.datetime | None] = mapped_column(UtcDateTime())
    #: the RFC 6238 time step of the last accepted code: a code is accepted once only
    totp_last_step: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime.datetime] = mapped_column(UtcDateTime())


class RecoveryCode(Base):
    """A one-time recovery code (argon2 hash), used instead of a TOTP code when the phone is lost."""

    __tablename__ = "idp_recovery_code"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uid: Mapped[str] = mapped_column(ForeignKey("idp_staff_account.uid", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(255))
    used_at: Mapped[datetime.datetime | None] = mapped_column(UtcDateTime())


class WebSession(Base):
    """A server-side browser session; the cookie holds a random id, the row its SHA-256."""

    __tablename__ = "idp_web_session"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    uid: Mapped[str | None] = mapped_column(String(128), index=True)
    data_json: Mapped[str] = mapped_column(Text, default="{}")
    created_at: Mapped[datetime.datetime] = mapped_column(UtcDateTime())
    last_seen_at: Mapped[datetime.datetime] = mapped_column(UtcDateTime(), index=True)
    address: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(255))
    #: the session as OpenID Connect names it (``sid``): random, not a credential, kept when the
    #: cookie's id rotates; the codes and tokens issued in the session carry it and end with it
    sid: Mapped[str | None] = mapped_column(String(64), index=True)


class LoginThrottle(Base):
    """Failed login attempts per account (``account:<uid>``) or per address (``address:<ip>``)."""

    __tablename__ = "idp_login_throttle"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    window_start: Mapped[datetime.datetime] = mapped_column(UtcDateTime())
    blocked_until: Mapped[datetime.datetime | None] = mapped_column(UtcDateTime())


class OAuthClient(Base):
    """A registered relying party (OIDC Registration metadata, stored as JSON)."""

    __tablename__ = "idp_oauth_client"

    client_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    secret_hash: Mapped[str | None] = mapped_column(String(255))
    metadata_json: Mapped[str] = mapped_column(Text)
    #: first-party applications of the deployment: no consent screen
    trusted: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime.datetime] = mapped_column(UtcDateTime())


class AuthorizationCode(Base):
    """An authorization code (RFC 6749 section 4.1.2): single use, short-lived, stored hashed."""

    __tablename__ = "idp_authorization_code"
    __table_args__ = (Index("ix_idp_authorization_code_nonce", "client_id", "nonce"),
                      Index("ix_idp_authorization_code_expires_at", "expires_at"))

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("idp_oauth_client.client_id", ondelete="CASCADE"))
    uid: Mapped[str] = mapped_column(String(128), index=True)
    redirect_uri: Mapped[str] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(Text)
    nonce: Mapped[str | None] = mapped_column(String(255))
    code_challenge: Mapped[str | None] = mapped_column(String(128))
    code_challenge_method: Mapped[str | None] = mapped_column(String(16))
    auth_time: Mapped[int] = mapped_column(Integer)
    acr: Mapped[str | None] = mapped_column(String(64))
    amr: Mapped[str] = mapped_column(String(64))
    #: the browser session it was issued in (:attr:`WebSession.sid`): its tokens end with that session
    sid: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime.datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime.datetime] = mapped_column(UtcDateTime())
    used_at: Mapped[datetime.datetime | None] = mapped_column(UtcDateTime())
    #: the token family issued from this code: revoked if the code is presented again
    family: Mapped[str | None] = mapped_column(String(64))


class OAuthToken(Base):
    """An access token and its refresh token (hashes). One ``family`` per authorization code:
    refresh rotation keeps the family, and a rotated refresh token presented again ends it."""

    __tablename__ = "idp_oauth_token"
    __table_args__ = (Index("ix_idp_oauth_token_family", "family"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("idp_oauth_client.client_id", ondelete="CASCADE"))
    uid: Mapped[str] = mapped_column(String(128), index=True)
    family: Mapped[str] = mapped_column(String(64))
    access_token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    refresh_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    scope: Mapped[str] = mapped_column(Text)
    auth_time: Mapped[int] = mapped_column(Integer)
    amr: Mapped[str] = mapped_column(String(64))
    issued_at: Mapped[datetime.datetime] = mapped_column(UtcDateTime())
    expires_in: Mapped[int] = mapped_column(Integer)
    refresh_expires_at: Mapped[datetime.datetime | None] = mapped_column(UtcDateTime())
    access_revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    #: set when the refresh token was rotated (used) or revoked
    refresh_used_at: Mapped[datetime.datetime | None] = mapped_column(UtcDateTime())
    #: the browser session the grant was given in (:attr:`WebSession.sid`); None for service
    #: accounts, and for an offline grant refreshed after its session ended
    sid: Mapped[str | None] = mapped_column(String(64), index=True)
    #: granted ``offline_access`` (OIDC Core 11): the refresh token outlives the session
    offline: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class SigningKey(Base):
    """An id_token signing key (JWK). Retired keys stay published until their tokens expired."""

    __tablename__ = "idp_signing_key"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(String(16))
    private_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    public_jwk_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime.datetime] = mapped_column(UtcDateTime())
    retired_at: Mapped[datetime.datetime | None] = mapped_column(UtcDateTime())


class Consent(Base):
    """A staff member's consent to release claims of a scope to a client."""

    __tablename__ = "idp_consent"

    uid: Mapped[str] = mapped_column(String(128), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("idp_oauth_client.client_id", ondelete="CASCADE"),
                                           primary_key=True)
    scope: Mapped[str] = mapped_column(Text)
    granted_at: Mapped[datetime.datetime] = mapped_column(UtcDateTime())


class ClientAssertionJti(Base):
    """jti of private_key_jwt client assertions seen (RFC 7523 section 3): each accepted once."""

    __tablename__ = "idp_client_assertion_jti"

    jti: Mapped[str] = mapped_column(String(255), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    expires_at: Mapped[datetime.datetime] = mapped_column(UtcDateTime(), index=True)
