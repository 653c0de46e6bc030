"""/healthz and /readyz (issue 16, item 2): readiness tells a balancer the truth, each check bounded.

Unit: a hung check fails as ``timed out`` within the probe's bound and is not started again while
it hangs; a failing check shows its class, never its message; the CRL check names a stale or
unsignable CA; 200/503 with each check's state.
Integration: the PostgreSQL stop/start drill on a served home: /readyz 503 (database failing)
while the cluster is down, no 500 anywhere meanwhile, 200 again once it is back.
"""

from __future__ import annotations

import datetime
import hashlib
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest
import requests
from asn1crypto import tsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from flask import Flask

from ca.errors import KeyUnavailable
from idp import health
from idp.health import CheckFailed, Finding, Readiness
from tests.servers import PG_BIN, TESSERA, _as_postgres, free_port, private_postgres, run_tessera, running_server
from tests.servers import tessera_env, wait_healthy


# -- unit ---------------------------------------------------------------------------------------
def _ok(_deployment: object) -> Finding:
    return Finding(True, "answers")


def test_a_hung_check_fails_in_time_and_is_not_started_twice() -> None:
    release = threading.Event()
    started = []

    def hung(_deployment: object) -> Finding:
        started.append(1)
        release.wait(30)
        return Finding(True, "late")

    readiness = Readiness(None, {"database": _ok, "directory": hung}, timeout=0.3, cache_seconds=0)  # type: ignore[arg-type]
    try:
        for _ in range(3):
            began = time.monotonic()
            findings = readiness.run()
            assert time.monotonic() - began < 1.0
            assert findings["database"].ok
            assert not findings["directory"].ok and findings["directory"].detail.startswith("timed out")
        assert len(started) == 1  # the hung one is waited for, not started again
    finally:
        release.set()
    time.sleep(0.1)
    assert readiness.run()["directory"].ok  # finished: the next probe runs it again


def test_a_failing_check_names_its_class_never_its_message() -> None:
    def leaky(_deployment: object) -> Finding:
        raise RuntimeError("password=hunter2 at ldap://10.0.0.5")

    def refused(_deployment: object) -> Finding:
        raise CheckFailed("no certificate authority")

    findings = Readiness(None, {"a": leaky, "b": refused}, timeout=2, cache_seconds=0).run()  # type: ignore[arg-type]
    assert findings["a"] == Finding(False, "unavailable (RuntimeError)", seconds=findings["a"].seconds)
    assert findings["b"].detail == "no certificate authority" and not findings["b"].ok


def test_the_crl_check_names_a_stale_or_unsignable_ca() -> None:
    now = datetime.datetime(2026, 12, 3, 12, 0, tzinfo=datetime.timezone.utc)
    next_updates = {"staff": now + datetime.timedelta(hours=20), "citizen": now - datetime.timedelta(minutes=1)}

    def current_crl(name: str) -> SimpleNamespace:
        if name == "root":
            raise KeyUnavailable("the root key is offline")
        return SimpleNamespace(next_update=next_updates[name])

    ca = SimpleNamespace(authorities=lambda: [SimpleNamespace(name=n) for n in ("root", "staff", "citizen")],
                         current_crl=current_crl)
    finding = health.check_crl(SimpleNamespace(ca=ca, now=lambda: now))  # type: ignore[arg-type]
    assert not finding.ok
    assert finding.detail == "nextUpdate passed: citizen; cannot be signed: root (KeyUnavailable)"
    assert finding.values == {"staff": 72000.0, "citizen": -60.0}
    del next_updates["citizen"]
    ca.authorities = lambda: [SimpleNamespace(name="staff")]
    assert health.check_crl(SimpleNamespace(ca=ca, now=lambda: now)) == Finding(  # type: ignore[arg-type]
        True, "nextUpdate in 72000 s or more", {"staff": 72000.0})


def test_readyz_answers_200_or_503_with_each_check() -> None:
    app = Flask(__name__)
    health.install(app, None)  # type: ignore[arg-type]
    client = app.test_client()
    app.extensions["tessera.readiness"] = Readiness(None, {"database": _ok, "crl": _ok}, cache_seconds=0)  # type: ignore[arg-type]
    answer = client.get("/readyz")
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
    assert answer.json["status"] == "ready"  # type: ignore[index]
    assert answer.json["checks"]["crl"]["status"] == "ok"  # type: ignore[index]

    def stale(_deployment: object) -> Finding:
        return Finding(False, "nextUpdate passed: staff")

    app.extensions["tessera.readiness"] = Readiness(None, {"database": _ok, "crl": stale}, cache_seconds=0)  # type: ignore[arg-type]
    answer = client.get("/readyz")
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "5"
    assert answer.json["checks"] == {  # type: ignore[index]
        "database": {"status": "ok", "detail": "answers", "seconds": answer.json["checks"]["database"]["seconds"]},  # type: ignore[index]
        "crl": {"status": "failing", "detail": "nextUpdate passed: staff",
                "seconds": answer.json["checks"]["crl"]["seconds"]}}  # type: ignore[index]
    assert client.get("/healthz").status_code == 200


# -- the PostgreSQL stop/start drill -------------------------------------------------------------
def _pg_ctl(data: str, *args: str) -> None:
    subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", data, *args]), check=True, capture_output=True,
                   timeout=60)


@pytest.fixture(scope="module")
def served_on_postgres() -> Iterator[tuple[str, str]]:
    """A home on its own PostgreSQL cluster, served with its embedded slapd: (base URL, data folder)."""
    with private_postgres() as url:
        with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as connection:
            data = str(connection.execute("SHOW data_directory").fetchone()[0])  # type: ignore[index]
        base = Path(tempfile.mkdtemp(prefix="tessera-ready-"))
        port = free_port()
        env = tessera_env(base / "home", f"http://127.0.0.1:{port}", TESSERA_DATABASE_URL=url)
        try:
            run_tessera(env, "init")
            with running_server([TESSERA, "serve", "--port", str(port), "--workers", "2"], port, base / "server.log",
                                env=env):
                wait_healthy(f"http://127.0.0.1:{port}/healthz")
                yield f"http://127.0.0.1:{port}", data
        finally:
            shutil.rmtree(base, ignore_errors=True)


def _ready(base: str) -> tuple[int, dict[str, dict[str, str]]]:
    answer = requests.get(base + "/readyz", timeout=10)
    return answer.status_code, answer.json()["checks"]


def _until(base: str, status: int, within: float) -> tuple[float, dict[str, dict[str, str]]]:
    began = time.monotonic()
    while True:
        code, checks = _ready(base)
        if code == status:
            return time.monotonic() - began, checks
        assert time.monotonic() - began < within, (code, checks)
        time.sleep(0.2)


def test_postgresql_stop_start_drill(served_on_postgres: tuple[str, str]) -> None:
    base, data = served_on_postgres
    _until(base, 200, 30)
    code, checks = _ready(base)
    assert code == 200 and set(checks) == {"database", "directory", "ca_token", "crl", "audit"}
    print(f"ready: {checks}")
    # an OCSP question (RFC 6960 section 4.1.1) about a certificate the store holds: the TSA's,
    # from a time-stamp token with its certificate (RFC 3161 section 2.4.1, certReq)
    staff = x509.load_der_x509_certificate(requests.get(base + "/ca/staff.crt", timeout=10).content)
    stamp_query = tsp.TimeStampReq({"version": 1, "message_imprint": {
        "hash_algorithm": {"algorithm": "sha256"}, "hashed_message": hashlib.sha256(b"drill").digest()},
        "cert_req": True}).dump()
    stamp = tsp.TimeStampResp.load(requests.post(base + "/tsa", data=stamp_query, timeout=15, headers={
        "Content-Type": "application/timestamp-query"}).content)
    tsa_cert = next(x509.load_der_x509_certificate(c.chosen.dump())
                    for c in stamp["time_stamp_token"]["content"]["certificates"]
                    if c.chosen.issuer.dump() == staff.subject.public_bytes())
    question = ocsp.OCSPRequestBuilder().add_certificate(tsa_cert, staff, hashes.SHA1()).build().public_bytes(
        serialization.Encoding.DER)
    before = requests.post(base + "/ocsp/staff", data=question, timeout=15,
                           headers={"Content-Type": "application/ocsp-request"})
    assert ocsp.load_der_ocsp_response(before.content).certificate_status == ocsp.OCSPCertStatus.GOOD
    _pg_ctl(data, "-m", "fast", "-w", "stop")
    try:
        took, checks = _until(base, 503, 10)
        assert checks["database"]["status"] == "failing", checks
        print(f"/readyz 503 {took:.1f} s after PostgreSQL stopped: {checks}")
        assert "psycopg" not in str(checks) and "127.0.0.1" not in str(checks)
        for path in ("/healthz", "/", "/login", "/oidc/jwks.json", "/.well-known/openid-configuration",
                     "/crl/staff.crl", "/readyz"):
            answer = requests.get(base + path, timeout=15, headers={"Accept": "application/json"})
            assert answer.status_code != 500 and "Traceback" not in answer.text, (path, answer.status_code)
        assert requests.get(base + "/healthz", timeout=5).status_code == 200  # alive: no restart wanted
        # OCSP: an unsuccessful response "tryLater" (RFC 6960 section 2.3), never an HTTP 5xx
        answer = requests.post(base + "/ocsp/staff", data=question, timeout=15,
                               headers={"Content-Type": "application/ocsp-request"})
        assert answer.status_code == 200 and answer.headers["Content-Type"] == "application/ocsp-response"
        assert ocsp.load_der_ocsp_response(answer.content).response_status == ocsp.OCSPResponseStatus.TRY_LATER
    finally:
        _pg_ctl(data, "-w", "-l", str(Path(data).parent / "pg.log"), "restart")
    took, _ = _until(base, 200, 30)
    print(f"/readyz back to 200 {took:.1f} s after PostgreSQL restarted")
