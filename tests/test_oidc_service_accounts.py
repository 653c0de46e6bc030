"""Service accounts: OAuth 2.0 client credentials (RFC 6749 section 4.4) from the IdP, accepted by
the verification API. Judged by an independent client: requests for HTTP, PyJWT for JOSE, against
the running service (gunicorn), a real slapd and the CLI as an administrator runs it."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec

from tests.fixtures_admin import *  # noqa: F401,F403
from tests.fixtures_admin import IdpServer, audit_entries, audit_tip
from tests.fixtures_operators import operator_tokens, run_as  # noqa: F401
from tests.fixtures_web import TESSERA
from tests.servers import free_port, running_server, wait_healthy

GRANT = {"grant_type": "client_credentials"}
#: the administrators' operator tokens (`tessera admin login`), for the --as commands
TOKENS: dict[str, str] = {}


@pytest.fixture(autouse=True)
def _logged_in_operators(operator_tokens: dict[str, str]) -> None:
    TOKENS.update(operator_tokens)


def add_service(idp: IdpServer, admin: str, name: str, *extra: str) -> dict[str, Any]:
    out = run_as(idp, TOKENS, "service", "add", name, "--as", admin, "--json", *extra)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def token_for(base: str, account: dict[str, Any], **form: str) -> requests.Response:
    """client_secret_basic (RFC 6749 section 2.3.1)."""
    return requests.post(base + "/oidc/token", data={**GRANT, **form}, timeout=10,
                         auth=(account["client_id"], account["client_secret"]))


def some_certificate(idp: IdpServer) -> str:
    chain = idp.cli("ca", "export-chain", "--ca", "staff").stdout.decode()
    return chain[:chain.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")] + "\n"


def verify(base: str, token: str, certificate: str) -> requests.Response:
    return requests.post(base + "/api/v1/certificates/verify", json={"certificate": certificate, "purpose": "service"},
                         headers={"Authorization": "Bearer " + token}, timeout=30)


def test_token_from_the_idp_is_accepted_by_the_api_and_audited(idp: IdpServer, admins: dict[str, str]) -> None:
    discovery = requests.get(idp.url("/.well-known/openid-configuration"), timeout=10).json()
    assert "client_credentials" in discovery["grant_types_supported"] and "verify" in discovery["scopes_supported"]
    since = audit_tip(idp)
    account = add_service(idp, admins["system-admin"], "Tax Office batch")
    assert account["grant_types"] == ["client_credentials"] and account["scope"] == "verify"
    assert account["client_secret"] and account["token_endpoint"] == idp.url("/oidc/token")
    answer = token_for(idp.base, account)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Cache-Control"] == "no-store"
    token = answer.json()
    assert token["token_type"].lower() == "bearer" and "refresh_token" not in token
    assert 0 < token["expires_in"] <= 600 and token["scope"] == "verify"
    # the access token is a JWT (RFC 9068) signed by the IdP: checked with the published JWKS
    keys = jwt.PyJWKClient(discovery["jwks_uri"])
    claims = jwt.decode(token["access_token"], keys.get_signing_key_from_jwt(token["access_token"]).key,
                        algorithms=["ES256"], audience=idp.url("/api/v1"), issuer=idp.base)
    assert claims["client_id"] == claims["sub"] == account["client_id"] and claims["scope"] == "verify"
    assert jwt.get_unverified_header(token["access_token"])["typ"] == "at+jwt"
    called = verify(idp.base, token["access_token"], some_certificate(idp))
    assert called.status_code == 200, called.text
    assert called.json()["purpose"] == "service"
    entries = audit_entries(idp, since_seq=since)
    added = [e for e in entries if e["event_type"] == "admin.service.add"]
    assert added and added[0]["subject"] == f"staff:{admins['system-admin']}" and added[0]["result"] == "success"
    assert added[0]["object"] == f"client:{account['client_id']}"
    used = [e for e in entries if e["event_type"] == "api.verify" and e["subject"] == "service:Tax Office batch"]
    assert used and account["client_id"] in used[-1]["details"]
    assert account["client_secret"] not in json.dumps(entries)  # secrets never reach the trail


def test_client_secret_post_and_private_key_jwt(idp: IdpServer, admins: dict[str, str], tmp_path: Path) -> None:
    posting = add_service(idp, admins["system-admin"], "Insurance fund", "--auth-method", "client_secret_post")
    form = requests.post(idp.url("/oidc/token"), data={**GRANT, "client_id": posting["client_id"],
                                                       "client_secret": posting["client_secret"]}, timeout=10)
    assert form.status_code == 200, form.text
    assert token_for(idp.base, posting).status_code == 401  # registered for client_secret_post, not basic

    key = ec.generate_private_key(ec.SECP256R1())
    public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    public.update(kid="svc-key-1", alg="ES256", use="sig")
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [public]}))
    signed = add_service(idp, admins["system-admin"], "Land registry", "--auth-method", "private_key_jwt",
                         "--jwks", str(tmp_path / "jwks.json"))
    assert signed["client_secret"] is None
    now = int(time.time())
    assertion = jwt.encode({"iss": signed["client_id"], "sub": signed["client_id"], "aud": idp.url("/oidc/token"),
                            "jti": str(uuid.uuid4()), "iat": now, "exp": now + 60}, key, algorithm="ES256",
                           headers={"kid": "svc-key-1"})
    answer = requests.post(idp.url("/oidc/token"), data={
        **GRANT, "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion}, timeout=10)
    assert answer.status_code == 200, answer.text
    assert verify(idp.base, answer.json()["access_token"], some_certificate(idp)).status_code == 200


def test_wrong_scope_and_wrong_tokens_are_refused(idp: IdpServer, admins: dict[str, str]) -> None:
    account = add_service(idp, admins["system-admin"], "Statistics office")
    asked = token_for(idp.base, account, scope="verify openid")
    assert asked.status_code == 400 and asked.json()["error"] == "invalid_scope"
    assert token_for(idp.base, account, scope="roles").json()["error"] == "invalid_scope"
    wrong_secret = requests.post(idp.url("/oidc/token"), data=GRANT, auth=(account["client_id"], "not-the-secret"),
                                 timeout=10)
    assert wrong_secret.status_code == 401 and wrong_secret.json()["error"] == "invalid_client"
    # a relying party (authorization code client) may not use the grant
    rp = idp.add_client("Portal", "http://127.0.0.1:9/cb")
    refused = requests.post(idp.url("/oidc/token"), data=GRANT, auth=(rp["client_id"], rp["client_secret"]), timeout=10)
    assert refused.status_code in (400, 401) and refused.json()["error"] in ("unauthorized_client", "invalid_client")
    # a service account has no authorization endpoint
    page = requests.get(idp.url("/oidc/authorize"), params={"client_id": account["client_id"], "response_type": "code",
                                                            "redirect_uri": "http://127.0.0.1:9/cb", "scope": "openid"},
                        allow_redirects=False, timeout=10)
    assert page.status_code >= 400
    certificate = some_certificate(idp)
    token = token_for(idp.base, account).json()["access_token"]
    head, body, signature = token.split(".")
    assert verify(idp.base, f"{head}.{body}.{signature[::-1]}", certificate).status_code == 401  # forged
    assert verify(idp.base, "opaque-" + uuid.uuid4().hex, certificate).status_code == 401
    other = ec.generate_private_key(ec.SECP256R1())
    claims = jwt.decode(token, options={"verify_signature": False})
    self_made = jwt.encode(claims, other, algorithm="ES256", headers={"typ": "at+jwt", "kid": "made-up"})
    assert verify(idp.base, self_made, certificate).status_code == 401


def test_token_without_the_verify_scope_is_403(idp: IdpServer, admins: dict[str, str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The scope check itself: a token signed with the IdP's own key for the API but without
    ``verify`` (the token endpoint never issues one, so the key is used here directly)."""
    from joserfc import jwt as jose_jwt

    from idp.deployment import Deployment
    from idp.settings import Settings

    for name, value in idp.env.items():
        if name.startswith(("TESSERA_", "SOFTHSM2_")):
            monkeypatch.setenv(name, value)
    # the deployment points SoftHSM2 at its home's tokens (SOFTHSM2_CONF); undone after the test
    monkeypatch.delenv("SOFTHSM2_CONF", raising=False)
    deployment = Deployment(Settings.from_env(str(idp.home)))
    try:
        kid, key = deployment.signing_keys.signing_key("ES256")
    finally:
        deployment.close()
    account = add_service(idp, admins["system-admin"], "Scope tester")
    now = int(time.time())
    claims = {"iss": idp.base, "aud": idp.url("/api/v1"), "sub": account["client_id"],
              "client_id": account["client_id"], "scope": "openid", "iat": now, "exp": now + 120, "jti": uuid.uuid4().hex}
    token = jose_jwt.encode({"alg": "ES256", "kid": kid, "typ": "at+jwt"}, claims, key)
    answer = verify(idp.base, token, some_certificate(idp))
    assert answer.status_code == 403, answer.text
    assert 'error="insufficient_scope"' in answer.headers["WWW-Authenticate"]
    assert answer.headers["Content-Type"].startswith("application/problem+json")
    elsewhere = jose_jwt.encode({"alg": "ES256", "kid": kid, "typ": "at+jwt"},
                                {**claims, "scope": "verify", "aud": "https://elsewhere.example/api/v1"}, key)
    assert verify(idp.base, elsewhere, some_certificate(idp)).status_code == 401  # audience checked


def test_removed_account_is_refused_at_once(idp: IdpServer, admins: dict[str, str]) -> None:
    account = add_service(idp, admins["system-admin"], "Old pension system")
    token = token_for(idp.base, account).json()["access_token"]
    certificate = some_certificate(idp)
    assert verify(idp.base, token, certificate).status_code == 200
    listed = json.loads(run_as(idp, TOKENS, "service", "list", "--as", admins["system-admin"], "--json").stdout)
    assert account["client_id"] in {a["client_id"] for a in listed}
    since = audit_tip(idp)
    removed = run_as(idp, TOKENS, "service", "remove", account["client_id"], "--as", admins["system-admin"], "--json")
    assert json.loads(removed.stdout) == {"removed": account["client_id"]}
    refused = verify(idp.base, token, certificate)  # the next call, a token that has not expired
    assert refused.status_code == 401 and "removed" in refused.json()["detail"]
    again_token = token_for(idp.base, account)
    assert again_token.status_code == 401, again_token.text
    entries = [e for e in audit_entries(idp, since_seq=since) if e["event_type"] == "admin.service.remove"]
    assert entries and entries[0]["result"] == "success" and entries[0]["object"] == f"client:{account['client_id']}"
    again = run_as(idp, TOKENS, "service", "remove", account["client_id"], "--as", admins["system-admin"], check=False)
    assert again.returncode == 1 and "no service account" in again.stderr.decode()


def test_only_the_system_administrator_manages_service_accounts(idp: IdpServer, admins: dict[str, str]) -> None:
    since = audit_tip(idp)
    for role in ("security-admin", "auditor", "officer"):
        refused = run_as(idp, TOKENS, "service", "add", "Shadow service", "--as", admins[role], check=False)
        assert refused.returncode == 3, refused.stderr
        assert "refused" in refused.stderr.decode() and "Traceback" not in refused.stderr.decode()
        assert run_as(idp, TOKENS, "service", "list", "--as", admins[role], check=False).returncode == 3
    kept = add_service(idp, admins["system-admin"], "Kept service")
    assert run_as(idp, TOKENS, "service", "remove", kept["client_id"], "--as", admins["security-admin"], check=False).returncode == 3
    assert run_as(idp, TOKENS, "service", "add", "Nobody's", "--as", "no-such-user", check=False).returncode == 4
    refusals = [e for e in audit_entries(idp, since_seq=since) if e["event_type"].startswith("admin.service.")
                and e["result"] == "refused"]
    assert {e["subject"] for e in refusals} >= {f"staff:{admins[r]}" for r in ("security-admin", "auditor", "officer")}
    names = [a["name"] for a in json.loads(run_as(idp, TOKENS, "service", "list", "--as", admins["system-admin"], "--json").stdout)]
    assert "Shadow service" not in names and "Kept service" in names
    bad = run_as(idp, TOKENS, "service", "add", "x" * 300, "--as", admins["system-admin"], check=False)
    assert bad.returncode == 1 and "at most 200" in bad.stderr.decode()
    assert idp.cli("service", "add", "--help").returncode == 0


def test_client_add_and_remove_are_audited_with_the_change(idp: IdpServer) -> None:
    since = audit_tip(idp)
    rp = idp.add_client("Audited RP", "http://127.0.0.1:9/cb")
    idp.cli("client", "remove", rp["client_id"])
    entries = [(e["event_type"], e["object"], e["subject_role"]) for e in audit_entries(idp, since_seq=since)
               if e["event_type"] in ("client.add", "client.remove")]
    assert entries == [("client.add", f"client:{rp['client_id']}", "operator"),
                       ("client.remove", f"client:{rp['client_id']}", "operator")]


@contextlib.contextmanager
def second_server(idp: IdpServer, **env: str) -> Iterator[str]:
    """Another `tessera serve` (one worker) on the same home with extra environment; its base URL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with running_server([TESSERA, "serve", "--port", str(port), "--workers", "1"], port,
                        idp.home.parent / f"serve-{port}.log", env={**idp.env, "TESSERA_PUBLIC_URL": base, **env}):
        wait_healthy(base + "/healthz")
        yield base


def test_api_entries_take_part_in_the_trail_checkpoints(idp: IdpServer, admins: dict[str, str]) -> None:
    """The API's audit entries are appended by the deployment's trail, which makes a signed
    checkpoint every N entries (here 5), also when the Nth entry is an API call's."""
    with second_server(idp, TESSERA_AUDIT_CHECKPOINT_EVERY="5") as base:
        account = add_service(idp, admins["system-admin"], "Checkpointed service")
        token = token_for(base, account).json()["access_token"]
        certificate = some_certificate(idp)
        conn = sqlite3.connect(f"file:{idp.home / 'tessera.db'}?mode=ro", uri=True, timeout=30)
        try:
            before = conn.execute("SELECT count(*) FROM audit_checkpoint").fetchone()[0]
            for _ in range(12):  # one after the other: one entry each
                assert verify(base, token, certificate).status_code == 200
            after = conn.execute("SELECT count(*) FROM audit_checkpoint").fetchone()[0]
        finally:
            conn.close()
    assert after >= before + 2


def test_rate_limit_is_per_service_account_and_follows_the_runtime_setting(idp: IdpServer,
                                                                          admins: dict[str, str]) -> None:
    """A second server on the same home, burst 3, one worker, the rate set to 2 requests/s at run
    time by the system administrator: one account spending its budget leaves another's untouched;
    a higher rate set while the server runs is in force within a few seconds, no restart."""
    sysadmin = admins["system-admin"]
    run_as(idp, TOKENS, "config", "set", "api.rate_per_second", "2", "--as", sysadmin)
    try:
        with second_server(idp, TESSERA_API_RATE_BURST="3") as base:
            _rate_limited(idp, sysadmin, base)
    finally:
        run_as(idp, TOKENS, "config", "set", "api.rate_per_second", "100", "--as", sysadmin)


def _rate_limited(idp: IdpServer, sysadmin: str, base: str) -> None:
    """Per-account budgets at 2/s (burst 3) on ``base``, then a higher rate set at run time."""
    busy = add_service(idp, sysadmin, "Busy service")
    quiet = add_service(idp, sysadmin, "Quiet service")
    busy_token = token_for(base, busy).json()["access_token"]
    quiet_token = token_for(base, quiet).json()["access_token"]
    certificate = some_certificate(idp)
    codes = [verify(base, busy_token, certificate).status_code for _ in range(6)]
    assert codes[:3] == [200, 200, 200] and 429 in codes[3:]
    limited = verify(base, busy_token, certificate)
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    assert "2/s" in limited.json()["detail"]
    assert verify(base, quiet_token, certificate).status_code == 200
    assert verify(idp.base, busy_token, certificate).status_code == 401  # minted for the other server's API
    run_as(idp, TOKENS, "config", "set", "api.rate_per_second", "1000", "--as", sysadmin)
    time.sleep(2.5)  # the workers' runtime-settings cache
    assert [verify(base, busy_token, certificate).status_code for _ in range(8)] == [200] * 8
