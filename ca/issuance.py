"""Issuing certificates under a profile (RFC 5280 section 4; RFC 2986 for the CSR): the CA's internals.

Every certificate is issued through :class:`ca.authority.CertificateAuthority`, so that its profile
checks and its ``cert.issue`` audit event cannot be skipped (one issuance path, as step-ca's
``authority``). The underscore names here are for that class and for :mod:`ca.hierarchy` (the CA
certificates of `tessera init`) only; public are parsing a CSR and finding a stored certificate.
"""

from __future__ import annotations

import datetime
import hashlib
import secrets
from dataclasses import dataclass

from asn1crypto import csr as asn1_csr
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import AuthorityInformationAccessOID, ObjectIdentifier
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from ca.errors import InvalidCsr, InvalidRequest, KeyPolicyViolation, NotFound
from ca.keys import KeyType, PublicKey, SigningKey, key_type_of
from ca.models import Authority, Certificate, CertificateStatus
from ca.profiles import ANY_POLICY, Profile, role_of
from ca.signing import builder_public_key, sign_certificate
from ca.sm2 import DEFAULT_SIGNER_ID, SM2_CURVE_OID, SM2_WITH_SM3_OID, Sm2Error, Sm2PublicKey
from ca.subjects import SubjectRequest
from ca.urls import PublicUrls

#: CSRs larger than this are refused before parsing (a P-384/RSA-4096 CSR is ~2 KiB)
MAX_CSR_BYTES = 16 * 1024
#: notBefore is set this far in the past to absorb relying parties' clock skew
_BACKDATE = datetime.timedelta(minutes=5)


def load_csr(data: bytes) -> x509.CertificateSigningRequest:
    """Parse a PEM or DER CSR and check its self-signature (RFC 2986 section 4.2).

    An SM2 CSR (signed SM2-with-SM3) is checked through GmSSL with the default identity of GB/T
    35276 section 10 or the empty one OpenSSL 3.0's ``req`` signs with unless given a ``distid``:
    the self-signature only proves possession of the key."""
    if not data or len(data) > MAX_CSR_BYTES:
        raise InvalidCsr(f"a CSR must be between 1 and {MAX_CSR_BYTES} bytes")
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            csr = x509.load_pem_x509_csr(data)
        else:
            csr = x509.load_der_x509_csr(data)
        if csr.signature_algorithm_oid.dotted_string == SM2_WITH_SM3_OID:
            key = csr_public_key(csr)
            assert isinstance(key, Sm2PublicKey)
            valid = any(key.verify(csr.tbs_certrequest_bytes, csr.signature, signer_id)
                        for signer_id in (DEFAULT_SIGNER_ID, b""))
        else:
            valid = csr.is_signature_valid
    except (ValueError, TypeError, x509.UnsupportedGeneralNameType):
        raise InvalidCsr("the CSR cannot be parsed (expected a PKCS#10 request in PEM or DER)") from None
    except Exception as exc:  # unsupported signature algorithms surface as UnsupportedAlgorithm
        raise InvalidCsr(f"the CSR cannot be checked: {type(exc).__name__}") from None
    if not valid:
        raise InvalidCsr("the CSR's signature does not verify: it was not signed by its own key")
    return csr


def csr_public_key(csr: x509.CertificateSigningRequest) -> PublicKey:
    """The key a CSR asks to have certified: SM2 keys read from its SubjectPublicKeyInfo with
    asn1crypto (cryptography knows no SM2 curve), others by cryptography."""
    spki = asn1_csr.CertificationRequest.load(csr.public_bytes(Encoding.DER))["certification_request_info"][
        "subject_pk_info"]
    algorithm, parameters = spki["algorithm"]["algorithm"].native, spki["algorithm"]["parameters"]
    if algorithm == "ec" and parameters.name == "named" and parameters.chosen.dotted == SM2_CURVE_OID:
        try:
            return Sm2PublicKey.from_spki(spki.dump())
        except Sm2Error as exc:
            raise InvalidCsr(f"the CSR's SM2 key is not valid: {exc}") from None
    return csr.public_key()


def _new_serial() -> int:
    """A positive serial with 158 random bits, always 20 octets (RFC 5280 section 4.1.2.2).

    The top bit of the 159 is fixed so every serial has the same length and stays positive.
    """
    return secrets.randbits(158) | (1 << 158)


def _serial_hex(serial: int) -> str:
    return format(serial, "x")


@dataclass(frozen=True)
class _Issuer:
    """An issuing authority as issuance needs it; its certificate and key never change."""

    authority_id: int
    name: str
    certificate: x509.Certificate
    key: SigningKey
    #: the policies its certificate names (RFC 5280 section 4.2.1.4); None: no restriction
    #: (anyPolicy, or a CA certificate of a home made before CA certificates carried policies)
    policies: frozenset[ObjectIdentifier] | None

    @classmethod
    def of(cls, authority: Authority, key: SigningKey) -> "_Issuer":
        certificate = x509.load_der_x509_certificate(authority.certificate_der)
        try:
            named = certificate.extensions.get_extension_for_class(x509.CertificatePolicies).value
        except x509.ExtensionNotFound:
            policies = None
        else:
            oids = frozenset(p.policy_identifier for p in named)
            policies = None if ANY_POLICY in oids else oids
        return cls(authority.id, authority.name, certificate, key, policies)


def _extensions(
    builder: x509.CertificateBuilder,
    profile: Profile,
    policy: ObjectIdentifier,
    issuer: _Issuer,
    public_key: PublicKey,
    alt_names: x509.SubjectAlternativeName | None,
    urls: PublicUrls,
) -> x509.CertificateBuilder:
    """End-entity extensions, all from the profile (RFC 5280 section 4.2.1)."""
    builder = (
        builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(profile.key_usage.extension(), critical=True)
        .add_extension(subject_key_identifier(public_key), critical=False)
        .add_extension(_authority_key_id(issuer.certificate), critical=False)
        .add_extension(
            x509.AuthorityInformationAccess([
                x509.AccessDescription(AuthorityInformationAccessOID.OCSP,
                                       x509.UniformResourceIdentifier(urls.ocsp(issuer.name))),
                x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS,
                                       x509.UniformResourceIdentifier(urls.ca_issuers(issuer.name))),
            ]),
            critical=False,
        )
        .add_extension(
            x509.CRLDistributionPoints([
                x509.DistributionPoint([x509.UniformResourceIdentifier(urls.crl(issuer.name))], None, None, None)
            ]),
            critical=False,
        )
        .add_extension(x509.CertificatePolicies([x509.PolicyInformation(policy, None)]), critical=False)
    )
    if profile.extended_key_usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(profile.extended_key_usage)),
                                        critical=profile.eku_critical)
    if alt_names is not None:
        builder = builder.add_extension(alt_names, critical=False)
    if profile.ocsp_nocheck:
        builder = builder.add_extension(x509.OCSPNoCheck(), critical=False)
    return builder


def subject_key_identifier(public_key: PublicKey) -> x509.SubjectKeyIdentifier:
    """RFC 5280 section 4.2.1.2 method 1 (SHA-1), for SM2 keys with SM3 (ca.sm2)."""
    if isinstance(public_key, Sm2PublicKey):
        return x509.SubjectKeyIdentifier(public_key.key_identifier())
    return x509.SubjectKeyIdentifier.from_public_key(public_key)


def _authority_key_id(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _sign(
    issuer: _Issuer,
    profile: Profile,
    public_key: PublicKey,
    subject: SubjectRequest,
    urls: PublicUrls,
    policy_arc: str,
    now: datetime.datetime,
) -> x509.Certificate:
    """Check the request against the profile and the issuer, then build and sign the certificate
    (RFC 5280 section 4); storing it is :func:`_store`'s."""
    if role_of(issuer.name) not in profile.issuers:
        raise InvalidRequest(f"profile {profile.name} is issued by {', '.join(profile.issuers)}, not {issuer.name}")
    key_type = key_type_of(public_key)
    if (key_type is KeyType.SM2) != (issuer.key.key_type is KeyType.SM2):
        raise KeyPolicyViolation("SM2 keys are certified by the SM2 CAs (sm2-staff, sm2-citizen) and only SM2 keys"
                                 f" are; {issuer.name} cannot certify a {key_type.value} key")
    if key_type not in profile.key_types:
        allowed = ", ".join(sorted(k.value for k in profile.key_types))
        raise KeyPolicyViolation(f"profile {profile.name} does not accept {key_type.value} keys (allowed: {allowed})")
    policy = profile.policy_oid(policy_arc)
    if issuer.policies is not None and policy not in issuer.policies:
        # the path would not be valid for the policy (RFC 5280 section 6.1.3 (d)): the arc changed after init
        raise InvalidRequest(f"the issuing CA {issuer.name} is not certified for policy {policy.dotted_string} of "
                             f"profile {profile.name}: its certificate was made under another policy arc")
    name, alt_names = subject.build(profile)

    not_after = min(now + profile.validity, issuer.certificate.not_valid_after_utc)
    if not_after <= now:
        raise InvalidRequest(f"the issuing CA {issuer.name} has expired")
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.certificate.subject)
        .public_key(builder_public_key(public_key))
        .serial_number(_new_serial())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(not_after)
    )
    return sign_certificate(_extensions(builder, profile, policy, issuer, public_key, alt_names, urls), issuer.key,
                            public_key)


def _check_requester(requester: str) -> None:
    if not requester.strip() or len(requester) > 255:
        raise InvalidRequest("the requester must be named (1 to 255 characters)")


def _store(
    session: Session,
    issuer_id: int,
    certificate: x509.Certificate,
    profile: str,
    requester: str,
    now: datetime.datetime,
) -> Certificate:
    """Store a signed certificate in the caller's transaction."""
    _check_requester(requester)
    der = certificate.public_bytes(Encoding.DER)
    row = Certificate(
        serial_hex=_serial_hex(certificate.serial_number),
        issuer_id=issuer_id,
        profile=profile,
        subject=certificate.subject.rfc4514_string(),
        requester=requester.strip(),
        issued_at=now,
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        fingerprint_sha256=hashlib.sha256(der).hexdigest(),
        der=der,
        status=CertificateStatus.VALID,
    )
    # A Core INSERT ... RETURNING: one round trip, without the unit-of-work cost of an ORM flush
    # (issuance is a hot path). The unique serial constraint fires here, inside the caller's transaction.
    values = {column: getattr(row, column) for column in _INSERT_COLUMNS}
    row.id = session.connection().execute(_INSERT_CERTIFICATE, values).scalar_one()
    return row


_INSERT_COLUMNS = tuple(c.key for c in Certificate.__table__.columns if c.key != "id")
#: built once: constructing the statement per call costs more than executing it
_INSERT_CERTIFICATE = insert(Certificate).returning(Certificate.id)


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
