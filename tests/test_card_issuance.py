"""A card as independent tools see it: pkcs11-tool lists its objects and shows its keys sensitive,
never extractable and sign-only; openssl cms -verify checks every record with the CA chain."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ca.profiles import EXAMPLE_POLICY_ARC, PROFILES
from cardsim.citizens import parse_application
from cardsim.errors import InvalidApplication
from cardsim.numbers import is_card_number, luhn_digit, new_card_number, parse_card_number, shard_of
from tests.conftest import Home
from tests.fixtures_cards import IssuedCard, card_env, citizen, on_card

MODULE = "/usr/lib/softhsm/libsofthsm2.so"


def pkcs11_tool(home: Home, number: str, *args: str) -> str:
    result = subprocess.run(["pkcs11-tool", "--module", MODULE, "--token-label", number, *args],
                            env=card_env(home, number),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def blocks(listing: str, kind: str) -> dict[str, str]:
    out = {}
    for block in listing.split(kind)[1:]:
        label = next(line.split(":", 1)[1].strip().strip("'") for line in block.splitlines() if "label:" in line)
        out[label] = block
    return out


def test_pkcs11_tool_lists_the_card_and_its_keys_stay_on_it(home: Home, card: IssuedCard) -> None:
    listing = pkcs11_tool(home, card.number, "--login", "--pin", card.pin, "--list-objects")
    keys = blocks(listing, "Private Key Object")
    assert set(keys) == {"citizen-auth", "citizen-sign"}
    for block in keys.values():
        access = next(line for line in block.splitlines() if "Access:" in line)
        assert "sensitive" in access and "never extractable" in access and "always sensitive" in access, access
        usage = next(line for line in block.splitlines() if "Usage:" in line)
        assert usage.split(":", 1)[1].strip() == "sign", usage
    assert set(blocks(listing, "Certificate Object")) == {"citizen-auth", "citizen-sign"}
    data = blocks(listing, "Data object")
    assert set(data) == {"record:identity", "record:tax", "record:insurance", "security-object"}
    # without the PIN the personal records are invisible, identity and security object are not
    public = blocks(pkcs11_tool(home, card.number, "--list-objects"), "Data object")
    assert set(public) == {"record:identity", "security-object"}
    # and the private value cannot be read out even after login (CKR_ATTRIBUTE_SENSITIVE)
    out = on_card(home, card.number, f"""
        with token("{card.number}").open(user_pin="{card.pin}") as session:
            key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label="citizen-auth")
            try:
                key[Attribute.VALUE]
                print("READABLE")
            except pkcs11.exceptions.AttributeSensitive:
                print("SENSITIVE")
    """)
    assert out.strip() == "SENSITIVE"


@pytest.mark.parametrize("label,private", [("record:identity", False), ("record:tax", True),
                                           ("record:insurance", True), ("security-object", False)])
def test_openssl_cms_verifies_each_record_read_from_the_card(home: Home, card: IssuedCard, chain_files: Path,
                                                             label: str, private: bool, tmp_path: Path) -> None:
    login = ["--login", "--pin", card.pin] if private else []
    out = tmp_path / "record.der"
    pkcs11_tool(home, card.number, *login, "--read-object", "--type", "data", "--label", label,
                "--output-file", str(out))
    verified = subprocess.run(["openssl", "cms", "-verify", "-inform", "DER", "-in", str(out), "-CAfile",
                               str(chain_files / "root.pem"), "-purpose", "any"], capture_output=True, timeout=30)
    assert verified.returncode == 0, verified.stderr.decode()
    assert b"Verification successful" in verified.stderr
    assert card.number.encode() in verified.stdout
    # the judge can say no: one changed byte of content
    data = bytearray(out.read_bytes())
    index = data.index(b'"card":"') + 8
    data[index] = ord("1") if data[index] != ord("1") else ord("2")
    out.write_bytes(bytes(data))
    tampered = subprocess.run(["openssl", "cms", "-verify", "-inform", "DER", "-in", str(out), "-CAfile",
                               str(chain_files / "root.pem"), "-purpose", "any"], capture_output=True, timeout=30)
    assert tampered.returncode != 0
    # and a wrong trust anchor fails too
    wrong = subprocess.run(["openssl", "cms", "-verify", "-inform", "DER", "-in", str(tmp_path / "record.der"),
                            "-CAfile", str(chain_files / "citizen.pem"), "-purpose", "any"], capture_output=True)
    assert wrong.returncode != 0


def test_card_certificates_chain_to_the_citizen_ca(home: Home, card: IssuedCard, chain_files: Path, tmp_path: Path) -> None:
    for label in ("citizen-auth", "citizen-sign"):
        out = tmp_path / f"{label}.der"
        pkcs11_tool(home, card.number, "--read-object", "--type", "cert", "--label", label,
                    "--output-file", str(out))
        pem = subprocess.run(["openssl", "x509", "-inform", "DER", "-in", str(out)], capture_output=True, check=True).stdout
        (tmp_path / f"{label}.pem").write_bytes(pem)
        # strict, and for the profile's policy only (RFC 5280 section 6.1, initial-explicit-policy)
        policy = PROFILES[label].policy_oid(EXAMPLE_POLICY_ARC).dotted_string
        result = subprocess.run(["openssl", "verify", "-x509_strict", "-explicit_policy", "-policy", policy,
                                 "-CAfile", str(chain_files / "root.pem"), "-untrusted",
                                 str(chain_files / "citizen.pem"), str(tmp_path / f"{label}.pem")],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def test_citizen_certificates_carry_a_pseudonym_not_the_identity_number(home: Home, card: IssuedCard,
                                                                        tmp_path: Path) -> None:
    """openssl's text of both card certificates has no identity number, nor any 8-digit run of
    it; the subject serialNumber is the pseudonym the registry maps back to the citizen."""
    import re
    import sqlite3

    number = citizen(1)["national_id"]
    with sqlite3.connect(home.path / "tessera.db") as db:
        (registered,) = db.execute("SELECT national_id FROM card WHERE number = ?", (card.number,)).fetchone()
        pseudonyms = {row[0] for row in db.execute("SELECT pseudonym FROM citizen_pseudonym WHERE national_id = ?",
                                                    (number,))}
    assert registered == number and len(pseudonyms) == 1
    for label in ("citizen-auth", "citizen-sign"):
        out = tmp_path / f"{label}.der"
        pkcs11_tool(home, card.number, "--read-object", "--type", "cert", "--label", label, "--output-file", str(out))
        text = subprocess.run(["openssl", "x509", "-inform", "DER", "-in", str(out), "-noout", "-text",
                               "-nameopt", "RFC2253,-esc_msb"], capture_output=True, check=True, text=True).stdout
        assert number not in text and number.lower() not in text
        runs = {number[i:i + 8] for i in range(len(number) - 7)}
        assert not [r for r in runs if r in text], "a digit run of the identity number is in the certificate"
        subject = next(line for line in text.splitlines() if line.strip().startswith("Subject:"))
        found = re.search(r"serialNumber=(PSN-[A-Z2-7]{24})", subject)
        assert found and found.group(1) in pseudonyms, subject
        assert f"CN={citizen(1)['name']}" in subject and re.search(r"\bC=(CN|EE)\b", subject), subject


def test_the_estonian_scheme_still_issues_cards_when_selected(home: Home, tmp_path: Path) -> None:
    import json
    import sqlite3

    from cardsim.demo_citizens import estonian_citizen
    from tests.servers import run_tessera

    env = {**home.env, "TESSERA_CITIZEN_ID_SCHEME": "ee-evs585"}
    row = estonian_citizen(7)
    (tmp_path / "ee.json").write_text(json.dumps(row))
    run_tessera(env, "card", "issue", "--from", str(tmp_path / "ee.json"), "--envelope", str(tmp_path / "env.json"))
    number = json.loads((tmp_path / "env.json").read_text())["card"]
    verified = json.loads(run_tessera(env, "card", "verify", number, "--json").stdout)
    assert verified["ok"] and verified["records"]["identity"]["surname"] == "Tamm"
    with sqlite3.connect(home.path / "tessera.db") as db:
        assert db.execute("SELECT scheme FROM citizen_pseudonym WHERE national_id = ?",
                          (row["national_id"],)).fetchall() == [("ee-evs585",)]
    # a Chinese application is refused under the Estonian scheme, and the reverse
    (tmp_path / "cn.json").write_text(json.dumps(citizen(8)))
    refused = run_tessera(env, "card", "issue", "--from", str(tmp_path / "cn.json"), check=False)
    assert refused.returncode == 1 and b"unknown fields" in refused.stderr


def test_card_numbers_carry_a_luhn_check_digit_and_their_shard() -> None:
    number = new_card_number(37)
    assert is_card_number(number) and len(number) == 11
    assert shard_of(number) == 37 and number.startswith("9037")
    with pytest.raises(ValueError):
        new_card_number(1000)
    assert parse_card_number(number[:3] + " " + number[3:]) == number
    for i in range(10):  # every single-digit change is caught
        for d in "0123456789":
            changed = number[:i] + d + number[i + 1:]
            if changed != number:
                assert not is_card_number(changed)
    assert luhn_digit("7992739871") == "3"  # the textbook example


def test_applications_are_checked_field_by_field() -> None:
    assert parse_application(citizen(5)).holder == citizen(5)["name"]
    number = citizen(5)["national_id"]
    bad = citizen(5, national_id=number[:-1] + ("0" if number[-1] != "0" else "1"), valid_from="1999-02-30",
                  tax_credit_rating="maybe", insurance_status="gold")
    with pytest.raises(InvalidApplication) as caught:
        parse_application(bad)
    message = str(caught.value)
    for expected in ("bad-check-character", "valid_from", "tax_credit_rating", "insurance_status"):
        assert expected in message
