"""A revoked issuing CA revokes what it issued, whatever the source asked (RFC 5280 section 6.1.3
(a)(3): every certificate of the path has a status, not only the end entity)."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from ca.ocsp import OcspResponder
from tests.fixtures_audit import AuditStore, audit_store  # noqa: F401
from tests.test_store import csr_for
from verification.certificates import CertificateValidator


@pytest.mark.parametrize("source", ["store", "crl", "ocsp"])
def test_a_revoked_staff_ca_revokes_its_staff_certificates(audit_store: AuditStore, source: str) -> None:  # noqa: F811
    ca = audit_store.ca
    row = ca.issue("staff-auth", csr_for(ec.generate_private_key(ec.SECP256R1())), "officer:alice",
                   alt_names=["email:jane@fin.gov.example"])
    leaf = x509.load_der_x509_certificate(row.der)
    responder = OcspResponder(audit_store.engine, ca.keyring, ca.clock)
    at = datetime.datetime.now(datetime.timezone.utc)

    def verdict() -> tuple[bool, list[str], list[str]]:
        validator = CertificateValidator.for_deployment(audit_store.engine, responder)
        found = validator.validate(leaf, "staff-auth", [ca.authority_certificate("staff")], at=at,
                                   revocation_source=source)
        return found.valid, [r.code for r in found.reasons], [r.detail for r in found.reasons]

    assert verdict() == (True, [], [])
    staff = ca.authority_certificate("staff")
    ca.revoke(format(staff.serial_number, "x"), "cACompromise", actor="test")
    valid, codes, details = verdict()
    assert not valid and codes == ["revoked"], (codes, details)
    assert "issuing CA" in details[0] and "cACompromise" in details[0], details
    # the end entity itself is still good at its own source: only the CA above it is revoked
    assert ca.get(row.serial_hex).status == "valid"
