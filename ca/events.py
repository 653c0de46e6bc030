"""Security events of the certificate authority, handed to a sink inside the operation's transaction.

The CA library knows nothing of the audit trail: the deployment gives :class:`ca.authority.CertificateAuthority`
an :data:`EventSink`, which writes each event in the same transaction as the change it describes, so
the change and its record commit together or not at all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session


@dataclass(frozen=True)
class CaEvent:
    """``cert.issue``, ``cert.revoke`` or ``cert.release`` by ``actor`` on ``object`` (``cert:<serial>``)."""

    type: str
    actor: str
    object: str
    details: Mapping[str, Any] = field(default_factory=dict)


#: called with the open session of the operation's transaction; raising undoes the operation
EventSink = Callable[[Session, CaEvent], None]
