"""The audit trail wired into the service: certificate operations are audited inside their own
transaction (no entry, no operation), and security events of the web service become entries."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.fixtures_audit import AuditHome
from tests.fixtures_audit import audit_home  # noqa: F401  (a fresh `tessera init` home)


def _csr(work: Path, name: str) -> Path:
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(work / f"{name}.key"), "-subj", f"/CN={name}", "-out", str(work / f"{name}.csr")],
                   check=True, capture_output=True)
    return work / f"{name}.csr"


def _entries(home: AuditHome, event_type: str) -> list[dict[str, object]]:
    return json.loads(home.cli("audit", "list", "--as", home.auditor, "--type", event_type, "--json").stdout)  # type: ignore[no-any-return]


def test_issue_and_revoke_are_audited_with_who_and_what(audit_home: AuditHome, tmp_path: Path) -> None:  # noqa: F811
    issued = json.loads(audit_home.cli("ca", "issue", "--profile", "staff-auth", "--csr", str(_csr(tmp_path, "a")),
                                       "--subject", "CN=Ann Audit,O=Ministry of Finance,C=EE", "--json").stdout)
    audit_home.cli("ca", "revoke", issued["serial"], "--reason", "keyCompromise")
    issue = [e for e in _entries(audit_home, "cert.issue") if e["object"] == f"cert:{issued['serial']}"]
    revoke = [e for e in _entries(audit_home, "cert.revoke") if e["object"] == f"cert:{issued['serial']}"]
    assert len(issue) == 1 and str(issue[0]["subject"]).startswith("cli:") and issue[0]["result"] == "success"
    assert issue[0]["details"]["profile"] == "staff-auth"  # type: ignore[index]
    assert len(revoke) == 1 and revoke[0]["details"]["reason"] == "keyCompromise"  # type: ignore[index]
    assert audit_home.cli("audit", "verify").returncode == 0


def test_no_audit_entry_no_revocation(audit_home: AuditHome, tmp_path: Path) -> None:  # noqa: F811
    issued = json.loads(audit_home.cli("ca", "issue", "--profile", "staff-auth", "--csr", str(_csr(tmp_path, "b")),
                                       "--subject", "CN=Bob Blocked,O=Ministry of Finance,C=EE", "--json").stdout)
    db = sqlite3.connect(audit_home.path / "tessera.db")
    try:
        head = db.execute("SELECT seq, entry_hash FROM audit_head").fetchone()
        db.execute("DELETE FROM audit_head")  # the trail can no longer be written (no chain head)
        db.commit()
        result = audit_home.cli("ca", "revoke", issued["serial"], "--reason", "keyCompromise", check=False)
        assert result.returncode != 0
        err = result.stderr.decode()
        assert "audit trail" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        status = json.loads(audit_home.cli("ca", "show", issued["serial"], "--json").stdout)["status"]
        assert status == "valid"  # the revocation was not carried out
    finally:
        db.execute("INSERT INTO audit_head (id, seq, entry_hash) VALUES (1, ?, ?)", head)
        db.commit()
        db.close()
    audit_home.cli("ca", "revoke", issued["serial"], "--reason", "keyCompromise")
    assert json.loads(audit_home.cli("ca", "show", issued["serial"], "--json").stdout)["status"] == "revoked"


def test_every_certificate_in_the_store_has_its_issue_entry(audit_home: AuditHome, tmp_path: Path) -> None:  # noqa: F811
    """Issue 15 item 6, one issuance path: after `tessera init` (CA certificates, OCSP responders,
    TSA, department and audit signers), a card and a checkpoint, every certificate in the store has
    its ``cert.issue`` entry; the lost card's certificates their ``cert.revoke``."""
    from tests.fixtures_cards import issue_card

    card = issue_card(audit_home, 1, tmp_path)
    audit_home.cli("audit", "checkpoint")
    with sqlite3.connect(audit_home.path / "tessera.db") as db:
        certificates = dict(db.execute("select serial_hex, profile from ca_certificate"))
        authorities = {row[0] for row in db.execute("select serial_hex from ca_authority")}
        card_serials = {row[0] for row in db.execute("select serial_hex from ca_certificate where requester = ?",
                                                     (f"card:{card.number}",))}
    issued = {str(e["object"]).removeprefix("cert:"): e for e in _entries(audit_home, "cert.issue")}
    assert set(certificates) | authorities <= set(issued), (set(certificates) | authorities) - set(issued)
    assert set(certificates.values()) >= {"issuing-ca", "ocsp", "tsa", "service", "citizen-auth", "citizen-sign"}
    for serial in card_serials:
        assert issued[serial]["details"]["requester"] == f"card:{card.number}"  # type: ignore[index]
        assert str(issued[serial]["subject"]).startswith("cli:")  # the operator who issued the card
    audit_home.cli("card", "lost", card.number)
    revoked = {str(e["object"]).removeprefix("cert:"): e for e in _entries(audit_home, "cert.revoke")}
    assert card_serials <= set(revoked)
    assert {revoked[s]["details"]["reason"] for s in card_serials} == {"keyCompromise"}  # type: ignore[index]
    assert audit_home.cli("audit", "verify").returncode == 0


@pytest.mark.parametrize("action, details", [("login.password", {"reason": "wrong-password"}),
                                             ("logout.everywhere", {"sessions": 2, "tokens": 1}),
                                             ("totp.enrol", {"secret": "JBSWY3DP"})])
def test_security_events_become_entries_and_secrets_are_dropped(audit_home: AuditHome, action: str,  # noqa: F811
                                                                details: dict[str, object],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Each deployment built subscribes its trail, even in a process whose subscriber list was
    emptied after an earlier deployment (as the test modules' fixture does between modules)."""
    from idp import events
    from idp.deployment import Deployment
    from idp.settings import Settings

    monkeypatch.setattr(events, "_subscribers", [])
    deployment = Deployment(Settings.from_env(audit_home.path, audit_home.env))
    try:
        trail = deployment.audit
        before = trail.head()[0]
        events.record(action, "staff:ann", "staff:ann", "failure", **details)
        seq, _ = trail.head()
        assert seq == before + 1
        entry = _entries(audit_home, action)[0]
        assert entry["subject"] == "staff:ann" and entry["result"] == "failure"
        stored = entry["details"]
        assert "secret" not in json.dumps(stored).lower() or stored == {"details_dropped": ["secret"]}
        if "secret" not in details:
            assert stored == details
    finally:
        deployment.close()


WORKER = """
import sys, time
from idp import events
from idp.audit_bridge import start_checkpoints
from idp.deployment import Deployment
from idp.settings import Settings

deployment = Deployment(Settings.from_env())
trail = deployment.audit  # subscribes this deployment's trail to the security events
for _ in range(2):
    events.record("login.password", "address:192.0.2.1", "staff:ann", "failure", reason="wrong-password")
head = trail.head()[0]
schedule = start_checkpoints(deployment)
witness = deployment.settings.home / "audit-witness.log"
deadline = time.monotonic() + 20
# the witness holds the CRLs of tessera init already: wait for the checkpoint's line
while not (witness.exists() and '"checkpoint"' in witness.read_text()) and time.monotonic() < deadline:
    time.sleep(0.05)
schedule.stop()
deployment.close()
print(head)
"""


def test_service_checkpoints_by_time_into_the_witness(audit_home: AuditHome) -> None:  # noqa: F811
    """idp.audit_bridge.start_checkpoints (what the app factory calls per worker), in a process of its
    own like a worker: a checkpoint of the head within the interval, signed by the audit key on the
    PKCS#11 token from the schedule thread, witnessed 0600 in the home, verified against it."""
    import sys

    done = subprocess.run([sys.executable, "-c", WORKER], env=dict(audit_home.env, TESSERA_AUDIT_CHECKPOINT_INTERVAL="1"),
                          capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 0, done.stderr
    head = int(done.stdout.split()[-1])
    witness = audit_home.path / "audit-witness.log"
    # the first checkpoint line (CRL publications are witnessed too, since tessera init)
    line = next(r for r in map(json.loads, witness.read_text().splitlines()) if "checkpoint" in r)
    assert head >= 2 and line["seq"] == head and oct(witness.stat().st_mode & 0o777) == "0o600"
    verified = audit_home.cli("audit", "verify")
    assert b"compared with the witness" in verified.stderr and b"OK: " in verified.stderr
