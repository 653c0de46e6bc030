"""Certificate revocation lists per authority (RFC 5280 section 5)."""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select
from sqlalchemy.orm import Session

from ca.keys import SigningKey
from ca.models import Authority, Certificate, Crl
from ca.signing import sign_crl


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
    (absent for unspecified, section 5.3.1); CRLNumber increases by one (section 5.2.3).
    """
    locked = session.scalar(select(Authority).where(Authority.id == authority.id).with_for_update())
    assert locked is not None
    locked.crl_number += 1
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
    for serial, revoked_at, reason in revoked:
        entry = x509.RevokedCertificateBuilder().serial_number(int(serial, 16)).revocation_date(revoked_at)
        if reason and reason != x509.ReasonFlags.unspecified.value:
            entry = entry.add_extension(x509.CRLReason(x509.ReasonFlags(reason)), critical=False)
        builder = builder.add_revoked_certificate(entry.build())


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
    return row


def latest_crl(session: Session, authority: Authority) -> Crl | None:
    return session.scalar(
        select(Crl).where(Crl.authority_id == authority.id).order_by(Crl.number.desc()).limit(1)
    )
