"""A citizen reaches an application through OpenID Connect with the ID card: the application asks
for acr urn:tessera:acr:card; the id_token carries the citizen's identifier and amr ["sc", "pin"].
Judged by an independent client: requests for the HTTP steps, PyJWT for the id_token."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import requests

from tests.fixtures_citizen import *  # noqa: F401,F403
from tests.fixtures_citizen import CitizenIdp, card_login

REDIRECT = "https://travel.gov.example/callback"


def _client(idp: CitizenIdp) -> tuple[str, str]:
    out = idp.cli("client", "add", "Citizen services (test)", "--redirect-uri", REDIRECT, "--json").stdout
    client = json.loads(out)
    return client["client_id"], client["client_secret"]


def _authorize(idp: CitizenIdp, session: requests.Session, client_id: str,
               acr: str | None) -> tuple[requests.Response, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT, "scope": "openid profile",
              "state": "s1", "nonce": "n1", "code_challenge": challenge, "code_challenge_method": "S256"}
    if acr:
        params["acr_values"] = acr
    answer = session.get(idp.url("/oidc/authorize?" + urlencode(params)), allow_redirects=False, timeout=30)
    return answer, verifier


def _consent_and_code(idp: CitizenIdp, session: requests.Session, answer: requests.Response) -> str:
    if answer.status_code == 200 and 'name="decision"' in answer.text:  # the consent page
        token = next(part.split('"')[0] for part in answer.text.split('name="csrf_token" value="')[1:])
        answer = session.post(answer.url, data={"csrf_token": token, "decision": "allow"}, allow_redirects=False,
                              timeout=30)
    assert answer.status_code in (302, 303), answer.text[:500]
    location = answer.headers["Location"]
    assert location.startswith(REDIRECT), location
    return parse_qs(urlsplit(location).query)["code"][0]


def test_card_login_through_oidc_gives_citizen_id_token(citizen_idp: CitizenIdp) -> None:
    client_id, secret = _client(citizen_idp)
    agent = citizen_idp.agents["alice"]
    session = requests.Session()
    first, _ = _authorize(citizen_idp, session, client_id, "urn:tessera:acr:card")
    # no card session yet: the browser is sent to the ID-card login, not the staff login
    assert first.status_code in (302, 303)
    assert urlsplit(first.headers["Location"]).path == "/citizen/login"
    answer, session = card_login(citizen_idp, agent.url, agent.card.pin, session=session)
    assert answer.status_code == 200, answer.text
    # the answer masks the number; the ID token (for a client the citizen consented to) carries it
    national_id = str(citizen_idp.sql("SELECT national_id FROM card WHERE number = ?", agent.card.number)[0][0])
    assert answer.json()["citizen"]["national_id"] == national_id[:4] + "*" * (len(national_id) - 8) + national_id[-4:]
    again, verifier = _authorize(citizen_idp, session, client_id, "urn:tessera:acr:card")
    code = _consent_and_code(citizen_idp, session, again)
    tokens = requests.post(citizen_idp.url("/oidc/token"), auth=(client_id, secret), timeout=30, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": verifier})
    assert tokens.status_code == 200, tokens.text
    discovery = requests.get(citizen_idp.url("/.well-known/openid-configuration"), timeout=30).json()
    assert "urn:tessera:acr:card" in discovery["acr_values_supported"]
    signing_key = jwt.PyJWKClient(discovery["jwks_uri"]).get_signing_key_from_jwt(tokens.json()["id_token"])
    claims = jwt.decode(tokens.json()["id_token"], signing_key.key, algorithms=["ES256", "RS256"], audience=client_id,
                        issuer=discovery["issuer"])
    # sub is the citizen's pseudonym (the same on every card), the number only as the consented claim
    pseudonym = str(citizen_idp.sql("SELECT pseudonym FROM citizen_pseudonym WHERE national_id = ?", national_id)[0][0])
    assert claims["sub"] == f"citizen:{pseudonym}" and claims["national_id"] == national_id
    assert national_id not in claims["sub"]
    assert claims["amr"] == ["sc", "pin"] and claims["acr"] == "urn:tessera:acr:card" and claims["nonce"] == "n1"
    assert claims["name"] == answer.json()["citizen"]["name"]


def test_a_staff_session_does_not_satisfy_a_card_request(citizen_idp: CitizenIdp) -> None:
    client_id, _ = _client(citizen_idp)
    # without any session, and with prompt=none, a card request must answer login_required
    session = requests.Session()
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT, "scope": "openid",
              "acr_values": "urn:tessera:acr:card", "prompt": "none", "code_challenge": "x" * 43,
              "code_challenge_method": "S256"}
    answer = session.get(citizen_idp.url("/oidc/authorize?" + urlencode(params)), allow_redirects=False, timeout=30)
    assert answer.status_code in (302, 303)
    assert parse_qs(urlsplit(answer.headers["Location"]).query)["error"] == ["login_required"]
