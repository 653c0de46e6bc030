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

from audit import chain
from audit.errors import CheckpointUnavailable
from audit.models import AuditCheckpoint, AuditHead
from ca.authority import CertificateAuthority, utc_now
from ca.cms import sign_data
from ca.errors import CaError, NotFound
from ca.issuance import IssuerContext, issue_certificate
from ca.keys import KeyType
from ca.models import Signer
from ca.profiles import get_profile
from ca.subjects import SubjectRequest
from ca.tsa import TimeStampResp, TimestampReply

#: ca_signer.role of the audit key (one per deployment, under the staff CA)
SIGNER_ROLE = "audit"
SIGNER_AUTHORITY = "staff"
KEY_LABEL = "tessera-audit-signer"
#: eContentType of a signed checkpoint statement (under Tessera's example arc, like the policies)
CHECKPOINT_CONTENT_TYPE = "2.999.1863.3.1"


class TimeStamper(Protocol):
    def respond(self, query_der: bytes) -> TimestampReply: ...


def prepare_audit_signer(ca: CertificateAuthority, backend: str | None = None,
                         key_dir: Path | None = None) -> list[str]:
    """Create the audit key and its ``service`` certificate from the staff CA, registered as the
    ``audit`` signer (ca_signer). The key goes where the staff CA's key is (``pkcs11``: the CA
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
        context = IssuerContext(authority, issuer_cert, ca.keyring.get(authority.key_ref))
        row = issue_certificate(session, context, get_profile("service"), key.public_key(),
                                SubjectRequest(tuple(attributes)), "tessera init", ca.urls, ca.clock())
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
    """Makes checkpoints of the current head: on demand, or from :class:`audit.trail.AuditTrail` every N entries."""

    def __init__(self, ca: CertificateAuthority, sessions: sessionmaker[Session],
                 tsa: TimeStamper | None = None, clock: Callable[[], datetime.datetime] = utc_now) -> None:
        self.ca = ca
        self.sessions = sessions
        if tsa is None:
            from ca.timestamps import StoredTimeStampAuthority

            tsa = StoredTimeStampAuthority(ca, sessions)
        self.tsa = tsa
        self.clock = clock

    def checkpoint(self) -> AuditCheckpoint:
        """Sign and time-stamp the committed head; returns the existing checkpoint if it already has one."""
        with self.sessions() as session:
            head = session.execute(select(AuditHead.seq, AuditHead.entry_hash).where(AuditHead.id == 1)).one_or_none()
            if head is None:
                raise CheckpointUnavailable("the audit trail is not initialised: run the migrations")
            seq, head_hash = int(head[0]), str(head[1])
            if seq == 0:
                raise CheckpointUnavailable("the audit trail is empty: nothing to checkpoint")
            existing = session.scalar(select(AuditCheckpoint).where(AuditCheckpoint.seq == seq))
            if existing is not None:
                return existing
            previous = int(session.scalar(select(func.max(AuditCheckpoint.seq)).where(AuditCheckpoint.seq < seq)) or 0)
        return self._make(seq, head_hash, previous)

    def _make(self, seq: int, head_hash: str, previous: int) -> AuditCheckpoint:
        """Sign, time-stamp and store the checkpoint of entry ``seq`` with hash ``head_hash``."""
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
            return row
        except IntegrityError:  # another process checkpointed the same head a moment ago
            with self.sessions() as session:
                other = session.scalar(select(AuditCheckpoint).where(AuditCheckpoint.seq == seq))
                if other is None:
                    raise
                return other


def list_checkpoints(sessions: sessionmaker[Session], limit: int = 100, offset: int = 0) -> list[AuditCheckpoint]:
    """Checkpoints, newest first."""
    with sessions() as session:
        return list(session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.seq.desc())
                                    .limit(limit).offset(offset)))
