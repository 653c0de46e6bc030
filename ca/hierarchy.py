"""Creating the CA hierarchy: root, issuing CAs, delegated OCSP responders, the TSA.

Root (self-signed, pathLenConstraint 1) -> issuing CAs ``staff`` and ``citizen``
(pathLenConstraint 0) -> end entities, among them one delegated OCSP responder per issuing CA
(RFC 6960 section 4.2.2.2) and the time-stamping unit (RFC 3161 section 2.3).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID
from sqlalchemy import select
from sqlalchemy.orm import Session

from ca.errors import InvalidRequest
from ca.issuance import IssuerContext, issue_certificate, new_serial, serial_hex, store_certificate
from ca.keyring import Keyring
from ca.keys import KeyType, SigningKey
from ca.models import Authority, Signer
from ca.profiles import get_profile
from ca.signing import sign_certificate
from ca.subjects import SubjectRequest
from ca.urls import PublicUrls

ROOT = "root"
ISSUING = ("staff", "citizen")
_YEAR = datetime.timedelta(days=365)


@dataclass(frozen=True)
class HierarchyPlan:
    """What ``tessera init`` asks for."""

    organisation: str = "Tessera Government PKI"
    country: str = "CN"
    key_type: KeyType = KeyType.EC_P256
    backend: str = "pkcs11"
    root_backend: str | None = None  # e.g. "file" for an offline root; default: same as backend
    key_dir: Path | None = None  # where file keys go


def _name(plan: HierarchyPlan, common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, plan.country),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, plan.organisation),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _ca_builder(
    subject: x509.Name, issuer: x509.Name, key: SigningKey, path_length: int, now: datetime.datetime, lifetime: datetime.timedelta
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(new_serial())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


def _store_authority(session: Session, name: str, cert: x509.Certificate, key: SigningKey,
                     parent: Authority | None, now: datetime.datetime) -> Authority:
    row = Authority(
        name=name,
        parent_id=parent.id if parent else None,
        subject=cert.subject.rfc4514_string(),
        serial_hex=serial_hex(cert.serial_number),
        certificate_der=cert.public_bytes(Encoding.DER),
        key_ref=key.reference,
        crl_number=0,
        created_at=now,
    )
    session.add(row)
    session.flush()
    return row


def create_hierarchy(
    session: Session, keyring: Keyring, urls: PublicUrls, plan: HierarchyPlan, now: datetime.datetime
) -> list[Authority]:
    """Generate every key and certificate of the hierarchy; the caller commits once at the end."""
    if session.scalar(select(Authority).limit(1)) is not None:
        raise InvalidRequest("the CA hierarchy already exists")
    root_backend = plan.root_backend or plan.backend

    root_key = keyring.generate(root_backend, "tessera-root", plan.key_type, plan.key_dir)
    root_name = _name(plan, f"{plan.organisation} Root CA")
    root_cert = sign_certificate(
        _ca_builder(root_name, root_name, root_key, 1, now, 20 * _YEAR).add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False  # type: ignore[arg-type]
        ),
        root_key,
    )
    root = _store_authority(session, ROOT, root_cert, root_key, None, now)
    authorities = [root]

    for name in ISSUING:
        key = keyring.generate(plan.backend, f"tessera-{name}-ca", plan.key_type, plan.key_dir)
        builder = (
            _ca_builder(_name(plan, f"{plan.organisation} {name.capitalize()} CA"), root_name, key, 0, now, 10 * _YEAR)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)  # type: ignore[arg-type]
            .add_extension(
                x509.AuthorityInformationAccess([
                    x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS,
                                           x509.UniformResourceIdentifier(urls.ca_issuers(ROOT))),
                ]),
                critical=False,
            )
            .add_extension(
                x509.CRLDistributionPoints([
                    x509.DistributionPoint([x509.UniformResourceIdentifier(urls.crl(ROOT))], None, None, None)
                ]),
                critical=False,
            )
        )
        cert = sign_certificate(builder, root_key)
        store_certificate(session, root, cert, "issuing-ca", "tessera init", now)
        authorities.append(_store_authority(session, name, cert, key, root, now))

    by_name = {a.name: a for a in authorities}
    certs = {ROOT: root_cert} | {a.name: x509.load_der_x509_certificate(a.certificate_der) for a in authorities[1:]}
    keys = {a.name: keyring.get(a.key_ref) for a in authorities}

    def delegated(role: str, issuer_name: str, profile_name: str, common_name: str) -> None:
        key = keyring.generate(plan.backend, f"tessera-{role}-{issuer_name}", plan.key_type, plan.key_dir)
        issuer = IssuerContext(by_name[issuer_name], certs[issuer_name], keys[issuer_name])
        subject = SubjectRequest(((NameOID.COUNTRY_NAME, plan.country), (NameOID.ORGANIZATION_NAME, plan.organisation),
                                  (NameOID.COMMON_NAME, common_name)))
        row = issue_certificate(session, issuer, get_profile(profile_name), key.public_key(), subject,
                                "tessera init", urls, now)
        session.add(Signer(role=role, authority_id=by_name[issuer_name].id, certificate_id=row.id, key_ref=key.reference))

    for name in ISSUING:
        delegated("ocsp", name, "ocsp", f"{plan.organisation} {name.capitalize()} CA OCSP Responder")
    delegated("tsa", "staff", "tsa", f"{plan.organisation} Time-Stamping Authority")
    session.flush()
    return authorities
