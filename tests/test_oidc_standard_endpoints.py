"""The provider's standard endpoints judged by an independent client (requests for HTTP, PyJWT for
JOSE): RFC 9207 ``iss`` on authorization responses, RFC 8414 metadata, RFC 6750 userinfo
challenges, RFC 7009 revocation and RFC 7662 introspection. Against the running service."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
import requests

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
