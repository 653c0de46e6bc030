"""Certificate profiles: what each kind of certificate may contain (RFC 5280 section 4.2).

A profile fixes key usage, extended key usage, validity, the key types it accepts, which
authority issues it and which subject attributes and subjectAltName kinds are allowed. Nothing
in a CSR can widen it: the CA builds every extension from the profile and ignores the CSR's.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from ca.errors import UnknownProfile
from ca.keys import KeyType

#: Arc for Tessera's certificate policy OIDs (2.999 is the ITU-T/ISO example arc; a deployment
#: replaces it with its own registered arc).
POLICY_ARC = "2.999.1863.1"

_ALL_KEYS = frozenset(KeyType)
_EC_KEYS = frozenset({KeyType.EC_P256, KeyType.EC_P384})


@dataclass(frozen=True)
class KeyUsageBits:
    """The keyUsage bits a profile sets (RFC 5280 section 4.2.1.3)."""

    digital_signature: bool = False
    content_commitment: bool = False  # the former nonRepudiation
    key_encipherment: bool = False
    key_cert_sign: bool = False
    crl_sign: bool = False

    def extension(self) -> x509.KeyUsage:
        return x509.KeyUsage(
            digital_signature=self.digital_signature,
            content_commitment=self.content_commitment,
            key_encipherment=self.key_encipherment,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=self.key_cert_sign,
            crl_sign=self.crl_sign,
            encipher_only=False,
            decipher_only=False,
        )


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    issuers: tuple[str, ...]
    validity: datetime.timedelta
    key_usage: KeyUsageBits
    extended_key_usage: tuple[ObjectIdentifier, ...]
    key_types: frozenset[KeyType]
    subject_required: frozenset[ObjectIdentifier]
    subject_allowed: frozenset[ObjectIdentifier]
    san_kinds: frozenset[str]
    policy_number: int
    eku_critical: bool = False
    ocsp_nocheck: bool = False

    @property
    def policy_oid(self) -> ObjectIdentifier:
        return ObjectIdentifier(f"{POLICY_ARC}.{self.policy_number}")


_PERSON = frozenset({NameOID.COUNTRY_NAME, NameOID.ORGANIZATION_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME,
                     NameOID.COMMON_NAME, NameOID.GIVEN_NAME, NameOID.SURNAME, NameOID.SERIAL_NUMBER,
                     NameOID.TITLE})
_CITIZEN = frozenset({NameOID.COUNTRY_NAME, NameOID.COMMON_NAME, NameOID.GIVEN_NAME, NameOID.SURNAME,
                      NameOID.SERIAL_NUMBER})
_SYSTEM = frozenset({NameOID.COUNTRY_NAME, NameOID.ORGANIZATION_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME,
                     NameOID.COMMON_NAME})
_DAY = datetime.timedelta(days=1)

PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            name="staff-auth",
            description="staff member: TLS client and login authentication",
            issuers=("staff",),
            validity=730 * _DAY,
            key_usage=KeyUsageBits(digital_signature=True),
            extended_key_usage=(ExtendedKeyUsageOID.CLIENT_AUTH,),
            key_types=_ALL_KEYS,
            subject_required=frozenset({NameOID.COMMON_NAME}),
            subject_allowed=_PERSON,
            san_kinds=frozenset({"email"}),
            policy_number=1,
        ),
        Profile(
            name="staff-sign",
            description="staff member: legally binding signatures (nonRepudiation)",
            issuers=("staff",),
            validity=730 * _DAY,
            key_usage=KeyUsageBits(content_commitment=True),
            extended_key_usage=(ExtendedKeyUsageOID.EMAIL_PROTECTION,),
            key_types=_ALL_KEYS,
            subject_required=frozenset({NameOID.COMMON_NAME}),
            subject_allowed=_PERSON,
            san_kinds=frozenset({"email"}),
            policy_number=2,
        ),
        Profile(
            name="citizen-auth",
            description="citizen card: authentication key",
            issuers=("citizen",),
            validity=1826 * _DAY,
            key_usage=KeyUsageBits(digital_signature=True),
            extended_key_usage=(ExtendedKeyUsageOID.CLIENT_AUTH,),
            key_types=_EC_KEYS | {KeyType.RSA_2048, KeyType.RSA_3072},
            subject_required=frozenset({NameOID.COMMON_NAME, NameOID.SERIAL_NUMBER}),
            subject_allowed=_CITIZEN,
            san_kinds=frozenset(),
            policy_number=3,
        ),
        Profile(
            name="citizen-sign",
            description="citizen card: qualified-style signing key (nonRepudiation)",
            issuers=("citizen",),
            validity=1826 * _DAY,
            key_usage=KeyUsageBits(content_commitment=True),
            extended_key_usage=(),
            key_types=_EC_KEYS | {KeyType.RSA_2048, KeyType.RSA_3072},
            subject_required=frozenset({NameOID.COMMON_NAME, NameOID.SERIAL_NUMBER}),
            subject_allowed=_CITIZEN,
            san_kinds=frozenset(),
            policy_number=4,
        ),
        Profile(
            name="service",
            description="department system: signs citizen card records, authenticates to services",
            issuers=("staff",),
            validity=730 * _DAY,
            key_usage=KeyUsageBits(digital_signature=True, content_commitment=True),
            extended_key_usage=(ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.EMAIL_PROTECTION),
            key_types=_ALL_KEYS,
            subject_required=frozenset({NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME}),
            subject_allowed=_SYSTEM,
            san_kinds=frozenset({"dns", "uri", "email"}),
            policy_number=5,
        ),
        Profile(
            name="ocsp",
            description="delegated OCSP responder (RFC 6960 section 4.2.2.2)",
            issuers=("staff", "citizen"),
            validity=365 * _DAY,
            key_usage=KeyUsageBits(digital_signature=True),
            extended_key_usage=(ExtendedKeyUsageOID.OCSP_SIGNING,),
            key_types=_ALL_KEYS,
            subject_required=frozenset({NameOID.COMMON_NAME}),
            subject_allowed=_SYSTEM,
            san_kinds=frozenset(),
            policy_number=6,
            ocsp_nocheck=True,
        ),
        Profile(
            name="tsa",
            description="time-stamping unit (RFC 3161 section 2.3: critical EKU timeStamping only)",
            issuers=("staff",),
            validity=1826 * _DAY,
            key_usage=KeyUsageBits(digital_signature=True, content_commitment=True),
            extended_key_usage=(ExtendedKeyUsageOID.TIME_STAMPING,),
            eku_critical=True,
            key_types=_ALL_KEYS,
            subject_required=frozenset({NameOID.COMMON_NAME}),
            subject_allowed=_SYSTEM,
            san_kinds=frozenset(),
            policy_number=7,
        ),
    )
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise UnknownProfile(f"unknown profile {name!r}; known: {', '.join(sorted(PROFILES))}") from None
