"""Certificate revocation lists per authority (RFC 5280 section 5).

A CRL number, once published, is never used again (section 5.2.3: "monotonically increasing").
The database holds the last one (``ca_authority.crl_number``), but a database restored from a
backup holds an older one: so when the deployment's sessions carry a :class:`PublicationWitness`
(``Session.info[PUBLICATION_WITNESS]``; audit.witness keeps one outside the database), the next
number is above both the database's and the witness's, and every publication is told to the
witness (:class:`CrlPublication`) with the revocations it adds and the entries it drops, so that a
restored database can learn what it lost.
"""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select
from sqlalchemy.orm import Session

from ca.errors import CaError
from ca.keys import SigningKey
from ca.models import Authority, Certificate, Crl
from ca.signing import sign_crl

#: the key of ``Session.info`` (set through the session factory's ``info``) naming the deployment's witness
PUBLICATION_WITNESS = "tessera.ca.crl.publication_witness"


class CrlWitnessUnavailable(CaError):
    """The witness cannot record the CRL: it is not published (its number could be reused later)."""

    kind = "crl-witness-unavailable"


@dataclass(frozen=True)
class WitnessedRevocation:
    """A revocation as a CRL lists it (RFC 5280 section 5.1.2.6): serial, revocationDate, reasonCode."""

    serial_hex: str
    revoked_at: datetime.datetime
    reason: str | None


@dataclass(frozen=True)
class CrlPublication:
    """What a newly signed CRL published: its issuer (name and subjectKeyIdentifier, hex), its
    CRLNumber and thisUpdate, the SHA-256 of its DER, the entries that were not on the issuer's
    previous CRL (``added``) and the serials that were and are no more (``removed``: a hold
    released, or a certificate expired)."""

    authority: str
    key_id: str
    number: int
    this_update: datetime.datetime
    crl_sha256: str
    added: tuple[WitnessedRevocation, ...]
    removed: tuple[str, ...]


class PublicationWitness(Protocol):
    """Where CRL numbers and publications are kept outside the database (audit.witness.Witness)."""

    def crl_number_floor(self, authority: str, key_id: str) -> int:
        """The highest CRL number witnessed for the authority with this key (0: none)."""

    def crl_published(self, session: Session, publication: CrlPublication) -> None:
        """Record ``publication`` when ``session``'s transaction commits (before it does); raise
        :class:`CrlWitnessUnavailable` if it cannot, so that the CRL is not published."""


def key_id(certificate: x509.Certificate) -> str:
    """The authority's subjectKeyIdentifier (RFC 5280 section 4.2.1.2) in lower-case hex."""
    return certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest.hex()


def build_crl(
    session: Session,
    authority: Authority,
    issuer_certificate: x509.Certificate,
    key: SigningKey,
    now: datetime.datetime,
    period: datetime.timedelta,
) -> Crl:
    """Sign and store the next full CRL of ``authority``; the caller commits.

    Lists every unexpired certificate that is revoked or on hold, with its reason code
    (absent for unspecified, section 5.3.1); CRLNumber (section 5.2.3) is one more than the
    highest number the database or the session's :class:`PublicationWitness` knows.
    """
    witness: PublicationWitness | None = session.info.get(PUBLICATION_WITNESS)
    issuer_key_id = key_id(issuer_certificate)
    previous = latest_crl(session, authority) if witness is not None else None
    locked = session.scalar(select(Authority).where(Authority.id == authority.id).with_for_update())
    assert locked is not None
    floor = witness.crl_number_floor(locked.name, issuer_key_id) if witness is not None else 0
    locked.crl_number = max(locked.crl_number, floor) + 1
    this_update = now.replace(microsecond=0)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer_certificate.subject)
        .last_update(this_update)
        .next_update(this_update + period)
        .add_extension(x509.CRLNumber(locked.crl_number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                issuer_certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            ),
            critical=False,
        )
    )
    revoked = session.execute(
        select(Certificate.serial_hex, Certificate.revoked_at, Certificate.revocation_reason).where(
            Certificate.issuer_id == authority.id,
            Certificate.status.in_(("revoked", "on-hold")),
            Certificate.not_after > now,
        )
    )
    listed: list[WitnessedRevocation] = []
    for serial, revoked_at, reason in revoked:
        assert revoked_at is not None  # set by ca.revocation.revoke with the status
        entry = x509.RevokedCertificateBuilder().serial_number(int(serial, 16)).revocation_date(revoked_at)
        if reason and reason != x509.ReasonFlags.unspecified.value:
            entry = entry.add_extension(x509.CRLReason(x509.ReasonFlags(reason)), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
        listed.append(WitnessedRevocation(serial, revoked_at, reason))

    signed = sign_crl(builder, key)
    row = Crl(
        authority_id=authority.id,
        number=locked.crl_number,
        this_update=this_update,
        next_update=this_update + period,
        der=signed.public_bytes(Encoding.DER),
    )
    session.add(row)
    session.flush()
    if witness is not None:
        before = {format(r.serial_number, "x") for r in x509.load_der_x509_crl(previous.der)} if previous else set()
        now_listed = {r.serial_hex for r in listed}
        witness.crl_published(session, CrlPublication(
            locked.name, issuer_key_id, locked.crl_number, this_update, hashlib.sha256(row.der).hexdigest(),
            tuple(r for r in listed if r.serial_hex not in before), tuple(sorted(before - now_listed))))
    return row


def latest_crl(session: Session, authority: Authority) -> Crl | None:
    return session.scalar(
        select(Crl).where(Crl.authority_id == authority.id).order_by(Crl.number.desc()).limit(1)
    )
