"""Tables of governance: account applications and their approvals, four-eyes requests, the
hashed password history of the password policy, and the command line's operator tokens.

On :class:`store.base.Base` (one metadata); created by migrations 0006 and 0009. The directory stays the
source of truth for who exists and which groups (roles) they hold: these tables record the
workflow around it (who applied, who approved, who issued) and never hold a password in clear.
"""

from __future__ import annotations

import datetime
from enum import StrEnum

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from store.base import Base
from store.types import UtcDateTime

__all__ = ["AccountApplication", "ApplicationStatus", "FourEyesRequest", "FourEyesStatus", "OperatorToken",
           "PasswordHistory"]

#: kinds of application: a new account, or new privileges after a change of post
APPLICATION_KINDS = ("new-account", "change-of-post")


class ApplicationStatus(StrEnum):
    """The state of an account application (:attr:`AccountApplication.status`; the same strings in the
    database and in JSON): applied -> approved -> issued; or rejected / cancelled."""

    APPLIED = "applied"
    APPROVED = "approved"
    REJECTED = "rejected"
    ISSUED = "issued"
    CANCELLED = "cancelled"


class FourEyesStatus(StrEnum):
    """The state of a four-eyes request (:attr:`FourEyesRequest.status`): pending -> executed (approved
    by a second administrator and run) or rejected."""

    PENDING = "pending"
    EXECUTED = "executed"
    REJECTED = "rejected"
    FAILED = "failed"


class AccountApplication(Base):
    """A department's application for a staff account (or for a new post's privileges)."""

    __tablename__ = "gov_account_application"
    __table_args__ = (Index("ix_gov_application_state", "status", "department"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    uid: Mapped[str] = mapped_column(String(128), index=True)
    given_name: Mapped[str] = mapped_column(String(128))
    surname: Mapped[str] = mapped_column(String(128))
    department: Mapped[str] = mapped_column(String(64))
    post: Mapped[str] = mapped_column(String(128))
    #: non-administrative groups the post needs (JSON list, e.g. ["approvers"])
    groups_json: Mapped[str] = mapped_column(Text, default="[]")
    #: the post before a change of post (its privileges are removed when the change is applied for)
    previous_post: Mapped[str | None] = mapped_column(String(128))
    #: an :class:`ApplicationStatus`
    status: Mapped[str] = mapped_column(String(16), default=ApplicationStatus.APPLIED)
    applied_by: Mapped[str] = mapped_column(String(128))
    applied_at: Mapped[datetime.datetime] = mapped_column(UtcDateTime())
    decided_by: Mapped[str | None] = mapped_column(String(128))
    decided_at: Mapped[datetime.datetime | None] = mapped_column(UtcDateTime())
    issued_by: Mapped[str | None] = mapped_column(String(128))
    issued_at: Mapped[datetime.datetime | None] = mapped_column(UtcDateTime())
    note: Mapped[str | None] = mapped_column(String(500))


class FourEyesRequest(Base):
    """A grave operation asked for by one administrator, run only when a second one approves."""

    __tablename__ = "gov_four_eyes_request"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: "add-administrator", "remove-administrator" or "revoke-issuing-ca"
    operation: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(255))  # "staff:<uid>" or "ca:<name>"
    details_json: Mapped[str] = mapped_column(Text, default="{}")
    #: a :class:`FourEyesStatus`
    status: Mapped[str] = mapped_column(String(16), default=FourEyesStatus.PENDING)
    requested_by: Mapped[str] = mapped_column(String(128))
    requested_at: Mapped[datetime.datetime] = mapped_column(UtcDateTime())
    decided_by: Mapped[str | None] = mapped_column(String(128))
    decided_at: Mapped[datetime.datetime | None] = mapped_column(UtcDateTime())
    outcome: Mapped[str | None] = mapped_column(String(500))


class PasswordHistory(Base):
    """An earlier password of a staff member as an argon2id hash (no reuse of recent passwords)."""

    __tablename__ = "gov_password_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uid: Mapped[str] = mapped_column(String(128), index=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime.datetime] = mapped_column(UtcDateTime())


class OperatorToken(Base):
    """A staff member's proof, for the command line, that they logged in with password and TOTP.

    Only the SHA-256 of the token is kept (the token itself is 256 random bits held by the
    operator); it names one staff member, ends at ``expires_at`` or when revoked (``tessera admin
    logout``), whichever comes first.
    """

    __tablename__ = "gov_operator_token"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    uid: Mapped[str] = mapped_column(String(128), index=True)
    issued_at: Mapped[datetime.datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime.datetime] = mapped_column(UtcDateTime())
    revoked_at: Mapped[datetime.datetime | None] = mapped_column(UtcDateTime())
    #: where the login happened: "cli:<operating system user>"
    channel: Mapped[str] = mapped_column(String(128))
