"""Prometheus metrics at /metrics (issue 16, item 3).

Integration: `tessera serve --workers 2`, a few requests of each kind, then `curl /metrics` parsed
by prometheus-client's own text-format parser: the two workers' counters added up, route templates
(never a path a client sent), OCSP by status, logins by outcome (citizen card logins too), component
health, CRL nextUpdate; cards issued and reported lost by `tessera card` (another process) appear in
the registry gauge; every metric the sample Grafana dashboard asks for is served.
Unit: access from elsewhere than the loopback address needs the home's bearer token; the
verification API's verdicts are counted one per item; card operations are counted once their
transaction commits, never when it rolls back or the audit sink refuses, and emitted ones at once.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from flask import Blueprint, Flask, Response, request
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from cardsim import events as card_events
from idp import metrics
from idp.health import Finding, Readiness
from tests.fixtures_cards import citizen
from tests.fixtures_citizen import csrf_from
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
        page = client.get(base + "/citizen/login", timeout=10)
        headers = {"X-CSRF-Token": csrf_from(page.text)}
        nonce = client.post(base + "/citizen/login/challenge", json={}, headers=headers, timeout=10).json()["nonce"]
        for body, status in (({"token": {"format": "jwt"}, "nonce": nonce}, 403), ({"token": {}}, 400)):
            assert client.post(base + "/citizen/login/token", json=body, headers=headers, timeout=10).status_code == status
    text = subprocess.run(["curl", "-sS", "--max-time", "10", base + "/metrics"], capture_output=True, check=True,
                          text=True).stdout
    assert "wangfang" not in text and "110101" not in text  # no path, no user name in a label
    samples = _scrape(text)
    card_logins = samples["tessera_card_logins_total"]
    assert _total(card_logins, outcome="refused") == 1 and _total(card_logins, outcome="invalid") == 1
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


def _scrape_until(base: str, done: object, seconds: float = 10.0) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Scrapes until ``done(samples)`` (a worker's figures read from the deployment are reused for 2 s)."""
    end = time.monotonic() + seconds
    while True:
        samples = _scrape(requests.get(base + "/metrics", timeout=10).text)
        if done(samples) or time.monotonic() > end:  # type: ignore[operator]
            return samples
        time.sleep(0.5)


def test_card_commands_show_in_the_registry_gauge(served: tuple[str, Path], tmp_path: Path) -> None:
    base, home = served
    env = tessera_env(home, base)
    (tmp_path / "citizen.json").write_text(json.dumps(citizen(7101)))
    run_tessera(env, "card", "issue", "--from", str(tmp_path / "citizen.json"), "--envelope",
                str(tmp_path / "envelope.json"))
    number = json.loads((tmp_path / "envelope.json").read_text())["card"]
    samples = _scrape_until(base, lambda found: _total(found.get("tessera_cards", {}), status="active") == 1)
    assert _total(samples["tessera_cards"], status="active") == 1
    run_tessera(env, "card", "lost", number)
    samples = _scrape_until(base, lambda found: _total(found["tessera_cards"], status="lost") == 1)
    cards = samples["tessera_cards"]
    assert _total(cards, status="lost") == 1 and _total(cards, status="active") == 0
    assert {dict(key)["status"] for key in cards} == {"active", "lost", "renewed", "expired", "blocked"}
    # the command's own operations were counted in its process, not by the service
    assert _total(samples.get("tessera_card_operations_total", {}), operation="lost") == 0


def test_the_dashboard_asks_only_for_served_metrics(served: tuple[str, Path], tmp_path: Path) -> None:
    base, _home = served
    dashboard = json.loads((Path(__file__).resolve().parent.parent / "docs" / "grafana-dashboard.json").read_text())
    asked = {name for panel in dashboard["panels"] for target in panel.get("targets", [])
             for name in re.findall(r"tessera_[a-z_]+", target["expr"])}
    assert {"tessera_card_operations_total", "tessera_card_logins_total", "tessera_cards"} <= asked
    # a labelled counter has samples from its first count on: the counters' names from their
    # declarations (this process's registry), the deployment's figures from the service
    _app(tmp_path)
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}
    declared = {family.name + suffix for family in text_string_to_metric_families(generate_latest(REGISTRY).decode())
                for suffix in suffixes.get(family.type, [""])}
    served_names = set(_scrape_until(base, lambda found: "tessera_cards" in found))
    assert asked - declared - served_names == set()


# -- unit --------------------------------------------------------------------------------------
def _app(tmp_path: Path) -> Flask:
    app = Flask(__name__)
    api = Blueprint("verification_api", __name__, url_prefix="/api/v1")

    @api.post("/certificates/verify-batch")
    def certificate_batch() -> Response:
        return Response('{"results": [{"valid": true}, {"valid": false}, {"valid": true}]}',
                        mimetype="application/json")

    card_login = Blueprint("citizen_login", __name__)

    @card_login.post("/citizen/login/token")
    def token() -> Response:
        return Response(status=int(request.args["answer"]))

    app.register_blueprint(api)
    app.register_blueprint(card_login)
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


def test_citizen_card_logins_are_counted_by_outcome(tmp_path: Path) -> None:
    client = _app(tmp_path).test_client()
    before = _scrape(client.get("/metrics").get_data(as_text=True)).get("tessera_card_logins_total", {})
    for answer in (200, 200, 403, 400, 503):
        assert client.post(f"/citizen/login/token?answer={answer}").status_code == answer
    after = _scrape(client.get("/metrics").get_data(as_text=True))["tessera_card_logins_total"]
    assert {outcome: _total(after, outcome=outcome) - _total(before, outcome=outcome)
            for outcome in ("success", "refused", "invalid", "error")} == \
        {"success": 2, "refused": 1, "invalid": 1, "error": 1}


class _Refused(Exception):
    pass


def test_card_operations_count_once_committed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    written: list[str] = []

    def audit_sink(session: Session, event: card_events.CardEvent) -> None:  # the audit trail's place
        session.execute(text("SELECT 1"))
        if event.card == "refused":
            raise _Refused("the audit trail cannot be written")
        written.append(event.kind)

    monkeypatch.setattr(card_events, "_installed", [audit_sink])
    client = _app(tmp_path).test_client()  # wraps the installed sink
    monkeypatch.setattr(card_events, "SUBSCRIBERS", [s for s in card_events.SUBSCRIBERS if s.__module__ == metrics.__name__])
    sessions = sessionmaker(create_engine(f"sqlite:///{tmp_path / 'cards.db'}"))

    def counted() -> dict[tuple[tuple[str, str], ...], float]:
        return _scrape(client.get("/metrics").get_data(as_text=True)).get("tessera_card_operations_total", {})

    def record(kind: str, card: str = "0000000000000001", outcome: str = "success") -> None:
        card_events.record(session, card_events.installed_sink(), kind, card, "cli:test", outcome)

    before = counted()
    with sessions.begin() as session:
        record("card.issued")
        record("card.renewed")
        assert counted() == before  # not yet committed
    with pytest.raises(_Refused), sessions.begin() as session:
        record("card.lost", "refused")
    with sessions() as session:  # one session, two transactions: only the committed one counts
        with pytest.raises(RuntimeError), session.begin():
            record("card.expired")
            raise RuntimeError("the operation fails after its event was written")
        with session.begin():
            record("card.blocked", outcome="failure")
    card_events.emit("card.pin-changed", "0000000000000001", "cli:test")
    card_events.emit("card.issue-failed", "0000000000000002", "cli:test", "undone", reason="interrupted issuance")
    after = counted()

    def delta(operation: str, outcome: str = "success") -> float:
        return _total(after, operation=operation, outcome=outcome) - _total(before, operation=operation, outcome=outcome)

    assert written == ["card.issued", "card.renewed", "card.expired", "card.blocked"]
    assert (delta("issued"), delta("renewed"), delta("blocked", "failure"), delta("pin-changed"),
            delta("issue-failed", "undone")) == (1, 1, 1, 1, 1)
    assert delta("expired") == 0 and delta("lost") == 0
