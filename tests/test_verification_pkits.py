"""NIST PKITS (Public Key Interoperability Test Suite, certification path validation, sections
4.1-4.16) through :func:`verification.paths.validate_path`: the PKITS trust anchor, the PKITS CRLs
as the revocation source (looked up by issuer name, as the suite's directory would serve them), the
default initial inputs of PKITS section 3 and, where the PKITS document runs a test again with
other initial policy inputs (4.8, 4.10, 4.12), those runs too. The data comes from the PyPI package
cryptography-vectors (``x509/PKITS_data``); expected results from the test names (``Valid``/
``Invalid``) and the PKITS document for the policy tests without such a prefix.

The disagreements allowed are listed in :data:`EXPLAINED` and in docs/verification.md."""

from __future__ import annotations

import datetime
import logging
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import cryptography_vectors as vectors  # the test extra: NIST PKITS under x509/PKITS_data
import pytest
from asn1crypto import crl as asn1_crl
from asn1crypto import x509 as asn1_x509

from verification.paths import PolicyInputs, validate_path

pytestmark = pytest.mark.integration

DATA = Path(os.path.dirname(vectors.__file__)) / "x509" / "PKITS_data"
AT = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)  # inside every PKITS validity period
DEFAULT = PolicyInputs()  # PKITS section 3: any policy, nothing inhibited, nothing explicit


def _policy(n: int) -> str:
    """NIST-test-policy-n (PKITS section 3)."""
    return f"2.16.840.1.101.3.2.1.48.{n}"


def _inputs(*policies: int, explicit: bool = False, mapping_inhibit: bool = False,
            any_inhibit: bool = False) -> PolicyInputs:
    return PolicyInputs(frozenset(_policy(n) for n in policies) or frozenset({"any_policy"}), explicit,
                        mapping_inhibit, any_inhibit)


#: tests whose names carry no Valid/Invalid prefix: their result with the default inputs (4.8)
DEFAULT_RESULT = {"AllCertificatesNoPoliciesTest2EE": True, "DifferentPoliciesTest3EE": True,
                  "DifferentPoliciesTest4EE": False, "DifferentPoliciesTest5EE": False,
                  "OverlappingPoliciesTest6EE": True, "DifferentPoliciesTest7EE": False,
                  "DifferentPoliciesTest8EE": False, "DifferentPoliciesTest9EE": False,
                  "AllCertificatesSamePoliciesTest10EE": True, "AllCertificatesanyPolicyTest11EE": True,
                  "DifferentPoliciesTest12EE": False, "AllCertificatesSamePoliciesTest13EE": True,
                  "AnyPolicyTest14EE": True, "UserNoticeQualifierTest15EE": True, "UserNoticeQualifierTest16EE": True,
                  "UserNoticeQualifierTest17EE": True, "UserNoticeQualifierTest18EE": True,
                  "UserNoticeQualifierTest19EE": True, "CPSPointerQualifierTest20EE": True,
                  "inhibitAnyPolicyTest3EE": True}

#: the further runs the PKITS document asks for, with other initial inputs (test, inputs, valid)
VARIANTS: list[tuple[str, PolicyInputs, bool]] = [
    ("ValidCertificatePathTest1EE", _inputs(explicit=True), True),  # 4.8.1
    ("ValidCertificatePathTest1EE", _inputs(1, explicit=True), True),
    ("ValidCertificatePathTest1EE", _inputs(2, explicit=True), False),
    ("ValidCertificatePathTest1EE", _inputs(1, 2, explicit=True), True),
    ("AllCertificatesNoPoliciesTest2EE", _inputs(explicit=True), False),  # 4.8.2
    ("DifferentPoliciesTest3EE", _inputs(explicit=True), False),  # 4.8.3
    ("DifferentPoliciesTest3EE", _inputs(1, 2, explicit=True), False),
    ("OverlappingPoliciesTest6EE", _inputs(1), True),  # 4.8.6
    ("OverlappingPoliciesTest6EE", _inputs(2), False),
    ("AllCertificatesSamePoliciesTest10EE", _inputs(1), True),  # 4.8.10
    ("AllCertificatesSamePoliciesTest10EE", _inputs(2), True),
    ("AllCertificatesanyPolicyTest11EE", _inputs(1), True),  # 4.8.11
    ("AllCertificatesSamePoliciesTest13EE", _inputs(1), True),  # 4.8.13
    ("AllCertificatesSamePoliciesTest13EE", _inputs(2), True),
    ("AllCertificatesSamePoliciesTest13EE", _inputs(3), True),
    ("AnyPolicyTest14EE", _inputs(1), True),  # 4.8.14
    ("AnyPolicyTest14EE", _inputs(2), False),
    ("CPSPointerQualifierTest20EE", _inputs(explicit=True), True),  # 4.8.20
    ("ValidPolicyMappingTest1EE", _inputs(1), True),  # 4.10.1
    ("ValidPolicyMappingTest1EE", _inputs(2), False),
    ("ValidPolicyMappingTest1EE", _inputs(mapping_inhibit=True), False),
    ("ValidPolicyMappingTest3EE", _inputs(1), False),  # 4.10.3
    ("ValidPolicyMappingTest3EE", _inputs(2), True),
    ("ValidPolicyMappingTest5EE", _inputs(1), True),  # 4.10.5
    ("ValidPolicyMappingTest5EE", _inputs(6), False),
    ("ValidPolicyMappingTest6EE", _inputs(1), True),  # 4.10.6
    ("ValidPolicyMappingTest6EE", _inputs(6), False),
    ("ValidPolicyMappingTest12EE", _inputs(1), True),  # 4.10.12
    ("ValidPolicyMappingTest12EE", _inputs(2), True),
    ("inhibitAnyPolicyTest3EE", _inputs(any_inhibit=True), False),  # 4.12.3
]

#: disagreements and why (docs/verification.md): Tessera's algorithm policy refuses 1024-bit DSA
#: (pyhanko-certvalidator's default: DSA keys below 3192 bits), which PKITS 4.1.4/4.1.5 use
EXPLAINED = {"ValidDSASignaturesTest4EE", "ValidDSAParameterInheritanceTest5EE"}


class Pkits:
    """The PKITS certificates and CRLs, the CRLs indexed by issuer name (the suite's directory)."""

    def __init__(self) -> None:
        self.certs = {p.stem: p.read_bytes() for p in (DATA / "certs").glob("*.crt")}
        self.anchor = self.certs["TrustAnchorRootCertificate"]
        self.tests = sorted(n for n in self.certs if re.search(r"Test\d+EE$", n))
        self.pool = [der for name, der in self.certs.items()
                     if name not in self.tests and name != "TrustAnchorRootCertificate"]
        self.parsed = [asn1_x509.Certificate.load(der) for der in self.pool]
        self.crls: dict[str, list[bytes]] = {}
        for path in (DATA / "crls").glob("*.crl"):
            der = path.read_bytes()
            self.crls.setdefault(asn1_crl.CertificateList.load(der).issuer.hashable, []).append(der)

    def directory_for(self, der: bytes) -> tuple[list[bytes], list[bytes]]:
        """The CA certificates and CRLs the suite's directory gives for ``der``: those of every name
        on the way up, issuers and each cRLIssuer the distribution points name (RFC 5280 section
        4.2.1.13, indirect CRLs); searching the whole pool for every test is needlessly slow."""
        names: set[str] = set()  # asn1crypto's hashable form: RFC 5280 section 7.1 comparison
        todo, seen = [asn1_x509.Certificate.load(der)], set()
        while todo:
            cert = todo.pop()
            names.add(cert.issuer.hashable)
            for point in cert.crl_distribution_points_value or []:
                for general in point["crl_issuer"] or []:
                    if general.name == "directory_name":
                        names.add(general.chosen.hashable)
            for i, candidate in enumerate(self.parsed):
                if i not in seen and candidate.subject.hashable in names:
                    seen.add(i)
                    todo.append(candidate)
        return [self.pool[i] for i in sorted(seen)], [crl for name in names for crl in self.crls.get(name, [])]

    def run(self, name: str, inputs: PolicyInputs = DEFAULT) -> bool:
        der = self.certs[name]
        cas, crls = self.directory_for(der)
        return validate_path(der, cas, [self.anchor], AT, crls=crls, policy=inputs).valid


@pytest.fixture(scope="module")
def pkits() -> Iterator[Pkits]:
    logging.disable(logging.CRITICAL)  # the library logs every refused candidate path at ERROR
    try:
        yield Pkits()
    finally:
        logging.disable(logging.NOTSET)


def expected(name: str) -> bool:
    return DEFAULT_RESULT[name] if name in DEFAULT_RESULT else name.startswith("Valid")


def test_pkits_sections_4_1_to_4_16(pkits: Pkits) -> None:
    start = time.perf_counter()
    runs = [(name, DEFAULT, expected(name)) for name in pkits.tests] + VARIANTS
    disagreements = [(name, inputs, want) for name, inputs, want in runs if pkits.run(name, inputs) != want]
    elapsed = time.perf_counter() - start
    agreement = 1 - len(disagreements) / len(runs)
    print(f"\nPKITS: {len(runs)} runs ({len(pkits.tests)} tests), {len(runs) - len(disagreements)} agree "
          f"({agreement:.1%}) in {elapsed:.1f} s; disagreements: {[d[0] for d in disagreements]}")
    assert {name for name, _, _ in disagreements} <= EXPLAINED, disagreements
    assert agreement >= 0.95


def test_a_verdict_is_the_same_when_asked_again(pkits: Pkits) -> None:
    """Parsed certificates and CRLs are not shared between validations: asking again about the
    UID CA's certificate (its subjectUniqueID BIT STRING) or the CRLs with issuing distribution
    points, reasons and deltas gives the first answer (it was once a refused signature)."""
    names = [n for n in pkits.tests if re.search(r"UID|DistributionPoint|onlySomeReasons|deltaCRL", n)]
    assert len(names) >= 15
    first = {name: pkits.run(name) for name in names}
    assert {name: pkits.run(name) for name in names} == first
    assert first["ValidNameUIDsTest6EE"]
