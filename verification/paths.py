"""Full RFC 5280 section 6 certification path validation, from pyhanko-certvalidator.

What the library does here (and the fast path in :mod:`verification.certificates` does not):
certificate-policy processing with the initial inputs of section 6.1.1 (c), (e), (f), (g)
(policy mappings, inhibitAnyPolicy, requireExplicitPolicy), every name-constraint form with the
section 7.1 name comparison, self-issued certificates and key rollover, and the revocation status
of every certificate on the path (section 6.3 CRLs with issuing distribution points, reasons,
delta and indirect CRLs, separate CRL signing keys; RFC 6960 OCSP). Revocation fails closed:
without usable status information for a certificate the path is not valid.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from asn1crypto import crl as asn1_crl
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import (ExpiredError, InsufficientRevinfoError, InvalidCertificateError,
                                          NotYetValidError, PathBuildingError, PathValidationError, RevokedError,
                                          ValidationError)
from pyhanko_certvalidator.policy_decl import PKIXValidationParams

from verification.reasons import Reason

#: what asn1crypto raises on a part that does not parse (it parses lazily, like cryptography), and
#: what cryptography raises on a key or version it cannot take (pyhanko loads keys through it)
UNPARSEABLE = (ValueError, TypeError, KeyError, IndexError, OverflowError, UnsupportedAlgorithm, x509.InvalidVersion)


#: certificates of one subject name handed to path building: pyhanko-certvalidator tries every order
#: of the candidates that share a name (8 self-signed ones of one name: 9.4 s of CPU for one
#: answer), and a sender can make any number of them; a CA key update has four (OldWithOld,
#: OldWithNew, NewWithOld, NewWithNew: RFC 4210 section 4.4)
MAX_SAME_SUBJECT = 4

#: anyPolicy (RFC 5280 section 4.2.1.4) in a user-initial-policy-set, as pyhanko-certvalidator names it
ANY_POLICY = "any_policy"
#: anyPolicy's OID
ANY_POLICY_OID = "2.5.29.32.0"


@dataclass(frozen=True)
class PolicyInputs:
    """The initial policy inputs of RFC 5280 section 6.1.1 (c), (e), (f) and (g)."""

    #: user-initial-policy-set: dotted OIDs, or ``any_policy``
    initial_policy_set: frozenset[str] = frozenset({ANY_POLICY})
    initial_explicit_policy: bool = False
    initial_policy_mapping_inhibit: bool = False
    initial_any_policy_inhibit: bool = False

    @classmethod
    def of(cls, policies: Iterable[str] = (), explicit: bool = False, mapping_inhibit: bool = False,
           any_inhibit: bool = False) -> "PolicyInputs":
        """The inputs from dotted OIDs (anyPolicy's OID, or none at all: any policy) and the three flags."""
        wanted = frozenset(ANY_POLICY if oid == ANY_POLICY_OID else oid for oid in policies)
        return cls(frozenset({ANY_POLICY}) if not wanted or ANY_POLICY in wanted else wanted, explicit,
                   mapping_inhibit, any_inhibit)

    def admits(self, asserted: Iterable[str]) -> bool:
        """Whether a path whose certificates all assert the policies ``asserted`` (dotted OIDs),
        with no policy mappings and no policyConstraints (Tessera's own hierarchy), passes RFC
        5280 section 6.1.5 (g) with these inputs: without initial-explicit-policy it always does
        (an empty valid_policy_tree is no failure then); with it, ``asserted`` must meet the
        user-initial-policy-set."""
        return (not self.initial_explicit_policy or ANY_POLICY in self.initial_policy_set
                or not self.initial_policy_set.isdisjoint(asserted))

    def params(self) -> PKIXValidationParams:
        return PKIXValidationParams(user_initial_policy_set=self.initial_policy_set,
                                    initial_policy_mapping_inhibit=self.initial_policy_mapping_inhibit,
                                    initial_explicit_policy=self.initial_explicit_policy,
                                    initial_any_policy_inhibit=self.initial_any_policy_inhibit)


@dataclass(frozen=True)
class PathOutcome:
    """The answer of a full path validation: valid or the reasons, the path (anchor first as
    RFC 5280 section 6.1 orders it is reversed here: end entity first), and the policies that
    hold for it (section 6.1.5 (g): the valid_policy_tree's policies, authorities-constrained)."""

    valid: bool
    reasons: tuple[Reason, ...]
    path: tuple[bytes, ...] = ()  # DER, end entity first, anchor last
    policies: tuple[str, ...] = ()
    revocation_sources: tuple[str, ...] = field(default=())


def _reason(error: Exception) -> Reason:
    """The verdict reason for one of pyhanko-certvalidator's errors (the library's words kept)."""
    text = str(error)[:300]
    if isinstance(error, RevokedError):
        return Reason("revoked", text)
    if isinstance(error, InsufficientRevinfoError):
        return Reason("revocation-unknown", text)
    if isinstance(error, ExpiredError):
        return Reason("expired", text)
    if isinstance(error, NotYetValidError):
        return Reason("not-yet-valid", text)
    if isinstance(error, PathBuildingError):
        return Reason("untrusted-issuer", f"no path to a trusted anchor: {text}")
    if isinstance(error, InvalidCertificateError):
        return Reason("wrong-key-usage", text)
    return Reason("path-invalid", text)


#: DER of the certificates and CRLs known to parse in every part (bounded): each is parsed in full
#: once, then loaded afresh (lazily) for each validation. A parsed object is not shared between
#: validations: pyhanko-certvalidator's reading can change how asn1crypto encodes a part again (a
#: BIT STRING's unused bits: the subjectUniqueID of PKITS 4.3.x's UID CA, whose DER length ends in
#: 0x80, which asn1crypto takes for an indefinite length when it hashes the certificate), and the
#: next validation would then check the signature over other bytes and refuse a good certificate;
#: the API's threads would also share its lazy parsing. Loading afresh costs about twice the
#: shared objects' time per foreign path (about 20 ms against 10 ms, docs/verification.md).
_PARSES: set[bytes] = set()


def _checked(der: bytes) -> None:
    if len(_PARSES) > 4096:
        _PARSES.clear()
    _PARSES.add(der)


def _load(der: bytes) -> asn1_x509.Certificate:
    """``der`` parsed, every part at once the first time (a malformed part is a verdict here, not
    a crash later)."""
    cert = asn1_x509.Certificate.load(der)
    if der not in _PARSES:
        cert.native  # noqa: B018
        _checked(der)
    return cert


def _crl(der: bytes) -> asn1_crl.CertificateList | None:
    """``der`` parsed as a CRL (RFC 5280 section 5.1), or None: a CRL that does not parse is no status."""
    if der not in _PARSES:
        try:
            x509.load_der_x509_crl(der)  # strict DER first: asn1crypto is lenient and lazy
        except ValueError:
            return None
        _checked(der)
    try:
        return asn1_crl.CertificateList.load(der)
    except ValueError:
        return None


def _few_of_each_name(certificates: list[asn1_x509.Certificate]) -> list[asn1_x509.Certificate]:
    """The first :data:`MAX_SAME_SUBJECT` certificates of each subject name, in the given order."""
    kept: list[asn1_x509.Certificate] = []
    seen: dict[bytes, int] = {}
    for certificate in certificates:
        name = certificate.subject.dump()
        if seen.get(name, 0) < MAX_SAME_SUBJECT:
            seen[name] = seen.get(name, 0) + 1
            kept.append(certificate)
    return kept


def validate_path(end_entity: bytes, intermediates: Iterable[bytes], anchors: Sequence[bytes],
                  at: datetime.datetime, *, crls: Iterable[bytes] = (), ocsps: Iterable[bytes] = (),
                  policy: PolicyInputs = PolicyInputs(), key_usage: frozenset[str] = frozenset(),
                  extended_key_usage: frozenset[str] | None = None, fetch: bool = False,
                  fetch_timeout: float = 5.0, require_revocation: bool = True) -> PathOutcome:
    """RFC 5280 section 6.1 for ``end_entity`` (DER) at ``at`` to one of ``anchors`` (DER), with
    ``intermediates`` as candidates for path building, then the key usage (section 4.2.1.3) and
    extended key usage (4.2.1.12) asked. Revocation (section 6.3): every certificate of the path
    must have a status from ``crls``/``ocsps`` (or fetched from its CDP / AIA when ``fetch``),
    unless ``require_revocation`` is false (then a status found is still obeyed)."""
    try:
        ee = _load(end_entity)
        others = _few_of_each_name([_load(der) for der in intermediates])
        roots = [_load(der) for der in anchors]
    except UNPARSEABLE as exc:
        return PathOutcome(False, (Reason("malformed-certificate", f"a certificate cannot be parsed: {exc}"[:300]),))
    parsed_crls = [crl for crl in map(_crl, crls) if crl is not None]
    fetcher_backend = None
    if fetch:
        from pyhanko_certvalidator.fetchers.requests_fetchers import RequestsFetcherBackend

        fetcher_backend = RequestsFetcherBackend(per_request_timeout=int(max(1, fetch_timeout)))
    context = ValidationContext(trust_roots=roots, other_certs=others, moment=at, allow_fetching=fetch,
                                crls=parsed_crls, ocsps=list(ocsps),
                                revocation_mode="require" if require_revocation else "soft-fail",
                                weak_hash_algos=set(), fetcher_backend=fetcher_backend)
    validator = CertificateValidator(ee, validation_context=context, pkix_params=policy.params())
    try:
        # pyhanko-certvalidator compares extended key usages by asn1crypto's names (client_auth, ...)
        purposes = {asn1_x509.KeyPurposeId.map(oid) for oid in extended_key_usage or ()} or None
        path = asyncio.run(validator.async_validate_usage(set(key_usage), purposes))
    except (ValidationError, PathBuildingError) as exc:
        return PathOutcome(False, (_reason(exc),))
    except (*UNPARSEABLE, ExceptionGroup) as exc:  # a part only read during validation (an extension's value)
        return PathOutcome(False, (Reason("malformed-certificate", f"a certificate cannot be parsed: {exc}"[:300]),))
    ders = tuple(c.dump() for c in reversed(list(path.iter_certs(include_root=True))))
    policies = tuple(sorted({p.user_domain_policy_id for p in path.qualified_policies() or ()}))
    return PathOutcome(True, (), ders, policies)


__all__ = ["ANY_POLICY", "ANY_POLICY_OID", "UNPARSEABLE", "PathOutcome", "PolicyInputs", "PathValidationError",
           "validate_path"]
