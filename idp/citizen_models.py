"""Tables of citizen login and the verification API (on :class:`store.base.Base`; migration 0005).

* ``citizen_login_nonce``: the challenges issued to browsers for card login. Only the SHA-256 of
  the nonce and of the browser session's binding value are stored; a nonce is deleted when used
  (single use), and expires after five minutes.
* ``verification_log``: which service verified which citizen's card or certificate, when, how,
  with which outcome: the citizen portal shows it to the citizen. The audit trail (event type
  ``api.verify``) records the same calls, hash-chained.
"""

from __future__ import annotations

import datetime

from sqlalchemy import Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from store.base import Base
from store.types import UtcDateTime

__all__ = ["Base", "CitizenLoginNonce", "VerificationLog"]


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
