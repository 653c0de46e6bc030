"""Issuing certificates from CSRs under a profile (RFC 5280 section 4; RFC 2986 for the CSR)."""

from __future__ import annotations

import datetime
import hashlib
import secrets
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import AuthorityInformationAccessOID
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from ca.errors import InvalidCsr, InvalidRequest, KeyPolicyViolation, NotFound
from ca.keys import SigningKey, key_type_of
from ca.models import Authority, Certificate
from ca.profiles import Profile
from ca.signing import sign_certificate
from ca.subjects import SubjectRequest
from ca.urls import PublicUrls

#: CSRs larger than this are refused before parsing (a P-384/RSA-4096 CSR is ~2 KiB)
MAX_CSR_BYTES = 16 * 1024
#: notBefore is set this far in the past to absorb relying parties' clock skew
BACKDATE = datetime.timedelta(minutes=5)


def load_csr(data: bytes) -> x509.CertificateSigningRequest:
    """Parse a PEM or DER CSR and check its self-signature (RFC 2986 section 4.2)."""
    if not data or len(data) > MAX_CSR_BYTES:
        raise InvalidCsr(f"a CSR must be between 1 and {MAX_CSR_BYTES} bytes")
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            csr = x509.load_pem_x509_csr(data)
        else:
            csr = x509.load_der_x509_csr(data)
        valid = csr.is_signature_valid
    except (ValueError, TypeError, x509.UnsupportedGeneralNameType):
        raise InvalidCsr("the CSR cannot be parsed (expected a PKCS#10 request in PEM or DER)") from None
    except Exception as exc:  # unsupported signature algorithms surface as UnsupportedAlgorithm
        raise InvalidCsr(f"the CSR cannot be checked: {type(exc).__name__}") from None
    if not valid:
        raise InvalidCsr("the CSR's signature does not verify: it was not signed by its own key")
    return csr


def new_serial() -> int:
    """A positive serial with 158 random bits, always 20 octets (RFC 5280 section 4.1.2.2).

    The top bit of the 159 is fixed so every serial has the same length and stays positive.
    """
    return secrets.randbits(158) | (1 << 158)


def serial_hex(serial: int) -> str:
    return format(serial, "x")


@dataclass(frozen=True)
class IssuerContext:
    """An issuing authority as the issuing code needs it."""

    authority: Authority
    certificate: x509.Certificate
    key: SigningKey


def build_extensions(
    builder: x509.CertificateBuilder,
    profile: Profile,
    issuer: x509.Certificate,
    issuer_name: str,
    public_key: CertificatePublicKeyTypes,
    alt_names: x509.SubjectAlternativeName | None,
    urls: PublicUrls,
) -> x509.CertificateBuilder:
    """End-entity extensions, all from the profile (RFC 5280 section 4.2.1)."""
    builder = (
        builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(profile.key_usage.extension(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)  # type: ignore[arg-type]
        .add_extension(_authority_key_id(issuer), critical=False)
        .add_extension(
            x509.AuthorityInformationAccess([
                x509.AccessDescription(AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(urls.ocsp(issuer_name))),
                x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(urls.ca_issuers(issuer_name))),
            ]),
            critical=False,
        )
        .add_extension(
            x509.CRLDistributionPoints([
                x509.DistributionPoint([x509.UniformResourceIdentifier(urls.crl(issuer_name))], None, None, None)
            ]),
            critical=False,
        )
        .add_extension(x509.CertificatePolicies([x509.PolicyInformation(profile.policy_oid, None)]), critical=False)
    )
    if profile.extended_key_usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(profile.extended_key_usage)), critical=profile.eku_critical)
    if alt_names is not None:
        builder = builder.add_extension(alt_names, critical=False)
    if profile.ocsp_nocheck:
        builder = builder.add_extension(x509.OCSPNoCheck(), critical=False)
    return builder


def _authority_key_id(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def issue_certificate(
    session: Session,
    issuer: IssuerContext,
    profile: Profile,
    public_key: CertificatePublicKeyTypes,
    subject: SubjectRequest,
    requester: str,
    urls: PublicUrls,
    now: datetime.datetime,
) -> Certificate:
    """Build, sign and store one certificate; the caller commits (one transaction per issuance)."""
    if issuer.authority.name not in profile.issuers:
        raise InvalidRequest(f"profile {profile.name} is issued by {', '.join(profile.issuers)}, not {issuer.authority.name}")
    key_type = key_type_of(public_key)
    if key_type not in profile.key_types:
        allowed = ", ".join(sorted(k.value for k in profile.key_types))
        raise KeyPolicyViolation(f"profile {profile.name} does not accept {key_type.value} keys (allowed: {allowed})")
    if not requester.strip() or len(requester) > 255:
        raise InvalidRequest("the requester must be named (1 to 255 characters)")
    name, alt_names = subject.build(profile)

    not_before = now - BACKDATE
    not_after = min(now + profile.validity, issuer.certificate.not_valid_after_utc)
    if not_after <= now:
        raise InvalidRequest(f"the issuing CA {issuer.authority.name} has expired")
    serial = new_serial()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.certificate.subject)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    builder = build_extensions(builder, profile, issuer.certificate, issuer.authority.name, public_key, alt_names, urls)
    certificate = sign_certificate(builder, issuer.key)
    return store_certificate(session, issuer.authority, certificate, profile.name, requester, now)


def store_certificate(
    session: Session,
    issuer: Authority,
    certificate: x509.Certificate,
    profile: str,
    requester: str,
    now: datetime.datetime,
) -> Certificate:
    der = certificate.public_bytes(Encoding.DER)
    row = Certificate(
        serial_hex=serial_hex(certificate.serial_number),
        issuer_id=issuer.id,
        profile=profile,
        subject=certificate.subject.rfc4514_string(),
        requester=requester.strip(),
        issued_at=now,
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        fingerprint_sha256=hashlib.sha256(der).hexdigest(),
        der=der,
        status="valid",
    )
    # A Core INSERT ... RETURNING: one round trip, without the unit-of-work cost of an ORM flush
    # (issuance is a hot path). The unique serial constraint fires here, inside the caller's transaction.
    values = {column: getattr(row, column) for column in _INSERT_COLUMNS}
    row.id = session.connection().execute(_INSERT_CERTIFICATE, values).scalar_one()
    return row


_INSERT_COLUMNS = tuple(c.key for c in Certificate.__table__.columns if c.key != "id")
#: built once: constructing the statement per call costs more than executing it
_INSERT_CERTIFICATE = insert(Certificate.__table__).returning(Certificate.__table__.c.id)


def find_certificate(session: Session, serial: str) -> Certificate:
    """Look a certificate up by serial (hex, any case, colons allowed)."""
    cleaned = serial.strip().lower().replace(":", "")
    if cleaned.startswith("0x"):
        cleaned = cleaned[2:]
    cleaned = cleaned.lstrip("0") or "0"
    if not cleaned or len(cleaned) > 40 or any(c not in "0123456789abcdef" for c in cleaned):
        raise InvalidRequest(f"{serial!r} is not a hexadecimal serial number")
    row = session.scalar(select(Certificate).where(Certificate.serial_hex == cleaned))
    if row is None:
        raise NotFound(f"no certificate with serial {cleaned}")
    return row
