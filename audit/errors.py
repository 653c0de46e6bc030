"""Typed errors of the audit trail (the web layer maps them: invalid event 500-free 4xx, unavailable 503)."""

from __future__ import annotations


class AuditError(Exception):
    """Base of the audit trail's errors; ``str()`` is one line fit for a user."""

    kind = "audit-error"


class AuditEventInvalid(AuditError, ValueError):
    """The event is malformed or its details would carry a secret: nothing was written."""

    kind = "audit-event-invalid"


class AuditUnavailable(AuditError):
    """The trail cannot be written (not initialised, database refused): the audited action must not happen."""

    kind = "audit-unavailable"


class CheckpointUnavailable(AuditError):
    """No checkpoint could be made (no audit signer yet, key or time-stamping failed)."""

    kind = "checkpoint-unavailable"


class CheckpointRefused(CheckpointUnavailable):
    """The checkpointer will not sign: the chain does not extend the head it last signed (witnessed),
    or is broken after it. ``finding`` names what, e.g. ``checkpoint-missing seq=12``."""

    kind = "checkpoint-refused"

    def __init__(self, finding: str, reason: str) -> None:
        super().__init__(f"audit checkpoint refused: {finding}: {reason}")
        self.finding = finding
        self.reason = reason
