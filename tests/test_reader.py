"""cardsim.reader judged through the real CLI against real cards: every kind of bad card is
detected with its own reason, and a good card passes every check (CRL offline, OCSP online)."""

from __future__ import annotations

import datetime
import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import TESSERA, Home
from tests.fixtures_cards import PYTHON, REPO, IssuedCard, issue_card, on_card, verify_json


def read_object(home: Home, card: IssuedCard, label: str, kind: str = "DATA") -> bytes:
    out = on_card(home, card.number, f"""
        with token("{card.number}").open(user_pin="{card.pin}") as s:
            (obj,) = list(s.get_objects({{Attribute.CLASS: ObjectClass.{kind}, Attribute.LABEL: "{label}"}}))
            print(bytes(obj[Attribute.VALUE]).hex())
    """)
    return bytes.fromhex(out.strip())


def replace_object(home: Home, card: IssuedCard, label: str, value: bytes, private: bool = False,
                   kind: str = "DATA") -> None:
    """What an attacker with the card and its PIN could do: swap an object for another."""
    extra = ("Attribute.APPLICATION: 'tessera-card'," if kind == "DATA"
             else "Attribute.CERTIFICATE_TYPE: pkcs11.CertificateType.X_509, Attribute.ID: b'\\x01', "
                  "Attribute.SUBJECT: __import__('cryptography.x509').x509.load_der_x509_certificate("
                  f"bytes.fromhex('{value.hex()}')).subject.public_bytes(),")
    on_card(home, card.number, f"""
        with token("{card.number}").open(rw=True, user_pin="{card.pin}") as s:
            for obj in list(s.get_objects({{Attribute.CLASS: ObjectClass.{kind}, Attribute.LABEL: "{label}"}})):
                obj.destroy()
            s.create_object({{Attribute.CLASS: ObjectClass.{kind}, Attribute.TOKEN: True, Attribute.PRIVATE: {private},
                              Attribute.LABEL: "{label}", Attribute.VALUE: bytes.fromhex("{value.hex()}"), {extra}}})
    """)


def test_a_good_card_passes_every_check(home: Home, card: IssuedCard) -> None:
    result = verify_json(home, card.number, card.pin)
    assert result["ok"] is True, result["reasons"]
    outcomes = {c["check"]: c["outcome"] for c in result["checks"]}
    assert set(outcomes.values()) == {"pass"}
    assert {"active-authentication", "record:tax", "record:insurance", "security-object"} <= set(outcomes)
    assert result["records"]["identity"]["surname"] == "Tamm"
    assert result["records"]["tax"]["taxpayer_number"] == "1000001"
    # without the PIN the personal records and the key check are skipped, not passed
    public = verify_json(home, card.number)
    skipped = {c["check"] for c in public["checks"] if c["outcome"] == "skipped"}
    assert skipped == {"record:tax", "record:insurance", "active-authentication"}
    assert public["ok"] is True and "tax" not in public["records"]


def test_changed_record(home: Home, card_dir: Path) -> None:
    victim = issue_card(home, 101, card_dir)
    record = read_object(home, victim, "record:identity")
    replace_object(home, victim, "record:identity", record.replace(b"Tamm", b"Lamm"))
    assert verify_json(home, victim.number)["reasons"] == {"record:identity": "record-modified"}


def test_record_copied_from_another_card(home: Home, card_dir: Path) -> None:
    victim, other = issue_card(home, 102, card_dir), issue_card(home, 103, card_dir)
    replace_object(home, victim, "record:identity", read_object(home, other, "record:identity"))
    assert verify_json(home, victim.number)["reasons"] == {"record:identity": "record-from-another-card"}
    # the other card's security object does not fit either
    replace_object(home, victim, "security-object", read_object(home, other, "security-object"))
    assert verify_json(home, victim.number)["reasons"]["security-object"] == "record-from-another-card"


def test_record_signed_by_the_wrong_department(home: Home, card_dir: Path) -> None:
    victim = issue_card(home, 104, card_dir)
    program = f"""
import datetime, json
from idp.settings import Settings
from idp.deployment import Deployment
from cardsim.config import CardSettings
from cardsim.issuance import CardIssuer
from cardsim.records import record_content
d = Deployment(Settings.from_env(None))
issuer = CardIssuer(d.ca, CardSettings.from_env(d.settings.home))
now = datetime.datetime.now(datetime.timezone.utc)
content = record_content("identity", "{victim.number}", 1, "civil-registry", {{"surname": "Forged"}}, now)
print(issuer.signers()["tax"].sign(content, now).hex())
"""
    forged = subprocess.run([PYTHON, "-c", program], env=home.env, capture_output=True, text=True, cwd=REPO, timeout=60)
    assert forged.returncode == 0, forged.stderr
    replace_object(home, victim, "record:identity", bytes.fromhex(forged.stdout.strip()))
    assert verify_json(home, victim.number)["reasons"] == {"record:identity": "wrong-department"}


def test_superseded_record_version(home: Home, card_dir: Path) -> None:
    victim = issue_card(home, 105, card_dir)
    old_tax = read_object(home, victim, "record:tax")
    update = card_dir / "tax-update.json"
    update.write_text(json.dumps({"taxpayer_number": "1000105", "tax_office": "Tartu", "status": "exempt",
                                  "last_assessed_year": "2026"}))
    home.cli("card", "records", "update", victim.number, "--department", "tax-office", "--data", str(update),
             input=(victim.pin + "\n").encode())
    current = verify_json(home, victim.number, victim.pin)
    assert current["ok"] and current["records"]["tax"]["version"] == 2
    assert current["records"]["tax"]["tax_office"] == "Tartu"
    replace_object(home, victim, "record:tax", old_tax, private=True)
    stale = verify_json(home, victim.number, victim.pin)
    assert stale["reasons"] == {"record:tax": "superseded-version"}
    detail = next(c["detail"] for c in stale["checks"] if c["check"] == "record:tax")
    assert "version 1" in detail and "current version is 2" in detail


def test_lost_card(home: Home, card_dir: Path) -> None:
    victim = issue_card(home, 106, card_dir)
    home.cli("card", "lost", victim.number)
    reasons = verify_json(home, victim.number)["reasons"]
    assert reasons["registry"] == "card-lost"
    assert reasons["certificate:citizen-auth"] == "revoked" and reasons["certificate:citizen-sign"] == "revoked"
    assert json.loads(home.cli("card", "show", victim.number, "--json").stdout)["status"] == "lost"
    again = home.cli("card", "lost", victim.number, check=False)
    assert again.returncode == 1 and b"only an active card" in again.stderr


def test_expired_card(home: Home, card: IssuedCard) -> None:
    later = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=6 * 365)).isoformat()
    reasons = verify_json(home, card.number, None, "--at", later)["reasons"]
    assert reasons["certificate:citizen-auth"] == "card-expired"
    assert reasons["security-object"] == "card-expired"


def test_key_that_does_not_match_its_certificate(home: Home, card_dir: Path) -> None:
    victim, other = issue_card(home, 107, card_dir), issue_card(home, 108, card_dir)
    foreign = read_object(home, other, "citizen-auth", kind="CERTIFICATE")
    replace_object(home, victim, "citizen-auth", foreign, kind="CERTIFICATE")
    reasons = verify_json(home, victim.number, victim.pin)["reasons"]
    assert reasons["active-authentication"] == "key-mismatch"
    assert reasons["security-object"] == "key-mismatch"


def test_unknown_and_malformed_card_numbers_are_results(home: Home, card: IssuedCard) -> None:
    wrong_digit = card.number[:-1] + str((int(card.number[-1]) + 1) % 10)
    assert verify_json(home, wrong_digit)["reasons"] == {"card": "bad-card-number"}
    from cardsim.numbers import new_card_number

    assert verify_json(home, new_card_number(0))["reasons"] == {"card": "card-not-found"}
    # a number whose shard was never made is not found either (and opens nothing)
    assert verify_json(home, new_card_number(999))["reasons"] == {"card": "card-not-found"}


@pytest.mark.usefixtures("server")
def test_online_status_through_ocsp(home: Home, card_dir: Path) -> None:
    victim = issue_card(home, 109, card_dir)
    good = verify_json(home, victim.number, None, "--online")
    assert good["ok"], good["reasons"]
    assert any(c["detail"] == "OCSP: good" for c in good["checks"])
    home.cli("card", "lost", victim.number)
    revoked = verify_json(home, victim.number, None, "--online")
    assert revoked["reasons"]["certificate:citizen-auth"] == "revoked"
    assert any("OCSP: revoked (keyCompromise)" in c["detail"] for c in revoked["checks"])


def test_a_long_running_reader_sees_a_card_reported_lost(home: Home, card_dir: Path) -> None:
    victim = issue_card(home, 110, card_dir)
    program = f"""
import pathlib, subprocess, sys
from cardsim.config import CardSettings
settings = CardSettings.from_env(pathlib.Path({str(home.path)!r}))
from idp.settings import Settings
from idp.deployment import Deployment
from cardsim.reader import CardReader, ReaderTrust
deployment = Deployment(Settings.from_env(None))
reader = CardReader(settings, ReaderTrust.from_registry(deployment.sessions, crl_max_age=0))
print(reader.verify("{victim.number}").ok)
subprocess.run([{TESSERA!r}, "card", "lost", "{victim.number}"], check=True, capture_output=True)
result = reader.verify("{victim.number}")
print(result.ok, result.check("certificate:citizen-auth").reason)
"""
    out = subprocess.run([PYTHON, "-c", program], env=home.env, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "False", "revoked"]


def test_an_update_killed_before_its_registration_is_detected_and_repaired(home: Home, card_dir: Path) -> None:
    victim = issue_card(home, 111, card_dir)
    update = card_dir / "insurance-update.json"
    update.write_text(json.dumps({"insurer": "Health Insurance Fund", "policy_number": "POL-999111",
                                  "coverage_class": "extended", "valid_until": "2030-12-31"}))
    killed = subprocess.run([TESSERA, "card", "records", "update", victim.number, "--department", "insurance-fund",
                             "--data", str(update)], env={**home.env, "TESSERA_CARD_CRASH_AT": "record-written"},
                            input=(victim.pin + "\n").encode(), capture_output=True, timeout=120)
    assert killed.returncode == -9
    reasons = verify_json(home, victim.number, victim.pin)["reasons"]
    assert reasons["record:insurance"] == "unregistered-version"
    assert reasons["security-object"] == "unregistered-version"
    home.cli("card", "records", "update", victim.number, "--department", "insurance-fund", "--data", str(update),
             input=(victim.pin + "\n").encode())
    repaired = verify_json(home, victim.number, victim.pin)
    assert repaired["ok"], repaired["reasons"]
    assert repaired["records"]["insurance"]["coverage_class"] == "extended"


@pytest.mark.usefixtures("server")
def test_online_reader_keeps_the_signers_ocsp_answers_but_asks_fresh_for_the_card(home: Home, card_dir: Path) -> None:
    """Every card shares the departments' signers: their OCSP answers are kept until nextUpdate;
    the card's own two certificates are asked about (with a fresh nonce) at every verification."""
    victim = issue_card(home, 112, card_dir)
    program = f"""
from cardsim.config import CardSettings
from cardsim.reader import CardReader, ReaderTrust
from idp.deployment import Deployment
from idp.settings import Settings
deployment = Deployment(Settings.from_env(None))
trust = ReaderTrust.from_registry(deployment.sessions, online=True)
asked = []
post = trust.status._fetch
trust.status._fetch = lambda url, body: asked.append(url) or post(url, body)
reader = CardReader(CardSettings.from_env(deployment.settings.home), trust)
counts = []
for _ in range(3):
    result = reader.verify("{victim.number}")
    assert result.ok, result.reasons
    counts.append(len(asked))
print(counts)
"""
    out = subprocess.run([PYTHON, "-c", program], env=home.env, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    # first: 2 card certificates + 2 signers (identity, security object; no PIN); then 2 each
    assert out.stdout.split("\n")[0] == "[4, 6, 8]"
