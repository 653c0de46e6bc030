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
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime
import fcntl
import hashlib
import json
import logging
import logging.handlers
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from audit import chain

log = logging.getLogger("tessera.audit")

VERSION = "tessera-audit-witness-v1"
#: lines longer than this are not witness lines (a CMS signature with its chain is about 2 KiB)
MAX_LINE = 64 * 1024
_HEX = frozenset("0123456789abcdef")


def _is_hash(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX


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
        return out

    def text(self, with_signature: bool = True) -> str:
        return json.dumps(self.as_dict(with_signature), separators=(",", ":"), sort_keys=True)

    def statement(self) -> bytes:
        """The checkpoint statement the signature must carry (audit.chain.checkpoint_statement)."""
        at = datetime.datetime.strptime(self.time, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
        return chain.checkpoint_statement(self.seq, self.entry_hash, at, self.previous)


class WitnessMalformed(ValueError):
    """A line of the witness is not a witness line; ``str()`` says what is wrong."""


def parse_line(raw: str) -> WitnessLine:
    """One witness line (from the file or a syslog receiver's log); raises :class:`WitnessMalformed`."""
    start = raw.find("{")
    if start < 0:
        raise WitnessMalformed("no JSON object")
    try:
        data = json.loads(raw[start:])
    except (ValueError, RecursionError) as exc:
        raise WitnessMalformed(f"not JSON ({type(exc).__name__})") from None
    if not isinstance(data, dict) or data.get("v") != VERSION:
        raise WitnessMalformed(f"not a {VERSION} object")
    numbers = {}
    for name in ("checkpoint", "seq", "previous"):
        value = data.get(name)
        if type(value) is not int or value < 0:
            raise WitnessMalformed(f"{name} is not a whole number")
        numbers[name] = value
    if numbers["seq"] < 1 or numbers["previous"] >= numbers["seq"]:
        raise WitnessMalformed("seq must be positive and greater than previous")
    for name in ("entry_hash", "signature_sha256"):
        if not _is_hash(data.get(name)):
            raise WitnessMalformed(f"{name} is not 64 lower-case hex digits")
    at = data.get("time")
    try:
        datetime.datetime.strptime(at, "%Y-%m-%dT%H:%M:%S.%fZ")  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise WitnessMalformed("time is not a UTC time like 2026-12-02T20:00:00.000000Z") from None
    signature = None
    if "signature" in data:
        try:
            signature = base64.b64decode(data["signature"], validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise WitnessMalformed("signature is not base64") from None
        if hashlib.sha256(signature).hexdigest() != data["signature_sha256"]:
            raise WitnessMalformed("signature_sha256 is not the hash of the signature")
    return WitnessLine(numbers["checkpoint"], numbers["seq"], data["entry_hash"], at, numbers["previous"],
                       data["signature_sha256"], signature)


def read_witness(path: Path) -> Iterator[tuple[int, WitnessLine | WitnessMalformed]]:
    """(line number, parsed line or the reason it is malformed) for every non-empty line of ``path``."""
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            if len(raw) > MAX_LINE:
                yield number, WitnessMalformed("line too long")
                continue
            try:
                yield number, parse_line(raw.decode("utf-8"))
            except UnicodeDecodeError:
                yield number, WitnessMalformed("not UTF-8")
            except WitnessMalformed as exc:
                yield number, exc


def last_line(path: Path, block: int = 64 * 1024) -> WitnessLine | None:
    """The newest well-formed line of ``path`` (None when there is none), read from the end of the
    file a block at a time (the file grows by a line per checkpoint for as long as the trail lives)."""
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
                    try:
                        return parse_line(raw.decode("utf-8"))
                    except (UnicodeDecodeError, WitnessMalformed):
                        continue
            tail = lines[0] if start > 0 else b""
            if len(tail) > MAX_LINE:
                tail = b""
    return None


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
        """The newest well-formed line of the file (None without a file or lines)."""
        if self.path is None or not self.path.exists():
            return None
        return last_line(self.path)

    def append(self, line: WitnessLine) -> None:
        """Write ``line`` to the file (one write, then fsync) and send it to syslog.
        A file that cannot be written raises OSError (the checkpoint then does not happen); a
        syslog that cannot be reached is logged."""
        if self.path is not None:
            data = (line.text() + "\n").encode()
            fd = self._open()
            try:
                if os.write(fd, data) != len(data):
                    raise OSError("short write to the audit witness file")
                os.fsync(fd)
            finally:
                os.close(fd)
        if self._syslog is not None:
            text = line.text(with_signature=False)
            if self._syslog.socktype == socket.SOCK_STREAM:
                text += "\n"  # TCP: one message per line (RFC 6587 section 3.4.2)
            self._syslog.emit(logging.LogRecord("tessera.audit.witness", logging.INFO, __file__, 0, "%s", (text,), None))

    def close(self) -> None:
        if self._syslog is not None:
            self._syslog.close()

    @property
    def enabled(self) -> bool:
        return self.path is not None or self._syslog is not None


def witness_from_settings(home: Path, path: str | None, syslog: str | None) -> Witness:
    """The witness of a deployment: ``path`` ("" or None: ``<home>/audit-witness.log``; ``off``: no
    file) and ``syslog`` (an address for :func:`syslog_handler`, or None)."""
    file = None if (path or "").strip().lower() in ("off", "none") else Path(path) if path else home / "audit-witness.log"
    return Witness(file, syslog or None)


__all__ = ["VERSION", "Witness", "WitnessLine", "WitnessMalformed", "last_line", "parse_line", "read_witness",
           "syslog_handler", "witness_from_settings"]
