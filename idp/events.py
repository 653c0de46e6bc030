"""Security events of the identity provider: one place every event goes through.

Login success and failure (with the factors used), TOTP enrolment, recovery code use, logout and
logout everywhere, certificate issue and revocation, client registration and removal. The audit
trail subscribes with :func:`subscribe` and keeps every event. Each event is also one JSON line
on the ``tessera.security`` logger, as Keycloak's event logger does it: a success at DEBUG, anything
else (failure, refusal, error) at WARNING, so the server's log shows what an operator must look at
and the trail holds the rest (``TESSERA_SECURITY_LOG_LEVEL=DEBUG`` logs successes too). Secrets
never appear in an event: callers pass names, ids and outcomes only.
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("tessera.security")


@dataclass(frozen=True)
class SecurityEvent:
    """Who did what to what, when, with which result."""

    action: str  # e.g. "login", "totp.enrol", "cert.issue", "client.add", "logout.everywhere"
    actor: str  # "staff:<uid>", "cli:<user>", "address:<ip>", "client:<id>"
    target: str | None
    result: str  # "success" or "failure"
    at: str = field(default_factory=lambda: datetime.datetime.now(datetime.timezone.utc).isoformat())
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"action": self.action, "actor": self.actor, "at": self.at, "details": self.details,
                           "result": self.result, "target": self.target}, sort_keys=True, default=str)


_subscribers: list[Callable[[SecurityEvent], None]] = []


def subscribe(handler: Callable[[SecurityEvent], None]) -> None:
    """Receive every event from now on (the audit trail's and the metrics' hook). Idempotent: a
    handler subscribed again still receives each event once."""
    if handler not in _subscribers:
        _subscribers.append(handler)


def record(action: str, actor: str, target: str | None, result: str, **details: Any) -> SecurityEvent:
    """Record one security event."""
    event = SecurityEvent(action, actor, target, result, details=details)
    level = logging.DEBUG if result == "success" else logging.WARNING
    if log.isEnabledFor(level):
        log.log(level, event.to_json())
    for handler in list(_subscribers):
        handler(event)
    return event
