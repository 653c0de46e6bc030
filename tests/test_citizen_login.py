"""Citizen card login over HTTP with real cards (SoftHSM2) signing through the real card agent.

The good path, then every refusal the issue names, each with its reason: a revoked card, an
expired certificate, a wrong PIN (counted by the card layer), a replayed nonce, a token made for
another origin, a forged signature, a certificate swapped for another citizen's, a certificate
from an unrelated CA, a staff certificate used as a citizen's. Plus the agent's origin rule.
"""

from __future__ import annotations

import base64
import json
import re
import struct
import subprocess
import textwrap
from pathlib import Path

import requests

from tests.fixtures_citizen import *  # noqa: F401,F403
from tests.fixtures_citizen import (
    PYTHON,
    REPO,
    CitizenIdp,
    agent_card,
    card_login,
    foreign_citizen,
    software_token,
)


def _refusal(answer: requests.Response) -> str:
    assert answer.status_code == 403, answer.text
    assert answer.headers["Content-Type"].startswith("application/problem+json")
    return str(answer.json()["type"]).rsplit("/", 1)[-1]


def test_card_login_lands_on_the_portal_as_the_card_holder(citizen_idp: CitizenIdp) -> None:
    agent = citizen_idp.agents["alice"]
    answer, session = card_login(citizen_idp, agent.url, agent.card.pin)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["citizen"]["card"] == agent.card.number
    # the login resolved the card's certificate pseudonym to the card holder in the registry
    national_id = str(citizen_idp.sql("SELECT national_id FROM card WHERE number = ?", agent.card.number)[0][0])
    masked = national_id[:4] + "*" * (len(national_id) - 8) + national_id[-4:]
    assert body["citizen"]["national_id"] == masked and national_id not in answer.text
    holder = str(citizen_idp.sql("SELECT holder FROM card WHERE number = ?", agent.card.number)[0][0])
    assert body["citizen"]["name"] == holder
    portal = session.get(citizen_idp.url(body["redirect"]))
    assert portal.status_code == 200
    assert f'id="citizen-national-id">{masked}<' in portal.text
    assert 'data-field="national_id">' + masked in portal.text
    assert national_id not in portal.text  # masked everywhere on the page, records included
    # the whole number on explicit request only, audited
    token = re.search(r'name="csrf_token" value="([^"]+)"', portal.text)
    assert token
    revealed = session.post(citizen_idp.url("/citizen/identity-number"), headers={"X-CSRF-Token": token.group(1)})
    assert revealed.status_code == 200 and revealed.json() == {"national_id": national_id}
    assert revealed.headers["Cache-Control"] == "no-store"
    # the trail names the citizen by the pseudonym of their certificates, never by the number
    pseudonym = str(citizen_idp.sql("SELECT pseudonym FROM citizen_pseudonym WHERE national_id = ?", national_id)[0][0])
    subject = f"citizen:{pseudonym}"
    assert citizen_idp.sql("SELECT result, object FROM audit_entry WHERE event_type = 'pii.reveal' AND subject = ?",
                           subject)[-1] == ("success", subject)
    assert not citizen_idp.sql("SELECT seq FROM audit_entry WHERE subject LIKE ? OR object LIKE ? OR details LIKE ?",
                               f"%{national_id}%", f"%{national_id}%", f"%{national_id}%")
    anonymous = requests.post(citizen_idp.url("/citizen/identity-number"))
    assert anonymous.status_code in (401, 403) and national_id not in anonymous.text
    # the audit trail has the login with the citizen and the card
    rows = citizen_idp.sql("SELECT result, object FROM audit_entry WHERE event_type = 'login.card' AND subject = ?",
                           subject)
    assert ("success", f"card:{agent.card.number}") in rows


def test_the_session_id_changes_at_card_login(citizen_idp: CitizenIdp) -> None:
    agent = citizen_idp.agents["alice"]
    session = requests.Session()
    session.get(citizen_idp.url("/citizen/login"))
    before = dict(session.cookies)
    answer, _ = card_login(citizen_idp, agent.url, agent.card.pin, session=session)
    assert answer.status_code == 200
    assert dict(session.cookies) != before and before


def test_portal_requires_a_card_login(citizen_idp: CitizenIdp) -> None:
    answer = requests.get(citizen_idp.url("/citizen/"), allow_redirects=False)
    assert answer.status_code == 302 and "/citizen/login" in answer.headers["Location"]


def test_replayed_nonce_is_refused(citizen_idp: CitizenIdp) -> None:
    agent = citizen_idp.agents["alice"]
    sent: dict[str, object] = {}

    def keep(token: dict[str, str], nonce: str) -> dict[str, str]:
        sent.update(token=token, nonce=nonce)
        return token

    answer, session = card_login(citizen_idp, agent.url, agent.card.pin, tamper=keep)
    assert answer.status_code == 200
    csrf = re.search(r'data-csrf="([^"]+)"', session.get(citizen_idp.url("/citizen/login")).text)
    assert csrf
    again = session.post(citizen_idp.url("/citizen/login/token"), json=sent, headers={"X-CSRF-Token": csrf.group(1)})
    assert _refusal(again) == "nonce-invalid"


def test_nonce_of_another_browser_session_is_refused(citizen_idp: CitizenIdp) -> None:
    """Bound to the browser session: a nonce fetched by someone else cannot be used here."""
    agent = citizen_idp.agents["alice"]
    attacker = requests.Session()
    page = attacker.get(citizen_idp.url("/citizen/login")).text
    csrf = re.search(r'data-csrf="([^"]+)"', page)
    assert csrf
    nonce = attacker.post(citizen_idp.url("/citizen/login/challenge"), json={},
                          headers={"X-CSRF-Token": csrf.group(1)}).json()["nonce"]
    answer, _ = card_login(citizen_idp, agent.url, agent.card.pin,
                           tamper=lambda token, _own: token)  # a normal login, to have a victim session
    assert answer.status_code == 200
    victim = requests.Session()
    csrf2 = re.search(r'data-csrf="([^"]+)"', victim.get(citizen_idp.url("/citizen/login")).text)
    assert csrf2
    token = requests.post(agent.url + "/authenticate", json={"nonce": nonce, "pin": agent.card.pin},
                          headers={"Origin": citizen_idp.base}).json()
    refused = victim.post(citizen_idp.url("/citizen/login/token"), json={"token": token, "nonce": nonce},
                          headers={"X-CSRF-Token": csrf2.group(1)})
    assert _refusal(refused) == "nonce-invalid"


def test_wrong_pin_is_refused_by_the_card_and_counted(citizen_idp: CitizenIdp) -> None:
    agent = citizen_idp.agents["pin"]
    counter = citizen_idp.path / "cards" / "counters" / agent.card.number
    wrong = "000000" if agent.card.pin != "000000" else "111111"
    answer, _ = card_login(citizen_idp, agent.url, wrong)
    assert answer.status_code == 403
    assert answer.json()["error"] == "wrong-pin" and answer.json()["tries_left"] == 2
    assert struct.unpack("<II", counter.read_bytes()[:8])[0] == 1  # counted on the card
    answer, _ = card_login(citizen_idp, agent.url, wrong)
    assert answer.json()["tries_left"] == 1
    assert struct.unpack("<II", counter.read_bytes()[:8])[0] == 2
    good, _ = card_login(citizen_idp, agent.url, agent.card.pin)
    assert good.status_code == 200, good.text
    assert struct.unpack("<II", counter.read_bytes()[:8])[0] == 0  # a good PIN resets the counter


def test_token_made_for_another_origin_is_refused(citizen_idp: CitizenIdp) -> None:
    alice = citizen_idp.agents["alice"]
    phishing = "https://tessera-login.example"
    rogue = citizen_idp.start_agent("alice-phished", alice.card, origin=phishing)
    answer, _ = card_login(citizen_idp, rogue.url, alice.card.pin, origin=phishing)
    assert _refusal(answer) == "signature-invalid"
    assert "origin" in answer.json()["detail"]


def test_forged_signature_is_refused(citizen_idp: CitizenIdp) -> None:
    agent = citizen_idp.agents["alice"]

    def forge(token: dict[str, str], _nonce: str) -> dict[str, str]:
        raw = bytearray(base64.b64decode(token["signature"]))
        raw[5] ^= 0x01
        return {**token, "signature": base64.b64encode(bytes(raw)).decode()}

    answer, _ = card_login(citizen_idp, agent.url, agent.card.pin, tamper=forge)
    assert _refusal(answer) == "signature-invalid"


def test_certificate_swapped_for_another_citizens_is_refused(citizen_idp: CitizenIdp) -> None:
    alice, bob = citizen_idp.agents["alice"], citizen_idp.agents["bob"]
    bobs_certificate = agent_card(citizen_idp, bob)["certificate"]
    answer, _ = card_login(citizen_idp, alice.url, alice.card.pin,
                           tamper=lambda token, _n: {**token, "unverifiedCertificate": bobs_certificate})
    assert _refusal(answer) == "signature-invalid"


def test_certificate_from_an_unrelated_ca_is_refused(citizen_idp: CitizenIdp) -> None:
    alice = citizen_idp.agents["alice"]
    mallory = foreign_citizen("38001010000")
    answer, _ = card_login(citizen_idp, alice.url, alice.card.pin,
                           tamper=lambda _token, nonce: software_token(mallory, citizen_idp.base, nonce))
    assert _refusal(answer) == "certificate-untrusted-issuer"


def test_staff_certificate_used_as_a_citizens_is_refused(citizen_idp: CitizenIdp) -> None:
    alice = citizen_idp.agents["alice"]
    staff = citizen_idp.staff
    assert staff is not None
    answer, _ = card_login(citizen_idp, alice.url, alice.card.pin,
                           tamper=lambda _token, nonce: software_token(staff, citizen_idp.base, nonce))
    assert _refusal(answer) == "certificate-wrong-purpose"


def test_malformed_token_is_a_clear_refusal(citizen_idp: CitizenIdp) -> None:
    alice = citizen_idp.agents["alice"]
    answer, _ = card_login(citizen_idp, alice.url, alice.card.pin, tamper=lambda token, _n: {**token, "format": "jwt"})
    assert _refusal(answer) == "token-malformed"


def test_revoked_card_is_refused_after_the_citizen_reports_it_lost(citizen_idp: CitizenIdp) -> None:
    agent = citizen_idp.agents["lost"]
    answer, session = card_login(citizen_idp, agent.url, agent.card.pin)
    assert answer.status_code == 200, answer.text
    portal = session.get(citizen_idp.url("/citizen/")).text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', portal)
    assert csrf and f'data-card="{agent.card.number}"' in portal
    where = citizen_idp.url(f"/citizen/cards/{agent.card.number}/lost")
    # first a page saying what will happen; nothing is done yet (GET, or a POST without confirm=yes)
    for asked in (session.get(where), session.post(where, data={"csrf_token": csrf.group(1)})):
        assert asked.status_code == 200 and 'id="confirm-lost"' in asked.text and 'id="lost-consequences"' in asked.text
    assert citizen_idp.sql("SELECT status FROM card WHERE number = ?", agent.card.number) == [("active",)]
    lost = session.post(where, data={"csrf_token": csrf.group(1), "confirm": "yes"})
    assert lost.status_code == 200 and 'id="lost-done"' in lost.text, lost.text
    portal = session.get(citizen_idp.url("/citizen/")).text
    assert re.search(rf'data-card="{agent.card.number}">.*?data-status="lost"', portal, re.S)
    again_asked = session.post(where, data={"csrf_token": csrf.group(1), "confirm": "yes"})
    assert again_asked.status_code == 409  # a card not in use cannot be reported lost twice
    # the certificates are revoked at once: the next login with the card is refused
    again, _ = card_login(citizen_idp, agent.url, agent.card.pin)
    assert _refusal(again) == "certificate-revoked"
    assert "keyCompromise" in again.json()["detail"]


def test_someone_elses_card_cannot_be_reported_lost(citizen_idp: CitizenIdp) -> None:
    alice, bob = citizen_idp.agents["alice"], citizen_idp.agents["bob"]
    answer, session = card_login(citizen_idp, alice.url, alice.card.pin)
    assert answer.status_code == 200
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', session.get(citizen_idp.url("/citizen/")).text)
    assert csrf
    where = citizen_idp.url(f"/citizen/cards/{bob.card.number}/lost")
    for refused in (session.get(where),
                    session.post(where, data={"csrf_token": csrf.group(1), "confirm": "yes"})):
        assert refused.status_code == 404 and bob.card.number not in refused.text
    assert citizen_idp.sql("SELECT status FROM card WHERE number = ?", bob.card.number) == [("active",)]


def test_expired_certificate_is_refused(citizen_idp: CitizenIdp) -> None:
    """The validator's clock moved past the card certificate's notAfter (five years on)."""
    agent = citizen_idp.agents["bob"]
    nonce = base64.b64encode(b"n" * 32).decode()
    token = requests.post(agent.url + "/authenticate", json={"nonce": nonce, "pin": agent.card.pin},
                          headers={"Origin": citizen_idp.base}).json()
    program = textwrap.dedent('''
        import datetime, json, sys
        from idp.citizen_blueprints import CitizenServices
        from idp.deployment import Deployment
        from idp.settings import Settings
        from idp.webeid import LoginRefused, TokenValidator
        svc = CitizenServices(Deployment(Settings.from_env()))
        later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=int(sys.argv[1]))
        validator = TokenValidator(svc.certificates, svc.origin, svc.citizen_ca, svc.registry, "ocsp", lambda: later,
                                   citizens=svc.citizen_of)
        data = json.loads(sys.stdin.read())
        try:
            login = validator.validate(data["token"], data["nonce"], lambda n: True)
            print("accepted", login.national_id)
        except LoginRefused as refused:
            print(refused.code)
    ''')

    def run(days: int) -> str:
        result = subprocess.run([PYTHON, "-c", program, str(days)], input=json.dumps({"token": token, "nonce": nonce}).encode(),
                                env=citizen_idp.env, capture_output=True, timeout=60, cwd=REPO)
        assert result.returncode == 0, result.stderr.decode()
        return result.stdout.decode().strip()

    assert run(0).startswith("accepted")  # the same token is good today: only time differs
    assert run(6 * 365) == "certificate-expired"


def test_agent_answers_only_its_configured_origin(citizen_idp: CitizenIdp) -> None:
    agent = citizen_idp.agents["alice"]
    evil = requests.post(agent.url + "/authenticate", json={"nonce": "x" * 44, "pin": agent.card.pin},
                         headers={"Origin": "https://evil.example"})
    assert evil.status_code == 403 and "Access-Control-Allow-Origin" not in evil.headers
    no_origin = requests.get(agent.url + "/card")
    assert no_origin.status_code == 403
    preflight = requests.options(agent.url + "/authenticate", headers={
        "Origin": citizen_idp.base, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"})
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == citizen_idp.base
    card = agent_card(citizen_idp, agent)
    assert card["card"] == agent.card.number


def test_agent_names_the_holder_as_written(citizen_idp: CitizenIdp) -> None:
    agent = citizen_idp.agents["alice"]
    holder = str(citizen_idp.sql("SELECT holder FROM card WHERE number = ?", agent.card.number)[0][0])
    assert agent_card(citizen_idp, agent)["holder"] == holder  # 张伟, family name first, no space


def test_agent_cli_bad_input_is_one_line(citizen_idp: CitizenIdp) -> None:
    bad_origin = citizen_idp.cli("card", "agent", "--origin", "ftp://x", check=False)
    assert bad_origin.returncode != 0 and "--origin must be scheme://host[:port]" in bad_origin.stderr.decode()
    absent = citizen_idp.cli("card", "agent", "--card", "12345678903", "--port", "1", check=False)
    assert absent.returncode != 0
    assert absent.stderr.decode().strip() == "Error: card 12345678903 is not in the reader"
    several = citizen_idp.cli("card", "agent", "--port", "1", check=False)  # five cards in this reader
    assert several.returncode != 0 and "choose one with --card" in several.stderr.decode()
    assert "Traceback" not in bad_origin.stderr.decode() + absent.stderr.decode() + several.stderr.decode()


def test_third_wrong_pin_blocks_the_pin_even_for_the_right_one(citizen_idp: CitizenIdp, tmp_path: Path) -> None:
    from tests.fixtures_cards import issue_card

    card = issue_card(citizen_idp, 606, tmp_path)
    agent = citizen_idp.start_agent("blocked", card)
    wrong = "000000" if card.pin != "000000" else "111111"
    answers = [card_login(citizen_idp, agent.url, wrong)[0].json() for _ in range(3)]
    assert [a.get("tries_left") for a in answers[:2]] == [2, 1]
    assert answers[2]["error"] == "pin-blocked"
    right, _ = card_login(citizen_idp, agent.url, card.pin)
    assert right.status_code == 403 and right.json()["error"] == "pin-blocked"
