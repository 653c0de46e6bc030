"""Card security events: the one place they leave the card layer, never carrying a PIN, PUK or
record content.

Two ways out, as in the CA (ca.events):

* :func:`record`: events of an operation with a registry transaction (``card.issued``,
  ``card.renewed``, ``card.lost``, ``card.expired``, ``card.record-updated``, ``card.blocked``) go
  to the :data:`CardEventSink` INSIDE that transaction, so the change and its audit entry commit
  together or not at all (a sink that raises undoes the operation);
* :func:`emit`: events with no registry change (``card.pin-changed``, ``card.pin-blocked``,
  ``card.unblocked``, ``card.issue-failed``) go to the :data:`SUBSCRIBERS` as they happen.

The deployment's audit wiring installs the sink for the process (idp.audit_bridge); a
:class:`cardsim.issuance.CardIssuer` may also be given one.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

_log = logging.getLogger("tessera.cards.security")


@dataclass(frozen=True)
class CardEvent:
    kind: str
    card: str
    actor: str
    outcome: str = "success"
    detail: dict[str, str] = field(default_factory=dict)
    at: datetime.datetime = field(default_factory=lambda: datetime.datetime.now(datetime.timezone.utc))


#: callables the audit trail registers; each gets every event sent with :func:`emit`
SUBSCRIBERS: list[Callable[[CardEvent], None]] = []

#: called with the open session of the operation's transaction; raising undoes the operation
CardEventSink = Callable[[Session, CardEvent], None]

_installed: list[CardEventSink] = []


def subscribe(subscriber: Callable[[CardEvent], None]) -> None:
    """Receive every event sent with :func:`emit` from now on. Idempotent: a subscriber added
    again still receives each event once."""
    if subscriber not in SUBSCRIBERS:
        SUBSCRIBERS.append(subscriber)


def install_sink(sink: CardEventSink) -> None:
    """Make ``sink`` this process's in-transaction sink (the newest installed wins)."""
    _installed[:] = [sink]


def installed_sink() -> CardEventSink | None:
    return _installed[0] if _installed else None


def _log_event(event: CardEvent) -> None:
    _log.info("%s card=%s actor=%s outcome=%s %s", event.kind, event.card, event.actor, event.outcome,
              " ".join(f"{k}={v}" for k, v in sorted(event.detail.items())))


def record(session: Session, sink: CardEventSink | None, kind: str, card: str, actor: str,
           outcome: str = "success", **detail: str) -> CardEvent:
    """An event of the registry change being made in ``session``: written by ``sink`` in that
    transaction (an exception from the sink must roll the change back)."""
    event = CardEvent(kind, card, actor, outcome, dict(detail))
    if sink is not None:
        sink(session, event)
    _log_event(event)
    return event


def emit(kind: str, card: str, actor: str, outcome: str = "success", **detail: str) -> CardEvent:
    """An event with no registry change: to every subscriber, now."""
    event = CardEvent(kind, card, actor, outcome, dict(detail))
    _log_event(event)
    for subscriber in SUBSCRIBERS:
        subscriber(event)
    return event
