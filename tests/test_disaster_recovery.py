"""The disaster-recovery drill (issue 16, item 1): serve, work, back up while serving, work more,
lose the home, restore, and check that the restored deployment did not silently go back in time.

The witness file lives outside the home, as docs/operations.md asks of production; the service
checkpoints every second (TESSERA_AUDIT_CHECKPOINT_INTERVAL), so the witness is at most a second
behind. Judges: openssl ocsp (the responder's answers), openssl crl (CRL numbers), `tessera audit
verify` (the gap) and `tessera backup verify` (a flipped byte).
"""

from __future__ import annotations

import datetime
import json
import re
import shutil
import sqlite3
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from sqlalchemy import select

from audit.verification import verify, witness_findings
from audit.witness import Witness, WitnessLine, attach, read_records
from backup.reconcile import reconcile
from ca.models import Certificate
from tests.conftest import Home
from tests.fixtures_audit import *  # noqa: F401,F403  (audit_store and its fixtures)
from tests.fixtures_audit import AuditStore, fill, witnessed
from tests.fixtures_cards import issue_card
from tests.servers import TESSERA, free_port, running_server, tessera_env, wait_healthy
from tests.test_audit_witness import service_certificate


class DrillHome(Home):
    """A home whose witness file is outside it and whose checkpoints come every second."""

    witness: Path

    @property
    def env(self) -> dict[str, str]:
        return tessera_env(self.path, self.public_url, TESSERA_AUDIT_WITNESS=str(self.witness),
                           TESSERA_AUDIT_CHECKPOINT_INTERVAL="1")


def run(*cmd: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=60)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {result.returncode}: {result.stdout}{result.stderr}")
    return result


def issue(home: Home, work: Path, name: str) -> str:
    """A staff certificate for a key made by openssl; its serial (hex)."""
    run("openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{name}.key", cwd=work)
    run("openssl", "req", "-new", "-key", f"{name}.key", "-subj", f"/CN={name}/O=Ministry of Finance/C=CN",
        "-out", f"{name}.csr", cwd=work)
    home.cli("ca", "issue", "--profile", "staff-auth", "--csr", str(work / f"{name}.csr"), "--out",
             str(work / f"{name}.pem"))
    return format(x509.load_pem_x509_certificate((work / f"{name}.pem").read_bytes()).serial_number, "x")


def ocsp_status(home: Home, work: Path, name: str) -> str:
    """The responder's answer for certificate ``name`` as openssl reads it (good, revoked, unknown)."""
    out = run("openssl", "ocsp", "-issuer", "staff.pem", "-cert", f"{name}.pem", "-url", home.url("/ocsp/staff"),
              "-CAfile", "root.pem", "-verify_other", "staff.pem", cwd=work, check=False)
    found = re.search(rf"^{name}\.pem: (\w+)", out.stdout, re.M)
    assert found and "Response verify OK" in out.stderr, out.stdout + out.stderr
    return found[1]


def crl_number(home: Home, work: Path, name: str) -> int:
    """Publish a new CRL of the staff CA and read its number with openssl crl -text."""
    home.cli("ca", "crl", "--ca", "staff", "--publish", "--out", str(work / f"{name}.der"))
    text = run("openssl", "crl", "-inform", "DER", "-in", f"{name}.der", "-noout", "-text", cwd=work).stdout
    found = re.search(r"X509v3 CRL Number:\s*\n\s*(\d+)", text)
    assert found, text
    return int(found[1])


def head(home: Home) -> int:
    with sqlite3.connect(home.path / "tessera.db") as db:
        return int(db.execute("SELECT seq FROM audit_head").fetchone()[0])


def wait_witnessed(home: DrillHome, timeout: float = 20) -> WitnessLine:
    """Wait until the witness's newest checkpoint covers the audit head (the service checkpoints by time)."""
    deadline = time.monotonic() + timeout
    while True:
        records = read_records(home.witness) if home.witness.exists() else iter(())
        lines = [r for _, r in records if isinstance(r, WitnessLine)]
        if lines and lines[-1].seq >= head(home):
            return lines[-1]
        assert time.monotonic() < deadline, f"no checkpoint of head {head(home)} witnessed"
        time.sleep(0.2)


def test_disaster_recovery_drill(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("drill")
    work, outside, backups = root / "work", root / "outside", root / "backups"
    for folder in (work, outside, backups):
        folder.mkdir()
    port = free_port()
    home = DrillHome(root / "home", f"http://127.0.0.1:{port}", port)
    home.witness = outside / "audit-witness.log"
    home.cli("init")
    key = outside / "backup.key"
    home.cli("backup", "new-key", "--out", str(key))
    serve = [TESSERA, "serve", "--port", str(port), "--workers", "2"]

    with running_server(serve, port, root / "server-1.log", env=home.env):
        wait_healthy(home.url("/healthz"), timeout=30)
        for name in ("root", "staff"):
            with urllib.request.urlopen(home.url(f"/ca/{name}.crt"), timeout=10) as response:
                pem = x509.load_der_x509_certificate(response.read()).public_bytes(serialization.Encoding.PEM)
            (work / f"{name}.pem").write_bytes(pem)
        # work: two certificates, one revoked, a card, a CRL, audit entries
        first, second = issue(home, work, "first"), issue(home, work, "second")
        home.cli("ca", "revoke", first, "--reason", "keyCompromise")
        card = issue_card(home, 1, work)
        published = [crl_number(home, work, "crl-1")]
        home.cli("audit", "checkpoint")
        # a backup while serving, checked
        made = json.loads(home.cli("backup", "create", "--out", str(backups), "--key-file", str(key), "--json").stdout)
        archive = Path(made["file"])
        assert made["parts"] == ["cards", "config", "database", "directory", "secrets", "softhsm"]
        assert json.loads(home.cli("backup", "verify", str(archive), "--key-file", str(key), "--json").stdout)["ok"]
        # more work after the backup: the second revoked, a CRL, more entries
        home.cli("ca", "revoke", second, "--reason", "affiliationChanged")
        published.append(crl_number(home, work, "crl-2"))
        issue(home, work, "third")
        assert ocsp_status(home, work, "second") == "revoked"
        witnessed = wait_witnessed(home)
        assert witnessed.state is not None and any(c.authority == "staff" and c.number == published[-1]
                                                   for c in witnessed.state.crls)

    # the disaster: the home is gone; the witness, kept elsewhere, is not
    shutil.rmtree(home.path)
    restored = home.cli("restore", str(archive), "--key-file", str(key), "--json")
    report = json.loads(restored.stdout)
    assert report["gap"] is not None and report["gap"][0] == report["restored_head"] + 1
    assert [r["serial"] for r in report["reapplied"]] == [second]
    assert any(c["ca"] == "staff" and c["witnessed"] == published[-1] for c in report["crl_numbers"])

    with running_server(serve, port, root / "server-2.log", env=home.env):
        wait_healthy(home.url("/healthz"), timeout=30)
        # the revocation before the backup holds; the one after it was made again from the witness
        assert ocsp_status(home, work, "first") == "revoked"
        assert ocsp_status(home, work, "second") == "revoked"
        shown = json.loads(home.cli("ca", "show", second, "--json").stdout)
        assert shown["status"] == "revoked" and shown["revocation_reason"] == "affiliationChanged"
        # CRL numbers go on above every published one
        assert crl_number(home, work, "crl-3") > max(published)
        # what was made before the backup is there
        assert json.loads(home.cli("ca", "show", first, "--json").stdout)["status"] == "revoked"
        assert home.cli("card", "show", card.number, "--json").returncode == 0
        # the audit trail says what was lost instead of OK
        verified = home.cli("audit", "verify", check=False)
        assert verified.returncode == 1, verified.stdout + verified.stderr
        assert b"audit-gap" in verified.stdout

    # and a flipped byte in a backup is caught
    damaged = backups / "damaged.tbk"
    data = bytearray(archive.read_bytes())
    data[len(data) // 3] ^= 0x04
    damaged.write_bytes(bytes(data))
    checked = home.cli("backup", "verify", str(damaged), "--key-file", str(key), check=False)
    assert checked.returncode == 1 and b"does not authenticate" in checked.stderr


# -- the same, in one process, twice over ---------------------------------------------------------
@pytest.mark.parametrize("audit_store", ["sqlite"], indirect=True)
def test_restores_are_reconciled_and_their_gaps_named(audit_store: AuditStore) -> None:
    """A database copy restored twice over a witnessed trail: each restore's gap named, the lost
    revocation made again with its date, CRL numbers above the witness, and after each restore the
    trail goes on being checkpointed and verifies but for its gaps."""
    store = audit_store
    path = witnessed(store)
    attach(store.sessions, Witness(path))
    kept, lost = service_certificate(store, "kept"), service_certificate(store, "lost")
    store.ca.revoke(kept, "superseded")
    fill(store, 10)  # checkpoint 10
    assert store.sessions.kw["bind"].url.database is not None
    database = Path(store.sessions.kw["bind"].url.database)
    copy = database.with_name("copy.db")
    with sqlite3.connect(database) as src, sqlite3.connect(copy) as dst:
        src.backup(dst)
    copied_at = datetime.datetime.now(datetime.timezone.utc)
    revoked = store.ca.revoke(lost, "keyCompromise")
    fill(store, 10, start=10)  # checkpoint 20, with the CRL number and the revocation
    published = store.ca.publish_crl("staff").number

    for round_, lost_up_to in ((1, 20), (2, 30)):
        store.engine.dispose()
        for suffix in ("", "-wal", "-shm"):
            Path(str(database) + suffix).unlink(missing_ok=True)
        shutil.copyfile(copy, database)
        before = {p.code for p in verify(store.sessions, witness=path).problems}
        assert {"trail-truncated", "crl-number-behind", "revocation-lost"} <= before
        # what a starting service sees, from the witness's end
        assert {p.code for p in witness_findings(store.sessions, path)} == \
            {"trail-truncated", "crl-number-behind", "revocation-lost"}
        result = reconcile(store.ca, store.sessions, Witness(path), copied_at, "cli:restorer")
        assert [p.code for p in witness_findings(store.sessions, path)] == ["audit-gap"]
        assert result.gap == (11, lost_up_to)
        assert [r.serial for r in result.reapplied] == [lost] and result.unknown == []
        assert [(name, witnessed) for name, _, witnessed in result.crl_numbers] == [("staff", published)]
        with store.sessions() as session:
            row = session.scalar(select(Certificate).where(Certificate.serial_hex == lost))
            assert row is not None and row.status == "revoked" and row.revoked_at == revoked.revoked_at
        report = verify(store.sessions, witness=path)
        assert [p.code for p in report.problems] == ["audit-gap"] * round_, [str(p) for p in report.problems]
        assert store.ca.publish_crl("staff").number > published
        # the trail goes on from the restored head, checkpointed and witnessed
        fill(store, 20, start=100 * round_)
        assert [p.code for p in verify(store.sessions, witness=path).problems] == ["audit-gap"] * round_
        published = store.ca.publish_crl("staff").number
