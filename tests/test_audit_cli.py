"""`tessera audit` on a real `tessera init` home (audit key on the SoftHSM2 token): verify with its
exit status and one line per problem, checkpoints judged by openssl, exports that are themselves
audited, reports, paging, --help and bad input."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path
from typing import Any

from tests.fixtures_audit import AuditHome
from tests.fixtures_audit import *  # noqa: F401,F403
from tests.fixtures_audit import run
from tests.fixtures_directory import new_uid
from tests.fixtures_operators import enrol, token_of
from tests.fixtures_web import PASSWORD
from tests.servers import run_tessera, tessera_env

COMMANDS = ("verify", "checkpoint", "checkpoints", "export", "report", "list")


def test_every_audit_command_has_help(audit_home: AuditHome) -> None:
    for name in COMMANDS:
        result = audit_home.cli("audit", name, "--help")
        assert b"Usage: tessera audit " + name.encode() in result.stdout and b"--help" in result.stdout


def test_export_report_list_and_checkpoint_judged_by_openssl(audit_home: AuditHome, tmp_path: Path) -> None:
    assert audit_home.cli("audit", "verify").returncode == 0  # empty trail: OK, and recorded as audit.verify
    out = audit_home.cli("audit", "export", "--as", audit_home.auditor, "--format", "jsonl").stdout.decode().splitlines()
    base = audit_home.initial  # `tessera init` recorded the CA's certificates (cert.issue) first
    entries = [json.loads(line) for line in out]
    assert [e["type"] for e in entries[:base]] == ["cert.issue"] * base
    entries = entries[base:]
    # the auditor's `tessera admin login` first; the export was recorded before it ran, so it is in its own output
    assert [e["type"] for e in entries] == ["login", "audit.verify", "audit.export"]
    assert entries[2]["subject"] == f"staff:{audit_home.auditor}" and entries[2]["subject_role"] == "auditor"
    assert entries[2]["details"]["format"] == "jsonl" and entries[2]["details"]["channel"].startswith("cli:")
    csv_path = tmp_path / "trail.csv"
    audit_home.cli("audit", "export", "--as", audit_home.auditor, "--format", "csv", "--type", "audit.*", "--out", str(csv_path))
    rows = list(csv.DictReader(io.StringIO(csv_path.read_text())))
    assert [r["type"] for r in rows] == ["audit.verify", "audit.export", "audit.export"]
    report = json.loads(audit_home.cli("audit", "report", "--as", audit_home.auditor, "--by", "type", "--json").stdout)
    assert {r["key"]: r["total"] for r in report} == {"audit.export": 2, "audit.verify": 1, "login": 1,
                                                       "cert.issue": base}
    page = json.loads(audit_home.cli("audit", "list", "--as", audit_home.auditor, "--limit", "2", "--page", "2", "--json").stdout)
    assert [e["seq"] for e in page] == [base + 4 - 2, base + 4 - 3]  # newest first: entries base+4 .. 1
    made = audit_home.cli("audit", "checkpoint", "--json")
    assert b"created the audit trail signer" not in made.stderr  # made once, by `tessera init`
    checkpoint = json.loads(made.stdout)
    assert checkpoint["seq"] == base + 4
    last = base + 4
    assert b"created" not in audit_home.cli("audit", "checkpoint").stderr  # idempotent signer, same checkpoint
    folder = tmp_path / "cp"
    audit_home.cli("audit", "checkpoints", "--export", str(folder))
    (tmp_path / "root.pem").write_bytes(audit_home.cli("ca", "export-chain", "--ca", "root").stdout)
    stamped = run("openssl", "ts", "-verify", "-token_in", "-in", str(folder / f"checkpoint-{last}.tst"),
                  "-data", str(folder / f"checkpoint-{last}.p7s"), "-CAfile", str(tmp_path / "root.pem"), cwd=tmp_path)
    assert "Verification: OK" in stamped.stdout, stamped.stdout + stamped.stderr
    signed = run("openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(folder / f"checkpoint-{last}.p7s"),
                 "-CAfile", str(tmp_path / "root.pem"), cwd=tmp_path)
    assert signed.returncode == 0 and f"entry_hash={checkpoint['entry_hash']}" in signed.stdout
    verified = audit_home.cli("audit", "verify", "--anchor", str(tmp_path / "root.pem"), "--json")
    assert json.loads(verified.stdout)["ok"] is True and json.loads(verified.stdout)["checkpoints"] == 1


def test_verify_exits_non_zero_with_one_line_per_problem(audit_home: AuditHome) -> None:
    for _ in range(3):
        audit_home.cli("audit", "export", "--as", audit_home.auditor, "--out", "/dev/null")
    base = audit_home.initial
    audit_home.cli("audit", "checkpoint")  # covers entries 1..base+4 (base+1: the auditor's login)
    for _ in range(4):
        audit_home.cli("audit", "export", "--as", audit_home.auditor, "--out", "/dev/null")
    db = sqlite3.connect(audit_home.path / "tessera.db")
    with db:  # the tamperer has the database file: triggers off, then one change and one deletion
        db.execute("DROP TRIGGER audit_entry_no_update")
        db.execute("DROP TRIGGER audit_entry_no_delete")
        db.execute("UPDATE audit_entry SET subject = 'cli:nobody' WHERE seq = ?", (base + 2,))
        db.execute("DELETE FROM audit_entry WHERE seq = ?", (base + 5,))
    db.close()
    result = audit_home.cli("audit", "verify", check=False)
    assert result.returncode == 1
    lines = result.stdout.decode().splitlines()
    assert lines == [f"entry-changed seq={base + 2}: its content no longer matches its hash",
                     f"entry-deleted seq={base + 5}: entry {base + 5} is missing (the sequence jumps from "
                     f"{base + 4} to {base + 6})"]
    assert b"TAMPERED (2 problem(s))" in result.stderr and b"Traceback" not in result.stderr
    # the failed verification was itself recorded
    last = json.loads(audit_home.cli("audit", "list", "--as", audit_home.auditor, "--limit", "1", "--json").stdout)[0]
    assert last["type"] == "audit.verify" and last["result"] == "failure" and last["details"]["problems"] == 2


def test_verify_no_record_checks_a_copy_of_the_database_alone(audit_home: AuditHome, tmp_path: Path) -> None:
    """An auditor verifies a copy of the database: a home with no CA token, no secrets; nothing written."""
    audit_home.cli("audit", "export", "--as", audit_home.auditor, "--out", "/dev/null")
    copy = tmp_path / "copy"
    copy.mkdir()
    source, target = sqlite3.connect(audit_home.path / "tessera.db"), sqlite3.connect(copy / "tessera.db")
    source.backup(target)
    source.close()
    target.close()
    env = tessera_env(copy)
    result = run_tessera(env, "audit", "verify", "--no-record", check=False)
    assert result.returncode == 0, result.stderr.decode()
    assert b"OK: " in result.stderr and b"Traceback" not in result.stderr
    recorded = run_tessera(env, "audit", "verify", check=False)  # recording needs the CA (the audit key)
    assert recorded.returncode != 0 and b"Traceback" not in recorded.stderr
    elsewhere = tmp_path / "no-database"
    elsewhere.mkdir()
    wrong = run_tessera(tessera_env(elsewhere), "audit", "verify", "--no-record", check=False)
    assert wrong.returncode != 0 and b"no database at" in wrong.stderr and b"Traceback" not in wrong.stderr
    assert list(elsewhere.iterdir()) == []  # no empty database left behind


def test_bad_input_is_one_line_and_non_zero(audit_home: AuditHome) -> None:
    for args in (("audit", "export", "--since", "yesterday"), ("audit", "report", "--by", "colour"),
                 ("audit", "export", "--format", "xml"), ("audit", "list", "--limit", "0")):
        result = audit_home.cli(*args, "--as", audit_home.auditor, check=False)
        assert result.returncode == 2 and b"Traceback" not in result.stderr, result.stderr
    first = audit_home.cli("audit", "checkpoint")  # the auditor's login
    again = audit_home.cli("audit", "checkpoint")  # nothing new since: the same checkpoint
    assert first.stdout.startswith(b"checkpoint #1: ") and again.stdout.split(b", at")[0] == first.stdout.split(b", at")[0]
    missing = audit_home.cli("audit", "verify", "--anchor", "/nonexistent.pem", check=False)
    assert missing.returncode == 2 and b"Traceback" not in missing.stderr


def _rechain(db: sqlite3.Connection, first: int) -> None:
    """The outside tester's tool: recompute entries first.. and the head with docs/audit.md's encoding."""
    import hashlib

    previous = db.execute("SELECT entry_hash FROM audit_entry WHERE seq = ?", (first - 1,)).fetchone()[0]
    rows = db.execute("SELECT seq, at, event_type, subject, subject_role, object, result, source_address, "
                      "request_id, details FROM audit_entry WHERE seq >= ? ORDER BY seq", (first,)).fetchall()
    for seq, at, *rest in rows:
        body = json.dumps(["tessera-audit-v1", seq, at.replace(" ", "T") + "Z", *rest], ensure_ascii=False,
                          separators=(",", ":")).encode()
        digest = hashlib.sha256(bytes.fromhex(previous) + body).hexdigest()
        db.execute("UPDATE audit_entry SET prev_hash = ?, entry_hash = ? WHERE seq = ?", (previous, digest, seq))
        previous = digest
    db.execute("UPDATE audit_head SET seq = ?, entry_hash = ? WHERE id = 1", (rows[-1][0], previous))


def _checkpoint_lines(witness: Path) -> int:
    """Checkpoint lines of the witness (it also witnesses every CRL the CA publishes)."""
    return sum("checkpoint" in json.loads(line) for line in witness.read_text().splitlines())


def test_outside_testers_attack_is_named_and_not_signed(audit_home: AuditHome) -> None:
    """Issue 12, finding 4, as reproduced: with the database file, triggers dropped, a tail entry
    changed and the hashes and head recomputed, the newest checkpoint deleted."""
    base = audit_home.initial  # the CA's cert.issue entries of `tessera init`
    for _ in range(3):
        audit_home.cli("audit", "export", "--as", audit_home.auditor, "--out", "/dev/null")
    audit_home.cli("audit", "checkpoint")  # entries 1..base+4 (base+1: the auditor's login)
    for _ in range(3):
        audit_home.cli("audit", "export", "--as", audit_home.auditor, "--out", "/dev/null")
    audit_home.cli("audit", "checkpoint")  # entries 1..base+7
    for _ in range(2):
        audit_home.cli("audit", "export", "--as", audit_home.auditor, "--out", "/dev/null")
    witness = audit_home.path / "audit-witness.log"
    assert oct(witness.stat().st_mode & 0o777) == "0o600" and _checkpoint_lines(witness) == 2
    db = sqlite3.connect(audit_home.path / "tessera.db")
    with db:
        for trigger in ("audit_entry_no_update", "audit_entry_no_delete", "audit_checkpoint_no_delete"):
            db.execute(f"DROP TRIGGER {trigger}")
        db.execute("DELETE FROM audit_checkpoint WHERE seq = ?", (base + 7,))
        db.execute("UPDATE audit_entry SET subject = 'cli:nobody' WHERE seq = ?", (base + 5,))
        _rechain(db, base + 5)
    db.close()
    alone = run_tessera(dict(audit_home.env, TESSERA_AUDIT_WITNESS="off"), "audit", "verify", "--no-record", check=False)
    assert alone.returncode == 0  # the database alone cannot tell: the finding as reported
    result = audit_home.cli("audit", "verify", check=False)
    assert result.returncode == 1 and b"Traceback" not in result.stderr
    lines = result.stdout.decode().splitlines()
    assert [line.split(":", 1)[0] for line in lines] == [f"entry-changed seq={base + 7}",
                                                         f"checkpoint-missing seq={base + 7}"], lines
    assert f"entries {base + 5} to {base + 7} were rewritten" in lines[0]
    refused = audit_home.cli("audit", "checkpoint", check=False)
    assert refused.returncode == 1 and b"Traceback" not in refused.stderr
    assert f"audit checkpoint refused: checkpoint-missing seq={base + 7}".encode() in refused.stderr
    assert _checkpoint_lines(witness) == 2  # nothing signed
    last = json.loads(audit_home.cli("audit", "list", "--as", audit_home.auditor, "--limit", "1", "--json").stdout)[0]
    assert (last["type"], last["result"], last["details"]["finding"]) == ("audit.checkpoint", "refused",
                                                                          f"checkpoint-missing seq={base + 7}")


def test_verify_names_a_malformed_row_instead_of_crashing(audit_home: AuditHome) -> None:
    for _ in range(3):
        audit_home.cli("audit", "export", "--as", audit_home.auditor, "--out", "/dev/null")
    db = sqlite3.connect(audit_home.path / "tessera.db")
    with db:
        db.execute("DROP TRIGGER audit_entry_no_update")
        db.execute("UPDATE audit_entry SET prev_hash = 'not hex' WHERE seq = 2")
        db.execute("UPDATE audit_entry SET details = '{not json' WHERE seq = 3")
    db.close()
    result = audit_home.cli("audit", "verify", "--no-record", check=False)
    assert result.returncode == 1 and b"Traceback" not in result.stderr
    lines = result.stdout.decode().splitlines()
    assert lines[:2] == ["entry-malformed seq=2: prev_hash is not 64 lower-case hex digits",
                         "entry-malformed seq=3: details is not a JSON object"], lines
    refused = audit_home.cli("audit", "checkpoint", check=False)
    assert refused.returncode == 1 and b"audit checkpoint refused: entry-malformed seq=2" in refused.stderr


def test_reading_the_trail_needs_a_logged_in_auditor(audit_home: AuditHome, slapd: Any) -> None:
    """Issue 12: every command that reads the audit trail checks who asks and their role."""
    for command in (("export",), ("list",), ("report", "--by", "type")):
        unnamed = audit_home.cli("audit", *command, check=False)
        assert unnamed.returncode == 2 and b"--as" in unnamed.stderr and not unnamed.stdout
        impostor = audit_home.cli("audit", *command, "--as", "someone-else", check=False)
        assert impostor.returncode == 4 and b"tessera admin login --as someone-else" in impostor.stderr and not impostor.stdout
    clerk = new_uid("clerk")
    slapd.create_user(clerk, PASSWORD, title="Clerk")
    env = audit_home.env | {"TESSERA_OPERATOR_TOKEN": token_of(audit_home.env, enrol(audit_home.env, clerk, PASSWORD))}
    for command in (("export",), ("list",), ("report", "--by", "type")):
        refused = run_tessera(env, "audit", *command, "--as", clerk, check=False)
        assert refused.returncode == 3 and not refused.stdout and b"Traceback" not in refused.stderr, refused.stderr
    trail = json.loads(audit_home.cli("audit", "list", "--as", audit_home.auditor, "--json").stdout)
    refusals = [e for e in trail if e["subject"] == f"staff:{clerk}" and e["result"] == "refused"]
    assert sorted(e["type"] for e in refusals) == ["audit.export", "audit.read", "audit.report"]
