"""Certification paths of SM2 certificates (GB/T 20518-2018) to the deployment's SM2 roots: the
basic path validation of RFC 5280 section 6.1.

Why our own code: ``cryptography.x509.verification`` (the ECDSA fast path, :mod:`verification.chain`
and :mod:`verification.certificates`) and pyhanko-certvalidator (:mod:`verification.paths`) check
signatures with cryptography, which can neither load a key on the SM2 curve (1.2.156.10197.1.301)
nor verify SM2-with-SM3 (1.2.156.10197.1.501); OpenSSL 3.0 can, but no maintained Python binding
exposes its ``X509_verify_cert`` with an SM2 signer identity. So the path rules are applied here,
and only the rules: every signature is GmSSL's (:mod:`ca.sm2` through
:mod:`verification.sm2_signatures`, Z of a signer identity a Tessera SM2 CA signs with), no curve
or hash arithmetic is done in this module.

A path is built by name chaining (section 6.1, (a)(4)) from the end entity through the given
certificates to one of the anchors, then checked from the anchor down, each certificate with the
working key and name of the one above it (section 6.1.3 and 6.1.4):

* (a)(1) the signature: SM2-with-SM3 in both the outer signatureAlgorithm and the TBS signature
  field, which must be identical (section 4.1.1.2), verified with the issuer's SM2 key;
* (a)(2) the validity period contains the time asked (the anchor's too, as OpenSSL and cryptography
  check it);
* (a)(4) the issuer name equals the issuer's subject;
* a CA (every certificate above the end entity, the anchor included): (k) basicConstraints with cA,
  (l)/(m) the pathLenConstraint, the anchor's too (as OpenSSL applies it), (n) keyUsage with
  keyCertSign, required present as the ECDSA fast path's Web PKI CA policy requires it, and an SM2
  key (it is the next working key);
* (o) every critical extension is one processed here: basicConstraints and keyUsage, and
  extendedKeyUsage and certificatePolicies, which the caller's purpose check reads from the end
  entity as the ECDSA fast path does (the policy under the deployment's arc,
  :func:`verification.certificates.purpose_reasons`). Any other critical extension (nameConstraints,
  policyConstraints, an unknown one) makes the path invalid, and so does nameConstraints of any
  criticality: name constraints are not processed.

Not done here, as on the ECDSA fast path: the policy tree (section 6.1.3 (d)-(f)) and revocation
(the callers ask :mod:`verification.crl_status`, :mod:`verification.ocsp_status` or the API's
``RevocationChecker`` for every certificate of the path this returns). Judged against
``openssl verify`` by tests/test_sm2_verification.py.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtensionOID

from verification.reasons import Reason
from verification.sm2_signatures import is_sm2_signed, sm2_issued_by, sm2_public_key

#: extensions processed here or by the caller's purpose check (section 6.1.4 (o))
PROCESSED = frozenset({ExtensionOID.BASIC_CONSTRAINTS, ExtensionOID.KEY_USAGE, ExtensionOID.EXTENDED_KEY_USAGE,
                       ExtensionOID.CERTIFICATE_POLICIES})
#: the longest path built (end entity, CAs, anchor) and the most candidate paths tried
MAX_LENGTH = 8
MAX_CANDIDATES = 16
#: partial paths looked at while building (the work one request may cause)
MAX_STEPS = 256
#: what cryptography raises, lazily, on a part of a certificate that does not parse
_MALFORMED = (ValueError, TypeError, KeyError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType,
              UnsupportedAlgorithm)


@dataclass(frozen=True)
class Sm2PathOutcome:
    """The path found (end entity first, anchor last; empty when none chains to an anchor) and
    why it is not valid: ``expired`` or ``not-yet-valid`` for the end entity's own validity,
    ``untrusted-issuer`` for everything else (as the ECDSA fast path names them). Valid when
    there is a path and no reason."""

    path: tuple[x509.Certificate, ...]
    reasons: tuple[Reason, ...]

    @property
    def valid(self) -> bool:
        return bool(self.path) and not self.reasons


def is_sm2_certificate(certificate: x509.Certificate) -> bool:
    """Whether ``certificate`` is signed SM2-with-SM3, so its path is validated here."""
    return is_sm2_signed(certificate.signature_algorithm_oid)


def _der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(Encoding.DER)


def _candidates(leaf: x509.Certificate, pool: Sequence[x509.Certificate],
                anchors: Sequence[x509.Certificate]) -> Iterator[tuple[x509.Certificate, ...]]:
    """Paths from ``leaf`` to an anchor by name chaining (issuer name = subject name, DER), no
    certificate twice, at most :data:`MAX_LENGTH` long; the given order is tried first. At most
    :data:`MAX_STEPS` partial paths are looked at: certificates that share one name (which anyone
    can make and send) would otherwise be tried in every order, 8! of them for 8."""
    anchor_ders = {_der(a) for a in anchors}
    by_subject: dict[bytes, list[tuple[bytes, x509.Certificate]]] = {}
    seen: set[bytes] = set()
    for certificate in [*pool, *anchors]:
        der = _der(certificate)
        if der not in seen:
            seen.add(der)
            by_subject.setdefault(certificate.subject.public_bytes(), []).append((der, certificate))
    stack: list[tuple[tuple[bytes, x509.Certificate], ...]] = [((_der(leaf), leaf),)]
    for _ in range(MAX_STEPS):
        if not stack:
            return
        path = stack.pop()
        if len(path) > 1 and path[-1][0] in anchor_ders:
            yield tuple(certificate for _, certificate in path)
            continue
        if len(path) >= MAX_LENGTH:
            continue
        on_path = {der for der, _ in path}
        issuers = [(der, c) for der, c in by_subject.get(path[-1][1].issuer.public_bytes(), []) if der not in on_path]
        stack.extend((*path, issuer) for issuer in reversed(issuers))


def _validity(certificate: x509.Certificate, at: datetime.datetime, what: str) -> Reason | None:
    if certificate.not_valid_after_utc < at:
        return Reason("expired", f"{what} expired on {certificate.not_valid_after_utc:%Y-%m-%d %H:%M:%SZ}")
    if certificate.not_valid_before_utc > at:
        return Reason("not-yet-valid", f"{what} is valid from {certificate.not_valid_before_utc:%Y-%m-%d %H:%M:%SZ}")
    return None


def _extensions(certificate: x509.Certificate, what: str, ca: bool) -> tuple[int | None, Reason | None]:
    """(pathLenConstraint, None) for a certificate whose extensions pass (k), (n) and (o), else
    (None, why not)."""
    basic: x509.BasicConstraints | None = None
    usage: x509.KeyUsage | None = None
    for extension in certificate.extensions:
        if extension.oid == ExtensionOID.NAME_CONSTRAINTS:
            return None, Reason("untrusted-issuer", f"{what} has name constraints, which are not processed")
        if extension.critical and extension.oid not in PROCESSED:
            return None, Reason("untrusted-issuer",
                                f"{what} has a critical extension not processed here ({extension.oid.dotted_string})")
        if isinstance(extension.value, x509.BasicConstraints):
            basic = extension.value
        elif isinstance(extension.value, x509.KeyUsage):
            usage = extension.value
    if not ca:
        return None, None
    if basic is None or not basic.ca:
        return None, Reason("untrusted-issuer", f"{what} is not a CA (basicConstraints cA)")
    if usage is None or not usage.key_cert_sign:
        return None, Reason("untrusted-issuer", f"{what} may not sign certificates (keyUsage keyCertSign)")
    if sm2_public_key(certificate) is None:
        return None, Reason("untrusted-issuer", f"{what} has no SM2 key")
    return basic.path_length, None


def _check(path: tuple[x509.Certificate, ...], at: datetime.datetime) -> list[Reason]:
    """Section 6.1.3 and 6.1.4 along ``path`` (end entity first, anchor last), from the anchor down."""
    reasons: list[Reason] = []
    for index in range(len(path) - 1, -1, -1):
        certificate = path[index]
        leaf = index == 0
        what = "the certificate" if leaf else f"the CA {certificate.subject.rfc4514_string()}"
        if index < len(path) - 1 and not sm2_issued_by(certificate, path[index + 1]):
            return [Reason("untrusted-issuer", f"the signature of {what} does not verify with its issuer's SM2 key")]
        expired = _validity(certificate, at, what)
        if expired is not None:
            if not leaf:
                return [Reason("untrusted-issuer", expired.detail)]
            reasons.append(expired)
        path_length, refused = _extensions(certificate, what, not leaf)
        if refused is not None:
            return [refused]
        # (l), (m): the CAs below this one, self-issued ones not counted, are at most its pathLenConstraint
        below = sum(1 for c in path[1:index] if c.subject != c.issuer)
        if path_length is not None and below > path_length:
            return [Reason("untrusted-issuer", f"the path is longer than {what} allows (pathLenConstraint "
                                               f"{path_length})")]
    return reasons


def validate_sm2_path(leaf: x509.Certificate, pool: Sequence[x509.Certificate], anchors: Sequence[x509.Certificate],
                      at: datetime.datetime) -> Sm2PathOutcome:
    """RFC 5280 section 6.1 basic path validation of ``leaf`` at ``at`` through ``pool`` (given
    chain and known CAs) to one of ``anchors`` (SM2 roots). The first valid candidate path, else
    the first candidate's reasons (with its path when only the end entity's own validity fails,
    so the chain is still shown), else ``untrusted-issuer``. A certificate that does not parse
    is a reason, never an exception."""
    first: Sm2PathOutcome | None = None
    try:
        for count, path in enumerate(_candidates(leaf, pool, anchors)):
            if count >= MAX_CANDIDATES:
                break
            reasons = tuple(_check(path, at))
            outcome = Sm2PathOutcome(path if all(r.code != "untrusted-issuer" for r in reasons) else (), reasons)
            if outcome.valid:
                return outcome
            first = first or outcome
    except _MALFORMED as exc:
        return Sm2PathOutcome((), (Reason("untrusted-issuer", f"a certificate of the path cannot be parsed: "
                                                              f"{type(exc).__name__}"),))
    return first or Sm2PathOutcome((), (Reason("untrusted-issuer", "no path to a trusted SM2 root"),))
