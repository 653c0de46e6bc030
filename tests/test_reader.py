"""cardsim.reader judged through the real CLI against real cards: every kind of bad card is
detected with its own reason, and a good card passes every check (CRL offline, OCSP online)."""

from __future__ import annotations

import datetime
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TESSERA, Home
from tests.servers import free_port
from tests.fixtures_cards import PYTHON, REPO, IssuedCard, citizen, issue_card, on_card, verify_json


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
    assert result["records"]["identity"]["name"] == citizen(1)["name"]
    assert result["records"]["tax"]["taxpayer_number"] == citizen(1)["national_id"]
    # without the PIN the personal records and the key check are skipped, not passed
    public = verify_json(home, card.number)
    skipped = {c["check"] for c in public["checks"] if c["outcome"] == "skipped"}
    assert skipped == {"record:tax", "record:insurance", "active-authentication"}
    assert public["ok"] is True and "tax" not in public["records"]


def test_changed_record(home: Home, card_dir: Path) -> None:
    victim = issue_card(home, 101, card_dir)
    record = read_object(home, victim, "record:identity")
    name = citizen(101)["name"]
    other = ("吴" if name[0] != "吴" else "周") + name[1:]  # as many UTF-8 bytes
    replace_object(home, victim, "record:identity", record.replace(name.encode(), other.encode()))
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
    update.write_text(json.dumps({"tax_office": "国家税务总局吉首市税务局", "tax_credit_rating": "B"}))
    home.cli("card", "records", "update", victim.number, "--department", "tax-office", "--data", str(update),
             input=(victim.pin + "\n").encode())
    current = verify_json(home, victim.number, victim.pin)
    assert current["ok"] and current["records"]["tax"]["version"] == 2
    assert current["records"]["tax"]["tax_office"] == "国家税务总局吉首市税务局"
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
    update.write_text(json.dumps({"insured_place": "湖南省湘西土家族苗族自治州吉首市",
                                  "insurance_types": "pension,medical,unemployment", "insurance_status": "suspended"}))
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
    assert repaired["records"]["insurance"]["insurance_status"] == "suspended"


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


def test_one_session_per_read_none_left_open_and_values_read_whole(home: Home, card_dir: Path) -> None:
    """The reader reads a card in one session (one search, one C_GetAttributeValue per object)
    and closes it whatever the PIN did; a value larger than its buffer is sized and read again;
    the registry entry holds each current record's version and hash, none for an unknown card."""
    victim = issue_card(home, 113, card_dir)
    update = card_dir / "tax-update-113.json"
    update.write_text(json.dumps({"tax_office": "国家税务总局龙山县税务局", "tax_credit_rating": "M"}))
    home.cli("card", "records", "update", victim.number, "--department", "tax-office", "--data", str(update),
             input=(victim.pin + "\n").encode())
    program = f"""
import ctypes
from sqlalchemy import select
from cardsim import cryptoki as ck
from cardsim.config import CardSettings
from cardsim.models import Card, CardRecord
from cardsim.reader import CardReader, ReaderTrust, RegistryEntry
from idp.deployment import Deployment
from idp.settings import Settings
deployment = Deployment(Settings.from_env(None))
trust = ReaderTrust.from_registry(deployment.sessions)
reader = CardReader(CardSettings.from_env(deployment.settings.home), trust)
number, pin = "{victim.number}", "{victim.pin}"
wrong = "{'0' * 6 if victim.pin != '0' * 6 else '1' * 6}"
shard, token = reader._token(number)
p11 = ck.Cryptoki.attached(shard.module)

def sessions():
    # SoftHSM2 does not count sessions in its token info: ask about every handle it may have given
    info = (ctypes.c_ulong * 4)()  # CK_SESSION_INFO
    return sum(p11._lib.C_GetSessionInfo(ctypes.c_ulong(h), ctypes.byref(info)) == 0 for h in range(1, 257))

outcomes = []
for attempt in (pin, None, wrong, pin):
    result = reader.verify(number, pin=attempt)
    outcomes.append((result.ok, sorted(result.reasons), sessions()))
print(outcomes)

session = p11.open_session(token.slot.slot_id, rw=False)
p11.login(session, ck.CKU_USER, pin)
kinds = (ck.CKA_CLASS, ck.CKA_LABEL, ck.CKA_APPLICATION, ck.CKA_VALUE)
handles = p11.all_objects(session)
assert sorted(p11.all_objects(session, batch=3)) == sorted(handles) and len(handles) == 10, handles
roomy = [p11.attributes(session, h, kinds, (8, 64, 64, 8192)) for h in handles]
tight = [p11.attributes(session, h, kinds, (8, 4, 4, 16)) for h in handles]
p11.close_session(session)
assert roomy == tight
print(sum(1 for values in roomy if values[ck.CKA_VALUE] is None), len(max((v[ck.CKA_VALUE] or b"" for v in roomy), key=len)))
import cardsim.reader
cardsim.reader._READ_SIZES = (8, 4, 4, 16)  # every label and value too long for its buffer
tight_result = reader.verify(number, pin=pin)
assert tight_result.ok and tight_result.records["tax"]["tax_office"] == "国家税务总局龙山县税务局", tight_result.reasons

with deployment.sessions() as db:
    rows = db.execute(select(Card.status, Card.replaced_by, CardRecord.record_type, CardRecord.version, CardRecord.sha256)
                      .join(CardRecord, (CardRecord.card_id == Card.id) & CardRecord.current.is_(True))
                      .where(Card.number == number)).all()
expected = RegistryEntry(rows[0][0], {{r[2]: r[3] for r in rows}}, rows[0][1], {{r[2]: r[4] for r in rows}})
print(trust.registry(number) == expected, trust.registry(number).versions["tax"], trust.registry("90000000000"))
"""
    out = subprocess.run([PYTHON, "-c", program], env=home.env, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == str([(True, [], 0), (True, [], 0), (False, ["wrong-pin"], 0), (True, [], 0)])
    hidden, longest = lines[1].split()
    assert hidden == "4" and int(longest) > 1000  # both keys' values withheld; the records read whole
    assert lines[2] == "True 2 None"


def _certificate(subject: str, issuer: tuple[Any, Any] | None, key: Any, ca: bool, days: tuple[int, int],
                 constraints: bool = False) -> Any:
    """A P-256 certificate for the chain validator's test: (issuer name, issuer key) or self-signed."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = issuer if issuer is not None else (name, key)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now + datetime.timedelta(days=days[0]))
               .not_valid_after(now + datetime.timedelta(days=days[1]))
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                              critical=False))
    if ca:
        builder = (builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                                key_encipherment=False, data_encipherment=False, key_agreement=False,
                                                key_cert_sign=True, crl_sign=True, encipher_only=False,
                                                decipher_only=False), critical=True))
    if constraints:
        builder = builder.add_extension(x509.NameConstraints(
            permitted_subtrees=[x509.DNSName("tessera.example")],
            excluded_subtrees=None), critical=True)
    return builder.sign(issuer_key, hashes.SHA256())


def test_chain_validator_keeps_the_ca_part_and_checks_every_leaf_in_full() -> None:
    """After one leaf validated along the whole path, leaves of the same CA are validated with
    the CA as anchor; any leaf that fails that way is validated in full again, so every result
    (and reason) is the one the whole path gives."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from verification.chain import ChainValidator

    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(5)]
    root = _certificate("root", None, keys[0], True, (-1, 3650))
    ca = _certificate("citizen CA", (root.subject, keys[0]), keys[1], True, (-1, 365))
    leaf = lambda name, days=(-1, 300), issuer_key=keys[1]: _certificate(  # noqa: E731
        name, (ca.subject, issuer_key), keys[2], False, days)
    now = datetime.datetime.now(datetime.timezone.utc)
    later = now + datetime.timedelta(days=500)  # the CA has expired, the leaf below has not
    kept = ChainValidator([root])
    first, path = kept.validate_path(leaf("first"), [ca], now)
    assert first.ok and path is not None and len(path) == 3 and path[1] == ca
    second, path = kept.validate_path(leaf("second"), [ca], now)
    # through the kept CA, the whole path returned (every CA's status is asked: verification.crl_status)
    assert second.ok and path is not None and path == [path[0], ca, root]

    cases = [(leaf("forged", issuer_key=keys[3]), now), (leaf("expired", days=(-10, -5)), now),
             (leaf("not yet", days=(5, 10)), now), (leaf("outlives its CA", days=(-1, 900)), later)]
    for certificate, at in cases:
        whole = ChainValidator([root]).validate(certificate, [ca], at)
        assert not whole.ok
        assert kept.validate(certificate, [ca], at) == whole, certificate.subject

    constrained = _certificate("constrained CA", (root.subject, keys[0]), keys[4], True, (-1, 365), constraints=True)
    validator = ChainValidator([root])
    for name in ("a", "b"):
        check, path = validator.validate_path(
            _certificate(name, (constrained.subject, keys[4]), keys[2], False, (-1, 300)), [constrained], now)
        assert check.ok and path is not None and len(path) == 3  # a CA with name constraints is never an anchor


def test_a_card_whose_pin_blob_was_read_mid_login_is_read_again_once(home: Home, card: IssuedCard) -> None:
    """SoftHSM2 takes a token's PIN blobs from its file at C_Initialize; a reader that started
    while another process was logging in to the card can see "no user PIN" at every login. The
    reader then initialises the shard again (once every 10 s at most) and reads the card again;
    the refused login is not counted as a PIN try."""
    program = f"""
from cardsim import cryptoki as ck
from cardsim.config import CardSettings
from cardsim.pins import TryCounter
from cardsim.reader import CardReader, ReaderTrust
from idp.deployment import Deployment
from idp.settings import Settings
deployment = Deployment(Settings.from_env(None))
settings = CardSettings.from_env(deployment.settings.home)
reader = CardReader(settings, ReaderTrust.from_registry(deployment.sessions))
number, pin = "{card.number}", "{card.pin}"
assert reader.verify(number, pin=pin).ok
shard, _ = reader._token(number)
p11 = reader._cryptoki(shard)
login, refusals, reloads = p11.login, [1], []

def refusing_login(session, user, pin):
    if refusals[0]:
        refusals[0] -= 1
        raise ck.CryptokiError("C_Login", ck.CKR_USER_PIN_NOT_INITIALIZED)
    return login(session, user, pin)

p11.login = refusing_login
reinitialise = shard.reinitialise
shard.reinitialise = lambda: reloads.append(1) or reinitialise()
once = reader.verify(number, pin=pin)  # refused once, read again: passes
refusals[0] = 1
twice = reader.verify(number, pin=pin)  # refused again within 10 s: not read again
print(once.ok, len(reloads), twice.ok, sorted(twice.reasons), TryCounter(settings.counter_dir, number).read().pin_failures)
"""
    out = subprocess.run([PYTHON, "-c", program], env=home.env, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "1", "False", "['card-unreadable']", "0"]


def test_a_home_with_sm2_cas_reads_ecdsa_cards_and_a_revoked_citizen_ca_revokes_them(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """Issue 18: with the SM2 hierarchy beside the ECDSA one (`tessera ca add-sm2`), the reader
    loads every CA's CRL (SM2 ones through GmSSL) and still verifies ECDSA cards. Issue 15: the
    status of every certificate of the path is checked, so revoking the citizen CA revokes its
    cards (RFC 5280 section 6.3), in a home of its own."""
    port = free_port()
    private = Home(tmp_path_factory.mktemp("sm2-reader-home"), f"http://127.0.0.1:{port}", port)
    private.cli("init")
    private.cli("ca", "add-sm2")
    victim = issue_card(private, 121, private.path)
    good = verify_json(private, victim.number)
    assert good["ok"], good["reasons"]
    program = """
from idp.deployment import Deployment
from idp.settings import Settings
ca = Deployment(Settings.from_env(None)).ca
citizen = ca.get(format(ca.authority_certificate("citizen").serial_number, "x"))
ca.revoke(citizen.serial_hex, "cACompromise", actor="test")
"""
    out = subprocess.run([PYTHON, "-c", program], env=private.env, capture_output=True, text=True, cwd=REPO,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    revoked = verify_json(private, victim.number)
    assert revoked["reasons"]["certificate:citizen-auth"] == "revoked"
    detail = next(c["detail"] for c in revoked["checks"] if c["check"] == "certificate:citizen-auth")
    assert "issuing CA" in detail and "cACompromise" in detail
    # online too: the CA's status comes from the root's CRL before any responder is asked
    online = verify_json(private, victim.number, None, "--online")
    assert online["reasons"]["certificate:citizen-auth"] == "revoked"
