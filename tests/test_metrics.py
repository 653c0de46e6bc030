"""Prometheus metrics at /metrics (issue 16, item 3).

Integration: `tessera serve --workers 2`, a few requests of each kind, then `curl /metrics` parsed
by prometheus-client's own text-format parser: the two workers' counters added up, route templates
(never a path a client sent), OCSP by status, logins by outcome, component health, CRL nextUpdate.
Unit: access from elsewhere than the loopback address needs the home's bearer token; the
verification API's verdicts are counted one per item.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from flask import Blueprint, Flask, Response
from prometheus_client.parser import text_string_to_metric_families

from idp import metrics
from idp.health import Finding, Readiness
from tests.fixtures_web import csrf_of
from tests.servers import TESSERA, free_port, run_tessera, running_server, tessera_env, wait_healthy


def _scrape(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Every sample by name, then by its sorted labels."""
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def _total(samples: dict[tuple[tuple[str, str], ...], float], **labels: str) -> float:
    return sum(value for key, value in samples.items() if all((k, v) in key for k, v in labels.items()))


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, Path]]:
    base = Path(tempfile.mkdtemp(prefix="tessera-metrics-"))
    port = free_port()
    env = tessera_env(base / "home", f"http://127.0.0.1:{port}")
    try:
        run_tessera(env, "init")
        with running_server([TESSERA, "serve", "--port", str(port), "--workers", "2"], port, base / "server.log",
                            env=env):
            wait_healthy(f"http://127.0.0.1:{port}/healthz")
            yield f"http://127.0.0.1:{port}", base / "home"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _unknown_serial_request(base: str) -> bytes:
    """An OCSP request for a serial the staff CA never issued (CertID by hash, RFC 6960 section 4.1.1)."""
    staff = x509.load_der_x509_certificate(requests.get(base + "/ca/staff.crt", timeout=10).content)
    name_hash = hashlib.sha1(staff.subject.public_bytes()).digest()  # noqa: S324  (CertID's hash)
    key_hash = x509.SubjectKeyIdentifier.from_public_key(staff.public_key()).digest  # SHA-1 of the key's bits
    return ocsp.OCSPRequestBuilder().add_certificate_by_hash(name_hash, key_hash, 0x7E57AB1E, hashes.SHA1()) \
        .build().public_bytes(serialization.Encoding.DER)


def test_curl_metrics_parses_and_counts_every_worker(served: tuple[str, Path]) -> None:
    base, home = served
    sent = 24
    with requests.Session() as client:
        for _ in range(sent // 2):  # new connections: both workers answer some
            assert requests.get(base + "/crl/staff.crl", timeout=10).status_code == 200
            assert requests.get(base + "/nope-wangfang-110101199003070000?uid=wangfang", timeout=10).status_code == 404
        ocsp_request = _unknown_serial_request(base)
        for body in (b"\x30\x00", ocsp_request):
            answer = client.post(base + "/ocsp/staff", data=body, headers={"Content-Type": "application/ocsp-request"},
                                 timeout=10)
            assert answer.status_code == 200
        page = client.get(base + "/login", timeout=10)
        answer = client.post(base + "/login", data={"username": "nobody-here", "password": "wrong-password-1",
                                                    "csrf_token": csrf_of(page.text)}, timeout=10)
        assert answer.status_code == 401
    text = subprocess.run(["curl", "-sS", "--max-time", "10", base + "/metrics"], capture_output=True, check=True,
                          text=True).stdout
    assert "wangfang" not in text and "110101" not in text  # no path, no user name in a label
    samples = _scrape(text)
    requests_total = samples["tessera_http_requests_total"]
    assert _total(requests_total, route="/crl/<name>.crl", method="GET", status="200") == sent // 2
    assert _total(requests_total, route="unmatched", method="GET", status="404") == sent // 2
    assert _total(requests_total, route="/ocsp", method="POST", status="200") == 2
    assert _total(samples["tessera_http_request_duration_seconds_count"], route="/crl/<name>.crl") == sent // 2
    assert _total(samples["tessera_http_request_duration_seconds_bucket"], route="/ocsp", le="+Inf") == 2
    ocsp_total = samples["tessera_ocsp_responses_total"]
    assert _total(ocsp_total, status="malformed_request") == 1 and _total(ocsp_total) == 2
    assert _total(samples["tessera_logins_total"], step="login.password", outcome="failure") == 1
    up = samples["tessera_up"]
    assert {dict(key)["component"] for key in up} == {"database", "directory", "ca_token", "crl", "audit"}
    assert _total(up, component="database") == 1 and _total(up, component="ca_token") == 1
    assert _total(samples["tessera_crl_next_update_seconds"], ca="staff") > 3600
    assert _total(samples["tessera_audit_entries_total"]) >= 1
    # multiprocess mode: each worker its own file in <home>/metrics/<port> (24 new connections reached both)
    folder = home / "metrics" / base.rsplit(":", 1)[1]
    assert len({path.name for path in folder.iterdir() if path.name.startswith("counter_")}) == 2


# -- unit --------------------------------------------------------------------------------------
def _app(tmp_path: Path) -> Flask:
    app = Flask(__name__)
    api = Blueprint("verification_api", __name__, url_prefix="/api/v1")

    @api.post("/certificates/verify-batch")
    def certificate_batch() -> Response:
        return Response('{"results": [{"valid": true}, {"valid": false}, {"valid": true}]}',
                        mimetype="application/json")

    app.register_blueprint(api)
    readiness = Readiness(None, {"database": lambda _d: Finding(True, "answers")}, cache_seconds=0)  # type: ignore[arg-type]
    app.wsgi_app = metrics.install(app, readiness, tmp_path)  # type: ignore[method-assign]
    return app


def test_metrics_need_the_loopback_address_or_the_bearer_token(tmp_path: Path) -> None:
    client = _app(tmp_path).test_client()
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200
    away = {"REMOTE_ADDR": "192.0.2.7"}
    assert client.get("/metrics", environ_base=away).status_code == 403
    assert client.get("/metrics", environ_base=away, headers={"Authorization": "Bearer guess"}).status_code == 403
    (tmp_path / "metrics.token").write_text("s3cret-token-value\n")
    assert client.get("/metrics", environ_base=away, headers={"Authorization": "Bearer guess"}).status_code == 403
    answer = client.get("/metrics", environ_base=away, headers={"Authorization": "Bearer s3cret-token-value"})
    assert answer.status_code == 200 and answer.mimetype == "text/plain"
    assert client.post("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 405


def test_api_verdicts_are_counted_one_per_item(tmp_path: Path) -> None:
    client = _app(tmp_path).test_client()
    before = _scrape(client.get("/metrics").get_data(as_text=True)).get("tessera_api_verifications_total", {})
    assert client.post("/api/v1/certificates/verify-batch").status_code == 200
    after = _scrape(client.get("/metrics").get_data(as_text=True))
    verdicts = after["tessera_api_verifications_total"]
    assert _total(verdicts, operation="certificate", verdict="valid") - _total(before, operation="certificate", verdict="valid") == 2
    assert _total(verdicts, operation="certificate", verdict="invalid") - _total(before, operation="certificate", verdict="invalid") == 1
    assert _total(after["tessera_http_requests_total"], route="/api/v1/certificates/verify-batch", status="200") >= 1
    assert _total(after["tessera_up"], component="database") == 1
