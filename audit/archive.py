"""Audit retention: the oldest entries, with the checkpoints that sign them, moved to a file.

The Cybersecurity Law of the PRC (article 21) and GB/T 22239-2019 (level 3, security audit) ask
that audit records be kept at least six months; kept longer in the database they only slow it.
:func:`archive_entries` moves the entries made before a date, up to the newest checkpoint among
them, to an archive file, and refuses a date less than :data:`RETENTION` (180 days) ago.

The archive is JSON lines (RFC 8259, one object a line), self-contained:

- ``{"v": "tessera-audit-archive-v1", "first_seq", "last_seq", "prev_hash", "last_hash", "entries",
  "checkpoints", "before", "created", "staff_ca": [PEM, ...]}``: the range, the hash the first entry
  is chained to (audit.chain.GENESIS for entry 1, else the last hash of the archive before), and
  the staff CA chain the checkpoints' signers were issued under;
- ``{"entry": {seq, time, type, subject, subject_role, object, result, source_address, request_id,
  details, prev_hash, entry_hash}}`` per entry, ``details`` as the stored (hashed) text;
- ``{"checkpoint": {id, seq, previous_seq, entry_hash, created_at, signature, signer_certificate,
  timestamp_token}}`` per checkpoint (binary values base64), the last one signing ``last_seq``.

So the archive verifies alone (the chain recomputed from ``prev_hash``, each checkpoint's CMS
signature and RFC 3161 token: audit.verification.verify_archive), and its junction with what
stays: the move is itself an entry, ``audit.archive`` (range, last hash, the file's SHA-256),
written in the transaction that deletes the archived rows, and the database's chain goes on from
that last hash. `tessera audit verify --archive FILE ...` checks the archives and every junction
end to end; without them it names the archived range as not checked.

Deleting rows of the trail needs the append-only triggers out of the way for the length of that
transaction (migration 0004): on SQLite they are dropped and made again in it; on PostgreSQL they
are disabled and enabled in it, which only the tables' owner may do (run the command with the
owner's TESSERA_DATABASE_URL, docs/audit.md).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import Connection, delete, func, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from audit import chain
from audit.errors import AuditError
from audit.models import AuditCheckpoint, AuditEntry
from audit.trail import AuditEvent, AuditTrail

VERSION = "tessera-audit-archive-v1"
#: the youngest entries that may leave the database: six months and more (Cybersecurity Law, article 21)
RETENTION = datetime.timedelta(days=180)
EVENT = "audit.archive"
_APPEND_ONLY = ("audit_entry", "audit_checkpoint")


class ArchiveRefused(AuditError):
    """Nothing was archived: the date is too recent, nothing is old enough, or the rows cannot be moved."""

    kind = "audit-archive-refused"


class ArchiveInvalid(AuditError):
    """The file is not an audit archive (``str()`` says where it stops being one)."""

    kind = "audit-archive-invalid"


@dataclass(frozen=True)
class ArchivedRange:
    """What the newest ``audit.archive`` entry says left the database: entries ``first_seq`` to
    ``last_seq``, the last hashing to ``last_hash``, in a file with SHA-256 ``sha256``."""

    first_seq: int
    last_seq: int
    last_hash: str
    sha256: str
    file: str
    at: str


@dataclass
class AuditArchive:
    """An archive file read back: its header and its rows, as the verifier takes them."""

    path: Path
    header: dict[str, Any]
    #: (seq, at as naive UTC datetime, type, subject, role, object, result, source, request id, details, prev, hash)
    entries: list[tuple[Any, ...]] = field(default_factory=list)
    #: (id, seq, previous_seq, entry_hash, created_at, signature, signer_certificate, timestamp_token)
    checkpoints: list[tuple[Any, ...]] = field(default_factory=list)
    sha256: str = ""

    @property
    def first_seq(self) -> int:
        return int(self.header["first_seq"])

    @property
    def last_seq(self) -> int:
        return int(self.header["last_seq"])

    @property
    def prev_hash(self) -> str:
        return str(self.header["prev_hash"])

    @property
    def last_hash(self) -> str:
        return str(self.header["last_hash"])

    def staff_ca(self) -> list[x509.Certificate]:
        return [x509.load_pem_x509_certificate(pem.encode()) for pem in self.header.get("staff_ca", [])]


def _time(value: datetime.datetime) -> str:
    return chain.canonical_time(value)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def archived_range(connection: Connection) -> ArchivedRange | None:
    """The range the newest successful ``audit.archive`` entry moved out (None: nothing archived)."""
    try:
        row = connection.execute(select(AuditEntry.details, AuditEntry.at)
                                 .where(AuditEntry.event_type == EVENT, AuditEntry.result == "success")
                                 .order_by(AuditEntry.seq.desc()).limit(1)).first()
        if row is None:
            return None
        details = json.loads(row[0])
        return ArchivedRange(int(details["first_seq"]), int(details["last_seq"]), str(details["last_hash"]),
                             str(details["sha256"]), str(details["file"]), _time(row[1]))
    except (ValueError, KeyError, TypeError):
        return None


def _cutoff(session: Session, before: datetime.datetime) -> tuple[int, int] | None:
    """(first seq still in the database, last seq to archive: the newest checkpoint whose entries
    are all older than ``before``, but not the newest of all), or None when nothing is old enough."""
    first = session.scalar(select(func.min(AuditEntry.seq)))
    if first is None:
        return None
    young = session.scalar(select(func.min(AuditEntry.seq)).where(AuditEntry.at >= before))
    limit = (young - 1) if young is not None else session.scalar(select(func.max(AuditEntry.seq)))
    # never the newest checkpoint: the checkpointer goes on from it (and the witness names it)
    newest = session.scalar(select(func.max(AuditCheckpoint.seq)))
    if newest is None:
        return None
    last = session.scalar(select(func.max(AuditCheckpoint.seq)).where(
        AuditCheckpoint.seq <= limit, AuditCheckpoint.seq >= first, AuditCheckpoint.seq < newest))
    return (int(first), int(last)) if last is not None else None


def _lines(session: Session, first: int, last: int, header: dict[str, Any]) -> Iterator[str]:
    yield json.dumps(header, sort_keys=True, ensure_ascii=False)
    columns = [c for c in AuditEntry.__table__.columns]
    rows = session.execute(select(*columns).where(AuditEntry.seq.between(first, last)).order_by(AuditEntry.seq),
                           execution_options={"yield_per": 5000, "stream_results": True})
    for row in rows:
        values = dict(zip([c.name for c in columns], row, strict=True))
        entry = {"seq": values["seq"], "time": _time(values["at"]), "type": values["event_type"],
                 "subject": values["subject"], "subject_role": values["subject_role"], "object": values["object"],
                 "result": values["result"], "source_address": values["source_address"],
                 "request_id": values["request_id"], "details": values["details"], "prev_hash": values["prev_hash"],
                 "entry_hash": values["entry_hash"]}
        yield json.dumps({"entry": entry}, sort_keys=True, ensure_ascii=False)
    for cp in session.scalars(select(AuditCheckpoint).where(AuditCheckpoint.seq.between(first, last))
                              .order_by(AuditCheckpoint.seq)):
        yield json.dumps({"checkpoint": {
            "id": cp.id, "seq": cp.seq, "previous_seq": cp.previous_seq, "entry_hash": cp.entry_hash,
            "created_at": _time(cp.created_at), "signature": _b64(cp.signature),
            "signer_certificate": _b64(cp.signer_certificate), "timestamp_token": _b64(cp.timestamp_token)}},
            sort_keys=True)


def archive_entries(trail: AuditTrail, staff_ca: list[x509.Certificate], before: datetime.datetime, out: Path,
                    actor: str, now: datetime.datetime) -> ArchivedRange:
    """Move the entries older than ``before`` (up to the newest checkpoint among them) with their
    checkpoints to ``out`` (which must not exist), then record ``audit.archive`` in the transaction
    that deletes them. Refuses (:class:`ArchiveRefused`) a ``before`` less than :data:`RETENTION` ago."""
    if before > now - RETENTION:
        raise ArchiveRefused(f"entries younger than {RETENTION.days} days stay in the database: --before must be "
                             f"{(now - RETENTION):%Y-%m-%d} or earlier")
    if out.exists():
        raise ArchiveRefused(f"{out} exists: an archive is never overwritten")
    sessions: sessionmaker[Session] = trail.sessions
    with sessions() as session:
        cut = _cutoff(session, before)
        if cut is None:
            raise ArchiveRefused(f"no checkpoint covers entries made before {before:%Y-%m-%d}: nothing to archive")
        first, last = cut
        prev_hash = session.scalar(select(AuditEntry.prev_hash).where(AuditEntry.seq == first))
        last_hash = session.scalar(select(AuditEntry.entry_hash).where(AuditEntry.seq == last))
        count = last - first + 1
        checkpoints = session.scalar(select(func.count()).select_from(AuditCheckpoint)
                                     .where(AuditCheckpoint.seq.between(first, last)))
        header = {"v": VERSION, "first_seq": first, "last_seq": last, "prev_hash": prev_hash, "last_hash": last_hash,
                  "entries": count, "checkpoints": checkpoints, "before": _time(before), "created": _time(now),
                  "staff_ca": [c.public_bytes(Encoding.PEM).decode() for c in staff_ca]}
        partial = out.with_name(out.name + ".partial")
        digest = hashlib.sha256()
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                for line in _lines(session, first, last, header):
                    data = line + "\n"
                    digest.update(data.encode())
                    fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(partial, out)
        finally:
            partial.unlink(missing_ok=True)
    archived = ArchivedRange(first, last, str(last_hash), digest.hexdigest(), out.name, _time(now))
    try:
        with sessions.begin() as session:
            if session.scalar(select(AuditEntry.entry_hash).where(AuditEntry.seq == last)) != last_hash:
                raise ArchiveRefused(f"entry {last} changed while it was archived: run `tessera audit verify`")
            with _append_only_lifted(session.connection()):
                session.execute(delete(AuditCheckpoint).where(AuditCheckpoint.seq <= last))
                session.execute(delete(AuditEntry).where(AuditEntry.seq <= last))
            trail.append(session, AuditEvent(EVENT, actor, "success", subject_role="operator", object=out.name[:255],
                                             source_address="local",
                                             details={"first_seq": first, "last_seq": last, "last_hash": last_hash,
                                                      "sha256": archived.sha256, "file": out.name[:200],
                                                      "entries": count, "before": _time(before)}))
    except SQLAlchemyError as exc:
        raise ArchiveRefused(f"the archived entries could not be removed from the database "
                             f"({type(getattr(exc, 'orig', None) or exc).__name__}): the archive {out} was written, "
                             "the database is unchanged") from None
    return archived


class _append_only_lifted:  # noqa: N801 (a context manager used as a statement)
    """The append-only triggers off for the length of the caller's transaction (see the module docstring)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.saved: list[str] = []

    def __enter__(self) -> None:
        if self.connection.dialect.name == "sqlite":
            rows = self.connection.execute(text(
                "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND name IN "
                "('audit_entry_no_delete', 'audit_checkpoint_no_delete')")).all()
            for name, sql in rows:
                self.saved.append(sql)
                self.connection.execute(text(f'DROP TRIGGER "{name}"'))
        else:
            for table in _APPEND_ONLY:
                self.connection.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER {table}_append_only"))

    def __exit__(self, *_exc: object) -> None:
        if self.connection.dialect.name == "sqlite":
            for sql in self.saved:
                self.connection.execute(text(sql))
        else:
            for table in _APPEND_ONLY:
                self.connection.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER {table}_append_only"))


def read_archive(path: Path) -> AuditArchive:
    """Parse an archive file (:class:`ArchiveInvalid` when it is not one); the verifier checks it."""
    digest = hashlib.sha256()
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise ArchiveInvalid(f"{path}: {exc.strerror or exc}") from None
    with fh:
        archive: AuditArchive | None = None
        for number, raw in enumerate(fh, 1):
            digest.update(raw)
            try:
                item = json.loads(raw)
                if archive is None:
                    if not isinstance(item, dict) or item.get("v") != VERSION:
                        raise ValueError(f"not a {VERSION} file")
                    for name in ("first_seq", "last_seq", "entries", "checkpoints"):
                        if type(item.get(name)) is not int:
                            raise ValueError(f"{name} is not a whole number")
                    archive = AuditArchive(path, item)
                elif "entry" in item:
                    e = item["entry"]
                    at = datetime.datetime.strptime(e["time"], "%Y-%m-%dT%H:%M:%S.%fZ")
                    archive.entries.append((e["seq"], at, e["type"], e["subject"], e["subject_role"], e["object"],
                                            e["result"], e["source_address"], e["request_id"], e["details"],
                                            e["prev_hash"], e["entry_hash"]))
                elif "checkpoint" in item:
                    c = item["checkpoint"]
                    created = datetime.datetime.strptime(c["created_at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
                        tzinfo=datetime.timezone.utc)
                    archive.checkpoints.append((c["id"], c["seq"], c["previous_seq"], c["entry_hash"], created,
                                                base64.b64decode(c["signature"]),
                                                base64.b64decode(c["signer_certificate"]),
                                                base64.b64decode(c["timestamp_token"])))
                else:
                    raise ValueError("neither an entry nor a checkpoint")
            except (ValueError, KeyError, TypeError) as exc:
                raise ArchiveInvalid(f"{path}, line {number}: {exc}") from None
    if archive is None:
        raise ArchiveInvalid(f"{path} is empty")
    archive.sha256 = digest.hexdigest()
    return archive
