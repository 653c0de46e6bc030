"""Subject names and subjectAltNames built from validated input (RFC 5280 sections 4.1.2.6, 4.2.1.6).

Input arrives as an RFC 4514 string or as a CSR's proposal; either way every attribute is checked
against the profile and rebuilt from its value, so nothing unexpected is copied into a certificate.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import NameOID, ObjectIdentifier

from ca.errors import SubjectPolicyViolation
from ca.profiles import Profile

# Upper bounds from RFC 5280 Appendix A.1 (ub-*), tightened where the Appendix is generous.
_MAX_LENGTH = {
    NameOID.COUNTRY_NAME: 2,
    NameOID.COMMON_NAME: 64,
    NameOID.ORGANIZATION_NAME: 64,
    NameOID.ORGANIZATIONAL_UNIT_NAME: 64,
    NameOID.SERIAL_NUMBER: 64,
    NameOID.GIVEN_NAME: 64,
    NameOID.SURNAME: 64,
    NameOID.TITLE: 64,
}
_SHORT = {
    NameOID.COUNTRY_NAME: "C", NameOID.COMMON_NAME: "CN", NameOID.ORGANIZATION_NAME: "O",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "OU", NameOID.SERIAL_NUMBER: "serialNumber",
    NameOID.GIVEN_NAME: "GN", NameOID.SURNAME: "SN", NameOID.TITLE: "title",
}
# Spellings accepted in an RFC 4514 subject string (cryptography's parser is case-sensitive).
_SPELLINGS = {
    spelling: oid
    for oid, names in {
        NameOID.COUNTRY_NAME: ("C", "c"),
        NameOID.COMMON_NAME: ("CN", "cn"),
        NameOID.ORGANIZATION_NAME: ("O", "o"),
        NameOID.ORGANIZATIONAL_UNIT_NAME: ("OU", "ou"),
        NameOID.SERIAL_NUMBER: ("serialNumber", "SERIALNUMBER", "serialnumber"),
        NameOID.GIVEN_NAME: ("GN", "givenName", "GIVENNAME", "gn"),
        NameOID.SURNAME: ("SN", "surname", "SURNAME", "sn"),
        NameOID.TITLE: ("title", "TITLE", "T"),
    }.items()
    for spelling in names
}
# Order of RDNs in a built subject: most general first (X.501 convention).
_ORDER = [NameOID.COUNTRY_NAME, NameOID.ORGANIZATION_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME, NameOID.TITLE,
          NameOID.SURNAME, NameOID.GIVEN_NAME, NameOID.SERIAL_NUMBER, NameOID.COMMON_NAME]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DNS_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9.-]{1,253}$")


@dataclass(frozen=True)
class SubjectRequest:
    """Validated-to-be subject attributes and subjectAltNames, as (kind, value) pairs."""

    attributes: tuple[tuple[ObjectIdentifier, str], ...]
    alt_names: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, subject: str, alt_names: list[str] | tuple[str, ...] = ()) -> "SubjectRequest":
        """Parse ``CN=张伟,O=财政局,C=CN`` and ``email:jane@gov.example``-style alt names."""
        attributes: list[tuple[ObjectIdentifier, str]] = []
        if subject.strip():
            try:
                name = x509.Name.from_rfc4514_string(subject, _SPELLINGS)
            except ValueError:
                raise SubjectPolicyViolation(
                    f"cannot parse subject {subject!r}: write it as CN=...,O=...,C=.. "
                    f"(attributes: {', '.join(sorted(set(_SHORT.values())))})"
                ) from None
            for rdn in name.rdns:
                if len(rdn) != 1:
                    raise SubjectPolicyViolation("multi-valued RDNs are not accepted")
                (attr,) = rdn
                attributes.append((attr.oid, str(attr.value)))
        pairs: list[tuple[str, str]] = []
        for item in alt_names:
            kind, sep, value = item.partition(":")
            if not sep:
                raise SubjectPolicyViolation(f"alt name {item!r} must look like email:..., dns:... or uri:...")
            pairs.append((kind.strip().lower(), value.strip()))
        return cls(tuple(attributes), tuple(pairs))

    @classmethod
    def from_csr(cls, csr: x509.CertificateSigningRequest) -> "SubjectRequest":
        """The CSR's proposal (subject and SAN only; every other requested extension is ignored)."""
        attributes: list[tuple[ObjectIdentifier, str]] = []
        for rdn in csr.subject.rdns:
            if len(rdn) != 1:
                raise SubjectPolicyViolation("multi-valued RDNs are not accepted")
            (attr,) = rdn
            attributes.append((attr.oid, str(attr.value)))
        pairs: list[tuple[str, str]] = []
        try:
            san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            san = None
        except (ValueError, x509.DuplicateExtension) as exc:
            raise SubjectPolicyViolation(f"the CSR's extensions cannot be read: {exc}") from None
        if san is not None:
            for gn in san:
                if isinstance(gn, x509.RFC822Name):
                    pairs.append(("email", gn.value))
                elif isinstance(gn, x509.DNSName):
                    pairs.append(("dns", gn.value))
                elif isinstance(gn, x509.UniformResourceIdentifier):
                    pairs.append(("uri", gn.value))
                else:
                    raise SubjectPolicyViolation(f"subjectAltName of type {type(gn).__name__} is not accepted")
        return cls(tuple(attributes), tuple(pairs))

    def build(self, profile: Profile) -> tuple[x509.Name, x509.SubjectAlternativeName | None]:
        """Check every value against ``profile`` and build the subject and SAN from scratch."""
        seen: dict[ObjectIdentifier, str] = {}
        for oid, raw in self.attributes:
            label = _SHORT.get(oid, oid.dotted_string)
            if oid not in profile.subject_allowed:
                raise SubjectPolicyViolation(f"subject attribute {label} is not allowed in profile {profile.name}")
            if oid in seen:
                raise SubjectPolicyViolation(f"subject attribute {label} appears twice")
            seen[oid] = _clean_value(label, raw, _MAX_LENGTH[oid])
        missing = [(_SHORT.get(o, o.dotted_string)) for o in profile.subject_required if o not in seen]
        if missing:
            raise SubjectPolicyViolation(f"profile {profile.name} requires subject attribute(s) {', '.join(sorted(missing))}")
        country = seen.get(NameOID.COUNTRY_NAME)
        if country is not None and not re.fullmatch(r"[A-Z]{2}", country):
            raise SubjectPolicyViolation("C must be a two-letter ISO 3166 code in capitals")
        name = x509.Name([x509.NameAttribute(oid, seen[oid]) for oid in _ORDER if oid in seen])

        general: list[x509.GeneralName] = []
        for kind, value in self.alt_names:
            if kind not in profile.san_kinds:
                raise SubjectPolicyViolation(f"subjectAltName {kind}: is not allowed in profile {profile.name}")
            general.append(_general_name(kind, value))
        if len(set(general)) != len(general):
            raise SubjectPolicyViolation("a subjectAltName appears twice")
        return name, (x509.SubjectAlternativeName(general) if general else None)


def _clean_value(label: str, raw: str, limit: int) -> str:
    value = raw.strip()
    if not value:
        raise SubjectPolicyViolation(f"subject attribute {label} is empty")
    if len(value) > limit:
        raise SubjectPolicyViolation(f"subject attribute {label} is longer than {limit} characters")
    if _CONTROL.search(value):
        raise SubjectPolicyViolation(f"subject attribute {label} contains control characters")
    return value


def _general_name(kind: str, value: str) -> x509.GeneralName:
    if kind == "email":
        if not _EMAIL.fullmatch(value):
            raise SubjectPolicyViolation(f"{value!r} is not an e-mail address")
        return x509.RFC822Name(value)
    if kind == "dns":
        host = value.lower().rstrip(".")
        labels = host.split(".")
        if len(host) > 253 or len(labels) < 2 or not all(_DNS_LABEL.fullmatch(label) for label in labels):
            raise SubjectPolicyViolation(f"{value!r} is not a DNS host name")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return x509.DNSName(host)
        raise SubjectPolicyViolation(f"{value!r} is an IP address, not a DNS name")
    if kind == "uri":
        if not re.fullmatch(r"(https|urn):[^\s\x00-\x1f]{1,2000}", value):
            raise SubjectPolicyViolation(f"{value!r} is not an https: or urn: URI")
        return x509.UniformResourceIdentifier(value)
    raise SubjectPolicyViolation(f"unknown alt name kind {kind!r} (use email, dns or uri)")
