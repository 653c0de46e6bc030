"""PIN and PUK: 3 wrong PINs block the PIN, the PUK unblocks it, 10 wrong PUKs block the card
for good; tries are counted before they are made, so a killed process gives no free guess."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cardsim.config import CardSettings
from cardsim.errors import CardBlocked, PinBlocked, WrongPin
from cardsim.issuance import CardIssuer
from idp.deployment import Deployment
from idp.settings import Settings
from tests.conftest import Home
from tests.fixtures_cards import issue_card, verify_json
from tests.servers import run_tessera


def change_pin(home: Home, number: str, old: str, new: str, **env: str) -> subprocess.CompletedProcess[bytes]:
    return run_tessera(home.env | env, "card", "change-pin", number, check=False, input=f"{old}\n{new}\n".encode())


@contextlib.contextmanager
def card_issuer(home: Home) -> Iterator[CardIssuer]:
    """The card layer in this process on ``home``: one personalisation process for every call."""
    deployment = Deployment(Settings.from_env(home.path, home.env))
    issuer = CardIssuer(deployment.ca, CardSettings.from_env(home.path, home.env), actor="test")
    try:
        yield issuer
    finally:
        issuer.close()
        deployment.close()


def test_three_wrong_pins_block_and_the_puk_unblocks(home: Home, card_dir: Path) -> None:
    card = issue_card(home, 201, card_dir)
    messages = [change_pin(home, card.number, "000000", "111111").stderr.decode() for _ in range(3)]
    assert "2 tries left" in messages[0] and "1 tries left" in messages[1] and "now blocked" in messages[2]
    right = change_pin(home, card.number, card.pin, "111111")
    assert right.returncode == 1 and b"blocked" in right.stderr  # even the right PIN is refused now
    assert verify_json(home, card.number, card.pin)["reasons"]["active-authentication"] == "pin-blocked"
    home.cli("card", "unblock", card.number, input=f"{card.puk}\n24681357\n".encode())
    assert verify_json(home, card.number, "24681357")["ok"]
    assert verify_json(home, card.number, card.pin)["reasons"]["active-authentication"] == "wrong-pin"
    bad_form = home.cli("card", "change-pin", card.number, check=False, input=b"24681357\n12ab\n")
    assert bad_form.returncode == 1 and b"6 to 8 digits" in bad_form.stderr


def test_ten_wrong_puks_block_the_card_for_good(home: Home, card_dir: Path) -> None:
    """The counters driven through the card layer in process (the command line's rendering of the same
    refusals is the test above); the blocked card as the command line and the registry then see it."""
    card = issue_card(home, 202, card_dir)
    with card_issuer(home) as issuer:
        for _ in range(2):
            with pytest.raises(WrongPin):
                issuer.change_pin(card.number, "000000", "111111")
        with pytest.raises(PinBlocked, match="now blocked"):
            issuer.change_pin(card.number, "000000", "111111")
        outputs = []
        for _ in range(9):
            with pytest.raises(WrongPin) as wrong:
                issuer.unblock(card.number, "00000000", "123456")
            outputs.append((str(wrong.value), wrong.value.remaining))
        with pytest.raises(CardBlocked, match="now blocked for good"):
            issuer.unblock(card.number, "00000000", "123456")
    assert outputs[0] == ("wrong PUK: 9 tries left", 9) and outputs[8] == ("wrong PUK: 1 tries left", 1)
    final = home.cli("card", "unblock", card.number, check=False, input=f"{card.puk}\n123456\n".encode())
    assert final.returncode == 1 and b"blocked for good" in final.stderr
    assert json.loads(home.cli("card", "show", card.number, "--json").stdout)["status"] == "blocked"
    assert verify_json(home, card.number)["reasons"]["registry"] == "card-blocked"


def test_a_process_killed_during_a_pin_attempt_gives_no_extra_try(home: Home, card_dir: Path) -> None:
    card = issue_card(home, 203, card_dir)
    # the right PIN each time, but the process dies mid-attempt: each attempt still counts
    for _ in range(2):
        killed = change_pin(home, card.number, card.pin, "13572468", TESSERA_CARD_CRASH_AT="pin-attempt")
        assert killed.returncode == 1 and b"personalisation process stopped" in killed.stderr
    reader_killed = run_tessera(home.env | {"TESSERA_CARD_CRASH_AT": "pin-attempt"}, "card", "verify", card.number,
                                "--with-pin", check=False, input=f"{card.pin}\n".encode())
    assert reader_killed.returncode == -9
    refused = change_pin(home, card.number, card.pin, "13572468")
    assert refused.returncode == 1 and b"blocked" in refused.stderr
    home.cli("card", "unblock", card.number, input=f"{card.puk}\n13572468\n".encode())
    assert verify_json(home, card.number, "13572468")["ok"]


def test_readers_in_several_processes_log_in_to_one_card_one_at_a_time(home: Home, card_dir: Path) -> None:
    """SoftHSM2 rewrites a token's file at each login: two processes logging in to one card at
    once made one of them fail (CKR_GENERAL_ERROR, ~10 % of logins under contention). The try
    counter's lock takes the tries one at a time, and every try is still counted."""
    from tests.fixtures_cards import PYTHON, REPO

    card = issue_card(home, 204, card_dir)
    program = f"""
from cardsim.config import CardSettings
from idp.deployment import Deployment
from idp.settings import Settings
from cardsim.reader import CardReader, ReaderTrust
deployment = Deployment(Settings.from_env(None))
reader = CardReader(CardSettings.from_env(deployment.settings.home), ReaderTrust.from_registry(deployment.sessions))
results = [reader.verify("{card.number}", pin="{card.pin}") for _ in range(40)]
print(sum(r.ok for r in results), sorted({{reason for r in results for reason in r.reasons}}))
"""
    readers = [subprocess.Popen([PYTHON, "-c", program], env=home.env, cwd=REPO, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = [reader.communicate(timeout=120) for reader in readers]
    assert [out for out, _ in outputs] == ["40 []\n"] * 3, outputs
    assert json.loads(home.cli("card", "show", card.number, "--json").stdout)["status"] == "active"
