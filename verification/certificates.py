"""Certificate validation for relying parties: path, purpose and revocation, with every reason.

Path building and the X.509 rules of RFC 5280 section 6 come from ``cryptography.x509.verification``
(a client verifier over a :class:`Store` of trust anchors, with one extension policy per purpose,
section 4.2.1.3 key usage, 4.2.1.12 extended key usage, 4.2.1.4 certificate policies). It does no
revocation checking (docs/platform-notes.md), so status is ours: the certificate store itself, our
own OCSP responder answered in process (RFC 6960; the pre-produced answer from the store when
there is one), or the CA's latest CRL (RFC 5280 section 6.3).
Revocation fails closed: an unknown status is a reason to refuse.

This is the fast path for Tessera's own hierarchy (measured: docs/verification.md); foreign CAs named
in the trust list (``TESSERA_TRUST_LIST``, :mod:`verification.trust_list`) are validated in full by
:mod:`verification.paths` (RFC 5280 policy processing, name constraints, revocation of every
certificate on the path), and the verdict names the anchor and the revocation source. A certificate
from any other CA is ``untrusted-issuer``.

A certificate signed SM2-with-SM3 (GB/T 20518) is validated to the deployment's SM2 root by
:mod:`verification.sm2_paths` instead of cryptography, which has no SM2; purpose, policy and
revocation are the same for both suites (SM2 CRLs and the SM2 OCSP responders' answers are
verified through :mod:`verification.sm2_signatures`).

The certificate policies a purpose accepts are numbers under the deployment's policy arc
(``TESSERA_POLICY_ARC``), read from the issuing CAs' own certificatePolicies (RFC 5280 section
4.2.1.4), so a deployment with its own arc validates its own certificates.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import (Criticality, ExtensionPolicy, PolicyBuilder, Store,
                                             VerificationError)
from sqlalchemy import Engine, bindparam, select

from ca.hierarchy import ROOT
from ca.models import Authority, Certificate, CertificateStatus, Crl
from ca.profiles import EXAMPLE_POLICY_ARC, PROFILES, SM2_PREFIX
from verification.crl_status import UsableCrl, certificate_status, load_crl, usable_crl
from verification.paths import UNPARSEABLE, PolicyInputs, validate_path
from verification.reasons import Reason
from verification.signatures import directly_issued_by, verify_signed_by
from verification.sm2_paths import is_sm2_certificate, validate_sm2_path
from verification.sm2_signatures import sm2_public_key
from verification.trust_list import CrlCache, ForeignAnchor, load_trust_list

REVOCATION_SOURCES = ("ocsp", "crl", "store")

#: the policy arcs of the issuing CAs this process has loaded (:meth:`Anchors.from_store`); a policy
#: OID is Tessera's when it is ``<arc>.<profile policy number>`` under one of them
ARCS: set[str] = {EXAMPLE_POLICY_ARC}


def _numbers(*profiles: str) -> dict[int, str]:
    return {PROFILES[name].policy_number: name for name in profiles}


def _tessera_policy(oid: str) -> int | None:
    """The profile policy number of ``oid`` when it lies under a known arc (RFC 5280 section 4.2.1.4)."""
    arc, _, number = oid.rpartition(".")
    return int(number) if arc in ARCS and number.isdigit() else None


@dataclass(frozen=True)
class Purpose:
    """What a relying party asks a certificate to be good for (and what that means in X.509)."""

    name: str
    description: str
    #: keyUsage bits that must be set (RFC 5280 section 4.2.1.3)
    key_usage: tuple[str, ...]
    #: extendedKeyUsage that must be present, if any (section 4.2.1.12)
    eku: x509.ObjectIdentifier | None
    #: one of these certificate policies must be asserted (section 4.2.1.4): the policy's number
    #: under the deployment's arc -> the profile
    policies: dict[int, str]


PURPOSES: dict[str, Purpose] = {p.name: p for p in (
    Purpose("staff-auth", "a staff member authenticating", ("digital_signature",), ExtendedKeyUsageOID.CLIENT_AUTH,
            _numbers("staff-auth")),
    Purpose("citizen-auth", "a citizen authenticating with the card", ("digital_signature",),
            ExtendedKeyUsageOID.CLIENT_AUTH, _numbers("citizen-auth")),
    Purpose("signing", "a legally binding signature (nonRepudiation)", ("content_commitment",), None,
            _numbers("staff-sign", "citizen-sign", "service")),
    Purpose("service", "a department's system authenticating", ("digital_signature",),
            ExtendedKeyUsageOID.CLIENT_AUTH, _numbers("service")),
)}


@dataclass(frozen=True)
class RevocationStatus:
    """The revocation status as one source saw it (RFC 6960 section 4.2.1 / RFC 5280 section 5.3.1)."""

    status: str  # good, revoked, unknown
    source: str  # ocsp, crl, store, none
    checked_at: datetime.datetime | None = None  # OCSP thisUpdate / CRL thisUpdate / store time
    revoked_at: datetime.datetime | None = None
    reason: str | None = None
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "source": self.source,
                "checked_at": self.checked_at.isoformat() if self.checked_at else None,
                "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
                "reason": self.reason, "detail": self.detail}


@dataclass(frozen=True)
class CertificateVerdict:
    """The typed answer: valid or not, every reason, chain, subject, profile, revocation."""

    valid: bool
    purpose: str
    reasons: tuple[Reason, ...]
    certificate: x509.Certificate | None
    chain: tuple[x509.Certificate, ...] = ()
    profile: str | None = None
    revocation: RevocationStatus = field(default_factory=lambda: RevocationStatus("unknown", "none"))
    validated_at: datetime.datetime | None = None
    #: the trust anchor of the path: "tessera" for our own hierarchy, else the trust list's name
    anchor: str | None = None

    @property
    def codes(self) -> set[str]:
        return {r.code for r in self.reasons}

    @property
    def national_id(self) -> str | None:
        """The national identity number of a citizen certificate (ETSI EN 319 412-1 ``PNO<CC>-``)."""
        if self.certificate is None:
            return None
        return certificate_facts(self.certificate)["national_id"]

    def as_dict(self) -> dict[str, Any]:
        facts = certificate_facts(self.certificate) if self.certificate is not None else {}
        return {
            "valid": self.valid,
            "purpose": self.purpose,
            "reasons": [r.as_dict() for r in self.reasons],
            "subject": dict(facts["subject"]) if facts else None,
            "profile": self.profile,
            "serial": facts.get("serial"),
            "not_before": facts.get("not_before"),
            "not_after": facts.get("not_after"),
            "chain": [chain_entry(c) for c in self.chain],
            "revocation": self.revocation.as_dict(),
            "validated_at": self.validated_at.isoformat() if self.validated_at else None,
            "anchor": self.anchor,
        }


class _Known:
    """What this process worked out once about one certificate object.

    cryptography's ``Certificate`` hashes and compares by re-encoding its DER (3-4 us each here),
    so every dict keyed by the object paid that several times per verdict. Keyed instead by the
    SHA-256 of the DER, found through the object's ``id()`` (the object is held here, so its id
    cannot be reused while the entry lives), a repeated lookup is one probe on an int."""

    __slots__ = ("cert", "digest", "subject_der", "facts", "entry", "malformed")

    def __init__(self, cert: x509.Certificate) -> None:
        self.cert = cert
        self.digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()
        self.subject_der: bytes | None = None
        self.facts: dict[str, Any] | None = None
        self.entry: dict[str, str] | None = None
        #: the part that does not parse ("" when every part does; None until looked at)
        self.malformed: str | None = None


_KNOWN: dict[int, _Known] = {}
_KNOWN_LIMIT = 4096


def _known(cert: x509.Certificate) -> _Known:
    known = _KNOWN.get(id(cert))
    if known is None or known.cert is not cert:
        if len(_KNOWN) >= _KNOWN_LIMIT:
            _KNOWN.clear()
        known = _KNOWN[id(cert)] = _Known(cert)
    return known


#: what cryptography raises, lazily (on ``.extensions``, ``.subject``, ``.public_key()``), when a part
#: of a loaded certificate does not parse; DuplicateExtension and UnsupportedGeneralNameType are
#: not ValueErrors
MALFORMED = (ValueError, TypeError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType, UnsupportedAlgorithm,
             x509.InvalidVersion)
#: what asn1crypto's walk of a part cryptography gave up on may raise besides (it parses lazily)
_ASN1_UNPARSEABLE = (*MALFORMED, *UNPARSEABLE)

#: RFC 5280 section 4.2 names of the extensions asn1crypto calls otherwise
_EXTENSION_NAMES = {"subject_alt_name": "subjectAltName", "issuer_alt_name": "issuerAltName",
                    "extended_key_usage": "extendedKeyUsage", "authority_information_access": "authorityInfoAccess",
                    "subject_information_access": "subjectInfoAccess",
                    "crl_distribution_points": "cRLDistributionPoints",
                    "certificate_policies": "certificatePolicies", "key_usage": "keyUsage",
                    "basic_constraints": "basicConstraints", "name_constraints": "nameConstraints",
                    "policy_constraints": "policyConstraints", "policy_mappings": "policyMappings",
                    "authority_key_identifier": "authorityKeyIdentifier", "key_identifier": "subjectKeyIdentifier",
                    "inhibit_any_policy": "inhibitAnyPolicy", "freshest_crl": "freshestCRL"}


def _extension_at_fault(cert: x509.Certificate, error: Exception) -> str:
    """Which extension made cryptography give up (RFC 5280 section 4.2): a duplicate, one that
    asn1crypto cannot parse either, or an empty SEQUENCE SIZE (1..MAX); else ``extensions``."""
    from asn1crypto import x509 as asn1_x509

    if isinstance(error, x509.DuplicateExtension):
        oid = error.oid.dotted_string
        name = str(asn1_x509.ExtensionId.map(oid))
        name = _EXTENSION_NAMES.get(name, name)
        return f"extensions (duplicate {name})"
    try:
        loaded = asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))
        extensions = loaded["tbs_certificate"]["extensions"]
        for extension in extensions:
            name = str(extension["extn_id"].native)
            try:
                value = extension["extn_value"].parsed.native
            except _ASN1_UNPARSEABLE:
                return _EXTENSION_NAMES.get(name, name)
            if isinstance(value, list) and not value:
                return _EXTENSION_NAMES.get(name, name)
    except _ASN1_UNPARSEABLE:
        pass  # asn1crypto cannot walk the extensions either: the list as a whole is named
    return "extensions"


def malformed_part(cert: x509.Certificate) -> str | None:
    """The first part of ``cert`` that does not parse (RFC 5280 section 4.1: subject, issuer,
    subjectPublicKeyInfo, extensions, naming the extension), or None; looked at once per object."""
    known = _known(cert)
    if known.malformed is None:
        found = ""  # kept only once known: an unforeseen error must not leave "nothing malformed" behind
        for part, read in (("subject", lambda: cert.subject.rfc4514_string()),
                           ("issuer", lambda: cert.issuer.rfc4514_string()),
                           ("subjectPublicKeyInfo", lambda: sm2_public_key(cert) or cert.public_key()),
                           ("extensions", lambda: cert.extensions)):
            try:
                read()
            except MALFORMED as exc:
                found = _extension_at_fault(cert, exc) if part == "extensions" else part
                break
        known.malformed = found
    return known.malformed or None


def malformed_verdict(purpose: str, part: str, at: datetime.datetime | None,
                      where: str = "certificate") -> CertificateVerdict:
    """``valid: false`` with reason ``malformed-certificate`` naming the part (no subject, no chain)."""
    reason = Reason("malformed-certificate", f"the {where}'s {part} cannot be parsed")
    return CertificateVerdict(False, purpose, (reason,),
                              None, validated_at=at)


def certificate_key(cert: x509.Certificate) -> bytes:
    """SHA-256 of the certificate's DER, computed once per certificate object (a cache key)."""
    return _known(cert).digest


def subject_der(cert: x509.Certificate) -> bytes:
    """The subject Name's DER (RFC 5280 section 4.1.2.6), encoded once per certificate object."""
    known = _known(cert)
    if known.subject_der is None:
        known.subject_der = cert.subject.public_bytes()
    return known.subject_der


def certificate_facts(cert: x509.Certificate) -> dict[str, Any]:
    """What a verdict says about a certificate (subject, serial, validity, profile), computed once
    per certificate per process: name walking is most of a verdict's cost otherwise."""
    known = _known(cert)
    if known.facts is None:
        known.facts = {"subject": describe_subject(cert), "serial": format(cert.serial_number, "x"),
                       "not_before": cert.not_valid_before_utc.isoformat(),
                       "not_after": cert.not_valid_after_utc.isoformat(), "profile": profile_of(cert),
                       "national_id": national_id_of(cert)}
    return known.facts


def chain_entry(cert: x509.Certificate) -> dict[str, str]:
    """subject, serial and SHA-256 fingerprint of a path element (kept per process: CAs are few)."""
    known = _known(cert)
    if known.entry is None:
        known.entry = {"subject": cert.subject.rfc4514_string(), "serial": format(cert.serial_number, "x"),
                       "sha256": known.digest.hex()}
    return dict(known.entry)


def national_id_of(cert: x509.Certificate) -> str | None:
    values = cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    if not values:
        return None
    value = str(values[0].value)
    if value.startswith("PNO") and "-" in value:
        return value.split("-", 1)[1]
    return None


def describe_subject(cert: x509.Certificate) -> dict[str, Any]:
    def first(oid: x509.ObjectIdentifier) -> str | None:
        values = cert.subject.get_attributes_for_oid(oid)
        return str(values[0].value) if values else None

    return {"dn": cert.subject.rfc4514_string(), "common_name": first(NameOID.COMMON_NAME),
            "given_name": first(NameOID.GIVEN_NAME), "surname": first(NameOID.SURNAME),
            "organization": first(NameOID.ORGANIZATION_NAME), "serial_number": first(NameOID.SERIAL_NUMBER),
            "national_id": national_id_of(cert)}


_LOADED: dict[bytes, x509.Certificate] = {}


def load_certificate(data: str | bytes) -> x509.Certificate:
    """A certificate from PEM text or base64 DER (or raw DER); ``ValueError`` when it is neither.

    The same text gives the same (immutable) object again from a bounded per-process table, so a
    service asking about the same certificate repeatedly finds everything worked out about it
    (:class:`_Known`) at once."""
    import base64
    import binascii

    raw = data.encode() if isinstance(data, str) else data
    stripped = raw if raw[:1] == b"\x30" else raw.strip()  # DER may end in a byte that is white space
    loaded = _LOADED.get(stripped)
    if loaded is not None:
        return loaded
    try:
        if stripped.startswith(b"-----BEGIN"):
            cert = x509.load_pem_x509_certificate(stripped)
        elif stripped[:1] == b"\x30":
            cert = x509.load_der_x509_certificate(stripped)
        else:
            try:
                der = base64.b64decode(b"".join(stripped.split()), validate=True)
            except (binascii.Error, ValueError):
                raise ValueError("neither PEM nor base64 DER") from None
            cert = x509.load_der_x509_certificate(der)
    except x509.InvalidVersion:  # not a ValueError: a version other than v1-v3 (RFC 5280 section 4.1.2.1)
        raise ValueError("not an X.509 v1-v3 certificate") from None
    if len(_LOADED) >= _KNOWN_LIMIT:
        _LOADED.clear()
    _LOADED[stripped] = cert
    return cert


# --- extension policies per purpose ---------------------------------------------------------
def _ee_policy(purpose: Purpose) -> ExtensionPolicy:
    """The end-entity extension policy of ``purpose`` for cryptography's verifier."""

    def key_usage(_policy: Any, _cert: x509.Certificate, value: x509.KeyUsage | None) -> None:
        if value is None or not all(getattr(value, bit) for bit in purpose.key_usage):
            raise ValueError(f"keyUsage lacks {', '.join(purpose.key_usage)}")

    def eku(_policy: Any, _cert: x509.Certificate, value: x509.ExtendedKeyUsage | None) -> None:
        if purpose.eku is not None and (value is None or purpose.eku not in value):
            raise ValueError("extendedKeyUsage lacks the purpose")

    def policies(_policy: Any, _cert: x509.Certificate, value: x509.CertificatePolicies | None) -> None:
        numbers = {_tessera_policy(p.policy_identifier.dotted_string) for p in value or ()}
        if value is None or not numbers & purpose.policies.keys():
            raise ValueError("no accepted certificate policy")

    policy = (ExtensionPolicy.permit_all()
              .require_present(x509.KeyUsage, Criticality.AGNOSTIC, key_usage)
              .require_present(x509.CertificatePolicies, Criticality.AGNOSTIC, policies))
    if purpose.eku is not None:
        policy = policy.require_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, eku)
    return policy


def purpose_reasons(cert: x509.Certificate, purpose: Purpose) -> list[Reason]:
    """Each way ``cert`` is not fit for ``purpose`` (the same rules as the extension policy, named)."""
    out = []
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        missing = [bit for bit in purpose.key_usage if not getattr(ku, bit)]
        if missing:
            out.append(Reason("wrong-key-usage", f"keyUsage lacks {', '.join(missing)} (needed for {purpose.name})"))
    except x509.ExtensionNotFound:
        out.append(Reason("wrong-key-usage", "the certificate has no keyUsage"))
    if purpose.eku is not None:
        try:
            usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            if purpose.eku not in usages:
                out.append(Reason("wrong-extended-key-usage", f"extendedKeyUsage lacks {purpose.eku.dotted_string}"))
        except x509.ExtensionNotFound:
            out.append(Reason("wrong-extended-key-usage", "the certificate has no extendedKeyUsage"))
    if profile_of(cert, purpose) is None:
        out.append(Reason("wrong-policy", f"no certificate policy accepted for {purpose.name}"))
    return out


def profile_of(cert: x509.Certificate, purpose: Purpose | None = None) -> str | None:
    """The Tessera profile the certificate asserts by policy (within ``purpose`` when given)."""
    asserted = {_tessera_policy(p) for p in asserted_policies(cert)}
    table = purpose.policies if purpose else {k: v for p in PURPOSES.values() for k, v in p.policies.items()}
    return next((table[p] for p in sorted(n for n in asserted if n is not None) if p in table), None)


def asserted_policies(cert: x509.Certificate) -> set[str]:
    """The dotted OIDs of ``cert``'s certificatePolicies (RFC 5280 section 4.2.1.4); none without them."""
    try:
        value = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
    except x509.ExtensionNotFound:
        return set()
    return {p.policy_identifier.dotted_string for p in value}


# --- trust ---------------------------------------------------------------------------------
@dataclass
class Anchors:
    """The trust anchors: ours (root and issuing CAs from the store) for the fast path, the SM2
    ones apart (:mod:`verification.sm2_paths`), and the foreign anchors of the trust list,
    validated in full (:mod:`verification.paths`)."""

    roots: list[x509.Certificate]
    intermediates: list[x509.Certificate]
    #: authority name by subject DER of our issuing CAs (for the store and OCSP lookups)
    ours: dict[bytes, str]
    foreign: list[ForeignAnchor] = field(default_factory=list)
    #: the SM2 root and issuing CAs (``tessera ca add-sm2``), signed SM2-with-SM3
    sm2_roots: list[x509.Certificate] = field(default_factory=list)
    sm2_intermediates: list[x509.Certificate] = field(default_factory=list)

    @classmethod
    def from_store(cls, engine: Engine, trust_list: str | None = None) -> "Anchors":
        """Our CAs from the store (their certificatePolicies give the deployment's policy arc,
        registered in :data:`ARCS`), plus the trust list at ``trust_list`` (default
        ``TESSERA_TRUST_LIST``; none when unset)."""
        with engine.connect() as conn:
            rows = conn.execute(select(Authority.name, Authority.certificate_der)).all()
        certs = {name: x509.load_der_x509_certificate(der) for name, der in rows}
        suites: dict[bool, tuple[list[x509.Certificate], list[x509.Certificate]]] = {False: ([], []), True: ([], [])}
        for name, cert in certs.items():
            suites[is_sm2_certificate(cert)][name not in (ROOT, SM2_PREFIX + ROOT)].append(cert)
        (roots, intermediates), (sm2_roots, sm2_intermediates) = suites[False], suites[True]
        for cert in intermediates + sm2_intermediates:
            try:
                named = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
            except (x509.ExtensionNotFound, *MALFORMED):
                continue
            ARCS.update(p.policy_identifier.dotted_string.rpartition(".")[0] for p in named
                        if p.policy_identifier != x509.oid.CertificatePoliciesOID.ANY_POLICY)
        path = trust_list if trust_list is not None else os.environ.get("TESSERA_TRUST_LIST")
        foreign = load_trust_list(path, tuple(PURPOSES)) if path else []
        return cls(roots, intermediates, {c.subject.public_bytes(): n for n, c in certs.items()}, foreign,
                   sm2_roots, sm2_intermediates)


# --- revocation ---------------------------------------------------------------------------
#: the store's word on a certificate (source "store"): built once, asked at every such check
_STORED_STATUS = (select(Certificate.serial_hex, Certificate.status, Certificate.revoked_at,
                         Certificate.revocation_reason)
                  .where(Certificate.serial_hex.in_(bindparam("serials", expanding=True))))


#: how long an issuing CA's status read from a CRL is used before it is read again (the API sees a
#: CA's revocation within this time when the end entity's status comes from OCSP or a CRL)
AUTHORITY_STATUS_SECONDS = 5.0


class RevocationChecker:
    """Status of a certificate issued by one of our CAs, from one of three sources."""

    def __init__(self, engine: Engine, ocsp_responder: Any | None = None,
                 clock: Callable[[], datetime.datetime] | None = None) -> None:
        self.engine = engine
        self.responder = ocsp_responder
        self.clock = clock or (lambda: datetime.datetime.now(datetime.timezone.utc))
        #: issuer subject DER -> (the id of its latest CRL, that CRL as usable or why it is not)
        self._crls: dict[bytes, tuple[Any, UsableCrl | str]] = {}
        self._responders: dict[bytes, bool] = {}
        self._requests: dict[tuple[bytes, bytes], bytes] = {}
        self._answers: dict[tuple[bytes, int], Any] = {}
        self._authorities: dict[Any, tuple[float, RevocationStatus]] = {}

    def check_path(self, path: Sequence[x509.Certificate], source: str,
                   at: datetime.datetime) -> list[RevocationStatus]:
        """The status of every certificate of ``path`` (the end entity first, the anchor last and
        not checked): RFC 5280 section 6.1.3 (a)(3), so a revoked issuing CA revokes what it
        issued. From the store, one query answers for all of them; otherwise the end entity's
        comes from ``source`` and the CAs' from their issuers' CRLs (the OCSP responders answer
        for end entities only)."""
        if source == "store":
            return self._store(path[:-1])
        first = self._crl(path[0], path[1], at) if source == "crl" else self._ocsp(path[0], path[1], at)
        return [first] + [self._authority(cert, issuer, at) for cert, issuer in zip(path[1:-1], path[2:], strict=True)]

    def _authority(self, cert: x509.Certificate, issuer: x509.Certificate, at: datetime.datetime) -> RevocationStatus:
        """An issuing CA's status from its issuer's CRL, kept for :data:`AUTHORITY_STATUS_SECONDS`:
        reading the CRL's number for every call would cost each OCSP-backed verification ~0.6 ms
        (more than the whole verification), for an event as rare as a CA's revocation."""
        key = certificate_key(cert)
        now = time.monotonic()
        kept = self._authorities.get(key)
        if kept is not None and kept[0] > now:
            return kept[1]
        status = self._crl(cert, issuer, at)
        if len(self._authorities) > 1000:
            self._authorities = {}
        self._authorities[key] = (now + AUTHORITY_STATUS_SECONDS, status)
        return status

    def _store(self, certs: Sequence[x509.Certificate]) -> list[RevocationStatus]:
        serials = [format(cert.serial_number, "x") for cert in certs]
        with self.engine.connect() as conn:
            rows = {row[0]: row[1:] for row in conn.execute(_STORED_STATUS, {"serials": serials})}
        now = self.clock()
        out = []
        for serial in serials:
            if serial not in rows:
                out.append(RevocationStatus("unknown", "store", now, detail="the store does not know this certificate"))
                continue
            status, revoked_at, reason = rows[serial]
            out.append(RevocationStatus("good", "store", now) if status == CertificateStatus.VALID else
                       RevocationStatus("revoked", "store", now, revoked_at, reason or "unspecified",
                                        "on hold" if status == CertificateStatus.ON_HOLD else ""))
        return out

    def _crl(self, cert: x509.Certificate, issuer: x509.Certificate, at: datetime.datetime) -> RevocationStatus:
        """The status from the issuer's latest published CRL (its number read each time, so a new
        CRL is seen at once), used as RFC 5280 section 6.3.3 allows (:func:`verification.crl_status.usable_crl`:
        signed by the issuer's key, ECDSA, RSA or SM2, with cRLSign, no unknown critical extension, a
        complete direct CRL; then its freshness and scope), worked out once per CRL."""
        key = subject_der(issuer)
        issuer_der = issuer.public_bytes(serialization.Encoding.DER)
        with self.engine.connect() as conn:
            latest = conn.execute(select(Crl.id).join(Authority, Authority.id == Crl.authority_id)
                                  .where(Authority.certificate_der == issuer_der)
                                  .order_by(Crl.number.desc()).limit(1)).scalar()
            cached = self._crls.get(key)
            if cached is None or cached[0] != latest:
                der = conn.execute(select(Crl.der).where(Crl.id == latest)).scalar() if latest is not None else None
                usable: UsableCrl | str = "no CRL of the issuer is published"
                if der is not None:
                    loaded = load_crl(der)
                    usable = loaded if isinstance(loaded, str) else usable_crl(loaded, [issuer])
                cached = (latest, usable)
                self._crls[key] = cached
        usable = cached[1]
        if isinstance(usable, str):
            return RevocationStatus("unknown", "crl", detail=usable)
        outcome, detail = certificate_status(cert, [usable], at)
        this_update = usable.crl.last_update_utc
        entry = usable.crl.get_revoked_certificate_by_serial_number(cert.serial_number) if outcome == "revoked" else None
        if entry is None:
            return RevocationStatus("good", "crl", this_update) if outcome == "good" else \
                RevocationStatus("unknown", "crl", this_update, detail=detail)
        try:
            reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.value
        except x509.ExtensionNotFound:
            reason = "unspecified"
        return RevocationStatus("revoked", "crl", this_update, entry.revocation_date_utc, reason)

    def _ocsp(self, cert: x509.Certificate, issuer: x509.Certificate, at: datetime.datetime) -> RevocationStatus:
        """Ask our responder in process (RFC 6960 section 4.1, no nonce: the stored answer) and
        check its answer as any relying party would: signature by the CA or its delegated
        responder (id-kp-OCSPSigning, issued by the CA; section 4.2.2.2), the CertID, freshness."""
        if self.responder is None:
            return RevocationStatus("unknown", "ocsp", detail="no OCSP responder configured")
        request_key = (certificate_key(cert), certificate_key(issuer))
        request_der = self._requests.get(request_key)
        if request_der is None:
            request_der = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA256()).build().public_bytes(
                serialization.Encoding.DER)
            if len(self._requests) > 10000:
                self._requests = {}
            self._requests[request_key] = request_der
        reply = self.responder.respond(request_der)
        # a stored (pre-produced) answer is the same bytes until the status changes: checked once
        answer_key = (reply.der, cert.serial_number)
        checked = self._answers.get(answer_key)
        if checked is None:
            checked = self._check_ocsp(reply.der, cert, issuer)
            if len(self._answers) > 10000:
                self._answers = {}
            self._answers[answer_key] = checked
        if isinstance(checked, RevocationStatus):
            return checked
        response = checked
        this_update = response.this_update_utc
        # stale for the time asked, as a CRL is (crl_status); "from the future" against the clock
        # (5 minutes of skew), not against ``at``: an answer made after a record's signing time
        # still speaks for that time (good now, good then)
        stale = response.next_update_utc is not None and response.next_update_utc < at
        if stale or this_update > self.clock() + datetime.timedelta(minutes=5):
            return RevocationStatus("unknown", "ocsp", this_update, detail="the OCSP response is not current")
        if response.certificate_status == ocsp.OCSPCertStatus.GOOD:
            return RevocationStatus("good", "ocsp", this_update)
        if response.certificate_status == ocsp.OCSPCertStatus.REVOKED:
            reason = response.revocation_reason.value if response.revocation_reason else "unspecified"
            return RevocationStatus("revoked", "ocsp", this_update, response.revocation_time_utc, reason)
        return RevocationStatus("unknown", "ocsp", this_update, detail="OCSP: unknown certificate")

    def _check_ocsp(self, der: bytes, cert: x509.Certificate, issuer: x509.Certificate) -> Any:
        """The parsed response when it is well-formed, signed by an authorised responder and about
        ``cert``; else the ``unknown`` status saying why."""
        try:
            response = ocsp.load_der_ocsp_response(der)
        except ValueError:
            return RevocationStatus("unknown", "ocsp", detail="unparseable OCSP response")
        if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
            return RevocationStatus("unknown", "ocsp", detail=f"OCSP said {response.response_status.name}")
        signer = issuer
        for candidate in response.certificates:
            if not self._delegated(candidate, issuer):
                return RevocationStatus("unknown", "ocsp", detail="the OCSP responder is not authorised by the CA")
            signer = candidate
        try:
            verify_signed_by(signer, response.signature, response.tbs_response_bytes, response.signature_algorithm_oid,
                             lambda: response.signature_hash_algorithm)
        except (InvalidSignature, *MALFORMED):
            return RevocationStatus("unknown", "ocsp", detail="the OCSP response signature does not verify")
        if response.serial_number != cert.serial_number:
            return RevocationStatus("unknown", "ocsp", detail="the OCSP response is about another certificate")
        return response

    def _delegated(self, responder: x509.Certificate, issuer: x509.Certificate) -> bool:
        key = responder.fingerprint(hashes.SHA256()) + issuer.fingerprint(hashes.SHA256())
        known = self._responders.get(key)
        if known is None:
            try:
                usages = responder.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
                known = directly_issued_by(responder, issuer) and ExtendedKeyUsageOID.OCSP_SIGNING in usages
            except (x509.ExtensionNotFound, *MALFORMED):
                known = False
            self._responders[key] = known
        return known


#: RFC 5280 section 4.2.1.3 bits: cryptography's names -> pyhanko-certvalidator's (verification.paths)
PATH_KEY_USAGE = {"digital_signature": "digital_signature", "content_commitment": "non_repudiation"}


def certificate_der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


# --- the validator --------------------------------------------------------------------------
class CertificateValidator:
    """Validates certificates for a purpose: path (cryptography), purpose, revocation (ours)."""

    def __init__(self, anchors: Anchors, revocation: RevocationChecker,
                 clock: Callable[[], datetime.datetime] | None = None) -> None:
        self.anchors = anchors
        self.revocation = revocation
        self.clock = clock or (lambda: datetime.datetime.now(datetime.timezone.utc))
        self._store = Store(anchors.roots) if anchors.roots else None
        #: CRLs of foreign CAs, fetched from their distribution points, each until its nextUpdate
        self.crl_cache = CrlCache()
        self._ee = {name: _ee_policy(p) for name, p in PURPOSES.items()}
        self._builders: dict[tuple[str, datetime.datetime], PolicyBuilder] = {}
        self._lock = threading.Lock()
        #: (certificate, purpose, given chain) -> (valid from, valid until, reasons, built path)
        self._paths: dict[tuple[Any, ...], tuple[datetime.datetime, datetime.datetime, tuple[Reason, ...],
                                                  tuple[x509.Certificate, ...]]] = {}

    @classmethod
    def for_deployment(cls, engine: Engine, ocsp_responder: Any | None,
                       clock: Callable[[], datetime.datetime] | None = None) -> "CertificateValidator":
        return cls(Anchors.from_store(engine), RevocationChecker(engine, ocsp_responder, clock), clock)

    def _verifier(self, purpose: str, at: datetime.datetime, ee: ExtensionPolicy | None = None) -> Any:
        at = at.replace(microsecond=0)
        assert self._store is not None  # _path asks only when there are anchors
        if ee is not None:
            return (PolicyBuilder().store(self._store).time(at)
                    .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ee)
                    .build_client_verifier())
        key = (purpose, at)
        builder = self._builders.get(key)
        if builder is None:
            builder = (PolicyBuilder().store(self._store).time(at)
                       .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=self._ee[purpose]))
            if len(self._builders) > 64:
                self._builders = {}
            self._builders[key] = builder
        return builder.build_client_verifier()

    def validate(self, cert: x509.Certificate, purpose: str, chain: Sequence[x509.Certificate] = (),
                 at: datetime.datetime | None = None, revocation_source: str = "ocsp",
                 policy: PolicyInputs | None = None) -> CertificateVerdict:
        """RFC 5280 section 6 path validation at ``at`` (default now) for ``purpose``, then the
        revocation status from ``revocation_source`` (``ocsp``, ``crl`` or ``store``); every
        reason is collected, none short-circuits the others except an unbuildable path.
        ``policy``: the caller's initial policy inputs (section 6.1.1), applied in full on a
        foreign anchor's path within the anchor's own (:meth:`ForeignAnchor.policy_inputs`); on
        Tessera's hierarchy (no policy mappings; every CA asserts its certificates' policies) the
        certificate's policies must meet an explicit user-initial-policy-set (:meth:`PolicyInputs.admits`).

        The path and purpose part depends only on the certificates and the time, so a result is
        reused while ``at`` stays inside the validity of every certificate on the path (the
        anchors are fixed per validator); revocation is asked every time."""
        if purpose not in PURPOSES:
            raise ValueError(f"unknown purpose {purpose!r}; known: {', '.join(PURPOSES)}")
        if revocation_source not in REVOCATION_SOURCES:
            raise ValueError(f"unknown revocation source {revocation_source!r}")
        at = at or self.clock()
        part = malformed_part(cert)
        if part is not None:
            return malformed_verdict(purpose, part, at)
        for i, extra in enumerate(chain):
            part = malformed_part(extra)
            if part is not None:
                return malformed_verdict(purpose, part, at, f"chain[{i}] certificate")
        key = (certificate_key(cert), purpose, tuple(certificate_key(c) for c in chain))
        cached = self._paths.get(key)
        if cached is not None and cached[0] <= at <= cached[1]:
            reasons, built = list(cached[2]), cached[3]
        else:
            reasons, built = self._path(cert, purpose, chain, at)
            if not any(r.code in ("expired", "not-yet-valid") for r in reasons) and built:
                window = (max(c.not_valid_before_utc for c in built), min(c.not_valid_after_utc for c in built))
                if len(self._paths) > 10000:
                    self._paths = {}
                self._paths[key] = (window[0], window[1], tuple(reasons), built)
        if not built and self.anchors.foreign:
            foreign = self._foreign(cert, purpose, chain, at, policy)
            if foreign is not None:
                return foreign
        revocation = RevocationStatus("unknown", "none", detail="not checked: no trusted path")
        issuer = built[1] if len(built) > 1 else None
        if policy is not None and built and not policy.admits(asserted_policies(cert)):
            reasons.append(Reason("wrong-policy", "none of the certificate's policies is in the policy set asked"))
        if issuer is not None and subject_der(issuer) in self.anchors.ours:
            revocation, *authorities = self.revocation.check_path(built, revocation_source, at)
            if revocation.status == "revoked":
                when = f" at {revocation.revoked_at:%Y-%m-%d %H:%M:%SZ}" if revocation.revoked_at else ""
                reasons.append(Reason("revoked", f"revoked ({revocation.reason}){when}, per {revocation.source}"))
            elif revocation.status != "good":
                reasons.append(Reason("revocation-unknown",
                                      f"status unknown ({revocation.source}): {revocation.detail}"))
            for authority, status in zip(built[1:-1], authorities, strict=True):
                name = authority.subject.rfc4514_string()
                if status.status == "revoked":
                    reasons.append(Reason("revoked", f"the issuing CA {name} is revoked ({status.reason}), "
                                                     f"per {status.source}"))
                elif status.status != "good":
                    reasons.append(Reason("revocation-unknown", f"status of the issuing CA {name} unknown "
                                                                f"({status.source}): {status.detail}"))
        elif issuer is not None:
            revocation = RevocationStatus("unknown", "none", detail="a foreign CA: no revocation source configured")
            reasons.append(Reason("revocation-unknown", revocation.detail))
        return CertificateVerdict(not reasons, purpose, tuple(reasons), cert, built, certificate_facts(cert)["profile"],
                                  revocation, at, "tessera" if built else None)

    def _foreign(self, cert: x509.Certificate, purpose: str, chain: Sequence[x509.Certificate],
                 at: datetime.datetime, policy: PolicyInputs | None = None) -> CertificateVerdict | None:
        """Full RFC 5280 validation (:func:`verification.paths.validate_path`) to each trust-list
        anchor accepted for ``purpose`` whose name issues something on the given path; the first
        valid answer, else the reasons against the nearest anchor; None when no anchor applies."""
        issuers = {c.issuer.public_bytes() for c in [cert, *chain]}
        candidates = [a for a in self.anchors.foreign
                      if purpose in a.purposes and subject_der(a.certificate) in issuers]
        verdict = None
        wanted = PURPOSES[purpose]
        usage = frozenset(PATH_KEY_USAGE[bit] for bit in wanted.key_usage)
        eku = frozenset({wanted.eku.dotted_string}) if wanted.eku is not None else None
        for anchor in candidates:
            crls, source = anchor.revocation_crls([cert, *chain], at, self.crl_cache)
            outcome = validate_path(certificate_der(cert), [certificate_der(c) for c in chain], [anchor.der], at,
                                    crls=crls, policy=anchor.policy_inputs(policy), key_usage=usage,
                                    extended_key_usage=eku, fetch=anchor.revocation == "ocsp",
                                    fetch_timeout=anchor.timeout, require_revocation=not anchor.fail_open)
            codes = {r.code for r in outcome.reasons}
            status = "good" if outcome.valid else ("revoked" if "revoked" in codes else "unknown")
            revocation = RevocationStatus(status, anchor.revocation, at,
                                          detail=f"every certificate of the path, per {source}; anchor {anchor.name}")
            built = tuple(x509.load_der_x509_certificate(der) for der in outcome.path)
            verdict = CertificateVerdict(outcome.valid, purpose, outcome.reasons, cert, built, None, revocation, at,
                                         anchor.name)
            if outcome.valid:
                return verdict
        return verdict

    def _path(self, cert: x509.Certificate, purpose: str, chain: Sequence[x509.Certificate],
              at: datetime.datetime) -> tuple[list[Reason], tuple[x509.Certificate, ...]]:
        reasons: list[Reason] = []
        if cert.not_valid_after_utc < at:
            reasons.append(Reason("expired", f"expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M:%SZ}"))
        if cert.not_valid_before_utc > at:
            reasons.append(Reason("not-yet-valid", f"valid from {cert.not_valid_before_utc:%Y-%m-%d %H:%M:%SZ}"))
        fit = purpose_reasons(cert, PURPOSES[purpose])
        reasons += fit
        if is_sm2_certificate(cert):
            return self._sm2_path(cert, chain, at, reasons)
        intermediates = list(chain) + self.anchors.intermediates
        built: tuple[x509.Certificate, ...] = ()
        if self._store is None:
            reasons.append(Reason("untrusted-issuer", "no trust anchors are configured"))
            return reasons, built
        try:
            built = tuple(self._verifier(purpose, at).verify(cert, intermediates).chain)
        except (VerificationError, ValueError) as exc:
            chain_text = str(exc)[:300]
            if fit:
                # the purpose failed (already named); is the path itself good?
                try:
                    permissive = self._verifier(purpose, at, ExtensionPolicy.permit_all())
                    built = tuple(permissive.verify(cert, intermediates).chain)
                except (VerificationError, ValueError) as exc2:
                    chain_text = str(exc2)[:300]
            if not built and not any(r.code in ("expired", "not-yet-valid") for r in reasons):
                reasons.append(Reason("untrusted-issuer", f"no path to a trusted anchor: {chain_text}"))
            elif not built:
                # an expired certificate: find the path at a time it was valid, so the chain is still shown
                try:
                    mid = cert.not_valid_before_utc + (cert.not_valid_after_utc - cert.not_valid_before_utc) / 2
                    permissive = self._verifier("x", mid, ExtensionPolicy.permit_all())
                    built = tuple(permissive.verify(cert, intermediates).chain)
                except (VerificationError, ValueError) as exc3:
                    reasons.append(Reason("untrusted-issuer", f"no path to a trusted anchor: {str(exc3)[:300]}"))
        return reasons, built

    def _sm2_path(self, cert: x509.Certificate, chain: Sequence[x509.Certificate], at: datetime.datetime,
                  reasons: list[Reason]) -> tuple[list[Reason], tuple[x509.Certificate, ...]]:
        """The path of an SM2 certificate to the SM2 root (:func:`verification.sm2_paths.validate_sm2_path`):
        ``reasons`` (its own validity and purpose, named already) and the path's own, with the path
        as for ECDSA (shown when only the certificate's own validity fails)."""
        if not self.anchors.sm2_roots:
            return reasons + [Reason("untrusted-issuer", "no SM2 trust anchor is configured")], ()
        outcome = validate_sm2_path(cert, [*chain, *self.anchors.sm2_intermediates], self.anchors.sm2_roots, at)
        named = {r.code for r in reasons}
        return reasons + [r for r in outcome.reasons if r.code not in named], outcome.path


def fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
