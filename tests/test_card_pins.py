"""PIN and PUK: 3 wrong PINs block the PIN, the PUK unblocks it, 10 wrong PUKs block the card
for good; tries are counted before they are made, so a killed process gives no free guess."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Home
from tests.fixtures_cards import issue_card, verify_json


def change_pin(home: Home, number: str, old: str, new: str, **env: str):  # type: ignore[no-untyped-def]
    import subprocess

    from tests.conftest import TESSERA

    return subprocess.run([TESSERA, "card", "change-pin", number], env={**home.env, **env}, capture_output=True,
                          input=f"{old}\n{new}\n".encode(), timeout=120)


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
    card = issue_card(home, 202, card_dir)
    for _ in range(3):
        change_pin(home, card.number, "000000", "111111")
    outputs = [home.cli("card", "unblock", card.number, check=False, input=b"00000000\n123456\n").stderr.decode()
               for _ in range(10)]
    assert "9 tries left" in outputs[0] and "1 tries left" in outputs[8]
    assert "blocked for good" in outputs[9]
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
    import subprocess

    from tests.conftest import TESSERA

    reader_killed = subprocess.run([TESSERA, "card", "verify", card.number, "--with-pin"], capture_output=True,
                                   env={**home.env, "TESSERA_CARD_CRASH_AT": "pin-attempt"},
                                   input=f"{card.pin}\n".encode(), timeout=120)
    assert reader_killed.returncode == -9
    refused = change_pin(home, card.number, card.pin, "13572468")
    assert refused.returncode == 1 and b"blocked" in refused.stderr
    home.cli("card", "unblock", card.number, input=f"{card.puk}\n13572468\n".encode())
    assert verify_json(home, card.number, "13572468")["ok"]


def test_readers_in_several_processes_log_in_to_one_card_one_at_a_time(home: Home, card_dir: Path) -> None:
    """SoftHSM2 rewrites a token's file at each login: two processes logging in to one card at
    once made one of them fail (CKR_GENERAL_ERROR, ~10 % of logins under contention). The try
    counter's lock takes the tries one at a time, and every try is still counted."""
    import subprocess

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
