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

import datetime
import hashlib
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from asn1crypto import cms, tsp
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from audit import chain
from audit.checkpoints import CHECKPOINT_CONTENT_TYPE
from audit.models import AuditCheckpoint, AuditHead
from ca.models import Authority

_MAX_OFFSET = 4  # how far a moved entry's original number is searched
_TIMESTAMP_SLACK = datetime.timedelta(minutes=10)


@dataclass(frozen=True)
class Problem:
    """One finding: its kind, the entry it concerns (``None`` for the trail as a whole) and why."""

    kind: str  # changed, deleted, inserted, swapped, reordered, truncated, checkpoint
    seq: int | None
    message: str

    def __str__(self) -> str:
        where = f"entry {self.seq}" if self.seq is not None else "trail"
        return f"{where}: {self.kind}: {self.message}"

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "seq": self.seq, "message": self.message}


@dataclass
class VerificationReport:
    entries: int = 0
    last_seq: int = 0
    head_seq: int = 0
    checkpoints: int = 0
    last_checkpoint_seq: int | None = None
    seconds: float = 0.0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, object]:
        return {"ok": self.ok, "entries": self.entries, "last_seq": self.last_seq, "head_seq": self.head_seq,
                "checkpoints": self.checkpoints, "last_checkpoint_seq": self.last_checkpoint_seq,
                "seconds": round(self.seconds, 3), "problems": [p.as_dict() for p in self.problems]}


_SELECT = ("SELECT seq, at, event_type, subject, subject_role, object, result, source_address, request_id, "
           "details, prev_hash, entry_hash FROM audit_entry ORDER BY seq")


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


def verify(sessions: sessionmaker[Session], anchors: Sequence[x509.Certificate] = (),
           progress: Callable[[int], None] | None = None, batch: int = 20_000) -> VerificationReport:
    """Verify the whole trail. ``anchors``: trusted root certificates held outside the database
    (default: trust the staff CA certificate stored in it). ``progress`` gets entry counts."""
    started = time.perf_counter()
    report = VerificationReport()
    with sessions() as session:
        head = session.execute(select(AuditHead.seq, AuditHead.entry_hash).where(AuditHead.id == 1)).one_or_none()
        checkpoints = list(session.execute(select(
            AuditCheckpoint.id, AuditCheckpoint.seq, AuditCheckpoint.previous_seq, AuditCheckpoint.entry_hash, AuditCheckpoint.created_at,
            AuditCheckpoint.signature, AuditCheckpoint.signer_certificate, AuditCheckpoint.timestamp_token,
        ).order_by(AuditCheckpoint.seq)))
        staff = session.scalar(select(Authority.certificate_der).where(Authority.name == "staff"))
        wanted = {int(c[1]) for c in checkpoints}
        # driver values, no type processing: the time is turned into its canonical text directly
        connection = session.connection().execution_options(stream_results=True, yield_per=batch)
        rows = connection.exec_driver_sql(_SELECT)
        walk = _walk(_plain(rows, progress, batch), wanted)
        report.problems.extend(walk.problems)
        report.entries, report.last_seq = walk.count, walk.last_seq
    if head is None:
        report.problems.append(Problem("truncated", None, "the chain head row is missing"))
    else:
        report.head_seq = int(head[0])
        report.problems.extend(_check_head(int(head[0]), str(head[1]), walk))
    report.checkpoints = len(checkpoints)
    report.last_checkpoint_seq = int(checkpoints[-1][1]) if checkpoints else None
    staff_cert = x509.load_der_x509_certificate(staff) if staff is not None else None
    report.problems.extend(_check_checkpoints(checkpoints, walk, staff_cert, list(anchors)))
    report.problems.sort(key=lambda p: (p.seq if p.seq is not None else -1, p.kind))
    report.seconds = time.perf_counter() - started
    return report


def _plain(rows: Any, progress: Callable[[int], None] | None, batch: int) -> Iterable[Sequence[Any]]:
    """Rows a batch at a time (fetchmany), reporting progress per batch."""
    for chunk in rows.partitions(batch):
        yield from chunk
        if progress is not None:
            progress(len(chunk))


@dataclass
class _Walk:
    count: int = 0
    last_seq: int = 0
    last_hash: str = chain.GENESIS
    problems: list[Problem] = field(default_factory=list)
    flagged: set[int] = field(default_factory=set)
    #: stored hash of the entries checkpoints cover
    covered: dict[int, str] = field(default_factory=dict)
    #: (position, original seq) of entries whose hash matches another number
    moved: list[tuple[int, int]] = field(default_factory=list)


def _walk(rows: Iterable[tuple], wanted: set[int]) -> _Walk:
    w = _Walk()
    sha256, fromhex, dumps, version = hashlib.sha256, bytes.fromhex, chain._dumps, chain.VERSION
    to_text, naive_datetime = _driver_time, datetime.datetime
    expected = 1
    prev_seq, prev_hash_stored, prev2_hash_stored = 0, chain.GENESIS, None
    prev_moved = False
    problems, flagged = w.problems, w.flagged
    for seq, at, event_type, subject, role, obj, result, source, request_id, details, prev_hash, stored in rows:
        w.count += 1
        kind = type(at)
        if kind is str and len(at) == 26:
            t = at[:10] + "T" + at[11:] + "Z"
        elif kind is naive_datetime and at.tzinfo is None:
            t = at.isoformat(timespec="microseconds") + "Z"
        else:
            t = to_text(at)
        ok = sha256(fromhex(prev_hash) + dumps([version, seq, t, event_type, subject, role, obj, result, source,
                                                request_id, details]).encode()).hexdigest() == stored
        gap = seq != expected
        if gap:
            missing = f"entry {expected} is" if seq - expected == 1 else f"entries {expected} to {seq - 1} are"
            problems.append(Problem("deleted", expected, f"{missing} missing (the sequence jumps "
                                                         f"from {prev_seq} to {seq})"))
            flagged.update(range(expected, seq))
        moved = False
        if not ok:
            original = _original_number(seq, t, event_type, subject, role, obj, result, source, request_id,
                                        details, prev_hash, stored)
            if original is not None:
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
    w.last_seq, w.last_hash = prev_seq, prev_hash_stored
    w.problems.extend(_explain_moves(w.moved))
    return w


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
                       anchors: list[x509.Certificate]) -> list[Problem]:
    problems: list[Problem] = []
    if staff is None:
        return [Problem("checkpoint", None, "the staff CA certificate is missing: checkpoints cannot be checked")] if rows else []
    if anchors and not any(_issued_by(staff, a) or staff == a for a in anchors):
        return [Problem("checkpoint", None, "the staff CA stored in the database does not chain to the given anchor")]
    last_good = 0
    present = {int(r[1]) for r in rows}
    for cid, seq, previous, entry_hash, created_at, signature, signer_der, token in rows:
        seq = int(seq)
        reason = _checkpoint_signature_problem(seq, int(previous), entry_hash, created_at, signature, signer_der,
                                               token, staff)
        if reason is not None:
            problems.append(Problem("checkpoint", seq, f"checkpoint #{cid} is not authentic: {reason}"))
            continue
        if previous and int(previous) not in present:
            problems.append(Problem("checkpoint", int(previous), f"the checkpoint of entries up to {previous} was "
                                    f"deleted (checkpoint #{cid} names it as its predecessor)"))
        if seq > w.last_seq:
            gone = f"entry {w.last_seq + 1} is" if seq == w.last_seq + 1 else f"entries {w.last_seq + 1} to {seq} are"
            problems.append(Problem("truncated", w.last_seq + 1, f"the tail was cut: checkpoint #{cid} of "
                                    f"{created_at:%Y-%m-%d %H:%M:%SZ} covers entries up to {seq}, {gone} gone"))
        elif w.covered.get(seq) is None:
            problems.append(Problem("deleted", seq, f"entry {seq}, covered by checkpoint #{cid}, is missing"))
        elif w.covered[seq] != entry_hash:
            if not any(last_good < s <= seq for s in w.flagged):
                problems.append(Problem("changed", seq, f"entries {last_good + 1} to {seq} were rewritten with "
                                        f"recomputed hashes: entry {seq} no longer has the hash signed in "
                                        f"checkpoint #{cid}"))
        else:
            last_good = seq
    return problems


_ISSUED: dict[tuple[bytes, bytes], bool] = {}


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Signature check of ``cert`` by ``issuer``, remembered (a trail has thousands of checkpoints, few signers)."""
    key = (cert.fingerprint(hashes.SHA256()), issuer.fingerprint(hashes.SHA256()))
    known = _ISSUED.get(key)
    if known is None:
        try:
            cert.verify_directly_issued_by(issuer)
            known = True
        except (ValueError, TypeError, InvalidSignature):
            known = False
        if len(_ISSUED) > 1000:
            _ISSUED.clear()
        _ISSUED[key] = known
    return known


def _has_eku(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> bool:
    try:
        return oid in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False


def _checkpoint_signature_problem(seq: int, previous: int, entry_hash: str, created_at: datetime.datetime, signature: bytes,
                                  signer_der: bytes, token: bytes, staff: x509.Certificate) -> str | None:
    try:
        content, signer, _ = open_signed_data(signature, CHECKPOINT_CONTENT_TYPE)
    except (ValueError, InvalidSignature) as exc:
        return f"bad signature ({exc})"
    if content != chain.checkpoint_statement(seq, entry_hash, created_at, previous):
        return "the signed statement does not match the checkpoint's sequence number, hash, time or predecessor"
    if signer.public_bytes(_DER) != signer_der:
        return "the stored signer certificate is not the one that signed"
    if not _issued_by(signer, staff):
        return "the audit signer's certificate was not issued by the staff CA"
    if not (signer.not_valid_before_utc <= created_at <= signer.not_valid_after_utc):
        return "the audit signer's certificate was not valid at the checkpoint's time"
    try:
        tst_der, tsa, _ = open_signed_data(token, "tst_info")
    except (ValueError, InvalidSignature) as exc:
        return f"bad time-stamp token ({exc})"
    if not _issued_by(tsa, staff) or not _has_eku(tsa, ExtendedKeyUsageOID.TIME_STAMPING):
        return "the time-stamp token was not signed by our TSA"
    info = tsp.TSTInfo.load(tst_der)
    imprint = info["message_imprint"]
    if imprint["hash_algorithm"]["algorithm"].native != "sha256" or \
            imprint["hashed_message"].native != hashlib.sha256(signature).digest():
        return "the time-stamp token is over something other than the checkpoint's signature"
    gen_time = info["gen_time"].native
    if abs(gen_time - created_at) > _TIMESTAMP_SLACK:
        return f"the time-stamp ({gen_time:%Y-%m-%d %H:%M:%SZ}) is far from the checkpoint's time"
    return None


_DER = Encoding.DER
_HASHES = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384(), "sha512": hashes.SHA512()}


def open_signed_data(data: bytes, content_type: str) -> tuple[bytes, x509.Certificate, list[x509.Certificate]]:
    """Check a CMS SignedData with one signer (RFC 5652 sections 5.4 and 5.6): the content type,
    messageDigest over the encapsulated content, and the signature over the DER SET OF signed
    attributes with the signer certificate's key. Returns (content, signer, certificates)."""
    try:
        info = cms.ContentInfo.load(data, strict=True)
        if info["content_type"].native != "signed_data":
            raise ValueError("not a SignedData")
        signed = info["content"]
        encap = signed["encap_content_info"]
        if encap["content_type"].native != content_type:
            raise ValueError(f"content type is {encap['content_type'].native}, expected {content_type}")
        content = bytes(encap["content"].contents)
        certificates = [x509.load_der_x509_certificate(c.chosen.dump()) for c in signed["certificates"]]
        (signer_info,) = list(signed["signer_infos"])
        sid = signer_info["sid"].chosen
        signer = next(c for c in certificates if c.serial_number == sid["serial_number"].native
                      and c.issuer.public_bytes() == sid["issuer"].dump())
        digest_name = signer_info["digest_algorithm"]["algorithm"].native
        hash_algorithm = _HASHES[digest_name]
        attrs = signer_info["signed_attrs"]
        values = {a["type"].native: a["values"][0] for a in attrs}
        if values["content_type"].native != content_type:
            raise ValueError("the signed contentType attribute differs")
        if values["message_digest"].native != hashlib.new(digest_name, content).digest():
            raise ValueError("the messageDigest does not match the content")
        signed_bytes = b"\x31" + attrs.dump()[1:]  # the SET OF's own tag, not [0] IMPLICIT (section 5.4)
    except (ValueError, KeyError, TypeError, StopIteration) as exc:
        raise ValueError(str(exc) or type(exc).__name__) from None
    key = signer.public_key()
    sig = signer_info["signature"].native
    if isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(sig, signed_bytes, ec.ECDSA(hash_algorithm))
    elif isinstance(key, rsa.RSAPublicKey):
        key.verify(sig, signed_bytes, padding.PKCS1v15(), hash_algorithm)
    else:
        raise ValueError("unsupported signer key type")
    return content, signer, certificates


def report_json(report: VerificationReport) -> str:
    return json.dumps(report.as_dict(), indent=2)
