"""The provider's standard endpoints judged by an independent client (requests for HTTP, PyJWT for
JOSE): RFC 9207 ``iss`` on authorization responses, RFC 8414 metadata, RFC 6750 userinfo
challenges, RFC 7009 revocation and RFC 7662 introspection. Against the running service."""

from __future__ import annotations

import json
import secrets
import time
import uuid
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec

from tests.fixtures_web import *  # noqa: F401,F403
from tests.fixtures_web import IdpServer, StaffAgent, csrf_of, query_of
from tests.test_oidc import REDIRECT, authorize, code_of, exchange, pkce


@pytest.fixture(scope="module")
def client(idp: IdpServer) -> dict[str, Any]:
    return idp.add_client("Leave requests", REDIRECT, "--trusted")


@pytest.fixture()
def agent(idp: IdpServer, staff_user: tuple[str, str]) -> StaffAgent:
    a = StaffAgent(idp, *staff_user)
    a.login()
    return a


# -- RFC 9207: iss on every authorization response ---------------------------------------------
def test_every_authorization_response_names_the_issuer(idp: IdpServer, client: dict[str, Any],
                                                       agent: StaffAgent) -> None:
    config = requests.get(idp.url("/.well-known/openid-configuration"), timeout=10).json()
    assert config["authorization_response_iss_parameter_supported"] is True
    _, challenge = pkce()
    success = authorize(agent, idp, client["client_id"], challenge, state="s-1")
    assert code_of(success) and query_of(success.headers["Location"])["iss"] == config["issuer"]
    # errors redirected to the client: decided before Authlib's response (prompt=none), and by it
    login_required = authorize(requests.Session(), idp, client["client_id"], challenge, prompt="none", state="s-2")
    query = query_of(login_required.headers["Location"])
    assert query["error"] == "login_required" and query["iss"] == config["issuer"] and query["state"] == "s-2"
    plain = authorize(agent, idp, client["client_id"], None, code_challenge="x" * 43, code_challenge_method="plain")
    query = query_of(plain.headers["Location"])
    assert query["error"] == "invalid_request" and query["iss"] == config["issuer"]
    untrusted = idp.add_client("Third party", REDIRECT)
    page = authorize(agent, idp, untrusted["client_id"], challenge)
    denied = agent.post(page.url, data={"decision": "deny", "csrf_token": csrf_of(page.text)}, allow_redirects=False)
    query = query_of(denied.headers["Location"])
    assert query["error"] == "access_denied" and query["iss"] == config["issuer"]
    # never on a page that is not a redirect to the client (unknown client)
    assert "Location" not in authorize(agent, idp, "no-such-client", challenge).headers


# -- RFC 8414: authorization server metadata -----------------------------------------------------
def test_oauth_metadata_is_the_discovery_document(idp: IdpServer) -> None:
    oauth = requests.get(idp.url("/.well-known/oauth-authorization-server"), timeout=10)
    assert oauth.status_code == 200 and oauth.headers["Content-Type"].startswith("application/json")
    metadata = oauth.json()
    # RFC 8414 section 2: required, and the issuer is the one the document was asked of (section 3.3)
    assert metadata["issuer"] == idp.base
    for name in ("authorization_endpoint", "token_endpoint", "response_types_supported"):
        assert metadata[name], name
    assert metadata == requests.get(idp.url("/.well-known/openid-configuration"), timeout=10).json()


# -- RFC 6750 section 3: the userinfo endpoint's challenges --------------------------------------
def test_userinfo_without_a_token_is_a_bare_challenge(idp: IdpServer, client: dict[str, Any], agent: StaffAgent) -> None:
    realm = f'realm="{idp.base}"'
    for headers in ({}, {"Authorization": "Basic dXNlcjpwdw=="}, {"Authorization": "Bearer "}):
        for method in ("GET", "POST"):
            bare = requests.request(method, idp.url("/oidc/userinfo"), headers=headers, timeout=10)
            assert bare.status_code == 401, (headers, method)
            challenge = bare.headers["WWW-Authenticate"]
            assert challenge.startswith("Bearer ") and realm in challenge and "error" not in challenge, challenge
            assert "error" not in bare.json()
    invalid = requests.get(idp.url("/oidc/userinfo"), headers={"Authorization": "Bearer not-a-token"}, timeout=10)
    assert invalid.status_code == 401 and invalid.json()["error"] == "invalid_token"
    challenge = invalid.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ") and realm in challenge and 'error="invalid_token"' in challenge
    verifier, challenge_ = pkce()
    token = exchange(idp, client, code_of(authorize(agent, idp, client["client_id"], challenge_)), verifier).json()
    ok = requests.get(idp.url("/oidc/userinfo"), headers={"Authorization": f"Bearer {token['access_token']}"}, timeout=10)
    assert ok.status_code == 200 and ok.json()["sub"] == agent.uid


# -- RFC 7009: revocation --------------------------------------------------------------------------
def _tokens(idp: IdpServer, client: dict[str, Any], agent: StaffAgent) -> dict[str, Any]:
    verifier, challenge = pkce()
    response = exchange(idp, client, code_of(authorize(agent, idp, client["client_id"], challenge)), verifier)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def _userinfo(idp: IdpServer, access_token: str) -> int:
    return requests.get(idp.url("/oidc/userinfo"), headers={"Authorization": f"Bearer {access_token}"},
                        timeout=10).status_code


def _refresh(idp: IdpServer, client: dict[str, Any], refresh_token: str) -> requests.Response:
    return requests.post(idp.url("/oidc/token"), data={"grant_type": "refresh_token", "refresh_token": refresh_token},
                         auth=(client["client_id"], client["client_secret"]), timeout=10)


def test_revocation(idp: IdpServer, client: dict[str, Any], agent: StaffAgent) -> None:
    config = requests.get(idp.url("/.well-known/oauth-authorization-server"), timeout=10).json()
    assert config["revocation_endpoint"] == idp.url("/oidc/revoke")
    assert {"client_secret_basic", "client_secret_post", "private_key_jwt", "none"} <= \
        set(config["revocation_endpoint_auth_methods_supported"])
    auth = (client["client_id"], client["client_secret"])

    def revoke(data: dict[str, str], credentials: Any = auth) -> requests.Response:
        return requests.post(config["revocation_endpoint"], data=data, auth=credentials, timeout=10)

    tokens = _tokens(idp, client, agent)
    # an access token: only itself (RFC 7009 2.1); the refresh token still works
    assert revoke({"token": tokens["access_token"], "token_type_hint": "access_token"}).status_code == 200
    assert _userinfo(idp, tokens["access_token"]) == 401
    refreshed = _refresh(idp, client, tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    second = refreshed.json()
    assert _userinfo(idp, second["access_token"]) == 200
    # a refresh token (hinted wrongly: the search goes on): every token of its grant
    assert revoke({"token": second["refresh_token"], "token_type_hint": "access_token"}).status_code == 200
    assert _refresh(idp, client, second["refresh_token"]).json()["error"] == "invalid_grant"
    assert _userinfo(idp, second["access_token"]) == 401
    # unknown, revoked again, an unknown hint: 200 (section 2.2)
    for data in ({"token": "no-such-token"}, {"token": second["refresh_token"]},
                 {"token": "x", "token_type_hint": "id_token"}):
        answer = revoke(data)
        assert answer.status_code == 200 and answer.json() == {}, data
    # malformed or unauthenticated requests: RFC 6749 5.2 errors, never 5xx
    assert revoke({}).json()["error"] == "invalid_request"
    for credentials in ((client["client_id"], "wrong"), None):
        refused = revoke({"token": "x"}, credentials)
        assert refused.status_code in (400, 401) and refused.json()["error"] == "invalid_client"
    alone = requests.post(config["revocation_endpoint"], data={"token": "x", "client_id": client["client_id"]}, timeout=10)
    assert alone.status_code in (400, 401) and alone.json()["error"] == "invalid_client"  # confidential: not by id alone
    # another client's token is not this client's to revoke
    other = idp.add_client("Other", REDIRECT, "--trusted")
    third = _tokens(idp, client, agent)
    foreign = revoke({"token": third["access_token"]}, (other["client_id"], other["client_secret"]))
    assert foreign.status_code == 400 and foreign.json()["error"] == "invalid_grant"
    assert _userinfo(idp, third["access_token"]) == 200
    # a public client revokes with its client_id (RFC 7009 section 5)
    public = idp.add_client("Mobile", REDIRECT, "--auth-method", "none", "--trusted")
    verifier, challenge = pkce()
    code = code_of(authorize(agent, idp, public["client_id"], challenge))
    mobile = requests.post(idp.url("/oidc/token"), data={"grant_type": "authorization_code", "code": code,
                                                        "redirect_uri": REDIRECT, "client_id": public["client_id"],
                                                        "code_verifier": verifier}, timeout=10).json()
    gone = requests.post(config["revocation_endpoint"], data={"token": mobile["refresh_token"],
                                                             "client_id": public["client_id"]}, timeout=10)
    assert gone.status_code == 200 and _userinfo(idp, mobile["access_token"]) == 401


# -- RFC 7662: introspection -----------------------------------------------------------------------
def test_introspection(idp: IdpServer, client: dict[str, Any], agent: StaffAgent) -> None:
    config = requests.get(idp.url("/.well-known/openid-configuration"), timeout=10).json()
    endpoint = config["introspection_endpoint"]
    assert endpoint == idp.url("/oidc/introspect") and "none" not in config["introspection_endpoint_auth_methods_supported"]
    gateway = idp.add_client("API gateway", "https://gateway.example/cb", "--introspection")
    assert gateway["introspection"] is True
    auth = (gateway["client_id"], gateway["client_secret"])
    tokens = _tokens(idp, client, agent)

    def introspect(token: str, credentials: Any = auth, **extra: str) -> requests.Response:
        return requests.post(endpoint, data={"token": token, **extra}, auth=credentials, timeout=10)

    answer = introspect(tokens["access_token"])
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("application/json")
    claims = answer.json()
    assert claims["active"] is True and claims["sub"] == agent.uid and claims["client_id"] == client["client_id"]
    assert claims["iss"] == config["issuer"] and "openid" in claims["scope"].split()
    assert claims["token_type"].lower() == "bearer" and claims["exp"] > claims["iat"]
    # another client's refresh token is not the gateway's to see; the client's own is
    assert introspect(tokens["refresh_token"]).json() == {"active": False}
    own = introspect(tokens["refresh_token"], (client["client_id"], client["client_secret"]), token_type_hint="refresh_token")
    assert own.status_code == 403  # not registered for introspection (RFC 7662 2.1)
    for token in ("no-such-token", ""):
        inactive = introspect(token)
        assert inactive.status_code in (200, 400), token
    assert introspect("no-such-token").json() == {"active": False}
    requests.post(config["revocation_endpoint"], data={"token": tokens["access_token"]},
                  auth=(client["client_id"], client["client_secret"]), timeout=10)
    assert introspect(tokens["access_token"]).json() == {"active": False}
    # who may ask: authenticated (401 otherwise), and registered for it (403 otherwise)
    for credentials in (None, (gateway["client_id"], "wrong")):
        refused = introspect("x", credentials)
        assert refused.status_code == 401 and refused.json()["error"] == "invalid_client", credentials
    assert introspect("x", (client["client_id"], client["client_secret"])).status_code == 403
    bad = idp.cli("client", "add", "Public gateway", "--redirect-uri", REDIRECT, "--auth-method", "none",
                  "--introspection", check=False)
    assert bad.returncode == 1 and b"Traceback" not in bad.stderr


def test_bad_requests_to_revocation_and_introspection_are_oauth_errors(idp: IdpServer, client: dict[str, Any]) -> None:
    auth = (client["client_id"], client["client_secret"])
    for path in ("/oidc/revoke", "/oidc/introspect"):
        for kwargs in ({"data": b"\xff\xfe=\x00", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
                       {"json": {"token": "x"}}, {"data": {"token": "x" * 10_000}},
                       {"headers": {"Authorization": "Basic %%%"}}, {"headers": {"Authorization": "Basic " + secrets.token_hex(8)}}):
            answer = requests.post(idp.url(path), auth=None if "headers" in kwargs else auth, timeout=10, **kwargs)
            assert answer.status_code < 500, (path, kwargs, answer.status_code)
            body = answer.json()
            assert "error" in body or body in ({}, {"active": False}), (path, kwargs, body)
        assert requests.get(idp.url(path), timeout=10).status_code == 405


# -- CORS on the token and userinfo endpoints, for public clients' origins only -----------------------
def test_cors_for_the_origins_of_public_clients_only(idp: IdpServer, agent: StaffAgent) -> None:
    spa = "http://127.0.0.1:8765"
    public = idp.add_client("Single-page app", spa + "/cb", "--auth-method", "none", "--trusted")
    idp.add_client("Confidential", "https://confidential.example/cb", "--trusted")

    def preflight(path: str, origin: str, method: str = "POST") -> requests.Response:
        return requests.options(idp.url(path), headers={"Origin": origin, "Access-Control-Request-Method": method,
                                                        "Access-Control-Request-Headers": "content-type"}, timeout=10)

    deadline = time.monotonic() + 10  # each worker keeps the origins for at most 5 s
    while preflight("/oidc/token", spa).headers.get("Access-Control-Allow-Origin") != spa and time.monotonic() < deadline:
        time.sleep(0.5)
    for path, method in (("/oidc/token", "POST"), ("/oidc/userinfo", "GET")):
        answer = preflight(path, spa, method)
        assert answer.status_code < 300 and answer.headers["Access-Control-Allow-Origin"] == spa, path
        assert method in answer.headers["Access-Control-Allow-Methods"] and "Origin" in answer.headers["Vary"]
        for other in ("https://confidential.example", "https://evil.example", "null", "http://127.0.0.1:9999"):
            assert "Access-Control-Allow-Origin" not in preflight(path, other, method).headers, (path, other)
    # the actual requests from the page's origin
    verifier, challenge = pkce()
    back = authorize(agent, idp, public["client_id"], challenge, redirect_uri=spa + "/cb").headers["Location"]
    assert back.startswith(spa + "/cb?")
    code = query_of(back)["code"]
    token = requests.post(idp.url("/oidc/token"), headers={"Origin": spa},
                          data={"grant_type": "authorization_code", "code": code, "redirect_uri": spa + "/cb",
                                "client_id": public["client_id"], "code_verifier": verifier}, timeout=10)
    assert token.status_code == 200 and token.headers["Access-Control-Allow-Origin"] == spa
    info = requests.get(idp.url("/oidc/userinfo"), headers={"Origin": spa,
                                                            "Authorization": f"Bearer {token.json()['access_token']}"},
                        timeout=10)
    assert info.status_code == 200 and info.headers["Access-Control-Allow-Origin"] == spa
    denied = requests.get(idp.url("/oidc/userinfo"), headers={"Origin": spa}, timeout=10)
    assert denied.status_code == 401 and "WWW-Authenticate" in denied.headers["Access-Control-Expose-Headers"]
    # never on the other endpoints, and never a wildcard
    revoke = requests.post(idp.url("/oidc/revoke"), headers={"Origin": spa}, data={"token": "x", "client_id": public["client_id"]},
                           timeout=10)
    assert "Access-Control-Allow-Origin" not in revoke.headers


def test_private_key_jwt_client_revokes_and_introspects(idp: IdpServer, agent: StaffAgent, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """RFC 7523 client authentication at the revocation and introspection endpoints, the assertion's
    audience being the endpoint itself (or the token endpoint, as at the token endpoint)."""
    key = ec.generate_private_key(ec.SECP256R1())
    public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    public.update(kid="rs-key-1", alg="ES256", use="sig")
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [public]}))
    rs = idp.add_client("Records API", REDIRECT, "--auth-method", "private_key_jwt", "--jwks", str(tmp_path / "jwks.json"),
                        "--trusted", "--introspection")

    def assertion(audience: str) -> dict[str, str]:
        now = int(time.time())
        signed = jwt.encode({"iss": rs["client_id"], "sub": rs["client_id"], "aud": audience, "jti": str(uuid.uuid4()),
                             "iat": now, "exp": now + 60}, key, algorithm="ES256", headers={"kid": "rs-key-1"})
        return {"client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": signed}

    verifier, challenge = pkce()
    code = code_of(authorize(agent, idp, rs["client_id"], challenge))
    tokens = requests.post(idp.url("/oidc/token"), data={"grant_type": "authorization_code", "code": code,
                                                        "redirect_uri": REDIRECT, "code_verifier": verifier,
                                                        **assertion(idp.url("/oidc/token"))}, timeout=10).json()
    introspected = requests.post(idp.url("/oidc/introspect"), data={"token": tokens["access_token"],
                                                                    **assertion(idp.url("/oidc/introspect"))}, timeout=10)
    assert introspected.status_code == 200 and introspected.json()["active"] is True
    assert requests.post(idp.url("/oidc/revoke"), data={"token": tokens["refresh_token"],
                                                        **assertion(idp.url("/oidc/revoke"))}, timeout=10).status_code == 200
    assert _userinfo(idp, tokens["access_token"]) == 401
    bare = requests.post(idp.url("/oidc/revoke"), data={"token": tokens["access_token"], "client_id": rs["client_id"]},
                         timeout=10)
    assert bare.status_code in (400, 401) and bare.json()["error"] == "invalid_client"
