"""Certificate profiles: what each kind of certificate may contain (RFC 5280 section 4.2).

A profile fixes key usage, extended key usage, validity, the key types it accepts, which
authority issues it and which subject attributes and subjectAltName kinds are allowed. Nothing
in a CSR can widen it: the CA builds every extension from the profile and ignores the CSR's.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import CertificatePoliciesOID, ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from ca.errors import UnknownProfile
from ca.keys import KeyType

#: The embedded default arc of Tessera's certificate policy OIDs (one per profile: ``<arc>.<n>``).
#: 2.999 is the ITU-T/ISO example arc (ITU-T X.660 A.3.3): it identifies nothing outside a test, so
#: a deployment sets its own arc, one under the organisation's registered OID (``TESSERA_POLICY_ARC``).
EXAMPLE_POLICY_ARC = "2.999.1863.1"
#: RFC 5280 section 4.2.1.4: "the special value anyPolicy"
ANY_POLICY = CertificatePoliciesOID.ANY_POLICY
#: an arc is written in canonical dotted form: decimal arcs without leading zeros
_DOTTED = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+")
_MAX_ARC_LENGTH = 100

_ALL_KEYS = frozenset(KeyType)
#: ECDSA keys, and SM2 keys for the SM2 hierarchy's cards
_EC_KEYS = frozenset({KeyType.EC_P256, KeyType.EC_P384, KeyType.SM2})
#: the SM2 hierarchy's authorities are named as the ECDSA one's with this prefix (sm2-root, sm2-staff ...)
SM2_PREFIX = "sm2-"


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

    def policy_oid(self, arc: str) -> ObjectIdentifier:
        """The certificate policy this profile's certificates assert under ``arc`` (RFC 5280 section 4.2.1.4)."""
        return ObjectIdentifier(f"{arc}.{self.policy_number}")


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


def role_of(authority: str) -> str:
    """The role a profile's ``issuers`` name an authority by: ``sm2-staff`` issues as ``staff``."""
    return authority.removeprefix(SM2_PREFIX)


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise UnknownProfile(f"unknown profile {name!r}; known: {', '.join(sorted(PROFILES))}") from None


def check_policy_arc(arc: str) -> str:
    """``arc`` if it is an object identifier in canonical dotted form that X.660 allows (first arc
    0, 1 or 2; second arc below 40 under 0 and 1), else :class:`ValueError` saying why."""
    if len(arc) > _MAX_ARC_LENGTH or not _DOTTED.fullmatch(arc):
        raise ValueError(f"the policy arc {arc!r} is not a dotted object identifier such as "
                         "1.3.6.1.4.1.<enterprise number>.1 (numbers without leading zeros, "
                         f"at most {_MAX_ARC_LENGTH} characters)")
    try:
        ObjectIdentifier(f"{arc}.1")
    except ValueError:
        raise ValueError(f"the policy arc {arc!r} is not a valid object identifier: it must begin with 0, 1 or 2, "
                         "and the second number must be below 40 after 0 or 1") from None
    return arc


def issuing_policies(authority: str, arc: str) -> list[ObjectIdentifier]:
    """The policies an issuing CA's certificate names: one per profile that ``authority`` issues
    under, so a relying party that requires an explicit policy (RFC 5280 section 6.1.3 (d)) finds
    each profile's policy valid along the whole path."""
    return [p.policy_oid(arc) for p in sorted(PROFILES.values(), key=lambda p: p.policy_number)
            if authority in p.issuers]


def tsa_policy(arc: str) -> str:
    """The policy Tessera's TSA issues its time-stamp tokens under (RFC 3161 section 2.4.2, the TSA
    policy of RFC 3628 section 5.2): ``<arc>.7.1``, the first time-stamping policy under the ``tsa``
    profile's certificate policy ``<arc>.7``, so it follows ``TESSERA_POLICY_ARC`` as the
    certificate policies do. Tokens already issued keep the policy they name; a verifier reads it
    from the token."""
    return f"{get_profile('tsa').policy_oid(arc).dotted_string}.1"
