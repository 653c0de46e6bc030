"""A citizen's logout ends the browser session and the OpenID Connect tokens issued in it (issue
17: sessions and tokens that end everywhere), as a staff member's does: after RP-initiated logout
(``/oidc/logout`` with the citizen's id_token) or the portal's "Log out" (``/citizen/logout``),
the session's access token is refused at userinfo and its refresh token at the token endpoint,
and the portal asks for the card again. Judged with requests against the card-login deployment."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.fixtures_citizen import *  # noqa: F401,F403
from tests.fixtures_citizen import CitizenIdp, card_login

REDIRECT = "https://tax.gov.example/callback"
BYE = "https://tax.gov.example/bye"


@pytest.fixture(scope="module")
def client(citizen_idp: CitizenIdp) -> dict[str, Any]:
    out = citizen_idp.cli("client", "add", "Tax office (logout test)", "--redirect-uri", REDIRECT, "--trusted",
                          "--post-logout-redirect-uri", BYE, "--json").stdout
    return json.loads(out)  # type: ignore[no-any-return]


def citizen_tokens(idp: CitizenIdp, client: dict[str, Any]) -> tuple[requests.Session, dict[str, Any]]:
    """A card login in a fresh browser, then the code flow (acr card) of ``client`` in it."""
    agent = idp.agents["alice"]
    answer, browser = card_login(idp, agent.url, agent.card.pin)
    assert answer.status_code == 200, answer.text
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    code = browser.get(idp.url("/oidc/authorize"), allow_redirects=False, timeout=30, params={
        "response_type": "code", "client_id": client["client_id"], "redirect_uri": REDIRECT, "scope": "openid profile",
        "acr_values": "urn:tessera:acr:card", "state": "s", "code_challenge": challenge,
        "code_challenge_method": "S256"})
    assert code.status_code == 302 and code.headers["Location"].startswith(REDIRECT), code.text[:300]
    tokens = requests.post(idp.url("/oidc/token"), auth=(client["client_id"], client["client_secret"]), timeout=30,
                           data={"grant_type": "authorization_code", "redirect_uri": REDIRECT, "code_verifier": verifier,
                                 "code": parse_qs(urlsplit(code.headers["Location"]).query)["code"][0]})
    assert tokens.status_code == 200, tokens.text
    assert userinfo(idp, tokens.json()) == 200
    return browser, tokens.json()


def userinfo(idp: CitizenIdp, tokens: dict[str, Any]) -> int:
    return requests.get(idp.url("/oidc/userinfo"), headers={"Authorization": f"Bearer {tokens['access_token']}"},
                        timeout=30).status_code


def refresh(idp: CitizenIdp, client: dict[str, Any], tokens: dict[str, Any]) -> requests.Response:
    return requests.post(idp.url("/oidc/token"), auth=(client["client_id"], client["client_secret"]), timeout=30,
                         data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})


def assert_ended(idp: CitizenIdp, client: dict[str, Any], browser: requests.Session, tokens: dict[str, Any]) -> None:
    assert userinfo(idp, tokens) == 401
    refused = refresh(idp, client, tokens)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    portal = browser.get(idp.url("/citizen/"), allow_redirects=False, timeout=30)
    assert portal.status_code == 302 and urlsplit(portal.headers["Location"]).path == "/citizen/login"


def test_rp_initiated_logout_ends_a_citizens_session_and_tokens(citizen_idp: CitizenIdp,
                                                                client: dict[str, Any]) -> None:
    browser, tokens = citizen_tokens(citizen_idp, client)
    _, elsewhere = citizen_tokens(citizen_idp, client)  # the same citizen in another browser
    out = browser.get(citizen_idp.url("/oidc/logout"), allow_redirects=False, timeout=30,
                      params={"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": BYE, "state": "x"})
    assert out.status_code == 302 and out.headers["Location"].startswith(BYE), out.text[:300]
    assert_ended(citizen_idp, client, browser, tokens)
    # only this browser's session ended: the other one's tokens live on
    assert userinfo(citizen_idp, elsewhere) == 200 and refresh(citizen_idp, client, elsewhere).status_code == 200


def test_the_portals_logout_ends_the_session_and_its_tokens(citizen_idp: CitizenIdp, client: dict[str, Any]) -> None:
    browser, tokens = citizen_tokens(citizen_idp, client)
    portal = browser.get(citizen_idp.url("/citizen/"), timeout=30)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', portal.text)
    assert csrf, "no CSRF token on the portal"
    out = browser.post(citizen_idp.url("/citizen/logout"), data={"csrf_token": csrf.group(1)}, allow_redirects=False,
                       timeout=30)
    assert out.status_code == 302
    assert_ended(citizen_idp, client, browser, tokens)
