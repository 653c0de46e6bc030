"""Appending to the audit trail: one hash-chained entry per security event.

:meth:`AuditTrail.append` writes inside the caller's SQLAlchemy transaction, so a business
operation and its audit entry commit together or not at all: if the entry cannot be written the
exception leaves the caller's ``with sessions.begin()`` and the operation rolls back.
:meth:`AuditTrail.record` is for events with no transaction of their own (a failed login).

Concurrency: the first statement of an append is ``UPDATE audit_head SET seq = seq + 1 ...
RETURNING``. On PostgreSQL that takes the head row's lock until commit; on SQLite the first write
takes the database's write lock. Appenders from any number of processes therefore queue, each sees
the previous one's committed tip, and the sequence stays gapless (a rolled-back append rolls back
its head update too).
"""

from __future__ import annotations

import datetime
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import event as sa_event
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from audit import chain
from audit.errors import AuditEventInvalid, AuditUnavailable
from audit.models import AuditEntry, AuditHead

if TYPE_CHECKING:
    from audit.checkpoints import Checkpointer

log = logging.getLogger("tessera.audit")

RESULTS = ("success", "failure", "refused")
_TYPE = re.compile(r"^[a-z][a-z0-9_-]*(\.[a-z0-9_*-]+)*$")
#: detail keys that would hold a secret; such events are refused, never stored
_SECRET_KEYS = frozenset({"password", "passwd", "pin", "puk", "secret", "otp", "code", "totp", "token",
                          "access_token", "refresh_token", "id_token", "private_key", "passphrase", "key",
                          "client_secret", "cookie", "session", "session_id", "authorization"})
_SECRET_SUFFIXES = ("_password", "_pin", "_puk", "_secret", "_passphrase", "_private_key", "_cookie")
MAX_DETAILS_BYTES = 4096

_HEAD = AuditHead.__table__
#: built once: statement construction costs more than the statements themselves
_ADVANCE = (update(_HEAD).where(_HEAD.c.id == 1).values(seq=_HEAD.c.seq + 1)
            .returning(_HEAD.c.seq, _HEAD.c.entry_hash))
_INSERT = insert(AuditEntry.__table__)
_MOVE_TIP = update(_HEAD).where(_HEAD.c.id == 1).values(entry_hash=bindparam("tip"))
#: PostgreSQL: insert and move the tip in one round trip (a data-modifying CTE)
_INSERTED = (insert(AuditEntry.__table__)
             .values({c.name: bindparam("new_" + c.name, type_=c.type) for c in AuditEntry.__table__.columns})
             .returning(AuditEntry.__table__.c.entry_hash).cte("inserted"))
_INSERT_AND_MOVE = (update(_HEAD).where(_HEAD.c.id == 1)
                    .values(entry_hash=select(_INSERTED.c.entry_hash).scalar_subquery()))


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _check_details(details: Mapping[str, Any], path: str = "") -> None:
    for key, value in details.items():
        if not isinstance(key, str):
            raise AuditEventInvalid("audit details keys must be strings")
        lowered = key.lower()
        if lowered in _SECRET_KEYS or lowered.endswith(_SECRET_SUFFIXES):
            raise AuditEventInvalid(f"audit details may not carry a secret-like field {path + key!r}")
        if isinstance(value, Mapping):
            _check_details(value, f"{path}{key}.")


@dataclass(frozen=True)
class AuditEvent:
    """Who (``subject`` with ``subject_role``) did what (``type``) on what (``object``), with which result."""

    type: str
    subject: str
    result: str
    subject_role: str | None = None
    object: str | None = None
    source_address: str | None = None
    request_id: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.type, str) or len(self.type) > 64 or not _TYPE.match(self.type):
            raise AuditEventInvalid(f"audit event type {self.type!r} is not a dotted lower-case name (e.g. login.password)")
        if not isinstance(self.subject, str) or not self.subject or len(self.subject) > 255:
            raise AuditEventInvalid("an audit event needs a subject of 1 to 255 characters")
        if self.result not in RESULTS:
            raise AuditEventInvalid(f"audit result must be one of {', '.join(RESULTS)}, not {self.result!r}")
        for name, limit in (("subject_role", 64), ("object", 255), ("source_address", 64), ("request_id", 64)):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or len(value) > limit):
                raise AuditEventInvalid(f"audit field {name} must be text of at most {limit} characters")
        if not isinstance(self.details, Mapping):
            raise AuditEventInvalid("audit details must be a JSON object")
        _check_details(self.details)
        try:
            text = chain.canonical_details(dict(self.details))
        except (TypeError, ValueError):
            raise AuditEventInvalid("audit details must be JSON (strings, numbers, booleans, lists, objects)") from None
        if len(text.encode()) > MAX_DETAILS_BYTES:
            raise AuditEventInvalid(f"audit details are limited to {MAX_DETAILS_BYTES} bytes")


class AuditTrail:
    """Appends entries to the chain; optionally has a checkpoint made every ``checkpoint_every`` entries."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Callable[[], datetime.datetime] = utc_now,
        checkpointer: "Checkpointer | None" = None,
        checkpoint_every: int = 1000,
    ) -> None:
        if checkpoint_every < 1:
            raise ValueError("checkpoint_every must be at least 1")
        self.sessions = sessions
        self.clock = clock
        self.checkpointer = checkpointer
        self.checkpoint_every = checkpoint_every

    def append(self, session: Session, event: AuditEvent) -> AuditEntry:
        """Write ``event`` as the next entry inside ``session``'s transaction (commits with it).

        Raises :class:`AuditUnavailable` when the trail cannot be written; the caller's
        transaction is then unusable and must roll back, taking the audited action with it.
        """
        try:
            # Core statements on the session's connection (same transaction): the ORM layer would
            # cost more than the statements themselves on this hot path
            connection = session.connection()
            row = connection.execute(_ADVANCE).one_or_none()
            if row is None:
                raise AuditUnavailable("the audit trail is not initialised (no chain head): run the migrations")
            seq, prev_hash = int(row[0]), str(row[1])
            at = self.clock()
            details = chain.canonical_details(dict(event.details))
            canonical = chain.canonical_bytes(seq, chain.canonical_time(at), event.type, event.subject,
                                              event.subject_role, event.object, event.result,
                                              event.source_address, event.request_id, details)
            digest = chain.entry_hash(prev_hash, canonical)
            values = dict(seq=seq, at=at, event_type=event.type, subject=event.subject,
                          subject_role=event.subject_role, object=event.object, result=event.result,
                          source_address=event.source_address, request_id=event.request_id, details=details,
                          prev_hash=prev_hash, entry_hash=digest)
            if connection.dialect.name == "postgresql":
                connection.execute(_INSERT_AND_MOVE, {"new_" + k: v for k, v in values.items()})
            else:
                connection.execute(_INSERT, values)
                connection.execute(_MOVE_TIP, {"tip": digest})
        except SQLAlchemyError as exc:
            raise AuditUnavailable(f"the audit trail cannot be written: {type(exc.orig or exc).__name__}") from exc
        if self.checkpointer is not None and seq % self.checkpoint_every == 0:
            sa_event.listen(session, "after_commit", lambda _s: self._checkpoint_after_commit(), once=True)
        return AuditEntry(**values)

    def record(self, event: AuditEvent) -> AuditEntry:
        """Append ``event`` in a transaction of its own (for events with no business transaction)."""
        with self.sessions.begin() as session:
            return self.append(session, event)

    def head(self) -> tuple[int, str]:
        """(sequence number, hash) of the newest committed entry; (0, GENESIS) when empty."""
        with self.sessions() as session:
            row = session.execute(select(AuditHead.seq, AuditHead.entry_hash).where(AuditHead.id == 1)).one_or_none()
        if row is None:
            raise AuditUnavailable("the audit trail is not initialised (no chain head): run the migrations")
        return int(row[0]), str(row[1])

    def _checkpoint_after_commit(self) -> None:
        # The entry is committed already; a failed checkpoint must not undo it. The next
        # automatic or on-demand checkpoint covers these entries too.
        assert self.checkpointer is not None
        try:
            self.checkpointer.checkpoint()
        except Exception:  # noqa: BLE001  (logged loudly; verification reports missing checkpoints)
            log.exception("automatic audit checkpoint failed")
