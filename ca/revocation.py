"""Revoking certificates and releasing holds (RFC 5280 section 5.3.1 reason codes)."""

from __future__ import annotations

import datetime
import re

from cryptography import x509
from sqlalchemy import delete
from sqlalchemy.orm import Session

from ca.errors import InvalidRequest, InvalidStateTransition
from ca.models import Certificate, CertificateStatus, OcspResponse

#: Reasons an operator may give. removeFromCRL is not a revocation reason: it only appears in
#: delta CRLs when a hold is released (RFC 5280 section 5.3.1).
REASONS: dict[str, x509.ReasonFlags] = {
    flag.value: flag for flag in x509.ReasonFlags if flag is not x509.ReasonFlags.remove_from_crl
}


def parse_reason(text: str) -> x509.ReasonFlags:
    """Accept the RFC name (``keyCompromise``) or a kebab/snake spelling (``key-compromise``)."""
    wanted = re.sub(r"[-_\s]", "", text).lower()
    for name, flag in REASONS.items():
        if name.lower() == wanted:
            return flag
    raise InvalidRequest(f"unknown revocation reason {text!r}; use one of {', '.join(REASONS)}")


def revoke(session: Session, certificate: Certificate, reason: x509.ReasonFlags, now: datetime.datetime) -> None:
    """Mark ``certificate`` revoked (or on hold); the caller commits with the new CRL."""
    if certificate.status == CertificateStatus.REVOKED:
        raise InvalidStateTransition(f"certificate {certificate.serial_hex} is already revoked")
    if certificate.status == CertificateStatus.ON_HOLD and reason is x509.ReasonFlags.certificate_hold:
        raise InvalidStateTransition(f"certificate {certificate.serial_hex} is already on hold")
    if certificate.not_after <= now:
        raise InvalidStateTransition(f"certificate {certificate.serial_hex} has expired; there is nothing to revoke")
    if certificate.status == CertificateStatus.VALID:
        certificate.revoked_at = now.replace(microsecond=0)
    # a hold made final keeps its original revocation date (RFC 5280 section 5.3.1, certificateHold)
    certificate.status = (CertificateStatus.ON_HOLD if reason is x509.ReasonFlags.certificate_hold
                          else CertificateStatus.REVOKED)
    certificate.revocation_reason = reason.value
    certificate.status_changed_at = now
    forget_ocsp_responses(session, certificate)


def release_hold(session: Session, certificate: Certificate, now: datetime.datetime) -> None:
    """Take a certificate off hold: it is valid again (removeFromCRL in a delta CRL)."""
    if certificate.status != CertificateStatus.ON_HOLD:
        raise InvalidStateTransition(f"certificate {certificate.serial_hex} is not on hold")
    certificate.status = CertificateStatus.VALID
    certificate.revoked_at = None
    certificate.revocation_reason = None
    certificate.status_changed_at = now
    forget_ocsp_responses(session, certificate)


def forget_ocsp_responses(session: Session, certificate: Certificate) -> None:
    """Drop pre-produced OCSP responses in the same transaction as the status change."""
    session.execute(delete(OcspResponse).where(OcspResponse.certificate_id == certificate.id))
