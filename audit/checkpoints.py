"""Checkpoints: the chain's head signed by the audit key and time-stamped by our TSA.

A checkpoint states "the trail had ``seq`` entries and the last one hashed to ``entry_hash``"
(:func:`audit.chain.checkpoint_statement`). The statement is signed as CMS SignedData (RFC 5652
section 5, eContentType :data:`CHECKPOINT_CONTENT_TYPE`, via :func:`ca.cms.sign_data`) by the audit key, whose certificate the staff
CA issued under the ``service`` profile; the SHA-256 of that signature is then time-stamped by the
TSA (RFC 3161 section 2.4). Whoever rewrites the trail after a checkpoint must forge both.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from asn1crypto import tsp
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from store.engine import read_snapshot

from audit import chain
from audit.errors import CheckpointRefused, CheckpointUnavailable
from audit.models import AuditCheckpoint, AuditEntry, AuditHead
from audit.verification import Problem, check_extension
from audit.witness import Witness, WitnessLine
from ca.authority import INIT_REQUESTER, CertificateAuthority, utc_now
from ca.cms import sign_data
from ca.errors import CaError, NotFound
from ca.keys import KeyType
from ca.models import Signer
from ca.subjects import SubjectRequest
from ca.tsa import TimeStampResp, TimestampReply

log = logging.getLogger("tessera.audit")

#: ca_signer.role of the audit key (one per deployment, under the staff CA)
SIGNER_ROLE = "audit"
SIGNER_AUTHORITY = "staff"
KEY_LABEL = "tessera-audit-signer"
CHECKPOINT_CONTENT_TYPE = chain.CHECKPOINT_CONTENT_TYPE


class TimeStamper(Protocol):
    def respond(self, query_der: bytes) -> TimestampReply: ...


def prepare_audit_signer(ca: CertificateAuthority, backend: str | None = None,
                         key_dir: Path | None = None) -> list[str]:
    """Create the audit key and its ``service`` certificate from the staff CA (issued by the CA in this
    transaction, audited as ``cert.issue``), registered as the ``audit`` signer (ca_signer). The key goes where the staff CA's key is (``pkcs11``: the CA
    token; ``file``: an encrypted PKCS#8 file beside it) unless ``backend``/``key_dir`` say
    otherwise. Idempotent: a line per step done, or ``[]`` when all was there."""
    with ca.sessions.begin() as session:
        authority = ca.authority(session, SIGNER_AUTHORITY)
        existing = session.scalar(select(Signer).where(Signer.role == SIGNER_ROLE, Signer.authority_id == authority.id))
        if existing is not None:
            return []
        scheme, _, rest = authority.key_ref.partition(":")
        backend = backend or scheme
        if backend == "file" and key_dir is None:
            key_dir = Path(rest).parent if scheme == "file" else None
        if backend == "pkcs11":
            reference = f"pkcs11:{KEY_LABEL}"
        elif backend == "file" and key_dir is not None:
            reference = f"file:{key_dir / (KEY_LABEL + '.key.pem')}"
        else:
            raise CheckpointUnavailable("file audit keys need a key folder")
        left_over = (ca.keyring.token.has_object(KEY_LABEL) if backend == "pkcs11"
                     else Path(reference[len("file:"):]).exists())
        if left_over:  # by an interrupted earlier run: labels may repeat on a token, so reuse it
            key = ca.keyring.get(reference)
        else:
            key = ca.keyring.generate(backend, KEY_LABEL, KeyType.EC_P256, key_dir)
        issuer_cert = x509.load_der_x509_certificate(authority.certificate_der)
        organisation = issuer_cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        country = issuer_cert.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)
        attributes = []
        if country:
            attributes.append((NameOID.COUNTRY_NAME, str(country[0].value)))
        attributes += [(NameOID.ORGANIZATION_NAME, str(organisation[0].value) if organisation else "Tessera"),
                       (NameOID.ORGANIZATIONAL_UNIT_NAME, "Audit"),
                       (NameOID.COMMON_NAME, "Tessera audit trail signer")]
        row = ca.issue_for_key(session, "service", key.public_key(), SubjectRequest(tuple(attributes)),
                               INIT_REQUESTER, issuer=SIGNER_AUTHORITY)
        session.add(Signer(role=SIGNER_ROLE, authority_id=authority.id, certificate_id=row.id, key_ref=key.reference))
        return [f"created the audit trail signer: {row.subject} (key {key.reference})"]


def timestamp_query(data: bytes) -> bytes:
    """A DER TimeStampReq (RFC 3161 section 2.4.1) over SHA-256(data), asking for the TSA's certificate."""
    return tsp.TimeStampReq({
        "version": "v1",
        "message_imprint": {"hash_algorithm": {"algorithm": "sha256"}, "hashed_message": hashlib.sha256(data).digest()},
        "nonce": secrets.randbits(63),
        "cert_req": True,
    }).dump()


class Checkpointer:
    """Makes checkpoints of the current head: on demand, from :class:`audit.trail.AuditTrail` every
    N entries, or by time (audit.checkpoint_schedule).

    With a ``witness`` (audit.witness) every checkpoint is also appended there, and the
    checkpointer refuses (:class:`CheckpointRefused`) to sign a chain that does not extend the
    head it last witnessed: that head's entry must still have the witnessed hash and its checkpoint
    must still be in the database, and every entry after it must chain correctly to the head.
    Without a witness the same is checked from the database's newest checkpoint.
    """

    def __init__(self, ca: CertificateAuthority, sessions: sessionmaker[Session],
                 tsa: TimeStamper | None = None, clock: Callable[[], datetime.datetime] = utc_now,
                 witness: Witness | None = None) -> None:
        self.ca = ca
        self.sessions = sessions
        if tsa is None:
            from ca.timestamps import StoredTimeStampAuthority

            tsa = StoredTimeStampAuthority(ca, sessions)
        self.tsa = tsa
        self.clock = clock
        self.witness = witness if witness is not None and witness.enabled else None
        #: told about every refusal (AuditTrail records it as an ``audit.checkpoint`` entry)
        self.on_refusal: Callable[[CheckpointRefused], None] | None = None

    def checkpoint(self) -> AuditCheckpoint:
        """Sign and time-stamp the committed head; returns the existing checkpoint if it already has one.
        Raises :class:`CheckpointRefused` (logged, and reported to ``on_refusal``) when the chain
        does not extend the last signed head, :class:`CheckpointUnavailable` when it cannot sign."""
        try:
            if self.witness is None:
                return self._checkpoint(None)
            try:
                with self.witness.locked():
                    return self._checkpoint(self.witness)
            except OSError as exc:
                raise CheckpointUnavailable(f"the audit witness file cannot be written: {exc.strerror or exc}") from None
        except (ValueError, TypeError) as exc:  # a tampered row the ORM cannot even read
            refused = CheckpointRefused("trail-malformed", f"a row of the trail cannot be read ({type(exc).__name__}): "
                                        "run `tessera audit verify`")
            log.error("%s", refused)
            if self.on_refusal is not None:
                self.on_refusal(refused)
            raise refused from None
        except CheckpointRefused as refused:
            log.error("%s", refused)
            if self.on_refusal is not None:
                self.on_refusal(refused)
            raise

    def _checkpoint(self, witness: Witness | None) -> AuditCheckpoint:
        witnessed = witness.last() if witness is not None else None
        with self.sessions() as session:
            read_snapshot(session)  # the head and the entries it covers, as of one moment
            head = session.execute(select(AuditHead.seq, AuditHead.entry_hash).where(AuditHead.id == 1)).one_or_none()
            if head is None:
                raise CheckpointUnavailable("the audit trail is not initialised: run the migrations")
            seq, head_hash = int(head[0]), str(head[1])
            if witnessed is None and seq == 0:
                raise CheckpointUnavailable("the audit trail is empty: nothing to checkpoint")
            start_seq, start_hash = self._last_signed(session, witnessed, seq)
            problems = extension_problems(session, start_seq, start_hash, seq, head_hash)
            if problems:
                first = problems[0]
                raise CheckpointRefused(str(first).split(":", 1)[0], f"the chain does not extend the head last "
                                        f"signed (seq {start_seq}): {first.message}"
                                        + (f" (and {len(problems) - 1} more finding(s))" if len(problems) > 1 else ""))
            existing = session.scalar(select(AuditCheckpoint).where(AuditCheckpoint.seq == seq))
            if existing is not None:
                if witness is not None and (witnessed is None or witnessed.seq < seq):
                    witness.append(WitnessLine.of(existing.id, existing.seq, existing.entry_hash, existing.created_at,
                                                  existing.previous_seq, existing.signature))
                return existing
            previous = int(session.scalar(select(func.max(AuditCheckpoint.seq)).where(AuditCheckpoint.seq < seq)) or 0)
        return self._make(seq, head_hash, previous, witness)

    def _last_signed(self, session: Session, witnessed: WitnessLine | None, head_seq: int) -> tuple[int, str]:
        """(seq, hash) of the head last signed: the witness's newest line, checked against the
        database (refused if its checkpoint is gone or differs, or the trail is shorter), else the
        database's newest checkpoint, else the genesis."""
        if witnessed is None:
            row = session.execute(select(AuditCheckpoint.seq, AuditCheckpoint.entry_hash)
                                  .order_by(AuditCheckpoint.seq.desc()).limit(1)).one_or_none()
            return (int(row[0]), str(row[1])) if row is not None else (0, chain.GENESIS)
        if head_seq < witnessed.seq:
            raise CheckpointRefused(f"trail-truncated after seq={head_seq}",
                                    f"the witness records entries up to {witnessed.seq} ({witnessed.time}) but the "
                                    f"chain head is at {head_seq}")
        stored = session.execute(select(AuditCheckpoint.id, AuditCheckpoint.signature)
                                 .where(AuditCheckpoint.seq == witnessed.seq)).one_or_none()
        if stored is None:
            raise CheckpointRefused(f"checkpoint-missing seq={witnessed.seq}",
                                    f"the checkpoint witnessed at {witnessed.time} is not in the database")
        if not isinstance(stored[1], bytes) or hashlib.sha256(stored[1]).hexdigest() != witnessed.signature_sha256:
            raise CheckpointRefused(f"checkpoint-changed seq={witnessed.seq}",
                                    f"checkpoint #{stored[0]} is not the one witnessed at {witnessed.time}")
        return witnessed.seq, witnessed.entry_hash

    def _make(self, seq: int, head_hash: str, previous: int, witness: Witness | None = None) -> AuditCheckpoint:
        """Sign, time-stamp and store the checkpoint of entry ``seq`` with hash ``head_hash``
        (and witness it, inside the storing transaction: a checkpoint that cannot be witnessed is not stored)."""
        try:
            certificate, key_ref = self.ca.signer(SIGNER_ROLE, SIGNER_AUTHORITY)
            key = self.ca.keyring.get(key_ref)
            chain_certs = [c for c in self.ca.chain(SIGNER_AUTHORITY) if c.subject != c.issuer]
        except NotFound:
            raise CheckpointUnavailable("there is no audit signer yet: run `tessera init` (prepare_audit_signer)") from None
        except CaError as exc:
            raise CheckpointUnavailable(f"the audit key is unavailable: {exc}") from None
        now = self.clock().replace(microsecond=0)
        statement = chain.checkpoint_statement(seq, head_hash, now, previous)
        try:
            signature = sign_data(statement, CHECKPOINT_CONTENT_TYPE, certificate, key, now, [certificate, *chain_certs])
        except CaError as exc:
            raise CheckpointUnavailable(f"the audit key cannot sign: {exc}") from None
        reply = self.tsa.respond(timestamp_query(signature))
        if not reply.granted:
            raise CheckpointUnavailable(f"the time-stamping authority refused: {reply.failure}")
        token = TimeStampResp.load(reply.der)["time_stamp_token"].dump()
        try:
            with self.sessions.begin() as session:
                row = AuditCheckpoint(seq=seq, previous_seq=previous, entry_hash=head_hash, created_at=now, signature=signature,
                                      signer_certificate=certificate.public_bytes(Encoding.DER), timestamp_token=token)
                session.add(row)
                session.flush()
                if witness is not None:
                    witness.append(WitnessLine.of(row.id, seq, head_hash, now, previous, signature))
            return row
        except IntegrityError:  # another process checkpointed the same head a moment ago
            with self.sessions() as session:
                other = session.scalar(select(AuditCheckpoint).where(AuditCheckpoint.seq == seq))
                if other is None:
                    raise
                return other


def extension_problems(session: Session, start_seq: int, start_hash: str, head_seq: int, head_hash: str) -> list[Problem]:
    """Findings if the entries from ``start_seq`` (which must still hash to ``start_hash``) to the
    head do not form an unbroken chain ending in ``head_hash``: the check before signing."""
    connection = session.connection()
    if start_seq > 0:
        row = connection.execute(select(AuditEntry.entry_hash).where(AuditEntry.seq == start_seq)).one_or_none()
        if row is None:
            return [Problem("deleted", start_seq, f"entry {start_seq}, last signed, is missing")]
        if row[0] != start_hash:
            return [Problem("changed", start_seq, f"entry {start_seq} no longer has the hash last signed: the entries "
                                                  "up to it were rewritten")]
    return check_extension(connection, start_seq, start_hash, head_seq, head_hash)


def list_checkpoints(sessions: sessionmaker[Session], limit: int = 100, offset: int = 0) -> list[AuditCheckpoint]:
    """Checkpoints, newest first."""
    with sessions() as session:
        return list(session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.seq.desc())
                                    .limit(limit).offset(offset)))
