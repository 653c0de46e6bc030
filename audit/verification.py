"""Verifying the trail: recompute the chain, check every checkpoint, name every tampered entry.

One pass over the entries in ``seq`` order (streamed rows, no ORM objects). For each entry the
hash is recomputed from its content (audit.chain) and compared with the stored one, and its
``prev_hash`` with the stored hash of the entry before it. What the tamperer did is read from the
pattern of failures:

- **changed**: the content no longer matches the entry's hash (or its hash was recomputed and the
  next entry still links to the old one);
- **deleted**: a gap in the sequence, or entries renumbered to close the gap (their hashes match
  their original numbers);
- **inserted**: an entry the chain skips (the entry after it links to the one before it), or
  entries beyond the head row;
- **swapped / reordered**: entries whose hashes match another position's number;
- **truncated**: a checkpoint or the head names entries the trail no longer has.

Each checkpoint's CMS signature (RFC 5652 section 5.6) by the audit key and its RFC 3161 token
(section 2.4.2, imprint = SHA-256 of the signature) are checked against the staff CA, and the
entry it covers must still carry the signed hash: a chain recomputed end to end is caught there.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker
from store.engine import read_snapshot

from audit import chain
from audit.archive import ArchivedRange, ArchiveInvalid, AuditArchive, archived_range, read_archive
from audit.chain import CHECKPOINT_CONTENT_TYPE
from audit.models import AuditHead
from audit.witness import (CrlLine, PublishedHistory, Revocation, WitnessLine, WitnessMalformed, authority_key_id,
                           crl_number_floor, read_records, recent_records)
from ca.models import Authority, Certificate, CertificateStatus
from verification import cms
from verification.reasons import Reason
from verification.signatures import directly_issued_by

_MAX_OFFSET = 4  # how far a moved entry's original number is searched
_TIMESTAMP_SLACK = datetime.timedelta(minutes=10)


#: the name each kind of finding is reported by
_CODES = {"changed": "entry-changed", "deleted": "entry-deleted", "inserted": "entry-inserted",
          "swapped": "entry-swapped", "reordered": "entry-reordered", "truncated": "trail-truncated",
          "malformed": "entry-malformed", "checkpoint": "checkpoint-invalid", "witness": "witness-invalid",
          "gap": "audit-gap", "published": "published-state", "archive": "archive-invalid"}


@dataclass(frozen=True)
class Problem:
    """One finding: its kind, the entry it concerns (``None`` for the trail as a whole) and why.

    ``code`` is the finding's name (``entry-changed``, ``trail-truncated``, ``checkpoint-missing``,
    ``witness-forged`` ...); ``line`` the witness file's line for witness findings."""

    kind: str  # changed, deleted, inserted, swapped, reordered, truncated, malformed, checkpoint, witness, gap,
    #            published (the CA's published state: CRL numbers and revocations, against the witness)
    seq: int | None
    message: str
    code: str = ""
    line: int | None = None

    def __post_init__(self) -> None:
        if not self.code:
            object.__setattr__(self, "code", _CODES.get(self.kind, self.kind))

    def __str__(self) -> str:
        if self.code == "trail-truncated" and self.seq is not None:
            return f"{self.code} after seq={self.seq - 1}: {self.message}"
        if self.seq is not None:
            return f"{self.code} seq={self.seq}: {self.message}"
        if self.line is not None:
            return f"{self.code} line={self.line}: {self.message}"
        return f"{self.code}: {self.message}"

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "code": self.code, "seq": self.seq, "line": self.line, "message": self.message}


@dataclass
class VerificationReport:
    entries: int = 0
    last_seq: int = 0
    head_seq: int = 0
    checkpoints: int = 0
    last_checkpoint_seq: int | None = None
    seconds: float = 0.0
    problems: list[Problem] = field(default_factory=list)
    #: entries up to this seq left the database for archives (audit.archive); None: none did
    archived_through: int | None = None
    #: what was not checked, and why (no finding: e.g. archived entries whose archive was not given)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, object]:
        return {"ok": self.ok, "entries": self.entries, "last_seq": self.last_seq, "head_seq": self.head_seq,
                "checkpoints": self.checkpoints, "last_checkpoint_seq": self.last_checkpoint_seq,
                "archived_through": self.archived_through, "notes": self.notes,
                "seconds": round(self.seconds, 3), "problems": [p.as_dict() for p in self.problems]}


_SELECT = ("SELECT seq, at, event_type, subject, subject_role, object, result, source_address, request_id, "
           "details, prev_hash, entry_hash FROM audit_entry ORDER BY seq")
_SELECT_HEAD = "SELECT seq, entry_hash FROM audit_head WHERE id = 1"
_SELECT_CHECKPOINTS = ("SELECT id, seq, previous_seq, entry_hash, created_at, signature, signer_certificate, "
                       "timestamp_token FROM audit_checkpoint ORDER BY seq")
_SELECT_AFTER = text(_SELECT.replace("ORDER BY", "WHERE seq > :start ORDER BY"))


def _driver_time(at: object) -> str:
    """The canonical time from what the driver returns: SQLAlchemy's SQLite text
    ``YYYY-MM-DD HH:MM:SS.ffffff`` or a naive UTC datetime (PostgreSQL)."""
    if isinstance(at, str):
        if len(at) == 26 and at[10] == " ":
            return at[:10] + "T" + at[11:] + "Z"
        return at  # not as written: the hash check fails and names the entry
    if isinstance(at, datetime.datetime):
        return at.isoformat(timespec="microseconds") + "Z" if at.tzinfo is None else chain.canonical_time(at)
    return str(at)


def _checkpoint_time(value: object) -> object:
    """A checkpoint's stored time as an aware UTC datetime (the driver's value as is when it is not one)."""
    try:
        if isinstance(value, str):
            value = datetime.datetime.fromisoformat(value)
    except ValueError:
        return value
    if isinstance(value, datetime.datetime):
        return value.replace(tzinfo=datetime.timezone.utc) if value.tzinfo is None else value
    return value


def _whole(value: object) -> int | None:
    """``value`` as a whole number if it is one (a tampered row may hold anything)."""
    return value if type(value) is int else None


def verify(sessions: sessionmaker[Session], anchors: Sequence[x509.Certificate] = (),
           progress: Callable[[int], None] | None = None, batch: int = 20_000,
           witness: Path | None = None, archives: Sequence[Path] = ()) -> VerificationReport:
    """Verify the whole trail. ``anchors``: trusted root certificates held outside the database
    (default: trust the staff CA certificate stored in it). ``progress`` gets entry counts.
    ``witness``: the append-only witness file (audit.witness) to compare the database with.
    ``archives``: archive files of entries that left the database (audit.archive), each checked
    alone and at its junctions with the others and the database.
    Never raises on a malformed row: each is a finding."""
    started = time.perf_counter()
    report = VerificationReport()
    records = list(read_records(witness)) if witness is not None and witness.exists() else []
    witnessed = [(n, r) for n, r in records if not isinstance(r, CrlLine)]
    with sessions() as session:
        # one snapshot (the head and the entries as of one moment, appends go on meanwhile);
        # driver values, no type processing: a tampered column may hold anything
        connection = read_snapshot(session).execution_options(stream_results=True, yield_per=batch)
        with _tolerant_text(connection):
            archived = archived_range(connection)
            start_seq, start_hash = (archived.last_seq, archived.last_hash) if archived else (0, chain.GENESIS)
            head = connection.exec_driver_sql(_SELECT_HEAD).first()
            checkpoints = [(*r[:4], _checkpoint_time(r[4]), *r[5:]) for r in connection.exec_driver_sql(_SELECT_CHECKPOINTS)]
            staff = connection.execute(select(Authority.certificate_der).where(Authority.name == "staff")).scalar()
            wanted = {n for n in (_whole(c[1]) for c in checkpoints) if n is not None}
            wanted.update(line.seq for _, line in witnessed if isinstance(line, WitnessLine))
            rows = connection.exec_driver_sql(_SELECT)
            walk = _walk(_plain(rows, progress, batch), wanted, start_seq, start_hash)
        report.problems.extend(walk.problems)
        report.entries, report.last_seq = walk.count, walk.last_seq
    if head is None:
        report.problems.append(Problem("truncated", None, "the chain head row is missing"))
    elif _whole(head[0]) is None or not _is_hash(head[1]):
        report.problems.append(Problem("malformed", None, "the chain head row is malformed "
                                       "(its seq is not a whole number or its hash not 64 hex digits)",
                                       code="head-malformed"))
    else:
        report.head_seq = int(head[0])
        report.problems.extend(_check_head(int(head[0]), str(head[1]), walk))
    report.checkpoints = len(checkpoints)
    report.last_checkpoint_seq = _whole(checkpoints[-1][1]) if checkpoints else None
    try:
        staff_cert = x509.load_der_x509_certificate(staff) if staff is not None else None
    except (ValueError, TypeError):
        staff_cert = None
    authentic: dict[int, str] = {}
    report.problems.extend(p for p in _check_checkpoints(checkpoints, walk, staff_cert, list(anchors), authentic)
                           if not (archived and p.code == "checkpoint-missing" and (p.seq or 0) <= archived.last_seq))
    if archived is not None:
        report.archived_through = archived.last_seq
        if not archives:
            report.notes.append(f"entries {archived.first_seq} to {archived.last_seq} (and any before) were archived "
                                f"on {archived.at[:10]} to {archived.file} (SHA-256 {archived.sha256}): not checked "
                                "here (give --archive)")
    all_checkpoints = list(checkpoints)
    if archives:
        found = _check_archives([Path(a) for a in archives], archived, walk, staff_cert, list(anchors), wanted,
                                authentic)
        report.problems.extend(found.problems)
        report.notes.extend(found.notes)
        all_checkpoints = found.checkpoints + all_checkpoints
    if witness is not None:
        report.problems.extend(_check_witness(witnessed, all_checkpoints, authentic, walk, staff_cert,
                                              archived.last_seq if archived else 0))
        with sessions() as session:
            report.problems.extend(compare_published(session, PublishedHistory.of(records)).problems())
    report.problems = _distinct(report.problems)
    report.problems.sort(key=lambda p: (p.seq if p.seq is not None else -1, p.line or 0, p.kind))
    report.seconds = time.perf_counter() - started
    return report


def _distinct(problems: list[Problem]) -> list[Problem]:
    """One finding per (name, seq): the witness and the database's own checkpoints may both see it."""
    seen: set[tuple[str, int | None, int | None]] = set()
    out = []
    for p in problems:
        key = (p.code, p.seq, p.line)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


@contextlib.contextmanager
def _tolerant_text(connection: Any) -> Iterator[None]:
    """SQLite: text that is not UTF-8 is read with surrogate escapes (it then fails its hash and is
    named) instead of stopping the driver."""
    raw = connection.connection.dbapi_connection if connection.dialect.name == "sqlite" else None
    if raw is None:
        yield
        return
    before = raw.text_factory
    raw.text_factory = lambda b: b.decode("utf-8", "surrogateescape")
    try:
        yield
    finally:
        raw.text_factory = before


def _plain(rows: Any, progress: Callable[[int], None] | None, batch: int) -> Iterable[Sequence[Any]]:
    """Rows a batch at a time (fetchmany), reporting progress per batch."""
    for chunk in rows.partitions(batch):
        yield from chunk
        if progress is not None:
            progress(len(chunk))


class _Flagged:
    """Entry numbers already named in a finding: single numbers and whole gaps. A gap is kept as a
    range, never expanded: a tampered ``seq`` of 2**63 - 1 must not become 2**63 set members."""

    def __init__(self) -> None:
        self._single: set[int] = set()
        self._gaps: list[range] = []

    def add(self, seq: int) -> None:
        self._single.add(seq)

    def add_gap(self, first: int, stop: int) -> None:
        """Numbers ``first`` up to ``stop`` - 1 (the missing entries of a jump in the sequence)."""
        if stop > first:
            self._gaps.append(range(first, stop))

    def __contains__(self, seq: object) -> bool:
        return seq in self._single or any(seq in gap for gap in self._gaps)

    def any_between(self, low: int, high: int) -> bool:
        """Whether a number ``low`` < n <= ``high`` is flagged."""
        return any(low < s <= high for s in self._single) or \
            any(gap.start <= high and gap.stop - 1 > low for gap in self._gaps)


@dataclass
class _Walk:
    count: int = 0
    last_seq: int = 0
    last_hash: str = chain.GENESIS
    problems: list[Problem] = field(default_factory=list)
    flagged: _Flagged = field(default_factory=_Flagged)
    #: stored hash of the entries checkpoints cover
    covered: dict[int, str] = field(default_factory=dict)
    #: (position, original seq) of entries whose hash matches another number
    moved: list[tuple[int, int]] = field(default_factory=list)


def check_extension(connection: Any, start_seq: int, start_hash: str, head_seq: int, head_hash: str) -> list[Problem]:
    """Findings in the entries after ``start_seq`` (whose hash is ``start_hash``) up to the head row
    (``head_seq``, ``head_hash``): the chain a checkpointer is about to sign must be unbroken."""
    streamed = connection.execution_options(stream_results=True, yield_per=20_000)
    with _tolerant_text(streamed):
        rows = streamed.execute(_SELECT_AFTER, {"start": start_seq})
        walk = _walk(_plain(rows, None, 20_000), set(), start_seq, start_hash)
    return _distinct(walk.problems + _check_head(head_seq, head_hash, walk))


def _walk(rows: Iterable[Sequence[Any]], wanted: set[int], start_seq: int = 0, start_hash: str = chain.GENESIS) -> _Walk:
    w = _Walk()
    sha256, fromhex, dumps, version = hashlib.sha256, bytes.fromhex, chain._dumps, chain.VERSION
    to_text, naive_datetime = _driver_time, datetime.datetime
    expected = start_seq + 1
    prev_seq, prev_hash_stored, prev2_hash_stored = start_seq, start_hash, None
    prev_moved = False
    problems, flagged = w.problems, w.flagged
    for row in rows:
        w.count += 1
        try:
            seq, at, event_type, subject, role, obj, result, source, request_id, details, prev_hash, stored = row
            kind = type(at)
            if kind is str and len(at) == 26:
                t = at[:10] + "T" + at[11:] + "Z"
            elif kind is naive_datetime and at.tzinfo is None:
                t = at.isoformat(timespec="microseconds") + "Z"
            else:
                t = to_text(at)
            ok = sha256(fromhex(prev_hash) + dumps([version, seq, t, event_type, subject, role, obj, result, source,
                                                    request_id, details]).encode()).hexdigest() == stored
            if type(seq) is not int:
                raise TypeError("seq")
        except (TypeError, ValueError, AttributeError, UnicodeError, OverflowError):
            seq = _whole(row[0])
            problems.append(Problem("malformed", seq, _malformed(row) or "the row cannot be read"))
            if seq is not None:
                flagged.add(seq)
                if seq in wanted:
                    w.covered[seq] = row[11] if _is_hash(row[11]) else "malformed"
                expected, prev_seq = seq + 1, seq
            prev2_hash_stored, prev_hash_stored, prev_moved = prev_hash_stored, row[11], True
            continue
        gap = seq != expected
        if gap:
            missing = f"entry {expected} is" if seq - expected == 1 else f"entries {expected} to {seq - 1} are"
            problems.append(Problem("deleted", expected, f"{missing} missing (the sequence jumps "
                                                         f"from {prev_seq} to {seq})"))
            flagged.add_gap(expected, seq)
        moved = False
        if not ok:
            reason = _malformed(row)
            original = None if reason else _original_number(seq, t, event_type, subject, role, obj, result, source,
                                                            request_id, details, prev_hash, stored)
            if reason:
                problems.append(Problem("malformed", seq, reason))
            elif original is not None:
                w.moved.append((seq, original))
                moved = True
            else:
                problems.append(Problem("changed", seq, "its content no longer matches its hash"))
            flagged.add(seq)
        if prev_hash != prev_hash_stored and not gap:
            if prev2_hash_stored is not None and prev_hash == prev2_hash_stored and not prev_moved:
                if prev_seq not in flagged or not any(p.seq == prev_seq and p.kind == "inserted" for p in problems[-3:]):
                    problems.append(Problem("inserted", prev_seq, f"not part of the chain: entry {seq} is chained "
                                                                   "directly to the entry before it"))
                flagged.add(prev_seq)
            elif prev_seq not in flagged and seq not in flagged and not moved:
                problems.append(Problem("changed", prev_seq, "rewritten with a recomputed hash: entry "
                                                             f"{seq} was chained to different content"))
                flagged.add(prev_seq)
        if seq in wanted:
            w.covered[seq] = stored
        prev2_hash_stored, prev_hash_stored, prev_seq, prev_moved = prev_hash_stored, stored, seq, moved
        expected = seq + 1
    w.last_seq, w.last_hash = prev_seq, prev_hash_stored if isinstance(prev_hash_stored, str) else ""
    w.problems.extend(_explain_moves(w.moved))
    return w


_HEX = frozenset("0123456789abcdef")
_TEXT_COLUMNS = (("event_type", True), ("subject", True), ("subject_role", False), ("object", False),
                 ("result", True), ("source_address", False), ("request_id", False))


def _is_hash(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX


def _malformed(row: Sequence[Any]) -> str | None:
    """What is wrong with a row's form (None when each column has the form the trail writes)."""
    if len(row) != 12:
        return "the row does not have the trail's columns"
    seq, at = row[0], row[1]
    if type(seq) is not int:
        return f"seq is {'NULL' if seq is None else 'not a whole number'}"
    if at is None:
        return "at is NULL"
    if not isinstance(at, (str, datetime.datetime)) or (isinstance(at, str) and len(at) != 26):
        return "at is not a time as the trail writes it"
    for (name, required), value in zip(_TEXT_COLUMNS, row[2:9], strict=True):
        if value is None and required:
            return f"{name} is NULL"
        if value is not None and not isinstance(value, str):
            return f"{name} is not text"
    details = row[9]
    if details is None:
        return "details is NULL"
    try:
        parsed = json.loads(details) if isinstance(details, str) and len(details) <= 65536 else None
    except (ValueError, RecursionError):
        parsed = None
    if not isinstance(parsed, dict):
        return "details is not a JSON object"
    for name, value in (("prev_hash", row[10]), ("entry_hash", row[11])):
        if value is None:
            return f"{name} is NULL"
        if not _is_hash(value):
            return f"{name} is not 64 lower-case hex digits"
    for value in row[2:10]:
        if isinstance(value, str):
            try:
                value.encode()
            except UnicodeError:
                return "a text column is not UTF-8"
    return None


def _original_number(seq: int, t: str, *rest: object) -> int | None:
    """The sequence number this entry's hash was made with, if it is near ``seq`` (moved entries)."""
    *fields, prev_hash, stored = rest
    for offset in range(1, _MAX_OFFSET + 1):
        for candidate in (seq + offset, seq - offset):
            if candidate < 1:
                continue
            canonical = chain.canonical_bytes(candidate, t, *fields)  # type: ignore[arg-type]
            if chain.entry_hash(str(prev_hash), canonical) == stored:
                return candidate
    return None


def _explain_moves(moved: list[tuple[int, int]]) -> list[Problem]:
    problems: list[Problem] = []
    where = dict(moved)
    done: set[int] = set()
    runs: list[tuple[int, int, int]] = []  # (first position, last position, original - position)
    for position, original in moved:
        if position in done:
            continue
        if where.get(original) == position:
            problems.append(Problem("swapped", min(position, original),
                                    f"entries {min(position, original)} and {max(position, original)} exchanged places"))
            done.update((position, original))
            continue
        delta = original - position
        if runs and runs[-1][2] == delta and runs[-1][1] == position - 1:
            runs[-1] = (runs[-1][0], position, delta)
        else:
            runs.append((position, position, delta))
        done.add(position)
    for first, last, delta in runs:
        span = f"entries {first} to {last}" if last > first else f"entry {first}"
        if last > first and delta > 0:
            gone = f"{first}" if delta == 1 else f"{first} to {first + delta - 1}"
            problems.append(Problem("deleted", first, f"{span} were renumbered down by {delta} to hide the "
                                                      f"deletion of original entries {gone}"))
        elif last > first and delta < 0:
            problems.append(Problem("inserted", first + delta, f"{span} were renumbered up by {-delta} to make "
                                                               "room for inserted entries"))
        else:
            problems.append(Problem("reordered", first, f"{span} hold original entry {first + delta} "
                                                        f"(moved from position {first + delta})"))
    return problems


def _check_head(head_seq: int, head_hash: str, w: _Walk) -> list[Problem]:
    if head_seq > w.last_seq:
        gone = f"entry {w.last_seq + 1} is" if head_seq == w.last_seq + 1 else f"entries {w.last_seq + 1} to {head_seq} are"
        return [Problem("truncated", w.last_seq + 1, f"the tail was cut: {gone} missing "
                                                     f"(the chain head records {head_seq})")]
    if head_seq < w.last_seq:
        extra = f"entry {head_seq + 1} was" if w.last_seq == head_seq + 1 else f"entries {head_seq + 1} to {w.last_seq} were"
        return [Problem("inserted", head_seq + 1, f"{extra} added outside the trail "
                                                  f"(the chain head records {head_seq})")]
    if head_hash != w.last_hash and head_seq not in w.flagged:
        return [Problem("changed", head_seq, "the last entry's hash differs from the chain head's")]
    return []


# -- checkpoints ---------------------------------------------------------------------------
def _check_checkpoints(rows: list, w: _Walk, staff: x509.Certificate | None,
                       anchors: list[x509.Certificate], authentic: dict[int, str] | None = None) -> list[Problem]:
    """Each checkpoint's signature and time-stamp, and the entry it covers; ``authentic`` gets
    seq -> SHA-256 of the signature of every checkpoint that proved authentic."""
    problems: list[Problem] = []
    if staff is None:
        return [Problem("checkpoint", None, "the staff CA certificate is missing or unreadable: checkpoints "
                        "cannot be checked")] if rows else []
    if anchors and not any(_issued_by(staff, a) or staff == a for a in anchors):
        return [Problem("checkpoint", None, "the staff CA stored in the database does not chain to the given anchor")]
    last_good = 0
    present = {n for n in (_whole(r[1]) for r in rows) if n is not None}
    for cid, seq, previous, entry_hash, created_at, signature, signer_der, token in rows:
        if _whole(seq) is None or _whole(previous) is None or not _is_hash(entry_hash) or \
                not isinstance(created_at, datetime.datetime) or \
                not all(isinstance(v, bytes) for v in (signature, signer_der, token)):
            problems.append(Problem("checkpoint", _whole(seq), f"checkpoint #{cid} is malformed (a column is NULL or "
                                    "of the wrong type)", code="checkpoint-malformed"))
            continue
        try:
            reason = _checkpoint_signature_problem(seq, previous, entry_hash, created_at, signature, signer_der,
                                                   token, staff)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            reason = f"unreadable ({type(exc).__name__})"
        if reason is not None:
            problems.append(Problem("checkpoint", seq, f"checkpoint #{cid} is not authentic: {reason}"))
            continue
        if authentic is not None:
            authentic[seq] = hashlib.sha256(signature).hexdigest()
        if previous and previous not in present:
            problems.append(Problem("checkpoint", previous, f"the checkpoint of entries up to {previous} was "
                                    f"deleted (checkpoint #{cid} names it as its predecessor)", code="checkpoint-missing"))
        if seq > w.last_seq:
            gone = f"entry {w.last_seq + 1} is" if seq == w.last_seq + 1 else f"entries {w.last_seq + 1} to {seq} are"
            problems.append(Problem("truncated", w.last_seq + 1, f"the tail was cut: checkpoint #{cid} of "
                                    f"{created_at:%Y-%m-%d %H:%M:%SZ} covers entries up to {seq}, {gone} gone"))
        elif w.covered.get(seq) is None:
            problems.append(Problem("deleted", seq, f"entry {seq}, covered by checkpoint #{cid}, is missing"))
        elif w.covered[seq] != entry_hash:
            if not w.flagged.any_between(last_good, seq):
                problems.append(Problem("changed", seq, f"entries {last_good + 1} to {seq} were rewritten with "
                                        f"recomputed hashes: entry {seq} no longer has the hash signed in "
                                        f"checkpoint #{cid}"))
        else:
            last_good = seq
    return problems


@dataclass
class _Archives:
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checkpoints: list[tuple[Any, ...]] = field(default_factory=list)


def _check_archives(paths: list[Path], archived: ArchivedRange | None, w: _Walk, staff: x509.Certificate | None,
                    anchors: list[x509.Certificate], wanted: set[int], authentic: dict[int, str]) -> _Archives:
    """Each archive alone (its chain from its ``prev_hash``, its checkpoints, the last of which must
    sign its last entry) and the junctions: archive to archive, the last to the database's chain
    (the newest ``audit.archive`` entry names its range, last hash and SHA-256). The archived
    entries' hashes go into ``w.covered`` and their authentic checkpoints into ``authentic``, for
    the witness."""
    out = _Archives()
    read: list[AuditArchive] = []
    for path in paths:
        try:
            read.append(read_archive(path))
        except ArchiveInvalid as exc:
            out.problems.append(Problem("archive", None, str(exc), code="archive-invalid"))
    read.sort(key=lambda a: a.first_seq)
    for archive in read:
        name = archive.path.name
        signer_ca = staff
        embedded = archive.staff_ca()
        if signer_ca is None and embedded:
            signer_ca = embedded[0]
        elif embedded and signer_ca is not None and embedded[0] != signer_ca:
            out.problems.append(Problem("archive", None, f"{name}: its staff CA is not the database's",
                                        code="archive-invalid"))
            continue
        walk = _walk(archive.entries, wanted | {c[1] for c in archive.checkpoints}, archive.first_seq - 1,
                     archive.prev_hash)
        out.problems.extend(walk.problems)
        if (walk.last_seq, walk.last_hash, walk.count) != (archive.last_seq, archive.last_hash,
                                                            archive.header["entries"]):
            out.problems.append(Problem("archive", None, f"{name}: its entries do not end at entry {archive.last_seq} "
                                        f"with the hash its header names ({archive.header['entries']} entries)",
                                        code="archive-invalid"))
        signed: dict[int, str] = {}
        out.problems.extend(p for p in _check_checkpoints(archive.checkpoints, walk, signer_ca, anchors, signed)
                            if not (p.code == "checkpoint-missing" and (p.seq or 0) < archive.first_seq))
        if archive.last_seq not in signed or walk.covered.get(archive.last_seq) != archive.last_hash:
            out.problems.append(Problem("archive", archive.last_seq, f"{name}: no authentic checkpoint signs its last "
                                        "entry", code="archive-unsigned"))
        authentic.update(signed)
        w.covered.update({seq: h for seq, h in walk.covered.items() if seq not in w.covered})
        out.checkpoints += archive.checkpoints
    for before, after in zip(read, read[1:], strict=False):
        if (before.last_seq + 1, before.last_hash) != (after.first_seq, after.prev_hash):
            out.problems.append(Problem("archive", after.first_seq, f"{after.path.name} does not continue "
                                        f"{before.path.name} (entries {before.last_seq + 1} on, chained to its last "
                                        "hash)", code="archive-junction"))
    if read:
        last = read[-1]
        if archived is None or (archived.last_seq, archived.last_hash) != (last.last_seq, last.last_hash):
            recorded = archived.last_seq if archived else 0
            out.problems.append(Problem("archive", last.last_seq + 1, f"the database's chain does not go on from "
                                        f"{last.path.name} (it records entries up to {recorded} as archived)",
                                        code="archive-junction"))
        elif archived.sha256 != last.sha256:
            out.problems.append(Problem("archive", None, f"{last.path.name} is not the file the database recorded "
                                        f"archiving (SHA-256 {archived.sha256})", code="archive-junction"))
        if read[0].first_seq > 1:
            out.notes.append(f"entries 1 to {read[0].first_seq - 1} are in older archives, not given")
    return out


def _check_witness(witnessed: list[tuple[int, WitnessLine | WitnessMalformed]], rows: list,
                   authentic: dict[int, str], w: _Walk, staff: x509.Certificate | None,
                   archived_through: int = 0) -> list[Problem]:
    """The database against the witness: each witnessed checkpoint must still be in the database
    with the same signature, and the entry it covers must still have the witnessed hash (lines of
    archived entries: in the archives given, else not compared)."""
    problems: list[Problem] = _restore_gaps(witnessed)
    superseded = _superseded(witnessed)
    restores = [number for number, line in witnessed if isinstance(line, WitnessLine) and line.restored is not None]
    stored = {_whole(r[1]): r for r in rows}
    last_seq, last_good, truncated = 0, 0, None
    for number, line in witnessed:
        if isinstance(line, WitnessMalformed):
            problems.append(Problem("witness", None, f"not a witness line: {line}", code="witness-malformed",
                                    line=number))
            continue
        if number in superseded or (line.seq <= archived_through and line.seq not in w.covered):
            continue
        if line.seq < last_seq or line.seq == last_seq and line.restored is None:
            problems.append(Problem("witness", None, f"checkpoint of seq {line.seq} after one of seq {last_seq}: "
                                    "the witness's heads must grow", code="witness-out-of-order", line=number))
            continue
        row = stored.get(line.seq)
        if authentic.get(line.seq) != line.signature_sha256:
            reason = _witness_signature_problem(line, staff)
            if reason is not None:
                problems.append(Problem("witness", None, f"the witnessed checkpoint of seq {line.seq} was not "
                                        f"signed by the audit key: {reason}", code="witness-forged", line=number))
                continue
            if restores and number < restores[-1]:
                pass  # made after the backup a later restore went back to: its entries are compared below
            elif row is None:
                problems.append(Problem("checkpoint", line.seq, f"the checkpoint of entries up to {line.seq} "
                                        f"(witnessed on line {number}, {line.time}) is not in the database",
                                        code="checkpoint-missing"))
            else:
                problems.append(Problem("checkpoint", line.seq, f"checkpoint #{row[0]} is not the one witnessed on "
                                        f"line {number} ({line.time}): its signature differs",
                                        code="checkpoint-changed"))
        elif row is not None and row[0] != line.checkpoint:
            problems.append(Problem("checkpoint", line.seq, f"checkpoint #{row[0]} was witnessed on line {number} "
                                    f"as checkpoint #{line.checkpoint}: its row was renumbered",
                                    code="checkpoint-changed"))
        last_seq = line.seq
        if line.seq > w.last_seq:
            truncated = (line.seq, number)
            continue
        have = w.covered.get(line.seq)
        if have is None:
            if line.seq not in w.flagged:
                problems.append(Problem("deleted", line.seq, f"entry {line.seq}, witnessed on line {number}, is missing"))
        elif have != line.entry_hash:
            if not w.flagged.any_between(last_good, line.seq):
                problems.append(Problem("changed", line.seq, f"entries {last_good + 1} to {line.seq} were rewritten "
                                        "(changed, deleted, inserted or moved) and their hashes recomputed: entry "
                                        f"{line.seq} no longer has the hash witnessed on line {number} ({line.time})"))
        else:
            last_good = line.seq
    if truncated is not None:
        seq, number = truncated
        gone = f"entry {w.last_seq + 1} is" if seq == w.last_seq + 1 else f"entries {w.last_seq + 1} to {seq} are"
        problems.append(Problem("truncated", w.last_seq + 1, f"the tail was cut: the witness (line {number}) records "
                                f"entries up to {seq}, {gone} gone"))
    return problems


def _superseded(witnessed: list[tuple[int, WitnessLine | WitnessMalformed]]) -> set[int]:
    """Line numbers of checkpoints of entries a later restore lost: heads above the head of a
    restored database (``restored`` lines), witnessed before it. Their numbers were given again to
    the entries made after the restore, so they are not compared with the database."""
    out: set[int] = set()
    floor: int | None = None
    for number, line in reversed(witnessed):
        if isinstance(line, WitnessMalformed):
            continue
        if floor is not None and line.seq > floor:
            out.add(number)
        if line.restored is not None:
            floor = line.seq if floor is None else min(floor, line.seq)
    return out


def _restore_gaps(witnessed: list[tuple[int, WitnessLine | WitnessMalformed]]) -> list[Problem]:
    """One ``audit-gap`` per restore that lost witnessed entries: those after the restored head up to
    the highest head witnessed before the restore."""
    problems: list[Problem] = []
    highest: WitnessLine | None = None
    for number, line in witnessed:
        if isinstance(line, WitnessMalformed):
            continue
        if line.restored is not None and highest is not None and highest.seq > line.seq:
            problems.append(Problem(
                "gap", line.seq + 1, f"entries {line.seq + 1} to {highest.seq} (witnessed up to {highest.time}) were "
                f"lost: the database was restored on {line.restored.at[:19]}Z from a backup made "
                f"{line.restored.backup_created[:19]}Z; the numbers from {line.seq + 1} on are those of entries "
                "made since", line=number))
        if line.restored is not None:
            highest = line
        elif highest is None or line.seq > highest.seq:
            highest = line
    return problems


@dataclass
class PublishedDifference:
    """The database against what the witness says the CA published (audit.witness.PublishedHistory):
    CAs whose CRL number is behind a witnessed one (name, database's, witnessed), revocations the
    database lost (the certificate is valid there) and those of certificates it does not have."""

    crl_behind: list[tuple[str, int, int]] = field(default_factory=list)
    lost: list[Revocation] = field(default_factory=list)
    unknown: list[Revocation] = field(default_factory=list)

    def problems(self) -> list[Problem]:
        out = [Problem("published", None, f"the witness saw CRL number {witnessed} of the {name} CA, the database "
                       f"is at {database}: it is older than what was published (restored from a backup?), and the "
                       f"next CRL must be numbered above {witnessed} (RFC 5280 section 5.2.3)",
                       code="crl-number-behind") for name, database, witnessed in self.crl_behind]
        out += [Problem("published", None, f"certificate {r.serial} of the {r.authority} CA was {_held(r)} at "
                        f"{r.at[:19]}Z (witnessed), the database says valid: the revocation was lost",
                        code="revocation-lost") for r in self.lost]
        out += [Problem("published", None, f"certificate {r.serial} of the {r.authority} CA was {_held(r)} at "
                        f"{r.at[:19]}Z (witnessed) and is not in the database (issued after the copy it was "
                        "restored from?): relying parties that ask OCSP hear 'unknown'",
                        code="revocation-unknown-certificate") for r in self.unknown]
        return out


def _held(revocation: Revocation) -> str:
    return "put on hold" if revocation.status == "on-hold" else f"revoked ({revocation.reason or 'unspecified'})"


def compare_published(session: Session, history: PublishedHistory) -> PublishedDifference:
    """What the database lost of what the witness says was published (RFC 5280 sections 5.2.3 and 5.3)."""
    out = PublishedDifference()
    authorities = {a.name: a for a in session.scalars(select(Authority))}
    for (name, key), number in sorted(history.crl_numbers.items()):
        authority = authorities.get(name)
        if authority is not None and authority_key_id(authority.certificate_der) == key \
                and authority.crl_number < number:
            out.crl_behind.append((name, authority.crl_number, number))
    wanted = sorted(history.revoked.values(), key=lambda r: (r.at, r.serial))
    for start in range(0, len(wanted), 500):
        chunk = wanted[start:start + 500]
        serials = [r.serial for r in chunk]
        status = {serial: state for serial, state in session.execute(
            select(Certificate.serial_hex, Certificate.status).where(Certificate.serial_hex.in_(serials)))}
        for revocation in chunk:
            if revocation.serial not in status:
                out.unknown.append(revocation)
            elif status[revocation.serial] == CertificateStatus.VALID:
                out.lost.append(revocation)
    return out


def witness_findings(sessions: sessionmaker[Session], witness: Path) -> list[Problem]:
    """What a service checks as it starts, cheaply (the witness read from its end: audit.witness.
    recent_records): a restore's audit gap, an audit head below the witness's newest (a copy put
    back by hand), every CA's CRL number below the witness's, and the revocations witnessed since
    the newest checkpoint lost. The whole comparison is :func:`verify`."""
    if not witness.exists():
        return []
    recent = recent_records(witness)
    numbered = list(enumerate(recent, 1))
    checkpoints: list[tuple[int, WitnessLine | WitnessMalformed]] = [
        (n, r) for n, r in numbered if isinstance(r, WitnessLine)]
    problems = _restore_gaps(checkpoints)
    history = PublishedHistory.of(numbered)
    with sessions() as session:
        head = int(session.scalar(select(AuditHead.seq).where(AuditHead.id == 1)) or 0)
        for authority in session.scalars(select(Authority)):
            key = authority_key_id(authority.certificate_der)
            floor = crl_number_floor(witness, authority.name, key)
            if floor:
                known = history.crl_numbers.get((authority.name, key), 0)
                history.crl_numbers[(authority.name, key)] = max(floor, known)
        problems += compare_published(session, history).problems()
    newest = next((r for _, r in reversed(checkpoints) if isinstance(r, WitnessLine)), None)
    if newest is not None and newest.seq > head:
        problems.append(Problem("truncated", head + 1, f"the witness records audit entries up to {newest.seq} "
                                f"({newest.time}), the database ends at {head}: restored without `tessera restore`?"))
    return problems


def _witness_signature_problem(line: WitnessLine, staff: x509.Certificate | None) -> str | None:
    """Why a witness line's own signature does not prove it (None when it does)."""
    if line.signature is None:
        return "the line carries no signature and no checkpoint in the database has its signature's hash"
    if staff is None:
        return "the staff CA certificate is missing: the signature cannot be checked"
    record, refused = cms.open_signed_data(line.signature, CHECKPOINT_CONTENT_TYPE)
    if record is None:
        return f"bad signature ({_because(refused)})"
    if record.content != line.statement():
        return "the signature is over a different head, time or predecessor than the line states"
    if not _issued_by(record.signer, staff):
        return "the signer's certificate was not issued by the staff CA"
    return None


_ISSUED: dict[tuple[bytes, bytes], bool] = {}


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Signature check of ``cert`` by ``issuer``, remembered (a trail has thousands of checkpoints, few signers)."""
    key = (cert.fingerprint(hashes.SHA256()), issuer.fingerprint(hashes.SHA256()))
    known = _ISSUED.get(key)
    if known is None:
        known = directly_issued_by(cert, issuer)
        if len(_ISSUED) > 1000:
            _ISSUED.clear()
        _ISSUED[key] = known
    return known


def _because(reason: Reason | None) -> str:
    """A refusal of the verification package as a finding's words."""
    return f"{reason.code}: {reason.detail}" if reason is not None else "refused"


def _checkpoint_signature_problem(seq: int, previous: int, entry_hash: str, created_at: datetime.datetime, signature: bytes,
                                  signer_der: bytes, token: bytes, staff: x509.Certificate) -> str | None:
    """Why a checkpoint is not authentic (None when it is): its CMS signature (RFC 5652 section
    5.6) over its own statement by an audit signer the staff CA certified, valid at the time; its
    RFC 3161 token (section 2.4.2) by the staff CA's TSA, over the signature, near that time."""
    record, refused = cms.open_signed_data(signature, CHECKPOINT_CONTENT_TYPE)
    if record is None:
        return f"bad signature ({_because(refused)})"
    signer = record.signer
    if record.content != chain.checkpoint_statement(seq, entry_hash, created_at, previous):
        return "the signed statement does not match the checkpoint's sequence number, hash, time or predecessor"
    if signer.public_bytes(Encoding.DER) != signer_der:
        return "the stored signer certificate is not the one that signed"
    if not _issued_by(signer, staff):
        return "the audit signer's certificate was not issued by the staff CA"
    if not (signer.not_valid_before_utc <= created_at <= signer.not_valid_after_utc):
        return "the audit signer's certificate was not valid at the checkpoint's time"
    stamp, refused = cms.open_timestamp_token(token)
    if stamp is None:
        return f"bad time-stamp token ({_because(refused)})"
    if not _issued_by(stamp.record.signer, staff):
        return "the time-stamp token was not signed by our TSA"
    if stamp.hash_algorithm != "sha256" or not stamp.covers(signature):
        return "the time-stamp token is over something other than the checkpoint's signature"
    if abs(stamp.gen_time - created_at) > _TIMESTAMP_SLACK:
        return f"the time-stamp ({stamp.gen_time:%Y-%m-%d %H:%M:%SZ}) is far from the checkpoint's time"
    return None


def report_json(report: VerificationReport) -> str:
    return json.dumps(report.as_dict(), indent=2)
