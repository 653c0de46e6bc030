"""The revocation, introspection, userinfo and token endpoints fuzzed in process
(``app.test_client()``): no input gives a 5xx, every answer is JSON, CORS never answers an origin
that is not a public client's (issue 17: "no 5xx on any input; bad requests are RFC 6749 section
5.2 errors")."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Home
from tests.servers import run_tessera

FUZZ = settings(max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
SPA = "http://127.0.0.1:7100"


@dataclass
class Target:
    client: Any
    confidential: dict[str, Any]
    public: dict[str, Any]
    gateway: dict[str, Any]


@pytest.fixture(scope="module")
def target(home: Home) -> Iterator[Target]:
    """The session's `tessera init` home with three clients; the app built in this process."""
    env = home.env

    def add(name: str, *extra: str) -> dict[str, Any]:
        return json.loads(run_tessera(env, "client", "add", f"{name}-{os.getpid()}", "--json", *extra).stdout)  # type: ignore[no-any-return]

    confidential = add("fuzz-rp", "--redirect-uri", "http://127.0.0.1:7000/cb")
    public = add("fuzz-spa", "--redirect-uri", SPA + "/cb", "--auth-method", "none")
    gateway = add("fuzz-gateway", "--redirect-uri", "http://127.0.0.1:7200/cb", "--introspection")
    saved = {k: v for k, v in os.environ.items() if k.startswith(("TESSERA_", "SOFTHSM2_"))}
    for name in saved:
        del os.environ[name]
    os.environ.update({k: v for k, v in env.items() if k.startswith(("TESSERA_", "SOFTHSM2_"))})
    from idp.app import create_app
    from idp.settings import Settings

    app = create_app(Settings.from_env(home.path, env))
    try:
        yield Target(app.test_client(), confidential, public, gateway)
    finally:
        app.extensions["tessera"].close()
        for name in [k for k in os.environ if k.startswith(("TESSERA_", "SOFTHSM2_"))]:
            del os.environ[name]
        os.environ.update(saved)


text = st.text(st.characters(codec="utf-8"), max_size=60)
form_names = st.sampled_from(["token", "token_type_hint", "client_id", "client_secret", "client_assertion",
                              "client_assertion_type", "grant_type", "refresh_token", "code", "access_token"])


def _authorization(target: Target, kind: str, value: str) -> dict[str, str]:
    credentials = {
        "none": None,
        "confidential": f"{target.confidential['client_id']}:{target.confidential['client_secret']}",
        "gateway": f"{target.gateway['client_id']}:{target.gateway['client_secret']}",
        "wrong": f"{target.gateway['client_id']}:{value}",
        "raw": value,
    }[kind]
    if credentials is None:
        return {}
    if kind == "raw":
        return {"Authorization": ("Basic " + credentials).encode("utf-8").decode("latin-1").replace("\r", "").replace("\n", "")}
    return {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}


def _well_formed(response: Any) -> dict[str, Any]:
    assert response.status_code < 500, (response.status_code, response.get_data()[:300])
    if response.status_code == 413:  # the body limit's problem details
        return {}
    assert response.mimetype == "application/json", (response.status_code, response.mimetype)
    body = json.loads(response.get_data())
    assert isinstance(body, dict)
    return body


@FUZZ
@given(path=st.sampled_from(["/oidc/revoke", "/oidc/introspect"]),
       form=st.dictionaries(form_names, text, max_size=5),
       who=st.sampled_from(["none", "confidential", "gateway", "wrong", "raw"]), value=text,
       public_id=st.booleans(), origin=st.sampled_from([None, SPA, "https://evil.example", "null"]))
def test_revocation_and_introspection(target: Target, path: str, form: dict[str, str], who: str, value: str,
                                      public_id: bool, origin: str | None) -> None:
    if public_id:
        form["client_id"] = target.public["client_id"]
    headers = _authorization(target, who, value)
    if origin:
        headers["Origin"] = origin
    response = target.client.post(path, data=form, headers=headers)
    body = _well_formed(response)
    assert response.status_code in (200, 400, 401, 403, 413), response.status_code
    if response.status_code == 200 and path == "/oidc/introspect":
        assert body.get("active") in (True, False)
    elif response.status_code != 200:
        assert "error" in body or response.status_code == 413
    assert "Access-Control-Allow-Origin" not in response.headers


@FUZZ
@given(path=st.sampled_from(["/oidc/token", "/oidc/userinfo"]), method=st.sampled_from(["OPTIONS", "POST", "GET"]),
       origin=st.one_of(st.sampled_from([SPA, SPA + "/", "http://127.0.0.1:7000", "https://evil.example", "null"]), text),
       authorization=st.one_of(st.none(), text.map(lambda t: "Bearer " + t)))
def test_cors_answers_public_clients_origins_only(target: Target, path: str, method: str, origin: str,
                                                  authorization: str | None) -> None:
    if path == "/oidc/token" and method == "GET":
        method = "POST"
    headers = {"Origin": origin.encode("utf-8").decode("latin-1").replace("\r", "").replace("\n", ""),
               "Access-Control-Request-Method": "POST"}
    if authorization is not None:
        headers["Authorization"] = authorization.encode("utf-8").decode("latin-1").replace("\r", "").replace("\n", "")
    response = target.client.open(path, method=method, headers=headers, data={} if method == "POST" else None)
    assert response.status_code < 500, (response.status_code, response.get_data()[:300])
    allowed = response.headers.get("Access-Control-Allow-Origin")
    assert allowed in (None, SPA) and (allowed is None or headers["Origin"] == SPA), (headers["Origin"], allowed)
    assert "Origin" in response.headers.get("Vary", "")
