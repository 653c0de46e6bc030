"""OpenID Connect Back-Channel Logout 1.0, judged by independent receivers: the demo application
(requests-oauthlib and PyJWT) is logged out when the person logs out at the provider, the help
desk ends their sessions or the security administrator processes them as a leaver (whose tokens,
an offline grant's too, are refused at once), and a bare HTTP receiver checks the logout token with
PyJWT (signature against the JWKS, typ, iss, aud, events, sid of the id_token, no nonce). A
receiver that is down never fails the logout."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs

import jwt
import pytest
import requests

from tests.fixtures_admin import *  # noqa: F401,F403
from tests.fixtures_admin import AdminAgent
from tests.fixtures_web import *  # noqa: F401,F403
from tests.fixtures_web import IdpServer, StaffAgent, csrf_of, running_demo_app
from tests.servers import free_port
from tests.test_oidc import REDIRECT, authorize, code_of, exchange, pkce

LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"


class Receiver(BaseHTTPRequestHandler):
    """Takes logout tokens (Back-Channel Logout 1.0 section 2.5) and keeps them."""

    tokens: list[str] = []

    def do_POST(self) -> None:  # noqa: N802  (http.server's name)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        assert self.headers["Content-Type"].startswith("application/x-www-form-urlencoded")
        self.tokens.append(parse_qs(body)["logout_token"][0])
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def receiver() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", free_port()), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/logout"
    server.shutdown()


@pytest.fixture()
def agent(idp: IdpServer, staff_user: tuple[str, str]) -> StaffAgent:
    a = StaffAgent(idp, *staff_user)
    a.login()
    return a


def test_discovery_and_registration(idp: IdpServer) -> None:
    config = requests.get(idp.url("/.well-known/openid-configuration"), timeout=10).json()
    assert config["backchannel_logout_supported"] is True and config["backchannel_logout_session_supported"] is True
    bad = idp.cli("client", "add", "Bad", "--redirect-uri", REDIRECT, "--backchannel-logout-uri",
                  "http://rp.example/logout", check=False)
    assert bad.returncode == 1 and b"https" in bad.stderr


def test_the_logout_token(idp: IdpServer, agent: StaffAgent, receiver: str) -> None:
    rp = idp.add_client("Payroll", REDIRECT, "--trusted", "--backchannel-logout-uri", receiver)
    assert rp["backchannel_logout_uri"] == receiver
    dead = idp.add_client("Switched off", REDIRECT, "--trusted", "--backchannel-logout-uri",
                          f"http://127.0.0.1:{free_port()}/logout")
    verifier, challenge = pkce()
    tokens = exchange(idp, rp, code_of(authorize(agent, idp, rp["client_id"], challenge)), verifier).json()
    exchange(idp, dead, code_of(authorize(agent, idp, dead["client_id"], challenge)), verifier)
    config = requests.get(idp.url("/.well-known/openid-configuration"), timeout=10).json()
    keys = jwt.PyJWKClient(config["jwks_uri"], cache_keys=False)
    id_token = jwt.decode(tokens["id_token"], keys.get_signing_key_from_jwt(tokens["id_token"]).key,
                          algorithms=["ES256"], audience=rp["client_id"], issuer=config["issuer"])
    assert id_token["sid"]
    Receiver.tokens.clear()
    page = agent.get(idp.url("/account"))
    started = time.monotonic()
    out = agent.post(idp.url("/logout"), data={"csrf_token": csrf_of(page.text)})
    assert out.status_code == 200 and time.monotonic() - started < 2  # the logout waits for no client
    assert eventually(lambda: bool(Receiver.tokens))
    time.sleep(0.5)
    [token] = Receiver.tokens  # the switched-off client failed quietly
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "logout+jwt"
    claims = jwt.decode(token, keys.get_signing_key_from_jwt(token).key, algorithms=["ES256"], audience=rp["client_id"],
                        issuer=config["issuer"], options={"require": ["iat", "exp", "jti", "sid", "sub", "events"]})
    assert claims["sid"] == id_token["sid"] and claims["sub"] == agent.uid == id_token["sub"]
    assert claims["events"] == {LOGOUT_EVENT: {}} and "nonce" not in claims
    assert claims["exp"] - claims["iat"] <= 120


def eventually(check: Any, seconds: float = 10) -> bool:
    """Whether ``check()`` comes true within ``seconds`` (the web service tells clients on threads of its own)."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _demo_logged_out(browser: requests.Session, base: str) -> bool:
    return eventually(lambda: 'id="welcome"' not in browser.get(base + "/", timeout=10).text)


def test_the_demo_application_is_logged_out_by_the_provider(idp: IdpServer, agent: StaffAgent) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    client = idp.add_client("Travel claims (back-channel)", base + "/callback", "--trusted",
                            "--post-logout-redirect-uri", base + "/", "--backchannel-logout-uri", base + "/backchannel-logout")
    with running_demo_app(idp.base, client, idp.home.parent, port):
        # the demo's receiver refuses what is not a valid logout token
        assert requests.post(base + "/backchannel-logout", data={"logout_token": "x"}, timeout=10).status_code == 400
        for end in ("logout", "help desk"):
            if end == "help desk":
                agent.login()
            welcome = agent.get(base + "/login", timeout=10)  # through the provider (logged in there) and back
            assert welcome.url == base + "/" and 'id="welcome"' in welcome.text, welcome.text[:300]
            if end == "logout":
                page = agent.get(idp.url("/account"))
                agent.post(idp.url("/logout"), data={"csrf_token": csrf_of(page.text)})
            else:
                idp.cli("sessions", "end", "--user", agent.uid)
            assert _demo_logged_out(agent, base), end


def test_a_leaver_loses_every_token_and_the_demo_session(idp: IdpServer, agent: StaffAgent,
                                                        admin_agents: dict[str, AdminAgent]) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    client = idp.add_client("Travel claims (leaver)", base + "/callback", "--trusted",
                            "--backchannel-logout-uri", base + "/backchannel-logout")
    with running_demo_app(idp.base, client, idp.home.parent, port):
        assert 'id="welcome"' in agent.get(base + "/login", timeout=10).text
        verifier, challenge = pkce()
        page = authorize(agent, idp, client["client_id"], challenge, redirect_uri=base + "/callback",
                         scope="openid offline_access")
        allowed = agent.post(page.url, data={"decision": "allow", "csrf_token": csrf_of(page.text)}, allow_redirects=False)
        code = parse_qs(allowed.headers["Location"].split("?", 1)[1])["code"][0]
        offline = requests.post(idp.url("/oidc/token"), data={"grant_type": "authorization_code", "code": code,
                                                             "redirect_uri": base + "/callback", "code_verifier": verifier},
                                auth=(client["client_id"], client["client_secret"]), timeout=10).json()
        assert "offline_access" in offline["scope"].split()
        done = admin_agents["security-admin"].act(f"/admin/people/{agent.uid}/leaver")
        assert done.status_code == 200 and 'id="done"' in done.text, done.text[:300]
        info = requests.get(idp.url("/oidc/userinfo"), headers={"Authorization": f"Bearer {offline['access_token']}"},
                            timeout=10)
        assert info.status_code == 401
        refused = requests.post(idp.url("/oidc/token"), data={"grant_type": "refresh_token",
                                                             "refresh_token": offline["refresh_token"]},
                                auth=(client["client_id"], client["client_secret"]), timeout=10)
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
        assert _demo_logged_out(agent, base)
