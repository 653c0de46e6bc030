"""Issuance is all-or-nothing across token, CA and registry, even when the issuing process is
killed at several points; lost, renewed and expired cards."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Home
from tests.fixtures_cards import citizen, issue_card, registered_cards, token_folders, verify_json
from tests.servers import run_tessera


def certificates_requested_by(home: Home, number: str) -> int:
    with sqlite3.connect(home.path / "tessera.db") as db:
        return int(db.execute("select count(*) from ca_certificate where requester = ?", (f"card:{number}",)).fetchone()[0])


def pending(home: Home) -> list[Path]:
    return sorted((home.path / "cards" / "pending").iterdir())


CRASH_POINTS = ["journal", "token", "certificates", "written", "envelope"]


def envelopes(home: Home) -> list[Path]:
    folder = home.path / "cards" / "envelopes"
    return sorted(folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_killed_issuance_leaves_nothing_and_a_rerun_completes(home: Home, card_dir: Path, point: str) -> None:
    source = card_dir / f"crash-{point}.json"
    source.write_text(json.dumps(citizen(340 + CRASH_POINTS.index(point))))
    before_tokens, before_cards = token_folders(home), registered_cards(home)
    killed = run_tessera(home.env | {"TESSERA_CARD_CRASH_AT": point}, "card", "issue", "--from", str(source), check=False)
    assert killed.returncode == -9
    (entry,) = pending(home)
    number = json.loads(entry.read_text())["number"]
    assert registered_cards(home) == before_cards  # nothing registered
    assert certificates_requested_by(home, number) == 0  # no certificate outlived the transaction
    # the rerun sweeps the half-made token (and the envelope of the card that never was), then issues the card
    home.cli("card", "issue", "--from", str(source), "--envelope", str(card_dir / f"crash-{point}-envelope.json"))
    assert pending(home) == []
    assert home.path / "cards" / "envelopes" / f"{number}.json" not in envelopes(home)
    assert registered_cards(home) == before_cards + 1
    assert token_folders(home) == before_tokens + 1  # the orphan is gone, the new card is there
    shown = home.cli("card", "show", number, check=False)
    assert shown.returncode == 1 and b"no card" in shown.stderr
    new = json.loads((card_dir / f"crash-{point}-envelope.json").read_text())
    assert verify_json(home, new["card"], new["pin"])["ok"]


def test_killed_after_the_commit_keeps_the_complete_card(home: Home, card_dir: Path) -> None:
    source = card_dir / "crash-committed.json"
    source.write_text(json.dumps(citizen(310)))
    before_tokens, before_cards = token_folders(home), registered_cards(home)
    killed = run_tessera(home.env | {"TESSERA_CARD_CRASH_AT": "committed"}, "card", "issue", "--from", str(source),
                         check=False)
    assert killed.returncode == -9
    (entry,) = pending(home)
    number = json.loads(entry.read_text())["number"]
    assert registered_cards(home) == before_cards + 1
    # the active card has its PIN envelope: written before the commit that activated the card
    envelope = json.loads((home.path / "cards" / "envelopes" / f"{number}.json").read_text(encoding="utf-8"))
    assert envelope["card"] == number and envelope["holder"] == citizen(310)["name"]
    assert verify_json(home, number, envelope["pin"])["ok"]
    issue_card(home, 311, card_dir)
    assert pending(home) == []
    assert token_folders(home) == before_tokens + 2 and registered_cards(home) == before_cards + 2
    assert verify_json(home, number)["ok"]


def test_a_refusal_midway_undoes_the_token_in_the_same_process(home: Home, card_dir: Path) -> None:
    source = card_dir / "refused.json"
    source.write_text(json.dumps(citizen(312)))
    before_tokens, before_cards = token_folders(home), registered_cards(home)
    for point in ("certificates", "written", "envelope"):
        failed = run_tessera(home.env | {"TESSERA_CARD_FAIL_AT": point}, "card", "issue", "--from", str(source), check=False)
        assert failed.returncode == 1
        assert failed.stderr.decode().strip() == f"Error: injected failure at {point}"
        assert pending(home) == []
        assert (token_folders(home), registered_cards(home)) == (before_tokens, before_cards)
        assert not any(e.read_text(encoding="utf-8").count(citizen(312)["name"]) for e in envelopes(home))


def test_a_citizen_holds_one_active_card_whatever_the_path(home: Home, card_dir: Path) -> None:
    first = issue_card(home, 313, card_dir)
    before_tokens, before_cards = token_folders(home), registered_cards(home)
    source = card_dir / "citizen-313.json"
    again = home.cli("card", "issue", "--from", str(source), check=False)
    assert again.returncode == 1 and b"already holds active card " + first.number.encode() in again.stderr
    assert (token_folders(home), registered_cards(home), pending(home)) == (before_tokens, before_cards, [])
    # the registry itself refuses a second active card, whoever writes it
    with sqlite3.connect(home.path / "tessera.db") as db, pytest.raises(sqlite3.IntegrityError):
        db.execute("insert into card (number, national_id, holder, status, token_serial, issued_at, expires_at, "
                   "auth_certificate_id, sign_certificate_id) select 'X' || number, national_id, holder, status, "
                   "token_serial, issued_at, expires_at, auth_certificate_id, sign_certificate_id from card "
                   "where number = ?", (first.number,))
    # renewing replaces the active card: still exactly one
    renewed = home.cli("card", "renew", first.number, "--envelope", str(card_dir / "renew-313.json"))
    assert renewed.returncode == 0
    with sqlite3.connect(home.path / "tessera.db") as db:
        assert db.execute("select count(*) from card where status = 'active' and national_id = "
                          "(select national_id from card where number = ?)", (first.number,)).fetchone()[0] == 1


EXPIRED_CA = """
import datetime, json, sys
from ca.errors import InvalidRequest
from cardsim.citizens import parse_application
from cardsim.config import CardSettings
from cardsim.issuance import CardIssuer
from idp.deployment import Deployment
from idp.settings import Settings

deployment = Deployment(Settings.from_env())
ends = deployment.ca.authority_certificate("citizen").not_valid_after_utc
deployment.ca.clock = lambda: ends + datetime.timedelta(days=1)  # the day after the citizen CA expired
issuer = CardIssuer(deployment.ca, CardSettings.from_env(deployment.settings.home), actor="test")
try:
    issuer.issue(parse_application(json.loads(sys.argv[1])))
except InvalidRequest as exc:
    print(exc)
finally:
    issuer.close()
    deployment.close()
"""


def test_an_expired_issuing_ca_refuses_a_card(home: Home) -> None:
    """Issue 15 item 6: card certificates go through the CA's checks, "issuing CA has expired" among them."""
    before = (token_folders(home), registered_cards(home))
    refused = subprocess.run([sys.executable, "-c", EXPIRED_CA, json.dumps(citizen(314))], env=home.env,
                             capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parent.parent)
    assert refused.returncode == 0, refused.stderr
    assert refused.stdout.strip() == "the issuing CA citizen has expired"
    assert (token_folders(home), registered_cards(home)) == before and pending(home) == []  # the token undone


def test_renewal_replaces_the_card_and_retires_the_old_one(home: Home, card_dir: Path) -> None:
    old = issue_card(home, 320, card_dir)
    envelope = card_dir / "renewed.json"
    home.cli("card", "renew", old.number, "--envelope", str(envelope))
    new = json.loads(envelope.read_text())
    assert new["card"] != old.number
    fresh = verify_json(home, new["card"], new["pin"])
    assert fresh["ok"] and fresh["records"]["identity"]["national_id"] == citizen(320)["national_id"]
    retired = verify_json(home, old.number)["reasons"]
    assert retired["registry"] == "card-replaced"
    assert retired["certificate:citizen-auth"] == "revoked"
    shown = json.loads(home.cli("card", "show", old.number, "--json").stdout)
    assert shown["status"] == "renewed" and shown["replaced_by"] == new["card"]
    assert json.loads(home.cli("card", "show", new["card"], "--json").stdout)["replaces"] == old.number


def test_lost_card_can_be_replaced(home: Home, card_dir: Path) -> None:
    lost = issue_card(home, 321, card_dir)
    home.cli("card", "lost", lost.number)
    envelope = card_dir / "replacement.json"
    home.cli("card", "renew", lost.number, "--envelope", str(envelope))
    new = json.loads(envelope.read_text())
    assert verify_json(home, new["card"], new["pin"])["ok"]
    assert json.loads(home.cli("card", "show", lost.number, "--json").stdout)["status"] == "renewed"


def audit_entries(home: Home, number: str) -> list[tuple[str, str]]:
    with sqlite3.connect(home.path / "tessera.db") as db:
        return [(r[0], r[1]) for r in db.execute(
            "select event_type, result from audit_entry where object = ? order by seq", (f"card:{number}",))]


def test_tessera_card_expire_marks_the_cards_past_their_date_all_audited(home: Home, card_dir: Path) -> None:
    due, fresh = issue_card(home, 330, card_dir), issue_card(home, 331, card_dir)
    with sqlite3.connect(home.path / "tessera.db") as db:  # the card's date has passed
        db.execute("update card set expires_at = '2020-01-01 00:00:00.000000' where number = ?", (due.number,))
    assert "--dry-run" in home.cli("card", "expire", "--help").stdout.decode()
    listed = json.loads(home.cli("card", "expire", "--dry-run", "--json").stdout)
    assert listed == {"dry_run": True, "cards": [due.number]}
    assert json.loads(home.cli("card", "show", due.number, "--json").stdout)["status"] == "active"  # dry run
    assert home.cli("card", "expire").stdout.decode().strip() == f"1 card(s) marked expired: {due.number}"
    assert json.loads(home.cli("card", "show", due.number, "--json").stdout)["status"] == "expired"
    assert json.loads(home.cli("card", "show", fresh.number, "--json").stdout)["status"] == "active"
    assert ("card.expired", "success") in audit_entries(home, due.number)
    assert verify_json(home, due.number)["reasons"]["registry"] == "card-expired"
    assert home.cli("card", "expire").stdout.decode().strip() == "0 card(s) marked expired"


def test_no_audit_entry_no_card_change(home: Home, card_dir: Path) -> None:
    """Issue 6: if the audit trail cannot be written, the audited action does not happen."""
    victim = issue_card(home, 332, card_dir)
    assert ("card.issued", "success") in audit_entries(home, victim.number)
    source = card_dir / "unaudited.json"
    source.write_text(json.dumps(citizen(333)))
    before = (token_folders(home), registered_cards(home))
    db = sqlite3.connect(home.path / "tessera.db")
    try:
        head = db.execute("SELECT seq, entry_hash FROM audit_head").fetchone()
        db.execute("DELETE FROM audit_head")  # the trail can no longer be written (no chain head)
        db.commit()
        for args in (("card", "issue", "--from", str(source), "--envelope", str(card_dir / "unaudited-env.json")),
                     ("card", "lost", victim.number)):
            result = home.cli(*args, check=False)
            err = result.stderr.decode()
            assert result.returncode == 1 and "audit trail" in err and "Traceback" not in err, err
        assert (token_folders(home), registered_cards(home)) == before  # no token, no registry row
        assert pending(home) == []
        statuses = db.execute("select status from ca_certificate where requester = ?",
                              (f"card:{victim.number}",)).fetchall()
        assert statuses == [("valid",), ("valid",)]  # no revocation
    finally:
        db.execute("INSERT INTO audit_head (id, seq, entry_hash) VALUES (1, ?, ?)", head)
        db.commit()
        db.close()
    assert json.loads(home.cli("card", "show", victim.number, "--json").stdout)["status"] == "active"
    home.cli("card", "lost", victim.number)
    assert ("card.lost", "success") in audit_entries(home, victim.number)

