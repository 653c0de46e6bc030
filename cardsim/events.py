"""Card security events, all emitted from here so the audit trail (a later issue) has one hook.

Events: ``card.issued``, ``card.lost``, ``card.renewed``, ``card.expired``, ``card.record-updated``,
``card.pin-changed``, ``card.pin-blocked``, ``card.unblocked``, ``card.blocked``,
``card.issue-failed``. Never carries a PIN, PUK or record content.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

_log = logging.getLogger("tessera.cards.security")


@dataclass(frozen=True)
class CardEvent:
    kind: str
    card: str
    actor: str
    outcome: str = "success"
    detail: dict[str, str] = field(default_factory=dict)
    at: datetime.datetime = field(default_factory=lambda: datetime.datetime.now(datetime.timezone.utc))


#: callables the audit trail registers; each gets every event
SUBSCRIBERS: list[Callable[[CardEvent], None]] = []


def emit(kind: str, card: str, actor: str, outcome: str = "success", **detail: str) -> CardEvent:
    event = CardEvent(kind, card, actor, outcome, dict(detail))
    _log.info("%s card=%s actor=%s outcome=%s %s", kind, card, actor, outcome,
              " ".join(f"{k}={v}" for k, v in sorted(detail.items())))
    for subscriber in SUBSCRIBERS:
        subscriber(event)
    return event
