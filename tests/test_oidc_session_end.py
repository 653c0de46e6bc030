"""Tokens end with the session they were issued in (issue 17 item 3), judged by an independent
client (requests): RP-initiated logout, a plain logout, an idle timeout nobody noticed and
``tessera sessions end`` each leave the session's access tokens refused at userinfo at once and its
refresh tokens refused at the token endpoint; an ``offline_access`` grant (consented to by the
person, trusted application or not) keeps refreshing until revoked."""

from __future__ import annotations

import datetime
import json
import sqlite3
from typing import Any

import pytest
import requests

from tests.fixtures_web import *  # noqa: F401,F403
from tests.fixtures_web import IdpServer, StaffAgent, csrf_of
from tests.test_oidc import REDIRECT, SCOPE, authorize, code_of, exchange, pkce

OFFLINE = SCOPE + " offline_access"


@pytest.fixture(scope="module")
def client(idp: IdpServer) -> dict[str, Any]:
    return idp.add_client("Timesheets", REDIRECT, "--trusted", "--post-logout-redirect-uri", "http://127.0.0.1:9/bye")


@pytest.fixture()
def agent(idp: IdpServer, staff_user: tuple[str, str]) -> StaffAgent:
    a = StaffAgent(idp, *staff_user)
    a.login()
    return a


def grant(idp: IdpServer, client: dict[str, Any], agent: StaffAgent, scope: str = SCOPE) -> dict[str, Any]:
    """Tokens of a code flow in the agent's session (allowing the consent page if one comes)."""
    verifier, challenge = pkce()
    response = authorize(agent, idp, client["client_id"], challenge, scope=scope)
    if response.status_code == 200:  # the consent page
        response = agent.post(response.url, data={"decision": "allow", "csrf_token": csrf_of(response.text)},
                              allow_redirects=False)
    tokens = exchange(idp, client, code_of(response), verifier)
    assert tokens.status_code == 200, tokens.text
    return tokens.json()  # type: ignore[no-any-return]


def userinfo(idp: IdpServer, tokens: dict[str, Any]) -> int:
    return requests.get(idp.url("/oidc/userinfo"), headers={"Authorization": f"Bearer {tokens['access_token']}"},
                        timeout=10).status_code


def refresh(idp: IdpServer, client: dict[str, Any], tokens: dict[str, Any]) -> requests.Response:
    return requests.post(idp.url("/oidc/token"), data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
                         auth=(client["client_id"], client["client_secret"]), timeout=10)


def test_rp_initiated_logout_ends_the_sessions_tokens_but_not_an_offline_grant(
        idp: IdpServer, client: dict[str, Any], agent: StaffAgent) -> None:
    online = grant(idp, client, agent)
    # offline_access is the person's to allow, even for a trusted application (OIDC Core 11)
    verifier, challenge = pkce()
    page = authorize(agent, idp, client["client_id"], challenge, scope=OFFLINE)
    assert page.status_code == 200 and 'id="consent-scopes"' in page.text
    offline = grant(idp, client, agent, OFFLINE)
    assert "offline_access" in offline["scope"].split()
    assert userinfo(idp, online) == 200 and userinfo(idp, offline) == 200
    out = agent.get(idp.url("/oidc/logout"), params={"id_token_hint": online["id_token"],
                                                     "post_logout_redirect_uri": "http://127.0.0.1:9/bye"},
                    allow_redirects=False)
    assert out.status_code == 302
    # within one request: every access token of the session, and the session's refresh token
    assert userinfo(idp, online) == 401 and userinfo(idp, offline) == 401
    refused = refresh(idp, client, online)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    # the offline grant outlives the session, and its new tokens live on their own
    again = refresh(idp, client, offline)
    assert again.status_code == 200, again.text
    later = again.json()
    assert userinfo(idp, later) == 200
    assert refresh(idp, client, later).status_code == 200
    # the person's refusal: logged in again, a trusted application asks no consent without offline_access
    agent.login()
    _, challenge = pkce()
    assert code_of(authorize(agent, idp, client["client_id"], challenge))


def test_a_plain_logout_and_an_unnoticed_idle_timeout_end_the_tokens(
        idp: IdpServer, client: dict[str, Any], agent: StaffAgent) -> None:
    tokens = grant(idp, client, agent)
    page = agent.get(idp.url("/account"))
    agent.post(idp.url("/logout"), data={"csrf_token": csrf_of(page.text)})
    assert userinfo(idp, tokens) == 401 and refresh(idp, client, tokens).status_code == 400
    agent.login()
    tokens = grant(idp, client, agent)
    # a refresh is activity of the session; then nobody uses it past the idle timeout (30 minutes)
    rotated = refresh(idp, client, tokens)
    assert rotated.status_code == 200
    tokens = rotated.json()
    past = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=31)).replace(tzinfo=None)
    with sqlite3.connect(idp.home / "tessera.db") as db:
        idle = db.execute("UPDATE idp_web_session SET last_seen_at = ? WHERE uid = ?",
                          (past.isoformat(sep=" "), agent.uid)).rowcount
    assert idle == 1
    assert userinfo(idp, tokens) == 401 and refresh(idp, client, tokens).status_code == 400


def test_sessions_end_on_the_command_line(idp: IdpServer, client: dict[str, Any], agent: StaffAgent) -> None:
    online = grant(idp, client, agent)
    offline = grant(idp, client, agent, OFFLINE)
    out = idp.cli("sessions", "end", "--user", agent.uid, "--reason", "lost laptop", "--json")
    assert json.loads(out.stdout) == {"uid": agent.uid, "sessions": 1, "access_tokens": 2}
    assert agent.get(idp.url("/account"), allow_redirects=False).status_code == 302  # logged out
    assert userinfo(idp, online) == 401 and userinfo(idp, offline) == 401
    assert refresh(idp, client, online).status_code == 400
    survivor = refresh(idp, client, offline)
    assert survivor.status_code == 200
    with sqlite3.connect(idp.home / "tessera.db") as db:
        subject, role, details = db.execute(
            "SELECT subject, subject_role, details FROM audit_entry WHERE event_type = 'session.end_all' "
            "AND object = ? ORDER BY seq DESC", (f"staff:{agent.uid}",)).fetchone()
    assert subject.startswith("cli:") and role == "operator"
    assert json.loads(details) == {"reason": "lost laptop", "sessions": 1, "access_tokens_revoked": 2,
                                   "offline_too": False}
    # --offline: nothing of the person's goes on
    idp.cli("sessions", "end", "--user", agent.uid, "--offline")
    assert userinfo(idp, survivor.json()) == 401 and refresh(idp, client, survivor.json()).status_code == 400
    assert idp.cli("sessions", "end", "--user", "", check=False).returncode != 0
