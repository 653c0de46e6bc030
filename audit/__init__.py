"""The tamper-evident audit trail: hash-chained entries, signed checkpoints, verification, export.

A library like :mod:`ca` (no Flask). The service builds one :class:`AuditTrail` per process with
:func:`open_trail` and appends inside each business transaction::

    with sessions.begin() as session:
        ...  # the operation
        trail.append(session, AuditEvent("cert.revoke", "staff:jdoe", "success", subject_role="security-admin",
                                         object="cert:1a2b", source_address=ip, request_id=rid))
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from audit.errors import AuditError, AuditEventInvalid, AuditUnavailable, CheckpointRefused, CheckpointUnavailable
from audit.trail import AuditEvent, AuditTrail

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from audit.checkpoints import TimeStamper
    from audit.witness import Witness
    from ca.authority import CertificateAuthority


def open_trail(ca: "CertificateAuthority", sessions: "sessionmaker[Session]", tsa: "TimeStamper | None" = None,
               checkpoint_every: int = 1000, witness: "Witness | None" = None) -> AuditTrail:
    """An :class:`AuditTrail` that checkpoints itself every ``checkpoint_every`` entries, each
    checkpoint also appended to ``witness`` (audit.witness) when given."""
    from audit.checkpoints import Checkpointer

    return AuditTrail(sessions, ca.clock, Checkpointer(ca, sessions, tsa, ca.clock, witness), checkpoint_every)


__all__ = ["AuditError", "AuditEvent", "AuditEventInvalid", "AuditTrail", "AuditUnavailable",
           "CheckpointRefused", "CheckpointUnavailable", "open_trail"]
