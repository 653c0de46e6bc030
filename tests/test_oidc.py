"""The OpenID Connect provider judged by an independent client: requests for HTTP, PyJWT for
JOSE (not Authlib, which the server uses). Against the running service and a real slapd."""

from __future__ import annotations

import base64
import datetime
import hashlib
import html
import json
import re
import secrets
import sqlite3
import time
import uuid
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec

from tests.fixtures_web import *  # noqa: F401,F403
from tests.fixtures_web import PASSWORD, IdpServer, StaffAgent, csrf_of, new_uid, query_of

REDIRECT = "http://127.0.0.1:9/callback"  # never contacted: the tests read the Location header
SCOPE = "openid profile email department roles"


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


@pytest.fixture(scope="module")
def client(idp: IdpServer) -> dict[str, Any]:
    return idp.add_client("Payroll", REDIRECT, "--trusted", "--post-logout-redirect-uri", "http://127.0.0.1:9/bye")


@pytest.fixture()
def agent(idp: IdpServer, staff_user: tuple[str, str]) -> StaffAgent:
    a = StaffAgent(idp, *staff_user)
    a.login()
    return a


def authorize(agent: requests.Session, idp: IdpServer, client_id: str, challenge: str | None, **extra: str) -> requests.Response:
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT, "scope": SCOPE,
              "state": secrets.token_urlsafe(8), "nonce": secrets.token_urlsafe(8)}
    if challenge:
        params.update(code_challenge=challenge, code_challenge_method="S256")
    params.update(extra)
    return agent.get(idp.url("/oidc/authorize"), params=params, allow_redirects=False)


def code_of(response: requests.Response) -> str:
    assert response.status_code == 302, response.text[:500]
    assert response.headers["Location"].startswith(REDIRECT), response.headers["Location"]
    query = query_of(response.headers["Location"])
    assert "code" in query, query
    return query["code"]


def exchange(idp: IdpServer, client: dict[str, Any], code: str, verifier: str | None, redirect_uri: str = REDIRECT) -> requests.Response:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
    if verifier:
        data["code_verifier"] = verifier
    return requests.post(idp.url("/oidc/token"), data=data, auth=(client["client_id"], client["client_secret"]), timeout=10)


def verify_id_token(idp: IdpServer, token: str, audience: str, algorithms: tuple[str, ...] = ("ES256",)) -> dict[str, Any]:
    config = requests.get(idp.url("/.well-known/openid-configuration"), timeout=10).json()
    keys = jwt.PyJWKClient(config["jwks_uri"], cache_keys=False)
    key = keys.get_signing_key_from_jwt(token)
    return jwt.decode(token, key.key, algorithms=list(algorithms), audience=audience, issuer=config["issuer"])  # type: ignore[no-any-return]


def half_hash(value: str) -> str:
    digest = hashlib.sha256(value.encode()).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


def test_discovery_document(idp: IdpServer) -> None:
    response = requests.get(idp.url("/.well-known/openid-configuration"), timeout=10)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("application/json")
    config = response.json()
    assert config["issuer"] == idp.base
    for name, path in (("authorization_endpoint", "/oidc/authorize"), ("token_endpoint", "/oidc/token"),
                       ("userinfo_endpoint", "/oidc/userinfo"), ("jwks_uri", "/oidc/jwks.json"),
                       ("end_session_endpoint", "/oidc/logout")):
        assert config[name] == idp.base + path
    assert config["response_types_supported"] == ["code"]
    assert config["code_challenge_methods_supported"] == ["S256"]
    assert set(config["id_token_signing_alg_values_supported"]) == {"ES256", "RS256"}
    assert {"client_secret_basic", "client_secret_post", "private_key_jwt"} <= set(config["token_endpoint_auth_methods_supported"])
    assert {"none", "login"} <= set(config["prompt_values_supported"])
    assert "public" in config["subject_types_supported"]
    jwks = requests.get(config["jwks_uri"], timeout=10).json()
    assert {k["alg"] for k in jwks["keys"]} >= {"ES256", "RS256"}
    assert all("d" not in k and "p" not in k for k in jwks["keys"]), "private key material in the JWKS"


def test_code_flow_id_token_and_userinfo(idp: IdpServer, client: dict[str, Any], agent: StaffAgent) -> None:
    verifier, challenge = pkce()
    response = authorize(agent, idp, client["client_id"], challenge, nonce="n-0S6_WzA2Mj")
    query = query_of(response.headers["Location"])
    assert query["state"]
    token = exchange(idp, client, code_of(response), verifier)
    assert token.status_code == 200, token.text
    assert token.headers.get("Cache-Control") == "no-store"
    body = token.json()
    assert body["token_type"].lower() == "bearer" and body["refresh_token"]
    claims = verify_id_token(idp, body["id_token"], client["client_id"])
    assert claims["sub"] == agent.uid
    assert claims["nonce"] == "n-0S6_WzA2Mj"
    assert claims["at_hash"] == half_hash(body["access_token"])
    assert claims["amr"] == ["pwd", "otp"] and claims["acr"]
    assert abs(claims["auth_time"] - time.time()) < 120
    assert claims["email"].startswith(agent.uid + "@") and claims["department"] == "finance"
    assert "auditors" in claims["roles"]
    info = requests.get(idp.url("/oidc/userinfo"), headers={"Authorization": f"Bearer {body['access_token']}"}, timeout=10)
    assert info.status_code == 200, info.text
    data = info.json()
    assert data["sub"] == agent.uid and data["name"] and data["email"] == claims["email"]
    assert data["department"] == "finance" and "auditors" in data["roles"]
    bad = requests.get(idp.url("/oidc/userinfo"), headers={"Authorization": "Bearer not-a-token"}, timeout=10)
    assert bad.status_code == 401


def test_code_used_twice_is_refused_and_ends_its_tokens(idp: IdpServer, client: dict[str, Any], agent: StaffAgent) -> None:
    verifier, challenge = pkce()
    code = code_of(authorize(agent, idp, client["client_id"], challenge))
    first = exchange(idp, client, code, verifier)
    assert first.status_code == 200
    second = exchange(idp, client, code, verifier)
    assert second.status_code == 400 and second.json()["error"] == "invalid_grant"
    # RFC 6749 4.1.2: the tokens issued from the code are revoked
    info = requests.get(idp.url("/oidc/userinfo"), headers={"Authorization": f"Bearer {first.json()['access_token']}"}, timeout=10)
    assert info.status_code == 401


def test_wrong_redirect_uri_refused(idp: IdpServer, client: dict[str, Any], agent: StaffAgent) -> None:
    verifier, challenge = pkce()
    for wrong in ("http://127.0.0.1:9/callback/", "http://127.0.0.1:9/callback?x=1", "https://evil.example/callback"):
        response = authorize(agent, idp, client["client_id"], challenge, redirect_uri=wrong)
        assert response.status_code == 400, (wrong, response.status_code)
        assert "Location" not in response.headers  # never redirected to an unregistered URI
    code = code_of(authorize(agent, idp, client["client_id"], challenge))
    token = exchange(idp, client, code, verifier, redirect_uri="http://127.0.0.1:9/other")
    assert token.status_code == 400 and token.json()["error"] == "invalid_grant"


def test_pkce_mismatch_refused(idp: IdpServer, client: dict[str, Any], agent: StaffAgent) -> None:
    _, challenge = pkce()
    other_verifier, _ = pkce()
    code = code_of(authorize(agent, idp, client["client_id"], challenge))
    token = exchange(idp, client, code, other_verifier)
    assert token.status_code == 400 and token.json()["error"] == "invalid_grant"
    # plain is not offered
    response = authorize(agent, idp, client["client_id"], None, code_challenge="x" * 43, code_challenge_method="plain")
    assert response.status_code == 302 and query_of(response.headers["Location"])["error"] == "invalid_request"


def test_expired_code_refused(idp: IdpServer, client: dict[str, Any], agent: StaffAgent) -> None:
    verifier, challenge = pkce()
    code = code_of(authorize(agent, idp, client["client_id"], challenge))
    # let the code's lifetime (60 s) pass: move its expiry into the past in the service's database
    digest = hashlib.sha256(code.encode()).hexdigest()
    past = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=1)).replace(tzinfo=None)
    with sqlite3.connect(idp.home / "tessera.db") as db:
        changed = db.execute("UPDATE idp_authorization_code SET expires_at = ? WHERE code_hash = ?",
                             (past.isoformat(sep=" "), digest)).rowcount
    assert changed == 1
    token = exchange(idp, client, code, verifier)
    assert token.status_code == 400 and token.json()["error"] == "invalid_grant"


def test_refresh_rotation_and_reuse_detection(idp: IdpServer, client: dict[str, Any], agent: StaffAgent) -> None:
    verifier, challenge = pkce()
    first = exchange(idp, client, code_of(authorize(agent, idp, client["client_id"], challenge)), verifier).json()
    auth = (client["client_id"], client["client_secret"])
    rotated = requests.post(idp.url("/oidc/token"), data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
                            auth=auth, timeout=10)
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()
    assert second["refresh_token"] != first["refresh_token"] and second["access_token"] != first["access_token"]
    ok = requests.get(idp.url("/oidc/userinfo"), headers={"Authorization": f"Bearer {second['access_token']}"}, timeout=10)
    assert ok.status_code == 200
    # the first refresh token again: reuse. Refused, and the whole family ends.
    reuse = requests.post(idp.url("/oidc/token"), data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
                          auth=auth, timeout=10)
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
    after = requests.post(idp.url("/oidc/token"), data={"grant_type": "refresh_token", "refresh_token": second["refresh_token"]},
                          auth=auth, timeout=10)
    assert after.status_code == 400 and after.json()["error"] == "invalid_grant"
    gone = requests.get(idp.url("/oidc/userinfo"), headers={"Authorization": f"Bearer {second['access_token']}"}, timeout=10)
    assert gone.status_code == 401


def test_prompt_none_without_session_is_login_required(idp: IdpServer, client: dict[str, Any]) -> None:
    _, challenge = pkce()
    response = authorize(requests.Session(), idp, client["client_id"], challenge, prompt="none", state="s-123")
    assert response.status_code == 302
    query = query_of(response.headers["Location"])
    assert response.headers["Location"].startswith(REDIRECT)
    assert query["error"] == "login_required" and query["state"] == "s-123"


def _login_form_back_to_authorize(response: requests.Response) -> str:
    """The password form answered in place by the authorization endpoint; the request it returns to."""
    assert response.status_code == 200 and 'action="/login"' in response.text, response.status_code
    match = re.search(r'name="next" value="([^"]+)"', response.text)
    assert match, "the login form carries no way back"
    back = html.unescape(match.group(1))
    assert back.startswith("/oidc/authorize?"), back
    return back


def test_no_session_shows_login_and_prompt_login_forces_it(idp: IdpServer, client: dict[str, Any], agent: StaffAgent) -> None:
    _, challenge = pkce()
    anonymous = authorize(requests.Session(), idp, client["client_id"], challenge)
    assert "Location" not in anonymous.headers
    assert query_of(_login_form_back_to_authorize(anonymous))["client_id"] == client["client_id"]
    # logged in, but prompt=login and max_age=0 both ask for a fresh login; the way back does not ask again
    for extra in ({"prompt": "login"}, {"max_age": "0"}):
        time.sleep(1.1)
        back = query_of(_login_form_back_to_authorize(authorize(agent, idp, client["client_id"], challenge, **extra)))
        assert "prompt" not in back and "max_age" not in back, extra
    # prompt=none with a session: a code at once
    assert code_of(authorize(agent, idp, client["client_id"], challenge, prompt="none"))


def test_wrong_client_secret_and_unknown_client(idp: IdpServer, client: dict[str, Any], agent: StaffAgent) -> None:
    verifier, challenge = pkce()
    code = code_of(authorize(agent, idp, client["client_id"], challenge))
    wrong = requests.post(idp.url("/oidc/token"), data={"grant_type": "authorization_code", "code": code,
                                                       "redirect_uri": REDIRECT, "code_verifier": verifier},
                          auth=(client["client_id"], "wrong-secret"), timeout=10)
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    unknown = authorize(agent, idp, "no-such-client", challenge)
    assert unknown.status_code == 400 and "Location" not in unknown.headers


def test_public_client_needs_s256(idp: IdpServer, agent: StaffAgent) -> None:
    public = idp.add_client("Mobile", REDIRECT, "--auth-method", "none", "--trusted")
    assert public["client_secret"] is None
    refused = authorize(agent, idp, public["client_id"], None)
    assert refused.status_code == 302 and query_of(refused.headers["Location"])["error"] == "invalid_request"
    verifier, challenge = pkce()
    code = code_of(authorize(agent, idp, public["client_id"], challenge))
    token = requests.post(idp.url("/oidc/token"), data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                                                       "client_id": public["client_id"], "code_verifier": verifier}, timeout=10)
    assert token.status_code == 200, token.text
    verify_id_token(idp, token.json()["id_token"], public["client_id"])


def test_client_secret_post_and_rs256(idp: IdpServer, agent: StaffAgent) -> None:
    rp = idp.add_client("Archive", REDIRECT, "--auth-method", "client_secret_post", "--id-token-alg", "RS256", "--trusted")
    verifier, challenge = pkce()
    code = code_of(authorize(agent, idp, rp["client_id"], challenge))
    basic = requests.post(idp.url("/oidc/token"), data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                                                       "code_verifier": verifier}, auth=(rp["client_id"], rp["client_secret"]), timeout=10)
    assert basic.status_code == 401  # registered for client_secret_post only
    code = code_of(authorize(agent, idp, rp["client_id"], challenge))
    token = requests.post(idp.url("/oidc/token"), data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                                                       "code_verifier": verifier, "client_id": rp["client_id"],
                                                       "client_secret": rp["client_secret"]}, timeout=10)
    assert token.status_code == 200, token.text
    id_token = token.json()["id_token"]
    assert jwt.get_unverified_header(id_token)["alg"] == "RS256"
    assert verify_id_token(idp, id_token, rp["client_id"], ("RS256",))["sub"] == agent.uid


def test_private_key_jwt(idp: IdpServer, agent: StaffAgent, tmp_path) -> None:  # type: ignore[no-untyped-def]
    key = ec.generate_private_key(ec.SECP256R1())
    public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    public.update(kid="rp-key-1", alg="ES256", use="sig")
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [public]}))
    rp = idp.add_client("Registry", REDIRECT, "--auth-method", "private_key_jwt", "--jwks", str(tmp_path / "jwks.json"), "--trusted")
    verifier, challenge = pkce()

    def assertion(jti: str) -> str:
        now = int(time.time())
        return jwt.encode({"iss": rp["client_id"], "sub": rp["client_id"], "aud": idp.url("/oidc/token"), "jti": jti,
                           "iat": now, "exp": now + 60}, key, algorithm="ES256", headers={"kid": "rp-key-1"})

    def token_request(code: str, signed: str) -> requests.Response:
        return requests.post(idp.url("/oidc/token"), data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": verifier,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", "client_assertion": signed}, timeout=10)

    jti = str(uuid.uuid4())
    ok = token_request(code_of(authorize(agent, idp, rp["client_id"], challenge)), assertion(jti))
    assert ok.status_code == 200, ok.text
    replay = token_request(code_of(authorize(agent, idp, rp["client_id"], challenge)), assertion(jti))
    assert replay.status_code in (400, 401) and replay.json()["error"] == "invalid_client"
    other_key = ec.generate_private_key(ec.SECP256R1())
    forged = jwt.encode({"iss": rp["client_id"], "sub": rp["client_id"], "aud": idp.url("/oidc/token"), "jti": str(uuid.uuid4()),
                         "exp": int(time.time()) + 60}, other_key, algorithm="ES256", headers={"kid": "rp-key-1"})
    bad = token_request(code_of(authorize(agent, idp, rp["client_id"], challenge)), forged)
    assert bad.status_code in (400, 401) and bad.json()["error"] == "invalid_client"


def test_consent_for_untrusted_client(idp: IdpServer, agent: StaffAgent) -> None:
    rp = idp.add_client("Third party", REDIRECT)
    _, challenge = pkce()
    page = authorize(agent, idp, rp["client_id"], challenge, prompt="none")
    assert page.status_code == 302 and query_of(page.headers["Location"])["error"] == "consent_required"
    page = authorize(agent, idp, rp["client_id"], challenge, ui_locales="zh-CN")
    # in the language the application asked for (OIDC ui_locales), each claim in words, no jargon
    assert page.status_code == 200 and 'id="allow">同意<' in page.text and "Third party" in page.text
    scopes = page.text.split('id="consent-scopes"')[1].split("</ul>")[0]
    assert "您的姓名" in scopes and "openid" not in scopes and "sub" not in scopes
    action = page.url.replace(idp.base, "")

    no_csrf = agent.post(idp.url(action), data={"decision": "allow"}, allow_redirects=False)
    assert no_csrf.status_code == 400
    denied = agent.post(page.url, data={"decision": "deny", "csrf_token": csrf_of(page.text)}, allow_redirects=False)
    assert query_of(denied.headers["Location"])["error"] == "access_denied"
    allowed = agent.post(page.url, data={"decision": "allow", "csrf_token": csrf_of(page.text)}, allow_redirects=False)
    assert code_of(allowed)
    assert code_of(authorize(agent, idp, rp["client_id"], challenge))  # remembered: no second question


def test_key_rotation_keeps_issued_tokens_valid(idp: IdpServer, client: dict[str, Any], agent: StaffAgent) -> None:
    verifier, challenge = pkce()
    before = exchange(idp, client, code_of(authorize(agent, idp, client["client_id"], challenge)), verifier).json()["id_token"]
    old_kid = jwt.get_unverified_header(before)["kid"]
    idp.cli("client", "rotate-key", "--alg", "ES256")
    deadline = time.monotonic() + 40
    while True:
        after = exchange(idp, client, code_of(authorize(agent, idp, client["client_id"], challenge)), verifier).json()["id_token"]
        if jwt.get_unverified_header(after)["kid"] != old_kid or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert jwt.get_unverified_header(after)["kid"] != old_kid, "the new key was not used"
    verify_id_token(idp, after, client["client_id"])
    verify_id_token(idp, before, client["client_id"])  # the retired key is still published


def test_rp_initiated_logout(idp: IdpServer, client: dict[str, Any], agent: StaffAgent) -> None:
    verifier, challenge = pkce()
    id_token = exchange(idp, client, code_of(authorize(agent, idp, client["client_id"], challenge)), verifier).json()["id_token"]
    assert agent.get(idp.url("/account"), allow_redirects=False).status_code == 200
    out = agent.get(idp.url("/oidc/logout"), params={"id_token_hint": id_token, "post_logout_redirect_uri": "http://127.0.0.1:9/bye",
                                                     "state": "bye-1"}, allow_redirects=False)
    assert out.status_code == 302 and out.headers["Location"] == "http://127.0.0.1:9/bye?state=bye-1"
    assert agent.get(idp.url("/account"), allow_redirects=False).status_code == 302  # session ended
    unregistered = agent.get(idp.url("/oidc/logout"), params={"id_token_hint": id_token, "post_logout_redirect_uri": "https://evil.example/"},
                             allow_redirects=False)
    assert unregistered.status_code == 200 and "Location" not in unregistered.headers


def test_client_list_and_remove(idp: IdpServer, agent: StaffAgent) -> None:
    rp = idp.add_client("Short-lived", REDIRECT, "--trusted")
    listed = json.loads(idp.cli("client", "list", "--json").stdout)
    assert rp["client_id"] in {c["client_id"] for c in listed}
    assert all("client_secret" not in c for c in listed)
    shown = idp.cli("client", "show", rp["client_id"]).stdout.decode()
    assert REDIRECT in shown and rp["client_secret"] not in shown
    verifier, challenge = pkce()
    code = code_of(authorize(agent, idp, rp["client_id"], challenge))
    assert idp.cli("client", "remove", rp["client_id"]).returncode == 0
    missing = idp.cli("client", "remove", rp["client_id"], check=False)
    assert missing.returncode == 1 and b"no client" in missing.stderr and b"Traceback" not in missing.stderr
    deadline = time.monotonic() + 10  # each worker keeps a client for at most 5 s
    while True:
        response = authorize(agent, idp, rp["client_id"], challenge)
        if response.status_code == 400 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert response.status_code == 400 and "Location" not in response.headers
    token = exchange(idp, rp, code, verifier)
    assert token.status_code in (400, 401) and token.json()["error"] in ("invalid_client", "invalid_grant")
    bad = idp.cli("client", "add", "Bad", "--redirect-uri", "http://rp.example/cb", check=False)
    assert bad.returncode == 1 and b"https" in bad.stderr


def test_refresh_refused_for_a_leaver(idp: IdpServer, client: dict[str, Any], slapd) -> None:  # type: ignore[no-untyped-def]
    from tests.fixtures_web import PASSWORD, new_uid

    uid = new_uid("leaver")
    slapd.create_user(uid, PASSWORD)
    agent = StaffAgent(idp, uid, PASSWORD)
    agent.login()
    verifier, challenge = pkce()
    first = exchange(idp, client, code_of(authorize(agent, idp, client["client_id"], challenge)), verifier).json()
    auth = (client["client_id"], client["client_secret"])
    slapd.disable(uid)
    refused = requests.post(idp.url("/oidc/token"), data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
                            auth=auth, timeout=10)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    gone = requests.get(idp.url("/oidc/userinfo"), headers={"Authorization": f"Bearer {first['access_token']}"}, timeout=10)
    assert gone.status_code == 401


def test_a_login_started_by_an_application_answers_with_the_code(idp: IdpServer, client: dict[str, Any],
                                                                 agent: StaffAgent) -> None:
    """Four requests, as Keycloak's flow: authorize (the login form in place), password (the code form in
    place), code (the authorization carried on in place: the redirect to the application), token."""
    verifier, challenge = pkce()
    browser = StaffAgent(idp, agent.uid, agent.password, agent.secret)
    browser.last_step = agent.last_step
    form = authorize(browser, idp, client["client_id"], challenge, state="st-4")
    back = _login_form_back_to_authorize(form)
    page = browser.post(idp.url("/login"), data={"username": agent.uid, "password": agent.password,
                                                 "csrf_token": csrf_of(form.text), "next": back}, allow_redirects=False)
    assert page.status_code == 200 and 'action="/login/code"' in page.text
    done = browser.post(idp.url("/login/code"), data={"code": browser.code(), "csrf_token": csrf_of(page.text)},
                        allow_redirects=False)
    assert query_of(done.headers["Location"])["state"] == "st-4"
    tokens = exchange(idp, client, code_of(done), verifier)
    assert tokens.status_code == 200, tokens.text
    claims = verify_id_token(idp, tokens.json()["id_token"], client["client_id"])
    assert claims["sub"] == agent.uid and claims["amr"] == ["pwd", "otp"]
    # the session that carried the authorization on is the logged-in one: the next request needs no login
    assert code_of(authorize(browser, idp, client["client_id"], challenge, prompt="none"))


def test_an_untrusted_application_gets_its_consent_page_at_the_authorization_endpoint(
        idp: IdpServer, agent: StaffAgent) -> None:
    """After the login the browser goes back to the authorization request, which shows the consent page
    at its own address (a reload does not post the code again; the language switch comes back to it)."""
    untrusted = idp.add_client("Leave requests", REDIRECT)
    _, challenge = pkce()
    browser = StaffAgent(idp, agent.uid, agent.password, agent.secret)
    browser.last_step = agent.last_step
    form = authorize(browser, idp, untrusted["client_id"], challenge)
    back = _login_form_back_to_authorize(form)
    page = browser.post(idp.url("/login"), data={"username": agent.uid, "password": agent.password,
                                                 "csrf_token": csrf_of(form.text), "next": back},
                        allow_redirects=False)
    done = browser.post(idp.url("/login/code"), data={"code": browser.code(), "csrf_token": csrf_of(page.text)},
                        allow_redirects=False)
    location = done.headers["Location"]
    assert done.status_code == 302 and location.startswith("/oidc/authorize?") and query_of(location) == query_of(back)
    consent = browser.get(idp.url(location), allow_redirects=False)
    assert consent.status_code == 200 and "Leave requests" in consent.text
    # the decision goes to the authorization endpoint (the page's other form is the log-out button)
    [action] = [html.unescape(a) for a in re.findall(r'<form[^>]+action="([^"]+)"', consent.text)
                if a.startswith("/oidc/authorize?")]
    allowed = browser.post(idp.url(action), data={"decision": "allow", "csrf_token": csrf_of(consent.text)},
                           allow_redirects=False)
    assert code_of(allowed)


def test_a_nonce_is_used_once_per_client(idp: IdpServer, client: dict[str, Any], agent: StaffAgent) -> None:
    _, challenge = pkce()
    nonce = secrets.token_urlsafe(16)
    assert code_of(authorize(agent, idp, client["client_id"], challenge, nonce=nonce))
    replay = authorize(agent, idp, client["client_id"], challenge, nonce=nonce)
    assert replay.status_code == 302 and query_of(replay.headers["Location"])["error"] == "invalid_request"
    assert "code" not in query_of(replay.headers["Location"])
    assert code_of(authorize(agent, idp, client["client_id"], challenge, nonce=secrets.token_urlsafe(16)))


def test_a_replayed_nonce_is_refused_after_the_login_it_interrupted(idp: IdpServer, client: dict[str, Any],
                                                                    agent: StaffAgent, slapd) -> None:  # type: ignore[no-untyped-def]
    """Without a session the login form comes first and the nonce is looked up when the request is
    validated again after the login: the replay gets an error, never a code."""
    _, challenge = pkce()
    nonce = secrets.token_urlsafe(16)
    assert code_of(authorize(agent, idp, client["client_id"], challenge, nonce=nonce))
    uid = new_uid("nonce")
    slapd.create_user(uid, PASSWORD)
    other = StaffAgent(idp, uid, PASSWORD)  # another browser, no session
    form = authorize(other, idp, client["client_id"], challenge, nonce=nonce)
    assert form.status_code == 200 and 'name="password"' in form.text
    back = html.unescape(re.search(r'name="next" value="([^"]+)"', form.text).group(1))  # type: ignore[union-attr]
    done = other.finish(other.post(idp.url("/login"), data={"username": uid, "password": PASSWORD, "next": back,
                                                          "csrf_token": csrf_of(form.text)}, allow_redirects=False),
                        back)
    assert done.status_code == 302 and done.headers["Location"].startswith(REDIRECT)
    assert query_of(done.headers["Location"])["error"] == "invalid_request"
    assert "code" not in query_of(done.headers["Location"])
