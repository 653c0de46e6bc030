"""Tables of citizen login and the verification API (on :class:`store.base.Base`; migration 0005).

* ``citizen_login_nonce``: the challenges issued to browsers for card login. Only the SHA-256 of
  the nonce and of the browser session's binding value are stored; a nonce is deleted when used
  (single use), and expires after five minutes.
* ``verification_log``: which service verified which citizen's card or certificate, when, how,
  with which outcome: the citizen portal shows it to the citizen. The audit trail (event type
  ``api.verify``) records the same calls, hash-chained.
* ``api_rate_bucket`` (migration 0015): the verification API's token bucket of each service, one
  for the whole deployment; workers lease tokens from it in chunks
  (:mod:`idp.verification_api.rate_limit`).
"""

from __future__ import annotations

import datetime

from sqlalchemy import Float, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from store.base import Base
from store.types import UtcDateTime

__all__ = ["ApiRateBucket", "Base", "CitizenLoginNonce", "VerificationLog"]


class CitizenLoginNonce(Base):
    """A card-login challenge: single use, bound to one browser session, short-lived."""

    __tablename__ = "citizen_login_nonce"
    __table_args__ = (Index("ix_citizen_login_nonce_expires", "expires_at"),)

    nonce_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    binding_hash: Mapped[str] = mapped_column(String(64))
    issued_at: Mapped[datetime.datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime.datetime] = mapped_column(UtcDateTime())


class VerificationLog(Base):
    """One verification by a service (what the citizen portal lists as "who checked my card")."""

    __tablename__ = "verification_log"
    __table_args__ = (Index("ix_verification_log_citizen", "national_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime.datetime] = mapped_column(UtcDateTime())
    service: Mapped[str] = mapped_column(String(255))
    operation: Mapped[str] = mapped_column(String(32))
    national_id: Mapped[str | None] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(255))
    certificate_serial: Mapped[str | None] = mapped_column(String(40))
    outcome: Mapped[str] = mapped_column(String(16))


class ApiRateBucket(Base):
    """A service's token bucket, shared by every worker of every node: its tokens after the last
    lease, that lease's size (0: refused) and when it was refilled, in seconds since the epoch on
    the database's clock (one clock for all nodes). The key is the SHA-256 of the service's rate
    key (``client:<id>`` or ``certificate:<name>``), so its length is bounded."""

    __tablename__ = "api_rate_bucket"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float)
    granted: Mapped[float] = mapped_column(Float)
    refilled_at: Mapped[float] = mapped_column(Float)
