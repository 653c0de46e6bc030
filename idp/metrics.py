"""Prometheus metrics at ``GET /metrics`` (text exposition format 0.0.4, prometheus-client).

What is counted, each process counting its own and the scrape adding them up (prometheus-client's
multiprocess mode: ``tessera serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at
``<home>/metrics/<port>``, emptied at each start, :func:`prepare_folder`):

* ``tessera_http_requests_total{route,method,status}`` and the histogram
  ``tessera_http_request_duration_seconds{route,method}``: every answer, by the route's template
  (``/crl/<name>.crl``, never the path a client sent: no per-user label, PIPL art. 28), ``/ocsp``
  for OCSP and ``unmatched`` for paths no route knows;
* ``tessera_logins_total{step,outcome}``: the staff login's steps (``login.password``,
  ``login.otp``) and completed logins (``login``), from the security events (idp.events);
* ``tessera_ocsp_responses_total{status}``: ``good``, ``revoked``, ``unknown``, or the unsuccessful
  response status (``try_later``, ``malformed_request``, ...; RFC 6960 section 4.2.1);
* ``tessera_api_verifications_total{operation,verdict}``: the verification API's verdicts
  (``valid`` or ``invalid``), one per item of a batch;
* ``tessera_card_operations_total{operation,outcome}``: the card operations this process made, by
  card event (cardsim.events, without its ``card.`` prefix: ``issued``, ``issue-failed``,
  ``renewed``, ``lost``, ``expired``, ``record-updated``, ``blocked``, ``pin-changed``,
  ``pin-blocked``, ``unblocked``) and its outcome; an event written inside its registry
  transaction counts once that transaction commits, never when it rolls back;
* ``tessera_card_logins_total{outcome}``: citizen card logins (``/citizen/login/token``), read from
  the answer: ``success``, ``refused`` (the card's token was refused, 403), ``invalid`` (not a
  login request) or ``error``.

What is read from the deployment at each scrape (idp.health's checks, reused for 2 s, each bounded):
``tessera_up{component}`` (1 or 0 for database, directory, ca_token, crl, audit),
``tessera_crl_next_update_seconds{ca}``, ``tessera_audit_entries_total`` (the trail's length: every
node's appends, so take ``max`` across nodes, not ``sum``), ``tessera_audit_unchecked_entries`` and
``tessera_audit_checkpoint_wait_seconds``; and ``tessera_cards{status}``, the card registry by
status (one grouped count, reused for 2 s and bounded the same way): the cards every process made,
the ``tessera card`` commands' included (like the audit length, take ``max`` across nodes).

Access (docs/operations.md): from the loopback address, or with ``Authorization: Bearer <token>``
where the token is the content of ``<home>/secrets/metrics.token``; anything else gets 403.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, request
from sqlalchemy import event as sa_event
from sqlalchemy import func, select
from sqlalchemy.orm import Session, SessionTransaction

from cardsim import events as card_events
from idp.health import Finding, Readiness

if TYPE_CHECKING:
    from ca.ocsp import OcspReply
    from idp.deployment import Deployment
    from idp.events import SecurityEvent

#: prometheus-client's setting: the folder every worker writes its counters to
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: HTTP methods that get their own label value; any other is ``other`` (a label per invented method would grow without end)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})
#: request latency buckets (seconds): OCSP answers in milliseconds, a login step in tens of them
_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_ROUTE = "tessera.route"
#: the citizen card login's endpoint (idp.citizen_login), whose answers are counted by outcome
_CARD_LOGIN = "citizen_login.token"
_CARD_LOGIN_OUTCOMES = ("success", "refused", "invalid", "error")
#: ``Session.info`` key: the card events written in the session's open transaction, counted at its commit
_PENDING_CARD_EVENTS = "tessera.metrics.card_events"
StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def prepare_folder(home: Path, port: int) -> Path:
    """Empty ``<home>/metrics/<port>`` and point ``PROMETHEUS_MULTIPROC_DIR`` at it, before any
    worker starts (and so before any process imports prometheus_client): counters start from zero
    with each start of the service, as Prometheus expects of a restarted target. One folder per
    port: a second service of the same home on another port keeps its own counters."""
    folder = home / "metrics" / str(port)
    shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(mode=0o700, exist_ok=True)
    folder.mkdir(mode=0o700)
    os.environ[MULTIPROC_ENV] = str(folder)
    return folder


class _Metrics:
    """The counters and the histogram, made on first use (after ``PROMETHEUS_MULTIPROC_DIR`` is set)."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Histogram

        self.requests = Counter("tessera_http_requests", "HTTP requests answered, by route template, method and status",
                                ["route", "method", "status"])
        self.latency = Histogram("tessera_http_request_duration_seconds", "Time to answer an HTTP request, by route "
                                 "template and method", ["route", "method"], buckets=_BUCKETS)
        self.logins = Counter("tessera_logins", "Staff login steps, by step and outcome", ["step", "outcome"])
        self.ocsp = Counter("tessera_ocsp_responses", "OCSP responses, by certificate status or unsuccessful "
                            "response status", ["status"])
        self.verifications = Counter("tessera_api_verifications", "Verification API verdicts, by operation and "
                                     "verdict", ["operation", "verdict"])
        self.card_operations = Counter("tessera_card_operations", "Card operations of this service, by card "
                                       "event and outcome", ["operation", "outcome"])
        self.card_logins = Counter("tessera_card_logins", "Citizen card logins, by outcome", ["outcome"])
        for outcome in _CARD_LOGIN_OUTCOMES:  # every outcome served from the start, at 0
            self.card_logins.labels(outcome)


_made: list[_Metrics] = []


def _metrics() -> _Metrics:
    if not _made:
        _made.append(_Metrics())
    return _made[0]


def _security_event(event: SecurityEvent) -> None:
    if event.action == "login" or event.action.startswith("login."):
        _metrics().logins.labels(event.action, event.result).inc()


def _card_event(event: card_events.CardEvent) -> None:
    _metrics().card_operations.labels(event.kind.removeprefix("card."), event.outcome).inc()


class _CountingSink:
    """The process's card event sink (cardsim.events.install_sink), wrapped: what it wrote inside an
    operation's transaction is counted when that transaction commits, and forgotten when it ends
    otherwise (a rolled-back operation is never counted)."""

    def __init__(self, inner: card_events.CardEventSink | None) -> None:
        self.inner = inner

    def __call__(self, session: Session, event: card_events.CardEvent) -> None:
        if self.inner is not None:
            self.inner(session, event)  # raising undoes the operation: nothing to count
        pending = session.info.get(_PENDING_CARD_EVENTS)
        if pending is None:
            pending = session.info[_PENDING_CARD_EVENTS] = []
            sa_event.listen(session, "after_commit", _count_committed)
            sa_event.listen(session, "after_transaction_end", _forget_uncommitted)
        pending.append(event)


def _count_committed(session: Session) -> None:
    pending = session.info.get(_PENDING_CARD_EVENTS, [])
    for event in pending:
        _card_event(event)
    pending.clear()


def _forget_uncommitted(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # the session's transaction ended without a commit (or after one: empty)
        session.info.get(_PENDING_CARD_EVENTS, []).clear()


def _count_card_events() -> None:
    """Count this process's security and card events: the emitted ones as they happen (subscribers,
    added at every app build: subscribing is idempotent), the recorded card ones after their commit
    (the installed sink wrapped; call after the deployment's audit wiring installed its sink,
    idp.audit_bridge)."""
    from idp import events

    events.subscribe(_security_event)
    card_events.subscribe(_card_event)
    sink = card_events.installed_sink()
    if not isinstance(sink, _CountingSink):
        card_events.install_sink(_CountingSink(sink))


def _count_card_login(response: Response) -> None:
    """A citizen card login's outcome, read from its answer (idp.citizen_login.token)."""
    status = response.status_code
    success, refused, invalid, error = _CARD_LOGIN_OUTCOMES
    _metrics().card_logins.labels(success if status < 300 else refused if status == 403 else invalid if status < 500
                                  else error).inc()


def _card_registry(deployment: Deployment) -> Finding:
    """The card registry by status: one grouped count (every process's cards, the command line's too)."""
    from cardsim.models import Card, CardStatus

    with deployment.sessions() as session:
        counted = session.execute(select(Card.status, func.count()).group_by(Card.status)).all()
    by_status = {status.value: 0.0 for status in CardStatus}
    by_status.update({str(status): float(count) for status, count in counted})
    return Finding(True, "counted", by_status)


def ocsp_answered(reply: OcspReply) -> None:
    """Count one OCSP response (idp.ocsp_http)."""
    _metrics().ocsp.labels(reply.cert_status if reply.status == "successful" and reply.cert_status
                           else reply.status).inc()


_API_OPERATIONS = {"certificate": "certificate", "certificate_batch": "certificate",
                   "signed_record": "signed-record", "signed_record_batch": "signed-record",
                   "signature": "signature", "signature_batch": "signature"}


def _count_verdicts(response: Response) -> None:
    """The verification API's verdicts, read from its answer (one per item of a batch)."""
    operation = _API_OPERATIONS.get((request.endpoint or "").removeprefix("verification_api."))
    if operation is None or response.status_code != 200 or response.mimetype != "application/json":
        return
    try:
        body = json.loads(response.get_data())
    except ValueError:
        return
    items = body.get("results", []) if isinstance(body, dict) and "results" in body else [body]
    for item in items:
        if isinstance(item, dict) and "valid" in item:
            _metrics().verifications.labels(operation, "valid" if item["valid"] is True else "invalid").inc()


class _DeploymentCollector:
    """Figures read at scrape time from the readiness checks (idp.health), and the card registry's
    count, run and reused the same way (a hung database costs a scrape :data:`idp.health.CHECK_SECONDS`)."""

    def __init__(self, readiness: Readiness) -> None:
        self.readiness = readiness
        self.cards = Readiness(readiness.deployment, {"cards": _card_registry})

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        findings = self.readiness.run()
        up = GaugeMetricFamily("tessera_up", "Whether a component passes its readiness check (1) or not (0)",
                               labels=["component"])
        for name, finding in findings.items():
            up.add_metric([name], 1.0 if finding.ok else 0.0)
        yield up
        crl = findings.get("crl")
        if crl is not None and crl.values:
            remaining = GaugeMetricFamily("tessera_crl_next_update_seconds", "Seconds until the current CRL's "
                                          "nextUpdate, by CA (negative: passed)", labels=["ca"])
            for name, seconds in sorted(crl.values.items()):
                remaining.add_metric([name], seconds)
            yield remaining
        audit = findings.get("audit")
        if audit is not None and audit.values:
            yield CounterMetricFamily("tessera_audit_entries", "Entries in the audit trail (all nodes' appends: "
                                      "take max across nodes)", value=audit.values["entries"])
            yield GaugeMetricFamily("tessera_audit_unchecked_entries", "Audit entries not yet under a checkpoint",
                                    value=audit.values["unchecked_entries"])
            yield GaugeMetricFamily("tessera_audit_checkpoint_wait_seconds", "How long the oldest entry not yet "
                                    "under a checkpoint has waited", value=audit.values["waiting_seconds"])
        cards = self.cards.run()["cards"]
        if cards.ok:
            registry = GaugeMetricFamily("tessera_cards", "Cards in the registry by status (every process's, "
                                         "the command line's included: take max across nodes)", labels=["status"])
            for status, count in sorted(cards.values.items()):
                registry.add_metric([status], count)
            yield registry


def _metrics_token(secrets_dir: Path) -> bytes | None:
    try:
        token = (secrets_dir / "metrics.token").read_bytes().strip()
    except OSError:
        return None
    return token or None


def _allowed(environ: dict[str, Any], secrets_dir: Path) -> bool:
    """From the loopback address, or with the bearer token of ``<home>/secrets/metrics.token``."""
    try:
        if ipaddress.ip_address(environ.get("REMOTE_ADDR", "")).is_loopback:
            return True
    except ValueError:
        pass
    token = _metrics_token(secrets_dir)
    sent = environ.get("HTTP_AUTHORIZATION", "")
    return token is not None and sent.startswith("Bearer ") and hmac.compare_digest(sent[7:].strip().encode(), token)


class MeasuredRequests:
    """WSGI middleware: times and counts every answer of ``app`` (OCSP included), and serves
    ``/metrics`` itself (no session, no database: a scrape must work while they fail)."""

    def __init__(self, app: WSGIApp, readiness: Readiness, secrets_dir: Path) -> None:
        from prometheus_client import CollectorRegistry

        self.app, self.secrets_dir = app, secrets_dir
        self.deployment_registry = CollectorRegistry(auto_describe=False)
        self.deployment_registry.register(_DeploymentCollector(readiness))
        self.metrics = _metrics()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return self._expose(environ, start_response)
        began = time.perf_counter()
        status = ["500"]

        def recording(status_line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status[0] = status_line[:3]
            return start_response(status_line, headers, exc_info)

        try:
            return self.app(environ, recording)
        finally:
            method = environ.get("REQUEST_METHOD", "GET")
            method = method if method in _METHODS else "other"
            route = "/ocsp" if path == "/ocsp" or path.startswith("/ocsp/") else environ.get(_ROUTE, "unmatched")
            self.metrics.requests.labels(route, method, status[0]).inc()
            self.metrics.latency.labels(route, method).observe(time.perf_counter() - began)

    def _expose(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        from prometheus_client import REGISTRY, CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return _answer(start_response, "405 Method Not Allowed", b"", "text/plain", [("Allow", "GET, HEAD")])
        if not _allowed(environ, self.secrets_dir):
            body = json.dumps({"type": "about:blank", "title": "Forbidden", "status": 403,
                               "detail": "metrics are served to the loopback address or with the bearer token "
                                         "of the home's secrets/metrics.token"}).encode()
            return _answer(start_response, "403 Forbidden", body, "application/problem+json")
        folder = os.environ.get(MULTIPROC_ENV)
        if folder and os.path.isdir(folder):
            from prometheus_client import multiprocess

            workers = CollectorRegistry(auto_describe=False)
            multiprocess.MultiProcessCollector(workers, folder)
            body = generate_latest(workers)
        else:  # one process (tests, --dev)
            body = generate_latest(REGISTRY)
        body += generate_latest(self.deployment_registry)
        return _answer(start_response, "200 OK", b"" if environ.get("REQUEST_METHOD") == "HEAD" else body,
                       CONTENT_TYPE_LATEST)


def _answer(start_response: StartResponse, status: str, body: bytes, media_type: str,
            extra: list[tuple[str, str]] | None = None) -> list[bytes]:
    start_response(status, [("Content-Type", media_type), ("Content-Length", str(len(body))),
                            ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff"), *(extra or [])])
    return [body]


def install(app: Flask, readiness: Readiness, secrets_dir: Path) -> MeasuredRequests:
    """Count ``app``'s requests, verdicts, card logins and card operations; returns the middleware to put around ``app.wsgi_app``
    (outside the OCSP dispatcher, inside any proxy fix: the client's address decides access)."""

    @app.after_request
    def _route(response: Response) -> Response:
        rule = request.url_rule
        request.environ[_ROUTE] = rule.rule if rule is not None else "unmatched"
        if request.blueprint == "verification_api":
            _count_verdicts(response)
        elif request.endpoint == _CARD_LOGIN:
            _count_card_login(response)
        return response

    _count_card_events()
    return MeasuredRequests(app.wsgi_app, readiness, secrets_dir)
