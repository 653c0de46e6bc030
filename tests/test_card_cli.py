"""`tessera card`: --help on every command; bad input is one line on stderr and exit status 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Home
from tests.fixtures_cards import IssuedCard, citizen

COMMANDS = [["issue"], ["show"], ["records"], ["records", "read"], ["records", "update"], ["verify"], ["lost"],
            ["unblock"], ["renew"], ["change-pin"], ["issue-batch"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c))
def test_every_card_command_has_help(home: Home, command: list[str]) -> None:
    out = home.cli("card", *command, "--help").stdout.decode()
    assert out.startswith("Usage: tessera card " + " ".join(command))
    assert len(out.splitlines()) > 3


def test_bad_input_is_one_line(home: Home, card: IssuedCard, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(citizen(9, sex="X", ethnicity="Estonian")))
    cases = [
        (["card", "show", "123"], b"is not a card number"),
        (["card", "show", card.number[:-1] + str((int(card.number[-1]) + 1) % 10)], b"check digit"),
        (["card", "issue", "--from", str(bad)], b"sex must be M or F"),
        (["card", "lost", "96000000000"], b"card number"),
    ]
    not_json = tmp_path / "list.json"
    not_json.write_text("[1, 2]")
    cases.append((["card", "issue", "--from", str(not_json)], b"must hold a JSON object"))
    for args, expected in cases:
        result = home.cli(*args, check=False)
        assert result.returncode == 1, args
        lines = result.stderr.decode().strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
        assert expected in result.stderr, (args, result.stderr)
    update = tmp_path / "update.json"
    update.write_text(json.dumps({"tax_office": "x", "tax_credit_rating": "E"}))
    refused = home.cli("card", "records", "update", card.number, "--department", "tax-office", "--data", str(update),
                       check=False, input=f"{card.pin}\n".encode())
    assert refused.returncode == 1 and b"tax_credit_rating must be one of A, B, M, C, D" in refused.stderr


def test_a_citizens_personal_data_needs_a_logged_in_operator(home: Home, card: IssuedCard) -> None:
    """`card show` without --as gives the card's state only; the holder, national id and records,
    and `card records read`, need a staff member who logged in (`tessera admin login`)."""
    shown = json.loads(home.cli("card", "show", card.number, "--json").stdout)
    assert shown["number"] == card.number and shown["status"] == "active"
    assert not {"holder", "national_id", "records"} & set(shown)
    for args in (["card", "show", card.number, "--as", "nobody"], ["card", "records", "read", card.number, "--as", "x"]):
        refused = home.cli(*args, check=False)
        assert refused.returncode == 4 and b"not logged in" in refused.stderr and not refused.stdout, refused.stderr
    unnamed = home.cli("card", "records", "read", card.number, check=False)
    assert unnamed.returncode == 2 and b"--as" in unnamed.stderr and not unnamed.stdout
