"""The witness: every checkpoint's signed head also written where a database attacker cannot rewrite it.

Whoever holds the database can drop the append-only triggers, rewrite the entries after the last
checkpoint, recompute every hash and the head, and delete the newest checkpoints: inside the
database nothing then shows it. So each checkpoint is also appended, as one line, to

- an **append-only witness file** (opened ``O_APPEND``, written with one ``write`` and ``fsync``,
  mode 0600; in production also ``chattr +a`` so that not even its owner can rewrite it), and/or
- **remote syslog** (RFC 5424 messages through :class:`logging.handlers.SysLogHandler`, UDP or
  TCP, or a local socket such as ``/dev/log``), where the receiving host keeps it.

A witness line is a JSON object (RFC 8259) with the checkpoint's row id (``checkpoint``), the head
it signed (``seq``, ``entry_hash``), its ``time``, the ``previous`` checkpoint's seq, the SHA-256 of
its CMS signature and, in the file, the signature itself (base64): a line nobody with the audit
key wrote is caught because the signature does not verify, or does not sign what the line says.
Syslog messages leave the signature out (messages over 2 KiB are not dependably relayed, RFC 5424
section 6.1) and keep its hash. :func:`read_witness` accepts a file of either kind, also lines a
syslog receiver stored with its own prefix (the JSON object is taken from the first ``{``).

The witness also keeps what the deployment published, so that a database restored from a backup
cannot silently go back in time (docs/operations.md, "Backup and restore"):

- each checkpoint line carries the ``state`` of the CA at that moment (:class:`PublishedState`):
  the last CRL number of every CA and the revocations and released holds since shortly before the
  previous checkpoint (read in the checkpoint's own transaction, see :func:`published_state`);
- with :func:`attach`, every CRL the deployment signs is a line of its own (:class:`CrlLine`,
  ``tessera-crl-witness-v1``: CRLNumber, the entries it added and dropped), written as its
  transaction commits, and ca.crl numbers the next CRL above the highest the witness saw;
- `tessera restore` appends the restored database's head as a checkpoint line with ``restored``
  (:class:`RestoreNote`): the checkpointer goes on from there, and verification reports the
  entries witnessed before it and lost with the restore.

This state is not signed (only the checkpoint it rides with is): it is as trustworthy as the
append-only file or the syslog receiver that keeps it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime
import fcntl
import functools
import hashlib
import json
import logging
import logging.handlers
import os
import socket
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cryptography import x509
from sqlalchemy import ColumnElement, Connection, event, func, select
from sqlalchemy.orm import Mapper, Session, sessionmaker

from audit import chain
from audit.models import AuditCheckpoint
from ca import crl as crl_module
from ca.models import Authority, Certificate, CertificateStatus

log = logging.getLogger("tessera.audit")

VERSION = "tessera-audit-witness-v1"
#: the version of a CRL publication line (:class:`CrlLine`)
CRL_VERSION = "tessera-crl-witness-v1"
#: revocations a line carries at most (the newest); the rest are counted in ``omitted``
MAX_REVOCATIONS = 100
#: how far before the previous checkpoint a checkpoint's state looks for revocations: a revocation
#: stamped before that checkpoint but committed after it is still seen once
STATE_OVERLAP = datetime.timedelta(minutes=5)
#: lines longer than this are not witness lines (a CMS signature with its chain is about 2 KiB)
MAX_LINE = 64 * 1024
_HEX = frozenset("0123456789abcdef")


def _is_hash(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX


def _time(value: object, name: str) -> str:
    """``value`` if it is a canonical UTC time (audit.chain.canonical_time), else WitnessMalformed."""
    try:
        datetime.datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ")  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise WitnessMalformed(f"{name} is not a UTC time like 2026-12-02T20:00:00.000000Z") from None
    return value  # type: ignore[return-value]


def _parse_time(text: str) -> datetime.datetime:
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)


def _name(value: object, what: str, limit: int = 64) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise WitnessMalformed(f"{what} is not a name of 1 to {limit} characters")
    return value


def _serial(value: object) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= 40 or not set(value) <= _HEX:
        raise WitnessMalformed("a serial is not lower-case hex")
    return value


def _count(value: object, what: str) -> int:
    if type(value) is not int or value < 0:
        raise WitnessMalformed(f"{what} is not a whole number")
    return value


def _list(value: object, what: str) -> list[Any]:
    if not isinstance(value, list) or len(value) > MAX_REVOCATIONS:
        raise WitnessMalformed(f"{what} is not a list of at most {MAX_REVOCATIONS}")
    return value


@dataclass(frozen=True)
class Revocation:
    """A certificate of CA ``authority`` revoked (``status`` ``revoked``) or on hold (``on-hold``)
    at ``at``, with its RFC 5280 section 5.3.1 reason (None: unspecified)."""

    authority: str
    serial: str
    at: str
    reason: str | None
    status: str = "revoked"

    def as_dict(self) -> dict[str, object]:
        return {"ca": self.authority, "serial": self.serial, "at": self.at, "reason": self.reason,
                "status": self.status}

    @classmethod
    def parse(cls, data: object) -> Revocation:
        if not isinstance(data, dict):
            raise WitnessMalformed("a revocation is not an object")
        reason = data.get("reason")
        if not (reason is None or isinstance(reason, str) and len(reason) <= 32):
            raise WitnessMalformed("a revocation's reason is not a reason name")
        status = data.get("status", "revoked")
        if status not in ("revoked", "on-hold"):
            raise WitnessMalformed("a revocation's status is neither revoked nor on-hold")
        return cls(_name(data.get("ca"), "a revocation's ca"), _serial(data.get("serial")),
                   _time(data.get("at"), "a revocation's time"), reason, status)


@dataclass(frozen=True)
class CrlNumber:
    """The last CRL number of CA ``authority`` whose key has subjectKeyIdentifier ``key_id`` (hex)."""

    authority: str
    key_id: str
    number: int


@dataclass(frozen=True)
class PublishedState:
    """What the CA had published when a checkpoint was made: every CA's last CRL number, and the
    revocations and released holds (``released``: (ca, serial)) whose status changed since shortly
    before the previous checkpoint, newest :data:`MAX_REVOCATIONS` (``omitted``: how many more)."""

    crls: tuple[CrlNumber, ...] = ()
    revocations: tuple[Revocation, ...] = ()
    released: tuple[tuple[str, str], ...] = ()
    omitted: int = 0

    def as_dict(self, complete: bool = True) -> dict[str, object]:
        """``complete=False`` (syslog, where messages over 2 KiB are not relayed): CRL numbers and counts only."""
        out: dict[str, object] = {"crls": [{"ca": c.authority, "key_id": c.key_id, "number": c.number}
                                           for c in self.crls]}
        if complete:
            out |= {"revocations": [r.as_dict() for r in self.revocations],
                    "released": [{"ca": ca, "serial": serial} for ca, serial in self.released],
                    "omitted": self.omitted}
        else:
            out["omitted"] = self.omitted + len(self.revocations) + len(self.released)
        return out

    @classmethod
    def parse(cls, data: object) -> PublishedState:
        if not isinstance(data, dict):
            raise WitnessMalformed("state is not an object")
        crls = []
        for item in _list(data.get("crls", []), "state.crls"):
            if not isinstance(item, dict) or not isinstance(item.get("key_id"), str) or len(item["key_id"]) > 128:
                raise WitnessMalformed("a CRL number is not an object with ca, key_id and number")
            crls.append(CrlNumber(_name(item.get("ca"), "a CRL's ca"), item["key_id"],
                                  _count(item.get("number"), "number")))
        revocations = tuple(Revocation.parse(r) for r in _list(data.get("revocations", []), "state.revocations"))
        released = []
        for item in _list(data.get("released", []), "state.released"):
            if not isinstance(item, dict):
                raise WitnessMalformed("a released hold is not an object")
            released.append((_name(item.get("ca"), "a released hold's ca"), _serial(item.get("serial"))))
        return cls(tuple(crls), revocations, tuple(released), _count(data.get("omitted", 0), "state.omitted"))


@dataclass(frozen=True)
class RestoreNote:
    """On the line `tessera restore` appends: when it restored, and when the backup was made."""

    at: str
    backup_created: str


@dataclass(frozen=True)
class WitnessLine:
    """One witnessed checkpoint (see the module docstring for the fields)."""

    checkpoint: int
    seq: int
    entry_hash: str
    time: str
    previous: int
    signature_sha256: str
    signature: bytes | None = None
    #: the CA's published state at the checkpoint (None on lines of older versions)
    state: PublishedState | None = field(default=None, compare=False)
    #: set on the line of a restored database's head
    restored: RestoreNote | None = None

    @classmethod
    def of(cls, checkpoint: int, seq: int, entry_hash: str, at: datetime.datetime, previous: int,
           signature: bytes) -> WitnessLine:
        return cls(checkpoint, seq, entry_hash, chain.canonical_time(at), previous,
                   hashlib.sha256(signature).hexdigest(), signature)

    def as_dict(self, with_signature: bool = True) -> dict[str, object]:
        out: dict[str, object] = {"v": VERSION, "checkpoint": self.checkpoint, "seq": self.seq,
                                  "entry_hash": self.entry_hash, "time": self.time, "previous": self.previous,
                                  "signature_sha256": self.signature_sha256}
        if with_signature and self.signature is not None:
            out["signature"] = base64.b64encode(self.signature).decode()
        if self.state is not None:
            out["state"] = self.state.as_dict(complete=with_signature)
        if self.restored is not None:
            out["restored"] = {"at": self.restored.at, "backup_created": self.restored.backup_created}
        return out

    def text(self, with_signature: bool = True) -> str:
        return json.dumps(self.as_dict(with_signature), separators=(",", ":"), sort_keys=True)

    def statement(self) -> bytes:
        """The checkpoint statement the signature must carry (audit.chain.checkpoint_statement)."""
        return chain.checkpoint_statement(self.seq, self.entry_hash, _parse_time(self.time), self.previous)


@dataclass(frozen=True)
class CrlLine:
    """A CRL publication (ca.crl.CrlPublication) as the witness keeps it: the CA, its key, the
    CRLNumber, thisUpdate, the SHA-256 of the CRL, the entries it added (newest
    :data:`MAX_REVOCATIONS`; ``omitted``: how many more) and the serials it dropped."""

    authority: str
    key_id: str
    number: int
    this_update: str
    crl_sha256: str
    added: tuple[Revocation, ...] = ()
    removed: tuple[str, ...] = ()
    omitted: int = 0

    @classmethod
    def of(cls, publication: crl_module.CrlPublication) -> CrlLine:
        added = [Revocation(publication.authority, r.serial_hex, chain.canonical_time(r.revoked_at), r.reason,
                            "on-hold" if r.reason == x509.ReasonFlags.certificate_hold.value else "revoked")
                 for r in publication.added]
        added.sort(key=lambda r: r.at)
        kept = added[-MAX_REVOCATIONS:]
        removed = publication.removed[:MAX_REVOCATIONS]
        return cls(publication.authority, publication.key_id, publication.number,
                   chain.canonical_time(publication.this_update), publication.crl_sha256, tuple(kept), removed,
                   len(added) - len(kept) + len(publication.removed) - len(removed))

    def as_dict(self, complete: bool = True) -> dict[str, object]:
        out: dict[str, object] = {"v": CRL_VERSION, "ca": self.authority, "key_id": self.key_id,
                                  "number": self.number, "this_update": self.this_update,
                                  "crl_sha256": self.crl_sha256}
        if complete:
            out |= {"added": [r.as_dict() for r in self.added], "removed": list(self.removed), "omitted": self.omitted}
        else:
            out["omitted"] = self.omitted + len(self.added) + len(self.removed)
        return out

    def text(self, complete: bool = True) -> str:
        return json.dumps(self.as_dict(complete), separators=(",", ":"), sort_keys=True)


class WitnessMalformed(ValueError):
    """A line of the witness is not a witness line; ``str()`` says what is wrong."""


def _json_object(raw: str) -> dict[str, Any]:
    start = raw.find("{")
    if start < 0:
        raise WitnessMalformed("no JSON object")
    try:
        data = json.loads(raw[start:])
    except (ValueError, RecursionError) as exc:
        raise WitnessMalformed(f"not JSON ({type(exc).__name__})") from None
    if not isinstance(data, dict) or data.get("v") not in (VERSION, CRL_VERSION):
        raise WitnessMalformed(f"not a {VERSION} object")
    return data


def parse_line(raw: str) -> WitnessLine:
    """One checkpoint line (from the file or a syslog receiver's log); raises :class:`WitnessMalformed`
    (also for a CRL line: :func:`parse_record` reads both)."""
    record = parse_record(raw)
    if not isinstance(record, WitnessLine):
        raise WitnessMalformed(f"not a {VERSION} object")
    return record


def parse_record(raw: str) -> WitnessLine | CrlLine:
    """One line of the witness, of either kind; raises :class:`WitnessMalformed`."""
    data = _json_object(raw)
    if data["v"] == CRL_VERSION:
        return _crl_line(data)
    numbers = {}
    for name in ("checkpoint", "seq", "previous"):
        numbers[name] = _count(data.get(name), name)
    if numbers["seq"] < 1 or numbers["previous"] >= numbers["seq"]:
        raise WitnessMalformed("seq must be positive and greater than previous")
    for name in ("entry_hash", "signature_sha256"):
        if not _is_hash(data.get(name)):
            raise WitnessMalformed(f"{name} is not 64 lower-case hex digits")
    at = _time(data.get("time"), "time")
    signature = None
    if "signature" in data:
        try:
            signature = base64.b64decode(data["signature"], validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise WitnessMalformed("signature is not base64") from None
        if hashlib.sha256(signature).hexdigest() != data["signature_sha256"]:
            raise WitnessMalformed("signature_sha256 is not the hash of the signature")
    state = PublishedState.parse(data["state"]) if "state" in data else None
    restored = None
    if "restored" in data:
        note = data["restored"]
        if not isinstance(note, dict):
            raise WitnessMalformed("restored is not an object")
        restored = RestoreNote(_time(note.get("at"), "restored.at"), _time(note.get("backup_created"),
                                                                             "restored.backup_created"))
    return WitnessLine(numbers["checkpoint"], numbers["seq"], data["entry_hash"], at, numbers["previous"],
                       data["signature_sha256"], signature, state, restored)


def _crl_line(data: dict[str, Any]) -> CrlLine:
    key = data.get("key_id")
    if not isinstance(key, str) or not key or len(key) > 128:
        raise WitnessMalformed("key_id is not a key identifier")
    if not _is_hash(data.get("crl_sha256")):
        raise WitnessMalformed("crl_sha256 is not 64 lower-case hex digits")
    return CrlLine(_name(data.get("ca"), "ca"), key, _count(data.get("number"), "number"),
                   _time(data.get("this_update"), "this_update"), data["crl_sha256"],
                   tuple(Revocation.parse(r) for r in _list(data.get("added", []), "added")),
                   tuple(_serial(s) for s in _list(data.get("removed", []), "removed")),
                   _count(data.get("omitted", 0), "omitted"))


def read_records(path: Path) -> Iterator[tuple[int, WitnessLine | CrlLine | WitnessMalformed]]:
    """(line number, parsed line or the reason it is malformed) for every non-empty line of ``path``."""
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            if len(raw) > MAX_LINE:
                yield number, WitnessMalformed("line too long")
                continue
            try:
                yield number, parse_record(raw.decode("utf-8"))
            except UnicodeDecodeError:
                yield number, WitnessMalformed("not UTF-8")
            except WitnessMalformed as exc:
                yield number, exc


def read_witness(path: Path) -> Iterator[tuple[int, WitnessLine | WitnessMalformed]]:
    """(line number, parsed checkpoint line or the reason it is malformed) for every non-empty line
    of ``path`` but the CRL lines."""
    for number, record in read_records(path):
        if not isinstance(record, CrlLine):
            yield number, record


def _backwards(path: Path, block: int = 64 * 1024) -> Iterator[bytes]:
    """The complete lines of ``path`` from the last to the first, read a block at a time (the file
    grows by a line per checkpoint for as long as the trail lives); over-long lines are skipped."""
    with open(path, "rb") as fh:
        end = fh.seek(0, os.SEEK_END)
        tail = b""
        while end > 0:
            start = max(0, end - block)
            fh.seek(start)
            tail = fh.read(end - start) + tail
            end = start
            lines = tail.split(b"\n")
            complete = lines if start == 0 else lines[1:]  # the first piece may be part of a line
            for raw in reversed(complete):
                if raw.strip() and len(raw) <= MAX_LINE:
                    yield raw
            tail = lines[0] if start > 0 else b""
            if len(tail) > MAX_LINE:
                tail = b""


def last_line(path: Path, block: int = 64 * 1024) -> WitnessLine | None:
    """The newest well-formed checkpoint line of ``path`` (None when there is none)."""
    for raw in _backwards(path, block):
        try:
            return parse_line(raw.decode("utf-8"))
        except (UnicodeDecodeError, WitnessMalformed):
            continue
    return None


def recent_records(path: Path) -> list[WitnessLine | CrlLine]:
    """The newest lines of ``path``, oldest first: read from the end back to the newest checkpoint
    line with a state that is not a restore line (and the lines after it); what start-up compares."""
    found: list[WitnessLine | CrlLine] = []
    for raw in _backwards(path):
        try:
            record = parse_record(raw.decode("utf-8"))
        except (UnicodeDecodeError, WitnessMalformed):
            continue
        found.append(record)
        if isinstance(record, WitnessLine) and record.state is not None and record.restored is None:
            break
    return found[::-1]


@dataclass
class PublishedHistory:
    """What the witness says the deployment published, line after line (:meth:`feed`): the highest
    CRL number per (CA, key), the certificates it last knew revoked or on hold, and the lines that
    could not hold every revocation (``incomplete``: line number -> how many were left out)."""

    crl_numbers: dict[tuple[str, str], int] = field(default_factory=dict)
    revoked: dict[tuple[str, str], Revocation] = field(default_factory=dict)
    incomplete: dict[int, int] = field(default_factory=dict)

    def feed(self, record: WitnessLine | CrlLine, line: int = 0) -> None:
        if isinstance(record, CrlLine):
            self._number(record.authority, record.key_id, record.number)
            for serial in record.removed:
                self.revoked.pop((record.authority, serial), None)
            for revocation in record.added:
                self.revoked[(revocation.authority, revocation.serial)] = revocation
            omitted = record.omitted
        elif record.state is not None:
            for crl in record.state.crls:
                self._number(crl.authority, crl.key_id, crl.number)
            for authority, serial in record.state.released:
                self.revoked.pop((authority, serial), None)
            for revocation in record.state.revocations:
                self.revoked[(revocation.authority, revocation.serial)] = revocation
            omitted = record.state.omitted
        else:
            return
        if omitted:
            self.incomplete[line] = omitted

    def _number(self, authority: str, key_id: str, number: int) -> None:
        key = (authority, key_id)
        self.crl_numbers[key] = max(number, self.crl_numbers.get(key, 0))

    @classmethod
    def of(cls, records: Iterable[tuple[int, WitnessLine | CrlLine | WitnessMalformed]]) -> PublishedHistory:
        history = cls()
        for number, record in records:
            if not isinstance(record, WitnessMalformed):
                history.feed(record, number)
        return history


def crl_number_floor(path: Path, authority: str, key_id: str) -> int:
    """The highest CRL number ``path`` witnessed for the CA: read from the end until two checkpoint
    states name the CA (a CRL line written as its transaction committed may precede a state read
    just before that commit; the next checkpoint's state has seen it), or the start of the file."""
    highest, states = 0, 0
    for raw in _backwards(path):
        try:
            record = parse_record(raw.decode("utf-8"))
        except (UnicodeDecodeError, WitnessMalformed):
            continue
        if isinstance(record, CrlLine):
            if (record.authority, record.key_id) == (authority, key_id):
                highest = max(highest, record.number)
        elif record.state is not None:
            numbers = [c.number for c in record.state.crls if (c.authority, c.key_id) == (authority, key_id)]
            if numbers:
                highest = max(highest, *numbers)
                states += 1
                if states == 2:
                    break
    return highest


# -- the state a checkpoint carries --------------------------------------------------------
@functools.lru_cache(maxsize=64)
def authority_key_id(certificate_der: bytes) -> str:
    """The subjectKeyIdentifier (hex) of a CA certificate in DER (ca.crl.key_id), remembered."""
    return crl_module.key_id(x509.load_der_x509_certificate(certificate_der))


def published_state(connection: Connection, since: datetime.datetime | None) -> PublishedState:
    """The CA's published state as ``connection`` sees it: every CA's CRL number, and the
    revocations (revoked or on hold) and released holds whose status changed after ``since``
    (all when None), newest :data:`MAX_REVOCATIONS`."""
    authorities = connection.execute(select(Authority.id, Authority.name, Authority.crl_number,
                                            Authority.certificate_der).order_by(Authority.id)).all()
    names = {a.id: a.name for a in authorities}
    crls = tuple(CrlNumber(a.name, authority_key_id(a.certificate_der), int(a.crl_number)) for a in authorities)
    changed: ColumnElement[bool] = (Certificate.status_changed_at > since if since is not None
                                    else Certificate.status_changed_at.is_not(None))
    rows = connection.execute(
        select(Certificate.issuer_id, Certificate.serial_hex, Certificate.status, Certificate.revoked_at,
               Certificate.revocation_reason)
        .where(changed).order_by(Certificate.status_changed_at.desc()).limit(MAX_REVOCATIONS + 1)).all()
    omitted = 0
    if len(rows) > MAX_REVOCATIONS:
        rows = rows[:MAX_REVOCATIONS]
        total = connection.execute(select(func.count()).select_from(Certificate).where(changed)).scalar_one()
        omitted = int(total) - MAX_REVOCATIONS
    revocations, released = [], []
    for issuer_id, serial, status, revoked_at, reason in reversed(rows):
        authority = names.get(issuer_id, str(issuer_id))
        if status in (CertificateStatus.REVOKED, CertificateStatus.ON_HOLD) and revoked_at is not None:
            revocations.append(Revocation(authority, serial, chain.canonical_time(revoked_at), reason, status))
        elif status == CertificateStatus.VALID:
            released.append((authority, serial))
    return PublishedState(crls, tuple(revocations), tuple(released), omitted)


class _Captured(threading.local):
    """States read at a checkpoint's insert, by (seq, entry_hash), until the checkpoint is witnessed."""

    def __init__(self) -> None:
        self.states: dict[tuple[int, str], PublishedState] = {}


_captured = _Captured()


@event.listens_for(AuditCheckpoint, "after_insert")
def _capture_state(_mapper: Mapper[Any], connection: Connection, target: AuditCheckpoint) -> None:
    """Read the CA's state in the transaction that stores a checkpoint (audit.checkpoints stores it,
    then witnesses it in the same thread: :meth:`Witness.append` takes the state from here)."""
    previous = connection.execute(select(AuditCheckpoint.created_at)
                                  .where(AuditCheckpoint.seq == target.previous_seq)).scalar()
    states = _captured.states
    if len(states) >= 16:  # checkpoints that were rolled back, never witnessed
        states.clear()
    states[(target.seq, target.entry_hash)] = published_state(
        connection, previous - STATE_OVERLAP if previous is not None else None)


class Rfc5424Formatter(logging.Formatter):
    """``1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG`` (RFC 5424 section 6; the handler adds ``<PRI>``)."""

    def __init__(self, app_name: str = "tessera") -> None:
        super().__init__()
        self.hostname = (socket.gethostname() or "-")[:255].replace(" ", "_")
        self.app_name = app_name

    def format(self, record: logging.LogRecord) -> str:
        at = datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
        stamp = at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return f"1 {stamp} {self.hostname} {self.app_name} {os.getpid()} audit-checkpoint - {record.getMessage()}"


class WitnessSyslogHandler(logging.handlers.SysLogHandler):
    """SysLogHandler whose failures are one logged line, not a traceback on stderr."""

    def handleError(self, record: logging.LogRecord) -> None:
        log.error("the audit witness syslog %s cannot be reached", self.address)


def syslog_handler(address: str) -> logging.handlers.SysLogHandler:
    """A handler for ``udp://host:port``, ``tcp://host:port`` or a local socket path (e.g. ``/dev/log``)."""
    if address.startswith(("udp://", "tcp://")):
        scheme, _, rest = address.partition("://")
        host, _, port = rest.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"syslog address {address!r} must look like udp://host:514 or tcp://host:514")
        kind = socket.SOCK_DGRAM if scheme == "udp" else socket.SOCK_STREAM
        handler = WitnessSyslogHandler((host.strip("[]"), int(port)), WitnessSyslogHandler.LOG_AUTHPRIV, kind)
    elif address.startswith("/"):
        handler = WitnessSyslogHandler(address, WitnessSyslogHandler.LOG_AUTHPRIV)
    else:
        raise ValueError(f"syslog address {address!r} must be udp://host:port, tcp://host:port or a socket path")
    handler.append_nul = False
    handler.setFormatter(Rfc5424Formatter())
    return handler


class Witness:
    """Where checkpoints are witnessed: an append-only file (``path``) and/or syslog (``syslog``)."""

    def __init__(self, path: Path | None = None, syslog: str | None = None) -> None:
        self.path = path
        self.syslog_address = syslog
        self._syslog = syslog_handler(syslog) if syslog else None

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the file's exclusive lock (flock) while checking the last line and appending the next,
        so the checkpointers of one node's processes take turns."""
        if self.path is None:
            yield
            return
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _open(self) -> int:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            if os.fstat(fd).st_mode & 0o077:
                os.fchmod(fd, 0o600)
        except OSError:
            pass  # e.g. chattr +a on a file of another owner: appending still works
        return fd

    def last(self) -> WitnessLine | None:
        """The newest well-formed checkpoint line of the file (None without a file or lines)."""
        if self.path is None or not self.path.exists():
            return None
        return last_line(self.path)

    def append(self, line: WitnessLine) -> None:
        """Write ``line`` to the file (one write, then fsync) and send it to syslog, with the CA's
        state read when its checkpoint was stored (:func:`published_state`) unless it has one.
        A file that cannot be written raises OSError (the checkpoint then does not happen); a
        syslog that cannot be reached is logged."""
        state = _captured.states.pop((line.seq, line.entry_hash), None)
        if line.state is None and state is not None:
            line = replace(line, state=state)
        self._write(line.text(), line.text(with_signature=False))

    def _write(self, text: str, syslog_text: str) -> None:
        if self.path is not None:
            data = (text + "\n").encode()
            fd = self._open()
            try:
                if os.write(fd, data) != len(data):
                    raise OSError("short write to the audit witness file")
                os.fsync(fd)
            finally:
                os.close(fd)
        if self._syslog is not None:
            if self._syslog.socktype == socket.SOCK_STREAM:
                syslog_text += "\n"  # TCP: one message per line (RFC 6587 section 3.4.2)
            self._syslog.emit(logging.LogRecord("tessera.audit.witness", logging.INFO, __file__, 0, "%s",
                                                (syslog_text,), None))

    # -- CRL publications (ca.crl.PublicationWitness) ------------------------------------------
    def crl_number_floor(self, authority: str, key_id: str) -> int:
        """The highest CRL number the file witnessed for the CA (0 without a file)."""
        if self.path is None or not self.path.exists():
            return 0
        return crl_number_floor(self.path, authority, key_id)

    def crl_published(self, session: Session, publication: crl_module.CrlPublication) -> None:
        """Append ``publication`` as a :class:`CrlLine` when ``session`` commits (before it does: a
        CRL the witness cannot record is not published, raising ca.crl.CrlWitnessUnavailable);
        forgotten if the session rolls back."""
        pending = session.info.setdefault(_PENDING, [])
        if not session.info.get(_LISTENING):
            session.info[_LISTENING] = True
            event.listen(session, "before_commit", self._write_pending)
            event.listen(session, "after_rollback", lambda s: s.info.get(_PENDING, []).clear())
        pending.append(CrlLine.of(publication))

    def _write_pending(self, session: Session) -> None:
        pending: list[CrlLine] = session.info.get(_PENDING, [])
        try:
            while pending:
                line = pending[0]
                self._write(line.text(), line.text(complete=False))
                pending.pop(0)
        except OSError as exc:
            raise crl_module.CrlWitnessUnavailable(
                f"the witness file cannot record the CRL: {exc.strerror or exc}") from None

    def close(self) -> None:
        if self._syslog is not None:
            self._syslog.close()

    @property
    def enabled(self) -> bool:
        return self.path is not None or self._syslog is not None


#: Session.info keys of the CRL lines waiting for their transaction to commit
_PENDING, _LISTENING = "tessera.audit.witness.pending", "tessera.audit.witness.listening"


def attach(sessions: sessionmaker[Session], witness: Witness) -> None:
    """Witness every CRL published through ``sessions`` (the deployment's session factory) and
    number CRLs above what the witness saw (ca.crl.PUBLICATION_WITNESS); nothing without a file."""
    if witness.enabled:
        sessions.kw.setdefault("info", {})[crl_module.PUBLICATION_WITNESS] = witness


def witness_from_settings(home: Path, path: str | None, syslog: str | None) -> Witness:
    """The witness of a deployment: ``path`` ("" or None: ``<home>/audit-witness.log``; ``off``: no
    file) and ``syslog`` (an address for :func:`syslog_handler`, or None)."""
    off = (path or "").strip().lower() in ("off", "none")
    file = None if off else Path(path) if path else home / "audit-witness.log"
    return Witness(file, syslog or None)


__all__ = ["CRL_VERSION", "VERSION", "CrlLine", "CrlNumber", "PublishedHistory", "PublishedState", "RestoreNote",
           "Revocation", "Witness", "WitnessLine", "WitnessMalformed", "attach", "authority_key_id",
           "crl_number_floor", "last_line", "parse_line", "parse_record", "published_state", "read_records",
           "read_witness", "recent_records", "syslog_handler", "witness_from_settings"]
