"""Security events of the certificate authority, handed to a sink inside the operation's transaction.

The CA library knows nothing of the audit trail: the deployment gives :class:`ca.authority.CertificateAuthority`
an :data:`EventSink`, which writes each event in the same transaction as the change it describes, so
the change and its record commit together or not at all. Every certificate the CA makes has its
``cert.issue`` (the CA certificates and delegated signers of `tessera init`, staff and service
certificates, department and audit-trail signers, citizen cards' certificates), every revocation its
``cert.revoke`` (including a card's, when it is reported lost or renewed).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session


@dataclass(frozen=True)
class CaEvent:
    """``cert.issue``, ``cert.revoke`` or ``cert.release`` by ``actor`` on ``object`` (``cert:<serial>``).

    ``cert.issue`` details: ``profile`` (``root-ca`` and ``issuing-ca`` for the CA certificates),
    ``subject``, ``issuer`` (the issuing CA's name), and ``requester`` when someone other than the
    requester issued it (a card's certificates: requested for ``card:<number>`` by the operator)."""

    type: str
    actor: str
    object: str
    details: Mapping[str, Any] = field(default_factory=dict)


#: called with the open session of the operation's transaction; raising undoes the operation
EventSink = Callable[[Session, CaEvent], None]
