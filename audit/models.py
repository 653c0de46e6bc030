"""Tables of the audit trail, on :class:`store.base.Base` (one metadata for the whole schema).

``audit_entry`` and ``audit_checkpoint`` are append-only: migration 0004 puts triggers on them
that refuse UPDATE and DELETE (and, on PostgreSQL, a role with SELECT/INSERT only). The single
``audit_head`` row is the chain's write lock and its last link: every append updates it first, so
appends from several processes queue on that row and never fork the chain.
"""

from __future__ import annotations

import datetime

from sqlalchemy import BigInteger, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from store.base import Base
from store.types import UtcDateTime


class AuditEntry(Base):
    """One security event, chained to the one before it by ``prev_hash`` (see audit.chain)."""

    __tablename__ = "audit_entry"

    #: gapless, from 1: taken from the head row inside the appending transaction
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime.datetime] = mapped_column(UtcDateTime(), index=True)
    event_type: Mapped[str] = mapped_column(String(64), index=True)
    subject: Mapped[str] = mapped_column(String(255), index=True)
    subject_role: Mapped[str | None] = mapped_column(String(64))
    object: Mapped[str | None] = mapped_column(String(255))
    result: Mapped[str] = mapped_column(String(16))
    source_address: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(64))
    #: canonical JSON text (sorted keys, no spaces), hashed exactly as stored; never secrets
    details: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The one row (id 1) naming the newest entry: the appenders' lock and the chain's tip."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    entry_hash: Mapped[str] = mapped_column(String(64))


class AuditCheckpoint(Base):
    """A signed, time-stamped statement "the trail had ``seq`` entries ending in ``entry_hash``".

    ``signature`` is a CMS SignedData (RFC 5652) by the audit key over the statement
    (audit.chain.checkpoint_statement); ``timestamp_token`` an RFC 3161 TimeStampToken whose
    message imprint is the SHA-256 of ``signature``.
    """

    __tablename__ = "audit_checkpoint"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    #: the ``seq`` of the checkpoint before it (0 for the first): a deleted checkpoint is noticed
    previous_seq: Mapped[int] = mapped_column(BigInteger)
    entry_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime.datetime] = mapped_column(UtcDateTime())
    signature: Mapped[bytes] = mapped_column(LargeBinary)
    signer_certificate: Mapped[bytes] = mapped_column(LargeBinary)
    timestamp_token: Mapped[bytes] = mapped_column(LargeBinary)


class AuditCheckpointSchedule(Base):
    """The one row (id 1) electing who makes the next time-based checkpoint: a process claims the
    round with ``UPDATE ... SET due_at = <next> WHERE id = 1 AND due_at <= <now>``; the one whose
    update changed the row makes it (audit.checkpoint_schedule)."""

    __tablename__ = "audit_checkpoint_schedule"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    due_at: Mapped[datetime.datetime] = mapped_column(UtcDateTime())
    holder: Mapped[str | None] = mapped_column(String(255))


__all__ = ["AuditCheckpoint", "AuditCheckpointSchedule", "AuditEntry", "AuditHead", "Base"]
