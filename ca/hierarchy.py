"""Creating the CA hierarchy: root, issuing CAs, delegated OCSP responders, the TSA.

Root (self-signed, pathLenConstraint 1) -> issuing CAs ``staff`` and ``citizen``
(pathLenConstraint 0) -> end entities, among them one delegated OCSP responder per issuing CA
(RFC 6960 section 4.2.2.2) and the time-stamping unit (RFC 3161 section 2.3).

A plan with SM2 keys makes the second, SM2 hierarchy beside the first (GB/T 20518-2018 profile,
everything signed SM2-with-SM3): the same CAs and signers, named with the prefix ``sm2-``
(``sm2-root``, ``sm2-staff``, ``sm2-citizen``), their keys in the sealed SM2 keystore.
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
from ca.issuance import _new_serial, _serial_hex, _store, subject_key_identifier
from ca.keyring import Keyring
from ca.keys import KeyType, SigningKey
from ca.models import Authority
from ca.profiles import ANY_POLICY, SM2_PREFIX, issuing_policies
from ca.signing import builder_public_key, sign_certificate
from ca.subjects import SubjectRequest
from ca.urls import PublicUrls

ROOT = "root"
ISSUING = ("staff", "citizen")
#: the profile name under which the issuing CAs' certificates are stored (not an end-entity profile)
ISSUING_CA_PROFILE = "issuing-ca"
_YEAR = datetime.timedelta(days=365)


@dataclass(frozen=True)
class HierarchyPlan:
    """What ``tessera init`` asks for."""

    organisation: str = "Tessera Government PKI"
    country: str = "CN"
    key_type: KeyType = KeyType.EC_P256
    backend: str = "pkcs11"
    root_backend: str | None = None  # e.g. "file" for an offline root; default: same as backend
    key_dir: Path | None = None  # where file keys (and the SM2 keystore) go

    @property
    def prefix(self) -> str:
        """``sm2-`` for the SM2 hierarchy, else nothing: the authorities' names begin with it."""
        return SM2_PREFIX if self.key_type is KeyType.SM2 else ""

    @property
    def suite_label(self) -> str:
        """What the CA names say of the suite (`` SM2`` for the SM2 hierarchy)."""
        return " SM2" if self.key_type is KeyType.SM2 else ""


@dataclass(frozen=True)
class DelegatedSigner:
    """A signer the hierarchy delegates to, with its own key and end-entity certificate (ca_signer)."""

    role: str  # "ocsp" or "tsa"
    issuer: str
    profile: str
    key_label: str
    subject: SubjectRequest


def _name(plan: HierarchyPlan, common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, plan.country),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, plan.organisation),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _ca_builder(
    subject: x509.Name, issuer: x509.Name, key: SigningKey, path_length: int, now: datetime.datetime,
    lifetime: datetime.timedelta, policies: list[x509.ObjectIdentifier],
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(builder_public_key(key.public_key()))
        .serial_number(_new_serial())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(subject_key_identifier(key.public_key()), critical=False)
        .add_extension(x509.CertificatePolicies([x509.PolicyInformation(p, None) for p in policies]), critical=False)
    )


def _store_authority(session: Session, name: str, cert: x509.Certificate, key: SigningKey,
                     parent: Authority | None, now: datetime.datetime) -> Authority:
    row = Authority(
        name=name,
        parent_id=parent.id if parent else None,
        subject=cert.subject.rfc4514_string(),
        serial_hex=_serial_hex(cert.serial_number),
        certificate_der=cert.public_bytes(Encoding.DER),
        key_ref=key.reference,
        crl_number=0,
        created_at=now,
    )
    session.add(row)
    session.flush()
    return row


def create_hierarchy(
    session: Session, keyring: Keyring, urls: PublicUrls, plan: HierarchyPlan, now: datetime.datetime, policy_arc: str
) -> list[Authority]:
    """Generate the keys and certificates of the root and the issuing CAs (each issuing CA's also
    stored as an ``issuing-ca`` certificate of the root); the caller commits once at the end.

    The root names anyPolicy and each issuing CA the policies of the profiles it issues under
    (:func:`ca.profiles.issuing_policies`), so a path to any certificate Tessera issues is valid
    for that certificate's policy, as a relying party requiring an explicit policy checks it
    (RFC 5280 sections 4.2.1.4 and 6.1)."""
    root_authority = plan.prefix + ROOT
    if session.scalar(select(Authority).where(Authority.name == root_authority)) is not None:
        raise InvalidRequest(f"the CA hierarchy of {root_authority} already exists")
    root_backend = plan.root_backend or plan.backend

    root_key = keyring.generate(root_backend, f"tessera-{root_authority}", plan.key_type, plan.key_dir)
    root_name = _name(plan, f"{plan.organisation}{plan.suite_label} Root CA")
    root_key_id = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
        subject_key_identifier(root_key.public_key()))
    root_cert = sign_certificate(
        _ca_builder(root_name, root_name, root_key, 1, now, 20 * _YEAR, [ANY_POLICY]).add_extension(
            root_key_id, critical=False),
        root_key, root_key.public_key(),
    )
    root = _store_authority(session, root_authority, root_cert, root_key, None, now)
    authorities = [root]

    for role in ISSUING:
        name = plan.prefix + role
        key = keyring.generate(plan.backend, f"tessera-{name}-ca", plan.key_type, plan.key_dir)
        builder = (
            _ca_builder(_name(plan, f"{plan.organisation}{plan.suite_label} {role.capitalize()} CA"), root_name, key,
                        0, now, 10 * _YEAR, issuing_policies(role, policy_arc))
            .add_extension(root_key_id, critical=False)
            .add_extension(
                x509.AuthorityInformationAccess([
                    x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS,
                                           x509.UniformResourceIdentifier(urls.ca_issuers(root_authority))),
                ]),
                critical=False,
            )
            .add_extension(
                x509.CRLDistributionPoints([
                    x509.DistributionPoint([x509.UniformResourceIdentifier(urls.crl(root_authority))], None, None,
                                           None)
                ]),
                critical=False,
            )
        )
        cert = sign_certificate(builder, root_key, key.public_key())
        _store(session, root.id, cert, ISSUING_CA_PROFILE, "tessera init", now)
        authorities.append(_store_authority(session, name, cert, key, root, now))
    return authorities


def delegated_signers(plan: HierarchyPlan) -> list[DelegatedSigner]:
    """One OCSP responder per issuing CA (RFC 6960 section 4.2.2.2) and the staff CA's TSA
    (RFC 3161 section 2.3): issued by :meth:`ca.authority.CertificateAuthority.initialise`."""
    def subject(common_name: str) -> SubjectRequest:
        return SubjectRequest(((NameOID.COUNTRY_NAME, plan.country), (NameOID.ORGANIZATION_NAME, plan.organisation),
                               (NameOID.COMMON_NAME, common_name)))

    signers = [DelegatedSigner("ocsp", plan.prefix + role, "ocsp", f"tessera-ocsp-{plan.prefix}{role}",
                               subject(f"{plan.organisation}{plan.suite_label} {role.capitalize()} CA OCSP Responder"))
               for role in ISSUING]
    signers.append(DelegatedSigner("tsa", plan.prefix + "staff", "tsa", f"tessera-tsa-{plan.prefix}staff",
                                   subject(f"{plan.organisation}{plan.suite_label} Time-Stamping Authority")))
    return signers
