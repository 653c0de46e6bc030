"""Offline certificate status from CRLs (RFC 5280 section 6.3) for the card reader, for every
certificate of a validated path: the end entity and each CA below the anchor, so a revoked
intermediate CA makes the path revoked.

A CRL is used as a complete CRL for a certificate only when (section 6.3.3):

* it verifies with the key of the CA that issued the certificate (a direct CRL: same issuer name,
  ECDSA/RSA through cryptography, SM2-with-SM3 through :mod:`verification.sm2_signatures`), whose
  certificate has keyUsage with cRLSign (step (f); a CA certificate must carry keyUsage,
  section 4.2.1.3, so one without it signs no CRL here either);
* it is fresh: ``at`` is not past its nextUpdate (section 5.1.2.5);
* its issuingDistributionPoint scope covers the certificate (step (b)(2)): a distribution point
  name one of the certificate's cRLDistributionPoints names (or, for a certificate without one,
  the issuer's name), onlyContainsUserCerts / onlyContainsCACerts against the certificate's
  basicConstraints, and never onlyContainsAttributeCerts;
* its critical extensions, and those of its entries, are all ones processed here (section 5.2,
  5.3): an unknown critical extension makes the CRL unusable.

The reasons each usable CRL covers (onlySomeReasons met with the distribution point's reasons,
steps (d), (e), (k)) are gathered until they cover every reason; a listed certificate is revoked
(removeFromCRL excepted, step (j)); coverage short of every reason is ``status-unknown``.

Not used as a complete CRL, and said so in the status detail: an **indirect CRL** (indirectCRL,
or a distribution point naming a cRLIssuer), and a **delta CRL** (deltaCRLIndicator, section
5.2.4). Deltas are set aside, not merged (use-deltas of section 6.3.3 is off): Tessera publishes
complete CRLs only, so a revocation is seen in the next complete CRL (docs/verification.md).
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.x509.oid import CRLEntryExtensionOID, ExtensionOID

from verification.reasons import Check
from verification.sm2_signatures import is_sm2_signed, sm2_public_key, verify_sm2

#: every reason a CRL can cover (RFC 5280 section 4.2.1.13 ReasonFlags; "unused" has no flag)
ALL_REASONS = frozenset(x509.ReasonFlags) - {x509.ReasonFlags.unspecified, x509.ReasonFlags.remove_from_crl}
#: CRL extensions processed here (section 5.2); a critical one not listed makes the CRL unusable
_KNOWN_CRL_EXTENSIONS = {ExtensionOID.CRL_NUMBER, ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
                         ExtensionOID.ISSUER_ALTERNATIVE_NAME, ExtensionOID.ISSUING_DISTRIBUTION_POINT,
                         ExtensionOID.FRESHEST_CRL, ExtensionOID.AUTHORITY_INFORMATION_ACCESS}
#: CRL entry extensions processed here (section 5.3); certificateIssuer belongs to indirect CRLs
_KNOWN_ENTRY_EXTENSIONS = {CRLEntryExtensionOID.CRL_REASON, CRLEntryExtensionOID.INVALIDITY_DATE}
#: what cryptography raises, lazily, on a part of a CRL or certificate that does not parse
_MALFORMED = (ValueError, TypeError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType, UnsupportedAlgorithm,
              x509.InvalidVersion)


@dataclass(frozen=True)
class UsableCrl:
    """A verified complete CRL and the scope its issuingDistributionPoint gives it."""

    crl: x509.CertificateRevocationList
    #: the CA certificates (of the given issuers) whose key verified it and that may sign CRLs
    signers: tuple[x509.Certificate, ...]
    number: int
    next_update: datetime.datetime | None
    #: the IDP's distribution point names, None when it names none (section 5.2.5)
    point_names: frozenset[x509.GeneralName] | None = None
    only_user: bool = False
    only_ca: bool = False
    #: onlySomeReasons, None for every reason
    reasons: frozenset[x509.ReasonFlags] | None = None

    @property
    def scoped(self) -> bool:
        """Whether an issuingDistributionPoint limits what it covers (section 5.2.5)."""
        return self.point_names is not None or self.only_user or self.only_ca or self.reasons is not None

    def revocation(self, certificate: x509.Certificate) -> str | None:
        """How ``certificate`` is listed (step (i); removeFromCRL, step (j), is not listed)."""
        entry = self.crl.get_revoked_certificate_by_serial_number(certificate.serial_number)
        if entry is None:
            return None
        try:
            reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
        except x509.ExtensionNotFound:
            reason = x509.ReasonFlags.unspecified
        if reason == x509.ReasonFlags.remove_from_crl:
            return None
        return f"revoked ({reason.value}) at {entry.revocation_date_utc:%Y-%m-%d %H:%M:%SZ}"


def load_crl(der: bytes) -> x509.CertificateRevocationList | str:
    """``der`` as a CRL with every part parsed (RFC 5280 section 5.1), or why it is not one."""
    try:
        crl = x509.load_der_x509_crl(der)
        crl.issuer.public_bytes()
        for extension in crl.extensions:
            extension.value  # noqa: B018 (parsed now: a malformed value is no CRL, not a crash later)
        for entry in crl:
            for entry_extension in entry.extensions:
                entry_extension.value  # noqa: B018
    except _MALFORMED as exc:
        return f"the CRL cannot be parsed: {type(exc).__name__}"
    # signatureValue, the BIT STRING that ends the encoding, carries a whole number of octets (the
    # DER of an ECDSA or SM2 signature, RFC 3279 section 2.2.3; RSA's octets): its unused-bits octet
    # must be 0. cryptography reads past a non-zero one, so the same signature would verify again
    # under another encoding of the CRL.
    if der[-len(crl.signature) - 1] != 0:
        return "the CRL cannot be parsed: its signature has unused bits"
    return crl


def _signed_by(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    """Whether ``issuer``'s key verifies ``crl``'s signature (section 6.3.3 (g))."""
    if is_sm2_signed(crl.signature_algorithm_oid):
        key = sm2_public_key(issuer)
        return key is not None and verify_sm2(key, crl.tbs_certlist_bytes, crl.signature)
    if sm2_public_key(issuer) is not None:
        return False  # cryptography cannot load the key of an SM2 certificate
    try:
        return crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    except _MALFORMED:
        return False


def _may_sign_crls(issuer: x509.Certificate) -> bool:
    """keyUsage with cRLSign (section 6.3.3 (f), 4.2.1.3)."""
    try:
        return bool(issuer.extensions.get_extension_for_class(x509.KeyUsage).value.crl_sign)
    except (x509.ExtensionNotFound, *_MALFORMED):
        return False


def _point_names(point: x509.DistributionPoint | x509.IssuingDistributionPoint,
                 issuer: x509.Name) -> frozenset[x509.GeneralName] | None:
    """A distribution point's names: its fullName, or its nameRelativeToCRLIssuer appended to
    ``issuer`` (section 4.2.1.13); None when it has neither."""
    if point.full_name:
        return frozenset(point.full_name)
    if point.relative_name is not None:
        return frozenset({x509.DirectoryName(x509.Name([*issuer.rdns, point.relative_name]))})
    return None


def usable_crl(crl: x509.CertificateRevocationList, issuers: Sequence[x509.Certificate]) -> UsableCrl | str:
    """``crl`` as a complete, direct CRL of one of ``issuers``, or why it cannot be one."""
    candidates = [c for c in issuers if c.subject == crl.issuer]
    if not candidates:
        return "no CA certificate names the CRL's issuer"
    signers = tuple(c for c in candidates if _signed_by(crl, c))
    if not signers:
        return "the CRL's signature does not verify with its issuer"
    signers = tuple(c for c in signers if _may_sign_crls(c))
    if not signers:
        return "the CRL's issuer certificate lacks keyUsage cRLSign"
    point_names, only_user, only_ca, reasons, number = None, False, False, None, -1
    for extension in crl.extensions:
        oid, value = extension.oid, extension.value
        if oid == ExtensionOID.DELTA_CRL_INDICATOR:
            return "a delta CRL, not a complete CRL (deltas are not used)"
        if extension.critical and oid not in _KNOWN_CRL_EXTENSIONS:
            return f"the CRL has an unknown critical extension {oid.dotted_string}"
        if isinstance(value, x509.CRLNumber):
            number = value.crl_number
        elif isinstance(value, x509.IssuingDistributionPoint):
            if value.indirect_crl:
                return "an indirect CRL (not used)"
            if value.only_contains_attribute_certs:
                return "a CRL of attribute certificates only"
            point_names = _point_names(value, crl.issuer)
            only_user, only_ca, reasons = (value.only_contains_user_certs, value.only_contains_ca_certs,
                                           value.only_some_reasons)
    for entry in crl:
        for entry_extension in entry.extensions:
            if entry_extension.critical and entry_extension.oid not in _KNOWN_ENTRY_EXTENSIONS:
                return f"a CRL entry has an unknown critical extension {entry_extension.oid.dotted_string}"
    return UsableCrl(crl, signers, number, crl.next_update_utc, point_names, only_user, only_ca, reasons)


def _scope(certificate: x509.Certificate) -> tuple[list[tuple[frozenset[x509.GeneralName],
                                                             frozenset[x509.ReasonFlags]]], bool]:
    """The (names, reasons) of each distribution point of ``certificate`` that a direct CRL may
    serve, then the one section 6.3.3 assumes for CRLs named by no distribution point (the
    issuer's name and issuerAltName, every reason); and whether it is a CA (basicConstraints cA).
    Points naming a cRLIssuer need an indirect CRL. One pass over the extensions."""
    named: x509.CRLDistributionPoints | None = None
    issuer_names: set[x509.GeneralName] = {x509.DirectoryName(certificate.issuer)}
    is_ca = False
    for extension in certificate.extensions:
        value = extension.value
        if isinstance(value, x509.CRLDistributionPoints):
            named = value
        elif isinstance(value, x509.IssuerAlternativeName):
            issuer_names.update(value)
        elif isinstance(value, x509.BasicConstraints):
            is_ca = value.ca
    points = []
    for point in named or ():
        names = _point_names(point, certificate.issuer)
        if point.crl_issuer is None and names is not None:
            points.append((names, point.reasons or ALL_REASONS))
    points.append((frozenset(issuer_names), ALL_REASONS))
    return points, is_ca


def certificate_status(certificate: x509.Certificate, crls: Sequence[UsableCrl],
                       at: datetime.datetime) -> tuple[str, str]:
    """(``good``, ``revoked``, ``stale`` or ``unknown``, detail) for ``certificate`` from ``crls``,
    the usable CRLs signed by the key of the CA that issued it (RFC 5280 section 6.3.3).

    When none of ``crls`` is scoped by an issuingDistributionPoint (Tessera's own), the first
    fresh one covers every reason for every distribution point of the certificate, so the
    certificate's extensions are not read (parsing them is most of the cost otherwise)."""
    if not any(usable.scoped for usable in crls):
        fresh = next((u for u in crls if u.next_update is None or u.next_update >= at), None)
        if fresh is None:
            return "stale", "the CRL is past its nextUpdate"
        listed = fresh.revocation(certificate)
        return ("revoked", listed) if listed is not None else ("good", f"not on CRL #{fresh.number}")
    try:
        points, is_ca = _scope(certificate)
    except _MALFORMED:
        return "unknown", "the certificate's extensions cannot be parsed"
    covered: set[x509.ReasonFlags] = set()
    numbers: list[int] = []
    stale = False
    for names, point_reasons in points:
        for usable in crls:
            if usable.next_update is not None and usable.next_update < at:
                stale = True
                continue
            if usable.point_names is not None and not names & usable.point_names:
                continue
            if (usable.only_user and is_ca) or (usable.only_ca and not is_ca):
                continue
            interim = (usable.reasons or ALL_REASONS) & point_reasons
            if not interim - covered:
                continue
            listed = usable.revocation(certificate)
            if listed is not None:
                return "revoked", listed
            covered |= interim
            numbers.append(usable.number)
            if covered >= ALL_REASONS:
                return "good", "not on CRL " + ", ".join(f"#{n}" for n in numbers)
    if stale and not covered:
        return "stale", "the CRL is past its nextUpdate"
    if covered:
        return "unknown", "the CRLs cover only some revocation reasons for this certificate"
    return "unknown", "no CRL of the issuer covers this certificate"


class CrlStatus:
    """Offline status from CRLs (RFC 5280 section 6.3) of the given CA certificates (``issuers``).

    Given a ``source``, the CRLs (DER) are read again every ``max_age`` seconds, so a long-running
    service sees a card reported lost within that time; ``generation`` counts the loads so
    callers can drop answers cached from older CRLs. A CRL that does not parse or cannot be used
    is no status (its issuer's certificates are ``status-unknown``, saying why), never an error."""

    def __init__(self, crls: Sequence[bytes], issuers: Sequence[x509.Certificate],
                 source: Callable[[], Sequence[bytes]] | None = None, max_age: float = 60.0) -> None:
        self._issuers = list(issuers)
        self._source = source
        self._max_age = max_age
        self.generation = 0
        self._load(crls)

    def _load(self, crls: Sequence[bytes]) -> None:
        by_issuer: dict[bytes, list[UsableCrl]] = {}
        problems: dict[bytes, str] = {}
        for der in crls:
            crl = load_crl(der)
            if isinstance(crl, str):
                continue  # no issuer can be named: its certificates read "no CRL"
            usable = usable_crl(crl, self._issuers)
            key = crl.issuer.public_bytes()
            if isinstance(usable, str):
                problems[key] = usable
            else:
                by_issuer.setdefault(key, []).append(usable)
        self._by_issuer, self._problems = by_issuer, problems
        #: id() of an issuer certificate -> (it, the usable CRLs its key signed, or why there are none)
        self._for_issuer: dict[int, tuple[x509.Certificate, list[UsableCrl] | str]] = {}
        #: id() of a CA certificate above the end entities -> (it, its issuer, status, detail,
        #: until when the answer holds), this generation
        self._cas: dict[int, tuple[x509.Certificate, x509.Certificate, str, str, datetime.datetime]] = {}
        self._loaded = time.monotonic()
        self.generation += 1

    def refresh_if_old(self) -> None:
        if self._source is not None and time.monotonic() - self._loaded > self._max_age:
            self._load(self._source())

    def _crls_for(self, issuer: x509.Certificate) -> list[UsableCrl] | str:
        """The usable CRLs signed by ``issuer``'s key (its certificates' issuer name is its
        subject: the path validated), or why there are none; worked out once per generation."""
        known = self._for_issuer.get(id(issuer))
        if known is None or known[0] is not issuer:
            key = issuer.subject.public_bytes()
            crls = [u for u in self._by_issuer.get(key, []) if issuer in u.signers]
            if len(self._for_issuer) > 256:
                self._for_issuer.clear()
            known = self._for_issuer[id(issuer)] = (issuer, crls or self._problems.get(key, "no CRL for the issuer"))
        return known[1]

    def _status(self, certificate: x509.Certificate, issuer: x509.Certificate,
                at: datetime.datetime) -> tuple[str, str]:
        crls = self._crls_for(issuer)
        if isinstance(crls, str):
            return "unknown", crls
        return certificate_status(certificate, crls, at)

    def status(self, certificate: x509.Certificate, issuer: x509.Certificate, at: datetime.datetime,
               name: str = "status") -> Check:
        """The status of one certificate issued by ``issuer``."""
        self.refresh_if_old()
        return _check(name, *self._status(certificate, issuer, at))

    def authorities_status(self, path: Sequence[x509.Certificate], at: datetime.datetime,
                           name: str = "status") -> Check | None:
        """The first CA of ``path`` (end entity first, anchor last; the anchor itself has no
        status) whose status is not good, as a failed check naming it; None when every CA is
        good. A CA's answer is kept for this generation of CRLs until the next update of the CRL
        that gave it."""
        self.refresh_if_old()
        for ca, issuer in zip(path[1:-1], path[2:], strict=True):
            kept = self._cas.get(id(ca))
            if kept is None or kept[0] is not ca or kept[1] is not issuer or at > kept[4]:
                outcome, detail = self._status(ca, issuer, at)
                crls = self._crls_for(issuer)
                until = min((u.next_update for u in crls if u.next_update is not None), default=at) \
                    if outcome == "good" and not isinstance(crls, str) else at
                if len(self._cas) > 256:
                    self._cas.clear()
                kept = self._cas[id(ca)] = (ca, issuer, outcome, detail, until)
            if kept[2] != "good":
                return _check(name, kept[2], f"the issuing CA {ca.subject.rfc4514_string()}: {kept[3]}")
        return None

    def path_status(self, path: Sequence[x509.Certificate], at: datetime.datetime, name: str = "status") -> Check:
        """The status of every certificate of ``path`` (end entity first, anchor last): the end
        entity's answer when every CA is good, else the first CA's failure
        (:meth:`authorities_status`)."""
        if len(path) < 2:
            return Check(name, False, "status-unknown", "no issuer to ask about the certificate")
        return self.authorities_status(path, at, name) or _check(name, *self._status(path[0], path[1], at))


def _check(name: str, outcome: str, detail: str) -> Check:
    """The reader's vocabulary for a status: good, revoked, status-stale, status-unknown."""
    if outcome == "good":
        return Check(name, True, "good", detail)
    return Check(name, False, outcome if outcome == "revoked" else f"status-{outcome}", detail)
