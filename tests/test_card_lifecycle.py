"""Issuance is all-or-nothing across token, CA and registry, even when the issuing process is
killed at several points; lost, renewed and expired cards."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.conftest import TESSERA, Home
from tests.fixtures_cards import PYTHON, REPO, citizen, issue_card, registered_cards, token_folders, verify_json


def certificates_requested_by(home: Home, number: str) -> int:
    with sqlite3.connect(home.path / "tessera.db") as db:
        return int(db.execute("select count(*) from ca_certificate where requester = ?", (f"card:{number}",)).fetchone()[0])


def pending(home: Home) -> list[Path]:
    return sorted((home.path / "cards" / "pending").iterdir())


@pytest.mark.parametrize("point", ["journal", "token", "certificates", "written"])
def test_killed_issuance_leaves_nothing_and_a_rerun_completes(home: Home, card_dir: Path, point: str) -> None:
    source = card_dir / f"crash-{point}.json"
    source.write_text(json.dumps(citizen(300 + len(point))))
    before_tokens, before_cards = token_folders(home), registered_cards(home)
    killed = subprocess.run([TESSERA, "card", "issue", "--from", str(source)], capture_output=True, timeout=120,
                            env={**home.env, "TESSERA_CARD_CRASH_AT": point})
    assert killed.returncode == -9
    (entry,) = pending(home)
    number = json.loads(entry.read_text())["number"]
    assert registered_cards(home) == before_cards  # nothing registered
    assert certificates_requested_by(home, number) == 0  # no certificate outlived the transaction
    # the rerun sweeps the half-made token, then issues the card
    home.cli("card", "issue", "--from", str(source), "--envelope", str(card_dir / f"crash-{point}-envelope.json"))
    assert pending(home) == []
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
    killed = subprocess.run([TESSERA, "card", "issue", "--from", str(source)], capture_output=True, timeout=120,
                            env={**home.env, "TESSERA_CARD_CRASH_AT": "committed"})
    assert killed.returncode == -9
    (entry,) = pending(home)
    number = json.loads(entry.read_text())["number"]
    assert registered_cards(home) == before_cards + 1
    issue_card(home, 311, card_dir)
    assert pending(home) == []
    assert token_folders(home) == before_tokens + 2 and registered_cards(home) == before_cards + 2
    assert verify_json(home, number)["ok"]


def test_a_refusal_midway_undoes_the_token_in_the_same_process(home: Home, card_dir: Path) -> None:
    source = card_dir / "refused.json"
    source.write_text(json.dumps(citizen(312)))
    before_tokens, before_cards = token_folders(home), registered_cards(home)
    for point in ("certificates", "written"):
        failed = subprocess.run([TESSERA, "card", "issue", "--from", str(source)], capture_output=True, timeout=120,
                                env={**home.env, "TESSERA_CARD_FAIL_AT": point})
        assert failed.returncode == 1
        assert failed.stderr.decode().strip() == f"Error: injected failure at {point}"
        assert pending(home) == []
        assert (token_folders(home), registered_cards(home)) == (before_tokens, before_cards)


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


def test_cards_past_their_date_are_marked_expired(home: Home, card_dir: Path) -> None:
    source = card_dir / "short.json"
    source.write_text(json.dumps(citizen(330)))
    envelope = card_dir / "short-envelope.json"
    result = subprocess.run([TESSERA, "card", "issue", "--from", str(source), "--envelope", str(envelope)],
                            env={**home.env, "TESSERA_CARD_VALIDITY_DAYS": "1"}, capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr
    number = json.loads(envelope.read_text())["card"]
    program = """
import datetime
from idp.settings import Settings
from idp.deployment import Deployment
from cardsim.config import CardSettings
from cardsim.issuance import CardIssuer
d = Deployment(Settings.from_env(None))
d.ca.clock = lambda: datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=2)
print(" ".join(CardIssuer(d.ca, CardSettings.from_env(d.settings.home)).expire_due()))
"""
    out = subprocess.run([PYTHON, "-c", program], env=home.env, capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [number]  # only the card past its date
    assert json.loads(home.cli("card", "show", number, "--json").stdout)["status"] == "expired"
    assert verify_json(home, number)["reasons"]["registry"] == "card-expired"
