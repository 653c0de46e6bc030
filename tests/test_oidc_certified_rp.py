"""Issue 17 judged by an independent OpenID Certified relying party: panva's ``openid-client``
(npm, 6.x) drives tests/oidc_certified_rp.mjs against a private provider. The library does the
protocol and its checks: discovery, authorization code with PKCE S256, state and nonce, the RFC
9207 ``iss`` response parameter (a forged or missing one refused), the id_token (signature with
the JWKS, iss, aud, nonce), userinfo as JSON and, for a client registered with
``userinfo_signed_response_alg``, as a signed JWT (alg, iss, aud, signature by ``kid``), refresh,
RFC 7009 revocation (the revoked token refused afterwards), RFC 7662 introspection (active, then
inactive) and RP-initiated logout ending every token of the session. The person's browser steps
(password + TOTP, the logout page) are this module's, with requests.

openid-client is installed once into ``~/.cache/tessera-test-node`` (``$XDG_CACHE_HOME`` if set);
the module is skipped, saying why, when node or npm is missing or the installation fails."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests

from tests.fixtures_web import PASSWORD, IdpServer, StaffAgent, new_uid, private_idp, query_of
from tests.test_oidc import exchange, pkce

REDIRECT = "http://127.0.0.1:9/callback"  # never contacted: the browser step reads the Location header
POST_LOGOUT = "http://127.0.0.1:9/bye"
SCRIPT = Path(__file__).with_name("oidc_certified_rp.mjs")
#: the judge: openid-client 6.x (OpenID Certified, https://openid.net/certification/)
PACKAGE = "openid-client@6"
#: one run of the judge may take this long (its browser steps included)
RUN_SECONDS = 120


def _cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tessera-test-node"


@pytest.fixture(scope="module")
def openid_client() -> Path:
    """The folder openid-client is installed in (installed on first use, under a file lock: test
    processes may start side by side)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed to run the certified relying party (openid-client)")
    folder = _cache()
    folder.mkdir(parents=True, exist_ok=True)
    installed = folder / "node_modules" / "openid-client" / "package.json"
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not installed.exists():
            done = subprocess.run([npm, "install", "--prefix", str(folder), "--no-audit", "--no-fund", "--silent",
                                   PACKAGE], capture_output=True, text=True, timeout=300, check=False)
            if done.returncode != 0 or not installed.exists():
                pytest.skip(f"npm could not install {PACKAGE}: {(done.stderr or done.stdout).strip()[-300:]}")
    return folder


@pytest.fixture(scope="module")
def server() -> Iterator[IdpServer]:
    with private_idp("tessera-certified-rp-") as idp:
        yield idp


@pytest.fixture(scope="module")
def clients(server: IdpServer) -> dict[str, dict[str, Any]]:
    """The relying party, the same with signed userinfo (RS256: its kid must name the RSA key
    among the JWKS's keys) and a resource server registered for introspection."""
    rp = server.add_client("Certified RP", REDIRECT, "--trusted", "--post-logout-redirect-uri", POST_LOGOUT)
    signed = server.add_client("Certified RP, signed userinfo", REDIRECT, "--trusted", "--userinfo-alg", "RS256")
    rs = server.add_client("Certified RP's API", "http://127.0.0.1:9/unused", "--introspection")
    return {"rp": rp, "signed": signed | {"userinfo_alg": "RS256"}, "rs": rs}


@pytest.fixture()
def person(server: IdpServer) -> StaffAgent:
    uid = new_uid("rp")
    server.directory.create_user(uid, PASSWORD, department="finance", title="Analyst", given_name="Rita",
                                 surname=f"Party{uid[-4:]}", mail=f"{uid}@example.gov.cn")
    agent = StaffAgent(server, uid, PASSWORD)
    agent.login()  # enrols the authenticator: the judge's logins then find a session
    return agent


def browse(agent: StaffAgent, server: IdpServer, url: str) -> str:
    """The person's browser: follow the provider's redirects until one leaves it; that URL."""
    for _ in range(5):
        answer = agent.get(url, allow_redirects=False, timeout=30)
        assert answer.status_code in (302, 303), (url, answer.status_code, answer.text[:300])
        url = requests.compat.urljoin(url, answer.headers["Location"])
        if not url.startswith(server.base + "/"):
            return url
    raise AssertionError(f"the provider kept the browser: {url}")


def run_judge(folder: Path, server: IdpServer, clients: dict[str, dict[str, Any]], agent: StaffAgent) -> dict[str, Any]:
    """Run tests/oidc_certified_rp.mjs, answering its browser steps; its last line."""
    config = {"issuer": server.base, "redirect_uri": REDIRECT, "post_logout_redirect_uri": POST_LOGOUT, **clients}
    env = {**os.environ, "RP_PACKAGE_JSON": str(folder / "package.json"), "RP_CONFIG": json.dumps(config)}
    proc = subprocess.Popen([shutil.which("node") or "node", str(SCRIPT)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    watchdog = threading.Timer(RUN_SECONDS, proc.kill)
    watchdog.start()
    try:
        assert proc.stdin is not None and proc.stdout is not None
        for line in proc.stdout:
            message = json.loads(line)
            if "browse" not in message:
                proc.wait(timeout=10)
                return message  # type: ignore[no-any-return]
            proc.stdin.write(browse(agent, server, message["browse"]) + "\n")
            proc.stdin.flush()
        raise AssertionError(f"the judge ended without a result: {proc.stderr.read() if proc.stderr else ''}")
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_the_certified_relying_party_passes(openid_client: Path, server: IdpServer,
                                            clients: dict[str, dict[str, Any]], person: StaffAgent) -> None:
    outcome = run_judge(openid_client, server, clients, person)
    assert "error" not in outcome, outcome
    version, checks = outcome["result"]["version"], outcome["result"]["checks"]
    assert version.startswith("6.")
    rp, signed = clients["rp"]["client_id"], clients["signed"]["client_id"]
    assert checks["discovery"] == {"issuer": server.base, "iss_parameter": True, "userinfo_signing": ["ES256", "RS256"]}
    # RFC 9207: the answer names its issuer; a mix-up (another iss, or none) and a forged state are refused
    iss = checks["iss_parameter"]
    assert iss["present"] == server.base
    for refused, parameter in ((iss["forged_iss"], '"iss"'), (iss["missing_iss"], '"iss"'),
                               (iss["forged_state"], '"state"')):
        assert refused["code"] == "OAUTH_INVALID_RESPONSE" and parameter in refused["message"], iss
    flow = checks["code_flow"]
    assert flow["sub"] == person.uid and flow["iss"] == server.base and flow["aud"] == rp and flow["refresh_token"]
    assert flow["acr"] == "urn:tessera:acr:pwd+otp" and flow["amr"] == ["pwd", "otp"]
    assert checks["userinfo_json"] == {"sub": person.uid, "email": f"{person.uid}@example.gov.cn"}
    # OIDC Core 5.3.2: signed, iss and aud (checked by the library, signature by kid from the JWKS)
    assert checks["userinfo_signed"] == {"sub": person.uid, "iss": server.base, "aud": signed, "alg": "RS256"}
    misdirected = checks["userinfo_signed_to_plain_client"]  # another client's signed answer: its aud
    assert misdirected["code"] == "OAUTH_JWT_CLAIM_COMPARISON_FAILED" and '"aud"' in misdirected["message"], misdirected
    assert checks["refresh"] == {"rotated": True, "userinfo": person.uid}
    # RFC 7009 then RFC 7662: the revoked access token refused at userinfo, inactive at introspection
    revoked = checks["revocation_access"]
    assert revoked["introspection_before"] == {"active": True, "sub": person.uid, "client_id": rp}
    assert revoked["userinfo_after"]["error"] == "invalid_token" and revoked["introspection_after"] is False
    assert checks["revocation_refresh"]["refresh_after"]["error"] == "invalid_grant"
    assert checks["revocation_refresh"]["introspection_after"] is False
    # RP-initiated logout ends every token of the session, the other application's too
    logout = checks["logout"]
    assert logout["redirected"] and logout["introspection_before"] is True
    assert logout["introspection_after"] is False and logout["other_client_after"] is False
    assert logout["userinfo_after"]["error"] == "invalid_token" and logout["refresh_after"]["error"] == "invalid_grant"


def test_signed_userinfo_names_its_key(server: IdpServer, clients: dict[str, dict[str, Any]],
                                       person: StaffAgent) -> None:
    """The signed userinfo answer read without the judge: ``application/jwt`` with ``kid`` in its
    header naming a JWKS key of its alg, ``iss`` and ``aud`` (OIDC Core 5.3.2); the plain client
    still gets JSON; an algorithm discovery does not advertise cannot be registered."""
    signed = clients["signed"]
    verifier, challenge = pkce()
    answer = person.get(server.url("/oidc/authorize"), allow_redirects=False, params={
        "response_type": "code", "client_id": signed["client_id"], "redirect_uri": REDIRECT, "scope": "openid profile",
        "code_challenge": challenge, "code_challenge_method": "S256"})
    tokens = exchange(server, signed, query_of(answer.headers["Location"])["code"], verifier).json()
    info = requests.get(server.url("/oidc/userinfo"), headers={"Authorization": f"Bearer {tokens['access_token']}"},
                        timeout=10)
    assert info.status_code == 200 and info.headers["Content-Type"] == "application/jwt"
    assert info.headers["Cache-Control"] == "no-store"
    header = jwt.get_unverified_header(info.text)
    assert header["alg"] == "RS256" and header["kid"]
    key = jwt.PyJWKClient(server.url("/oidc/jwks.json"), cache_keys=False).get_signing_key(header["kid"])
    claims = jwt.decode(info.text, key.key, algorithms=["RS256"], audience=signed["client_id"], issuer=server.base)
    assert claims["sub"] == person.uid and claims["name"]
    shown = json.loads(server.cli("client", "show", signed["client_id"], "--json").stdout)
    assert shown["userinfo_signed_response_alg"] == "RS256"
    refused = server.cli("client", "add", "HS", "--redirect-uri", REDIRECT, "--userinfo-alg", "HS256", check=False)
    assert refused.returncode == 2 and b"HS256" in refused.stderr
