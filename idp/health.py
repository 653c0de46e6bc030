"""Liveness and readiness for a load balancer or an orchestrator.

``GET /healthz`` (liveness) answers ``200 ok`` whenever the process can run a request, and touches
no component: a failing database or directory must not get a healthy process restarted.

``GET /readyz`` (readiness) says whether this node can serve now, from five checks:

* ``database``: ``SELECT 1`` on the deployment's engine;
* ``directory``: a base search as the service account (:meth:`directory.client.Directory.check`);
* ``ca_token``: every PKCS#11 key the service signs with online (the issuing CAs, the OCSP
  responders, the time-stamping unit) signs a probe (cached for :data:`TOKEN_CHECK_SECONDS`);
* ``crl``: each authority's current CRL (the one ``/crl/<name>.crl`` serves, re-signed when near
  its nextUpdate, RFC 5280 section 5.1.2.5) has a nextUpdate still ahead;
* ``audit``: entries appended since the newest checkpoint have waited at most twice the
  checkpoint interval and a minute (audit.checkpoint_schedule; docs/audit.md).

It answers ``200`` when every check passes, else ``503`` (RFC 9110 section 15.6.4), with a JSON
body naming each check's state and a fixed, short detail: no exception text, no URL, no secret.
Each check runs on a thread of its own and is given :data:`CHECK_SECONDS`; one that has not
finished by then fails as ``timed out`` and the probe answers anyway. A check still hung from an
earlier probe is not started again (its one thread is waited for), so a hung component costs one
thread per check, never the probe. Results are reused for :data:`CACHE_SECONDS`, so probes from
several balancers and the metrics scrape (idp.metrics) cost one round of checks.
"""

from __future__ import annotations

import datetime
import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import hashes
from flask import Flask, Response, current_app, json
from sqlalchemy import func, select, text

if TYPE_CHECKING:
    from idp.deployment import Deployment

#: seconds each check may take before it counts as failed
CHECK_SECONDS = 2.0
#: seconds a round of checks is reused
CACHE_SECONDS = 2.0
#: seconds a successful signature with the CA token's keys is trusted (each probe signing would load the token)
TOKEN_CHECK_SECONDS = 15.0
#: entries may wait this many seconds beyond twice the checkpoint interval before ``audit`` fails
AUDIT_GRACE_SECONDS = 60.0

@dataclass(frozen=True)
class Finding:
    """One check's outcome: ``ok``, a short fixed ``detail``, and figures (``values``) for idp.metrics."""

    ok: bool
    detail: str
    values: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


class CheckFailed(Exception):
    """A check's own verdict that the component is not usable (its message is a fixed, safe phrase)."""


# -- the checks ------------------------------------------------------------------------------
def check_database(deployment: Deployment) -> Finding:
    """``SELECT 1`` on the deployment's engine (a pooled connection, pinged on PostgreSQL)."""
    with deployment.engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    return Finding(True, "answers")


def check_directory(deployment: Deployment) -> Finding:
    """A base search as the service account, through the servers' breakers, within the check's bound."""
    from directory.connection import configure, deadline

    directory = deployment.directory
    configure(directory.config)
    with deadline(CHECK_SECONDS):  # the breaker's verdict is reused: an open one fails at once
        url = directory.check()
    urls = list(directory.config.urls)
    position = urls.index(url) + 1 if url in urls else 1
    return Finding(True, f"answers (server {position} of {len(urls)})", {"server": float(position)})


class _TokenProbe:
    """Signs a probe with every online PKCS#11 key of the deployment; remembers a success for a while."""

    def __init__(self) -> None:
        self.passed_at = -1e9
        self.keys = 0

    def __call__(self, deployment: Deployment) -> Finding:
        if time.monotonic() - self.passed_at < TOKEN_CHECK_SECONDS:
            return Finding(True, f"{self.keys} keys sign", {"keys": float(self.keys)})
        from ca.models import Authority, Signer

        with deployment.sessions() as session:
            refs = set(session.scalars(select(Signer.key_ref)))
            refs.update(session.scalars(select(Authority.key_ref).where(Authority.parent_id.is_not(None))))
        refs = {ref for ref in refs if ref.startswith("pkcs11:")}
        for ref in sorted(refs):
            deployment.keyring.get(ref).sign(b"tessera readiness probe", hashes.SHA256())
        self.passed_at, self.keys = time.monotonic(), len(refs)
        return Finding(True, f"{len(refs)} keys sign", {"keys": float(len(refs))})


def check_crl(deployment: Deployment) -> Finding:
    """Each CA's current CRL, as ``/crl/<name>.crl`` serves it (re-signed near its nextUpdate, RFC
    5280 section 5.1.2.5), still has its nextUpdate ahead; a CA whose CRL cannot be signed fails."""
    from ca.errors import CaError

    ca = deployment.ca
    now = deployment.now()
    remaining, unsigned = {}, []
    for authority in ca.authorities():
        try:
            crl = ca.current_crl(authority.name)
        except CaError as exc:  # e.g. an offline root's key: its last CRL cannot be renewed here
            unsigned.append(f"{authority.name} ({type(exc).__name__})")
            continue
        remaining[authority.name] = (crl.next_update - now).total_seconds()
    if not remaining and not unsigned:
        raise CheckFailed("no certificate authority")
    stale = sorted(name for name, seconds in remaining.items() if seconds <= 0)
    if stale or unsigned:
        words = [f"nextUpdate passed: {', '.join(stale)}"] if stale else []
        words += [f"cannot be signed: {', '.join(unsigned)}"] if unsigned else []
        return Finding(False, "; ".join(words), remaining)
    return Finding(True, f"nextUpdate in {int(min(remaining.values()))} s or more", remaining)


def check_audit(deployment: Deployment) -> Finding:
    """Entries appended since the newest checkpoint have not waited beyond twice the time-based
    checkpoint interval and :data:`AUDIT_GRACE_SECONDS` (audit.checkpoint_schedule)."""
    from audit.models import AuditCheckpoint, AuditEntry, AuditHead

    with deployment.sessions() as session:
        head = int(session.scalar(select(AuditHead.seq).where(AuditHead.id == 1)) or 0)
        checkpointed = int(session.scalar(select(func.max(AuditCheckpoint.seq))) or 0)
        oldest = (session.scalar(select(AuditEntry.at).where(AuditEntry.seq == checkpointed + 1))
                  if head > checkpointed else None)
    waiting = max(0.0, (deployment.now() - oldest).total_seconds()) if oldest is not None else 0.0
    values = {"entries": float(head), "unchecked_entries": float(head - checkpointed), "waiting_seconds": waiting}
    interval = deployment.settings.audit_checkpoint_interval
    if interval <= 0:
        return Finding(True, "time-based checkpoints are off", values)
    limit = 2 * interval + AUDIT_GRACE_SECONDS
    if waiting > limit:
        return Finding(False, f"entries wait {int(waiting)} s for a checkpoint (limit {int(limit)} s)", values)
    return Finding(True, f"{head - checkpointed} entries wait {int(waiting)} s for a checkpoint", values)


# -- running them, bounded ---------------------------------------------------------------------
class _Flight:
    """One run of one check on a daemon thread (a hung component must not keep the process from exiting)."""

    def __init__(self, check: Callable[[], Finding]) -> None:
        self.finding: Finding | None = None
        self.started = time.monotonic()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(check,), name="tessera-readyz", daemon=True)
        self.thread.start()

    def _run(self, check: Callable[[], Finding]) -> None:
        try:
            finding = check()
        except CheckFailed as exc:
            finding = Finding(False, str(exc))
        except Exception as exc:  # noqa: BLE001  (any failure of a component is a failed check, by its class only)
            finding = Finding(False, f"unavailable ({type(exc).__name__})")
        self.finding = Finding(finding.ok, finding.detail, finding.values, round(time.monotonic() - self.started, 4))
        self.done.set()


class Readiness:
    """The checks of one deployment, run in parallel, each within :data:`CHECK_SECONDS`."""

    def __init__(self, deployment: Deployment, checks: dict[str, Callable[[Deployment], Finding]] | None = None,
                 timeout: float = CHECK_SECONDS, cache_seconds: float = CACHE_SECONDS) -> None:
        self.deployment = deployment
        self.checks: dict[str, Callable[[Deployment], Finding]] = checks if checks is not None else {
            "database": check_database, "directory": check_directory, "ca_token": _TokenProbe(),
            "crl": check_crl, "audit": check_audit}
        self.timeout, self.cache_seconds = timeout, cache_seconds
        self._flights: dict[str, _Flight] = {}
        self._lock = threading.Lock()
        self._last: tuple[float, dict[str, Finding]] | None = None

    def run(self) -> dict[str, Finding]:
        """Every check's finding (a round less than ``cache_seconds`` old is reused)."""
        with self._lock:
            if self._last is not None and time.monotonic() - self._last[0] < self.cache_seconds:
                return self._last[1]
            flights = {}
            for name, check in self.checks.items():
                flight = self._flights.get(name)
                if flight is None or flight.done.is_set():  # a hung one is waited for, not started again
                    flight = self._flights[name] = _Flight(functools.partial(check, self.deployment))
                flights[name] = flight
        deadline = time.monotonic() + self.timeout
        findings = {}
        for name, flight in flights.items():
            flight.done.wait(max(0.0, deadline - time.monotonic()))
            if flight.finding is not None and flight.done.is_set():
                findings[name] = flight.finding
            else:
                findings[name] = Finding(False, f"timed out (no answer for {time.monotonic() - flight.started:.0f} s)",
                                         seconds=round(time.monotonic() - flight.started, 4))
        with self._lock:
            self._last = (time.monotonic(), findings)
        return findings


def readiness_of(app: Flask) -> Readiness:
    return app.extensions["tessera.readiness"]


def install(app: Flask, deployment: Deployment) -> None:
    """``/healthz`` and ``/readyz`` on ``app`` for ``deployment``."""
    app.extensions["tessera.readiness"] = Readiness(deployment)
    app.add_url_rule("/healthz", "health", healthz, methods=["GET"])
    app.add_url_rule("/readyz", "readyz", readyz, methods=["GET"])


def healthz() -> Response:
    """Liveness: the process runs requests (no component is asked)."""
    return Response("ok\n", mimetype="text/plain", headers={"Cache-Control": "no-store"})


def readyz() -> Response:
    """Readiness: 200 when every check passes, else 503; the body names each check's state."""
    findings = readiness_of(current_app).run()
    ready = all(f.ok for f in findings.values())
    body: dict[str, Any] = {
        "status": "ready" if ready else "not ready",
        "checked_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "checks": {name: {"status": "ok" if f.ok else "failing", "detail": f.detail, "seconds": f.seconds}
                   for name, f in findings.items()},
    }
    response = Response(json.dumps(body), status=200 if ready else 503, mimetype="application/json",
                        headers={"Cache-Control": "no-store"})
    if not ready:
        response.headers["Retry-After"] = "5"
    return response
