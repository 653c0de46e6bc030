"""Wiring the audit trail into the service: every security event becomes an audit entry.

- CA operations (certificate issue, revoke, release) and card registry changes (issued, renewed,
  lost, expired, record updated, blocked: :func:`cardsim.events.record`) are written by the CA's
  and the card layer's event sinks INSIDE the operation's transaction: if the entry cannot be
  written, the operation rolls back.
- Identity provider events (:mod:`idp.events`: logins and their factors, TOTP enrolment, logout,
  OIDC consent, code and refresh-token reuse, client changes) and the card events with no registry
  change (PIN changed or blocked, unblocked, issuance undone: :func:`cardsim.events.emit`) are
  recorded as they happen, each in a transaction of its own; a failure to write raises, so the
  request that caused the event fails instead of going on unaudited.

Source address and request id come from the Flask request when there is one.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from audit import AuditEvent, AuditEventInvalid
from ca.events import CaEvent
from cardsim import events as card_events
from idp import events as idp_events

if TYPE_CHECKING:
    from audit import AuditTrail
    from audit.checkpoint_schedule import CheckpointSchedule
    from idp.deployment import Deployment

#: events the CA sink already wrote inside their transaction (only their failures come through idp.events)
_WRITTEN_IN_TRANSACTION = frozenset({"cert.issue", "cert.revoke", "cert.release"})
_RESULTS = {"success": "success", "failure": "failure", "refused": "refused", "error": "failure", "undone": "failure"}

#: the trail the process-wide event hooks write to (the newest deployment's)
_current: dict[str, "AuditTrail"] = {}


def _request_context() -> tuple[str | None, str | None]:
    """(source address, request id) of the current web request, if any."""
    try:
        from flask import g, has_request_context, request
    except ImportError:  # pragma: no cover
        return None, None
    if not has_request_context():
        return None, None
    current = request._get_current_object()  # type: ignore[attr-defined]
    request_id = g.get("audit_request_id")
    if request_id is None:
        request_id = current.headers.get("X-Request-Id", "")[:64] or secrets.token_hex(8)
        g.audit_request_id = request_id
    return (current.remote_addr or None), request_id


def _role(subject: str) -> str | None:
    kind = subject.split(":", 1)[0] if ":" in subject else None
    return {"staff": "staff", "cli": "operator", "address": "anonymous", "client": "service",
            "citizen": "citizen", "card": "citizen"}.get(kind or "", None)


def _event(type_: str, subject: str, result: str, obj: str | None, details: dict[str, Any]) -> AuditEvent:
    address, request_id = _request_context()
    fields = dict(subject=subject[:255] or "unknown", result=_RESULTS.get(result, "failure"),
                  subject_role=_role(subject), object=obj[:255] if obj else None,
                  source_address=address, request_id=request_id)
    clean = {k: v if isinstance(v, (str, int, float, bool, list, type(None))) else str(v) for k, v in details.items()}
    try:
        return AuditEvent(type_, details=clean, **fields)  # type: ignore[arg-type]
    except AuditEventInvalid:
        # a detail the trail refuses (e.g. one that looks like a secret): keep the fact, drop the details
        return AuditEvent(type_, details={"details_dropped": sorted(clean)}, **fields)  # type: ignore[arg-type]


def ca_sink(trail: "AuditTrail") -> Any:
    """The CA's event sink: append inside the operation's own transaction."""

    def sink(session: Session, event: CaEvent) -> None:
        trail.append(session, _event(event.type, event.actor, "success", event.object, dict(event.details)))

    return sink


def card_sink(trail: "AuditTrail") -> card_events.CardEventSink:
    """The card layer's event sink: append inside the registry change's own transaction."""

    def sink(session: Session, event: card_events.CardEvent) -> None:
        trail.append(session, _card_event(event))

    return sink


def _card_event(event: card_events.CardEvent) -> AuditEvent:
    return _event(event.kind.replace("-", "_"), event.actor or "unknown", event.outcome, f"card:{event.card}",
                  dict(event.detail))


def _on_idp_event(event: idp_events.SecurityEvent) -> None:
    trail = _current.get("trail")
    if trail is None or (event.action in _WRITTEN_IN_TRANSACTION and event.result == "success"):
        return
    trail.record(_event(event.action, event.actor, event.result, event.target, dict(event.details)))


def _on_card_event(event: card_events.CardEvent) -> None:
    trail = _current.get("trail")
    if trail is None:
        return
    trail.record(_card_event(event))


def install(trail: "AuditTrail") -> None:
    """Send this process's idp and card events to ``trail`` (idempotent; the newest trail wins):
    card registry changes through the in-transaction sink, the rest as they happen."""
    idp_events.subscribe(_on_idp_event)
    card_events.subscribe(_on_card_event)
    _current["trail"] = trail
    card_events.install_sink(card_sink(trail))


def start_checkpoints(deployment: "Deployment") -> "CheckpointSchedule | None":
    """This service process's checkpoints: witnessed as configured (``TESSERA_AUDIT_WITNESS``,
    ``TESSERA_AUDIT_SYSLOG``; audit.witness) and made by time while entries are appended
    (``TESSERA_AUDIT_CHECKPOINT_INTERVAL`` seconds, 0 for none; audit.checkpoint_schedule).
    Call once per worker process, after it forked (the app factory). Returns the running schedule."""
    from audit import checkpoint_schedule
    from audit.witness import witness_from_settings

    checkpointer = deployment.audit.checkpointer
    if checkpointer is None:
        return None
    settings = deployment.settings
    if checkpointer.witness is None:
        witness = witness_from_settings(settings.home, settings.audit_witness, settings.audit_syslog)
        checkpointer.witness = witness if witness.enabled else None
    return checkpoint_schedule.start(checkpointer, deployment.sessions, settings.audit_checkpoint_interval)
