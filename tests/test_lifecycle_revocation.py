"""An administrator's revocations go through the CA's one revocation path
(CertificateAuthority.revoke_in): a leaver's certificates, one certificate revoked from the
console, an issuing CA revoked under four eyes. The trail has exactly the expected entries: the
act's own, and one ``cert.revoke`` per certificate recorded as the administrator's (role and
request), never two for one act; the new CRL lists the certificates, as `openssl verify
-crl_check` judges; the CA's own path (``tessera ca revoke``) keeps its one entry too."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select

from audit.models import AuditEntry
from audit.trail import AuditTrail
from ca.authority import CertificateAuthority
from ca.models import Authority, Certificate, CertificateStatus
from ca.subjects import SubjectRequest
from directory.client import StaffMember
from idp import account_lifecycle
from idp.account_lifecycle import Actor, Lifecycle
from idp.audit_bridge import ca_sink
from idp.oidc.session_end import SessionsEnded
from idp.roles import SECURITY_ADMIN
from store.engine import make_engine
from tests.fixtures_ca import file_key_ca


def _member(uid: str, groups: frozenset[str] = frozenset()) -> StaffMember:
    return StaffMember(uid=uid, dn=f"uid={uid},ou=people,dc=gov,dc=example", name=uid, given_name=uid, surname=uid,
                       email=None, department="finance", department_name="Finance", title="Clerk", roles=frozenset(),
                       groups=groups, is_approver=False, enabled=True)


class _Directory:
    """The directory as the lifecycle reads it: two security administrators and one clerk."""

    config = SimpleNamespace(role_groups=())

    def __init__(self) -> None:
        admins = frozenset({SECURITY_ADMIN})
        self.members = {"sec1": _member("sec1", admins), "sec2": _member("sec2", admins), "clerk": _member("clerk")}

    def find(self, uid: str) -> StaffMember | None:
        return self.members.get(uid)

    def members_of(self, group: str) -> list[StaffMember]:
        return [m for m in self.members.values() if group in m.groups]


class _Writer:
    """The directory writes of a leaver, remembered."""

    def __init__(self) -> None:
        self.disabled: list[str] = []

    def disable(self, uid: str) -> None:
        self.disabled.append(uid)

    def remove_from_group(self, uid: str, group: str) -> None:
        pass


@dataclasses.dataclass
class Office:
    ca: CertificateAuthority
    trail: AuditTrail
    lifecycle: Lifecycle
    writer: _Writer
    folder: Path

    def staff_certificate(self, uid: str, name: str) -> Certificate:
        key = ec.generate_private_key(ec.SECP256R1())
        with self.ca.sessions.begin() as session:
            return self.ca.issue_for_key(session, "staff-auth", key.public_key(),
                                         SubjectRequest.parse(f"CN={name},O=Ministry of Finance,C=EE"), f"staff:{uid}")

    def entries_after(self, seq: int) -> list[AuditEntry]:
        with self.ca.sessions() as session:
            return list(session.scalars(select(AuditEntry).where(AuditEntry.seq > seq).order_by(AuditEntry.seq)))

    def openssl_verify(self, certificate: Certificate, authority: str = "staff") -> str:
        """`openssl verify -crl_check` of ``certificate`` against the root and ``authority``'s newest CRL."""
        (self.folder / "root.pem").write_bytes(self.ca.authority_certificate("root").public_bytes(Encoding.PEM))
        (self.folder / "ca.pem").write_bytes(self.ca.authority_certificate(authority).public_bytes(Encoding.PEM))
        crl = x509.load_der_x509_crl(self.ca.current_crl(authority).der)
        (self.folder / "crl.pem").write_bytes(crl.public_bytes(Encoding.PEM))
        (self.folder / "leaf.pem").write_bytes(x509.load_der_x509_certificate(certificate.der).public_bytes(Encoding.PEM))
        out = subprocess.run(["openssl", "verify", "-crl_check", "-CAfile", "root.pem", "-untrusted", "ca.pem",
                              "-CRLfile", "crl.pem", "leaf.pem"], cwd=self.folder, capture_output=True, text=True,
                             timeout=30)
        return out.stdout + out.stderr


@pytest.fixture()
def office(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Office]:
    engine = make_engine(f"sqlite:///{tmp_path / 'office.db'}")
    sessions, ca = file_key_ca(engine, tmp_path / "keys")
    trail = AuditTrail(sessions, ca.clock)
    ca.events = ca_sink(trail)  # as the deployment wires it: the CA's own events into the trail
    deployment = SimpleNamespace(sessions=sessions, now=ca.clock, ca=ca, audit=trail, keyring=ca.keyring,
                                 directory=_Directory())
    # sessions and tokens are another table's business (tests/test_lifecycle.py runs them for real)
    monkeypatch.setattr(account_lifecycle, "end_sessions_of",
                        lambda _d, uid, *_a, **_k: SessionsEnded(uid, 0, 0))
    writer = _Writer()
    lifecycle = Lifecycle(deployment, trail=trail, writer=writer)  # type: ignore[arg-type]
    yield Office(ca, trail, lifecycle, writer, tmp_path)
    engine.dispose()


def _admin(uid: str) -> Actor:
    return Actor(uid, frozenset({SECURITY_ADMIN}), "security", source_address="192.0.2.10")


def _details(entry: AuditEntry) -> dict[str, Any]:
    return json.loads(entry.details)


def _revocations(entries: list[AuditEntry]) -> dict[str, AuditEntry]:
    return {e.object.removeprefix("cert:"): e for e in entries if e.event_type == "cert.revoke"}  # type: ignore[union-attr]


def test_a_leaver_has_one_cert_revoke_per_certificate(office: Office) -> None:
    certificates = [office.staff_certificate("clerk", f"Clara Clerk {i}") for i in range(2)]
    other = office.staff_certificate("sec2", "Sam Second")
    before = office.trail.head()[0]
    admin = _admin("sec1")

    report = office.lifecycle.leaver(admin, "clerk")

    entries = office.entries_after(before)
    assert [e.event_type for e in entries] == ["admin.account.leaver", "cert.revoke", "cert.revoke"]
    assert sorted(report.certificates_revoked) == sorted(c.serial_hex for c in certificates)
    revoked = _revocations(entries)
    assert set(revoked) == {c.serial_hex for c in certificates}
    for entry in revoked.values():  # the administrator's, as the act's own entry
        assert (entry.subject, entry.subject_role, entry.request_id, entry.source_address) == \
            ("staff:sec1", "security-admin", admin.request_id, "192.0.2.10")
        assert entry.result == "success" and _details(entry)["reason"] == "cessationOfOperation"
        assert _details(entry)["requester"] == "staff:clerk"
    assert office.writer.disabled == ["clerk"]
    for certificate in certificates:
        assert "certificate revoked" in office.openssl_verify(certificate)
    assert "leaf.pem: OK" in office.openssl_verify(other)  # another person's certificate is untouched


def test_revoking_one_certificate_is_one_entry(office: Office) -> None:
    certificate = office.staff_certificate("clerk", "Clara Clerk")
    before = office.trail.head()[0]
    admin = _admin("sec1")

    office.lifecycle.revoke_certificate(admin, certificate.serial_hex, "keyCompromise")

    entries = office.entries_after(before)
    assert [(e.event_type, e.object, e.subject, e.subject_role) for e in entries] == \
        [("cert.revoke", f"cert:{certificate.serial_hex}", "staff:sec1", "security-admin")]
    assert entries[0].request_id == admin.request_id
    details = _details(entries[0])
    assert (details["reason"], details["requester"]) == ("keyCompromise", "staff:clerk")
    assert "certificate revoked" in office.openssl_verify(certificate)
    # the CA's own path (`tessera ca revoke`) records its one entry through the CA's sink
    second = office.staff_certificate("clerk", "Clara Clerk")
    before = office.trail.head()[0]
    office.ca.revoke(second.serial_hex, "superseded", actor="cli:operator")
    assert [(e.event_type, e.subject) for e in office.entries_after(before)] == [("cert.revoke", "cli:operator")]


def test_an_issuing_ca_revoked_under_four_eyes_has_its_cert_revoke(office: Office) -> None:
    before = office.trail.head()[0]
    request = office.lifecycle.request_four_eyes(_admin("sec1"), "revoke-issuing-ca", "ca:citizen",
                                                 {"reason": "cACompromise"})
    approver = _admin("sec2")

    office.lifecycle.decide_four_eyes(approver, request.id, approve=True)

    entries = office.entries_after(before)
    assert [e.event_type for e in entries] == ["admin.four-eyes.request", "admin.four-eyes.approve", "cert.revoke"]
    with office.ca.sessions() as session:
        citizen = session.scalar(select(Authority).where(Authority.name == "citizen"))
        assert citizen is not None
        row = session.scalar(select(Certificate).where(Certificate.serial_hex == citizen.serial_hex))
        assert row is not None and row.status == CertificateStatus.REVOKED
    assert entries[-1].object == f"cert:{row.serial_hex}" and entries[-1].subject == "staff:sec2"
    assert _details(entries[-1])["reason"] == "cACompromise"
    assert "certificate revoked" in office.openssl_verify(row, authority="root")

