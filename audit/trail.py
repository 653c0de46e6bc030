"""Appending to the audit trail: one hash-chained entry per security event.

:meth:`AuditTrail.append` writes inside the caller's SQLAlchemy transaction, so a business
operation and its audit entry commit together or not at all: if the entry cannot be written the
exception leaves the caller's ``with sessions.begin()`` and the operation rolls back.
:meth:`AuditTrail.record` is for events with no transaction of their own (a failed login).

Concurrency: the first statement of an append inside a transaction is ``UPDATE audit_head SET
seq = seq + 1 ... RETURNING``. On PostgreSQL that takes the head row's lock until commit; on
SQLite the first write takes the database's write lock. Appenders from any number of processes
therefore queue, each sees the previous one's committed tip, and the sequence stays gapless (a
rolled-back append rolls back its head update too).

On SQLite, :meth:`AuditTrail.record` (an entry in a transaction of its own) does not hold the
database's only write lock across several statements: it reads the head, chains the entry to it
outside any lock, and inserts it with one compare-and-set statement, committed at once, that adds
the row only while the head is still the entry it was chained to (migration 0008's trigger then
moves the head); if another appender won, it reads the head again. The lock is held for that
statement and its commit only, not while the entry is hashed (docs/audit.md).
"""

from __future__ import annotations

import datetime
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from sqlalchemy import event as sa_event
from sqlalchemy import Engine, Table, bindparam, column, insert, select, table, update
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

_HEAD = cast(Table, AuditHead.__table__)
_ENTRIES = cast(Table, AuditEntry.__table__)
#: built once: statement construction costs more than the statements themselves
_ADVANCE = (update(_HEAD).where(_HEAD.c.id == 1).values(seq=_HEAD.c.seq + 1)
            .returning(_HEAD.c.seq, _HEAD.c.entry_hash))
_INSERT = insert(_ENTRIES)
_MOVE_TIP = update(_HEAD).where(_HEAD.c.id == 1).values(entry_hash=bindparam("tip"))
#: PostgreSQL: insert and move the tip in one round trip (a data-modifying CTE)
_INSERTED = (insert(_ENTRIES)
             .values({c.name: bindparam("new_" + c.name, type_=c.type) for c in _ENTRIES.columns})
             .returning(_ENTRIES.c.entry_hash).cte("inserted"))
_INSERT_AND_MOVE = (update(_HEAD).where(_HEAD.c.id == 1)
                    .values(entry_hash=select(_INSERTED.c.entry_hash).scalar_subquery()))
_ENTRY_COLUMNS = [c.name for c in AuditEntry.__table__.columns]


def _cause(exc: SQLAlchemyError) -> str:
    """The driver's exception name behind ``exc`` (what the operator looks up), else SQLAlchemy's."""
    return type(getattr(exc, "orig", None) or exc).__name__
#: SQLite, migration 0008: the trigger that moves the head to each inserted entry
HEAD_TRIGGER = "audit_entry_moves_head"
#: SQLite's catalogue (https://sqlite.org/schematab.html): is that trigger there?
_SQLITE_SCHEMA = table("sqlite_master", column("type"), column("name"))
_TRIGGER_EXISTS = select(_SQLITE_SCHEMA.c.name).where(_SQLITE_SCHEMA.c.type == "trigger",
                                                     _SQLITE_SCHEMA.c.name == bindparam("n"))
_READ_HEAD = select(_HEAD.c.seq, _HEAD.c.entry_hash).where(_HEAD.c.id == 1)
#: the compare-and-set append: the row goes in only while the head is still (seq - 1, prev_hash)
_SET_IF_HEAD = insert(AuditEntry).from_select(
    _ENTRY_COLUMNS,
    select(*(bindparam("new_" + c.name, type_=c.type) for c in AuditEntry.__table__.columns))
    .where(_HEAD.c.id == 1, _HEAD.c.seq == bindparam("prev_seq"), _HEAD.c.entry_hash == bindparam("prev_hash")))
#: compare-and-set attempts before record() takes the head's lock instead (each lost attempt means
#: another entry went in meanwhile)
_CAS_ATTEMPTS = 8


class AppendedEntry(NamedTuple):
    """An entry as appended: the columns of :class:`audit.models.AuditEntry` (a plain value: building
    an ORM instance cost a login's two entries about as much as hashing and inserting them)."""

    seq: int
    at: datetime.datetime
    event_type: str
    subject: str
    subject_role: str | None
    object: str | None
    result: str
    source_address: str | None
    request_id: str | None
    details: str
    prev_hash: str
    entry_hash: str


assert list(AppendedEntry._fields) == _ENTRY_COLUMNS, "AppendedEntry must follow audit_entry's columns"


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
    #: ``details`` as stored and hashed (audit.chain.canonical_details), computed once when checked
    canonical_details: str = field(init=False, repr=False, compare=False, default="")

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
        object.__setattr__(self, "canonical_details", text)


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
        self._trigger: bool | None = None
        self._recording_refusal = False
        if checkpointer is not None:
            checkpointer.on_refusal = self._record_refusal

    def append(self, session: Session, event: AuditEvent) -> AppendedEntry:
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
            entry = self._chained(event, int(row[0]), str(row[1]))
            values = entry._asdict()
            if connection.dialect.name == "postgresql":
                connection.execute(_INSERT_AND_MOVE, {"new_" + k: v for k, v in values.items()})
            else:
                connection.execute(_INSERT, values)
                if not self._head_follows_entries():
                    connection.execute(_MOVE_TIP, {"tip": entry.entry_hash})
        except SQLAlchemyError as exc:
            raise AuditUnavailable(f"the audit trail cannot be written: {_cause(exc)}") from exc
        if self.checkpointer is not None and entry.seq % self.checkpoint_every == 0:
            sa_event.listen(session, "after_commit", lambda _s: self._checkpoint_after_commit(), once=True)
        return entry

    def record(self, event: AuditEvent) -> AppendedEntry:
        """Append ``event`` in a transaction of its own (for events with no business transaction)."""
        entry = self._compare_and_set(event) if self._head_follows_entries() else None
        if entry is None:
            with self.sessions.begin() as session:
                return self.append(session, event)
        if self.checkpointer is not None and entry.seq % self.checkpoint_every == 0:
            self._checkpoint_after_commit()
        return entry

    def _chained(self, event: AuditEvent, seq: int, prev_hash: str) -> AppendedEntry:
        """``event`` as entry ``seq`` chained to ``prev_hash`` (audit.chain)."""
        at = self.clock()
        details = event.canonical_details
        canonical = chain.canonical_bytes(seq, chain.canonical_time(at), event.type, event.subject,
                                          event.subject_role, event.object, event.result,
                                          event.source_address, event.request_id, details)
        return AppendedEntry(seq, at, event.type, event.subject, event.subject_role, event.object, event.result,
                             event.source_address, event.request_id, details, prev_hash,
                             chain.entry_hash(prev_hash, canonical))

    def _head_follows_entries(self) -> bool:
        """SQLite with migration 0008's trigger (looked up once): the database moves the head."""
        follows = self._trigger
        if follows is None:
            engine: Engine = self.sessions.kw["bind"]
            follows = False
            if engine.dialect.name == "sqlite":
                with engine.connect() as conn:
                    follows = conn.execute(_TRIGGER_EXISTS, {"n": HEAD_TRIGGER}).first() is not None
            self._trigger = follows
        return follows

    def _compare_and_set(self, event: AuditEvent) -> AppendedEntry | None:
        """SQLite: the entry appended by one statement in a transaction of its own; None when other
        appenders kept winning (the caller then takes the head's lock)."""
        engine: Engine = self.sessions.kw["bind"]
        try:
            for _ in range(_CAS_ATTEMPTS):
                with engine.connect() as conn:
                    head = conn.execute(_READ_HEAD).first()
                if head is None:
                    raise AuditUnavailable("the audit trail is not initialised (no chain head): run the migrations")
                prev_seq, prev_hash = int(head[0]), str(head[1])
                entry = self._chained(event, prev_seq + 1, prev_hash)
                values = {"new_" + k: v for k, v in entry._asdict().items()}
                with engine.begin() as conn:
                    if conn.execute(_SET_IF_HEAD, {**values, "prev_seq": prev_seq, "prev_hash": prev_hash}).rowcount == 1:
                        return entry
        except SQLAlchemyError as exc:  # the database refused the row (a constraint, a full disk) or is gone
            raise AuditUnavailable(f"the audit trail cannot be written: {_cause(exc)}") from exc
        return None

    def head(self) -> tuple[int, str]:
        """(sequence number, hash) of the newest committed entry; (0, GENESIS) when empty."""
        with self.sessions() as session:
            row = session.execute(select(AuditHead.seq, AuditHead.entry_hash).where(AuditHead.id == 1)).one_or_none()
        if row is None:
            raise AuditUnavailable("the audit trail is not initialised (no chain head): run the migrations")
        return int(row[0]), str(row[1])

    def _record_refusal(self, refused: Exception) -> None:
        """A refused checkpoint is itself an audit event (``audit.checkpoint``, result ``refused``)."""
        if self._recording_refusal:  # the refusal's own entry may trigger an automatic checkpoint
            return
        self._recording_refusal = True
        try:
            self.record(AuditEvent("audit.checkpoint", "service:audit-checkpointer", "refused", subject_role="service",
                                   object="audit:trail", details={"finding": getattr(refused, "finding", ""),
                                                                  "reason": getattr(refused, "reason", str(refused))[:1000]}))
        except Exception:  # noqa: BLE001  (the refusal is raised and logged whatever happens here)
            log.exception("the refused audit checkpoint could not be recorded")
        finally:
            self._recording_refusal = False

    def _checkpoint_after_commit(self) -> None:
        # The entry is committed already; a failed checkpoint must not undo it. The next
        # automatic or on-demand checkpoint covers these entries too.
        assert self.checkpointer is not None
        try:
            self.checkpointer.checkpoint()
        except Exception:  # noqa: BLE001  (logged loudly; verification reports missing checkpoints)
            log.exception("automatic audit checkpoint failed")
