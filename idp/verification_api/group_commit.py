"""Every call of the verification API is recorded before it is answered: one
:class:`idp.citizen_models.VerificationLog` row per item and an ``api.verify`` audit entry, written
for concurrent calls of a process in shared transactions (:class:`GroupCommit`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

from flask import request

from idp.citizen_blueprints import services
from idp.verification_api.authentication import ServiceIdentity
from idp.verification_api.verifications import Outcome


class GroupCommit:
    """Writes what concurrent calls of one process hand it in shared transactions (group commit).

    Each call takes a :meth:`ticket` when it starts. A call that has its records hands them in and
    waits; the first one to find no write in progress becomes the writer: it waits (at most
    :data:`LINGER` seconds) for the calls still in progress in this process, then writes everything
    handed in so far in ONE transaction and wakes the others. Nobody is answered before the
    transaction holding their record has committed, and a failed transaction fails every call in
    it, so each call stays recorded-or-refused; a group pays one BEGIN/COMMIT, one turn of the
    store's write lock and one audit entry per service instead of one per call.
    """

    LINGER = 0.002

    def __init__(self, write: Callable[[list[Any]], None]) -> None:
        self._write = write
        self._ready = threading.Condition()
        self._pending: list[_Pending] = []
        self._writing = False
        self._running = 0  # calls holding a ticket that have not handed in their records yet

    @contextmanager
    def ticket(self) -> Iterator[Ticket]:
        """For the duration of one call: its way to :meth:`Ticket.submit` its records."""
        ticket = Ticket(self)
        with self._ready:
            self._running += 1
        try:
            yield ticket
        finally:
            if not ticket.used:
                with self._ready:
                    self._running -= 1
                    self._ready.notify_all()

    def _submit(self, ticket: Ticket, item: Any) -> None:
        mine = _Pending(item)
        with self._ready:
            ticket.used = True
            self._running -= 1
            self._pending.append(mine)
            self._ready.notify_all()
            while self._writing and not mine.done:
                self._ready.wait()
            if mine.done:
                if mine.error is not None:
                    raise mine.error
                return
            self._writing = True
            deadline = time.monotonic() + self.LINGER
            while self._running > 0 and (left := deadline - time.monotonic()) > 0:
                self._ready.wait(left)
            group, self._pending = self._pending, []
        error: BaseException | None = None
        try:
            self._write([p.item for p in group])
        except BaseException as exc:  # noqa: BLE001  (handed to every call of the group, then raised)
            error = exc
        with self._ready:
            for pending in group:
                pending.done, pending.error = True, error
            self._writing = False
            self._ready.notify_all()
        if error is not None:
            raise error


class Ticket:
    def __init__(self, group: GroupCommit) -> None:
        self.group = group
        self.used = False

    def submit(self, item: Any) -> None:
        """Return once ``item`` is committed; raise what the write raised if it was not."""
        if self.used:
            raise RuntimeError("a ticket records one call")
        self.group._submit(self, item)


@dataclass
class _Pending:
    item: Any
    done: bool = False
    error: BaseException | None = None


@dataclass(frozen=True)
class _Call:
    """What one API call leaves behind: its verification-log rows and what its audit entry says."""

    service: str
    object: str
    source_address: str | None
    details: dict[str, Any]
    rows: list[dict[str, Any]]


#: an audit entry's details are at most 4 KiB (audit.trail.MAX_DETAILS_BYTES): calls per shared entry
_CALLS_PER_ENTRY_BYTES = 3000


def record(ticket: Ticket, identity: ServiceIdentity, operation: str, outcomes: list[Outcome]) -> None:
    """A verification-log row per item and the call in an ``api.verify`` audit entry, committed
    (with the records of concurrent calls, :class:`GroupCommit`) before the answer goes out."""
    now = services().deployment.now()
    rows = [{"at": now, "service": identity.name, "operation": operation, "national_id": o.national_id,
             "subject": o.subject or "-", "certificate_serial": o.serial, "outcome": "valid" if o.valid else "invalid"}
            for o in outcomes]
    details: dict[str, Any] = {"citizens": sorted({o.national_id for o in outcomes if o.national_id})[:50],
                               "items": len(outcomes), "valid": sum(o.valid for o in outcomes)}
    details.update(identity.audit_details)
    obj = f"{operation}:{outcomes[0].serial or '-'}" if len(outcomes) == 1 else f"{operation}:batch"
    ticket.submit(_Call(identity.name, obj, (request.remote_addr or "")[:64] or None, details, rows))


def _audit_events(calls: list[_Call]) -> list[Any]:
    """The ``api.verify`` entries of a group: a call alone is one entry (subject ``service:<name>``,
    the citizens concerned, item and valid counts, the credential); concurrent calls of one service
    share an entry that lists each call (``calls``), as a batch request's items do."""
    from audit.trail import AuditEvent

    by_service: dict[str, list[_Call]] = {}
    for call in calls:
        by_service.setdefault(call.service, []).append(call)
    events = []
    for service, mine in by_service.items():
        chunks: list[list[_Call]] = [[]]
        size = 0
        for call in mine:
            # its share of the entry's canonical JSON, over-estimated (no encoding on the hot path)
            cost = 120 + len(call.object) + 18 * len(call.details["citizens"]) + len(call.source_address or "")
            if chunks[-1] and size + cost > _CALLS_PER_ENTRY_BYTES:
                chunks.append([])
                size = 0
            chunks[-1].append(call)
            size += cost
        for chunk in chunks:
            addresses = {c.source_address for c in chunk}
            address = chunk[0].source_address if len(addresses) == 1 else None
            if len(chunk) == 1:
                obj, details = chunk[0].object, chunk[0].details
            else:
                obj = f"calls:{len(chunk)}"
                details = {"calls": [{"object": c.object, **c.details}
                                     | ({} if address else {"source_address": c.source_address}) for c in chunk]}
            events.append(AuditEvent("api.verify", f"service:{service}"[:255], "success", subject_role="service",
                                     object=obj, source_address=address, details=details))
    return events


def write_calls(calls: list[_Call]) -> None:
    """One transaction for a group of calls: every log row (one Core insert), their audit entries."""
    from sqlalchemy import Table, insert

    from idp.citizen_models import VerificationLog

    deployment = services().deployment
    trail = deployment.audit  # the deployment's trail: it also makes the periodic signed checkpoints
    rows = [row for call in calls for row in call.rows]
    events = _audit_events(calls)
    with deployment.sessions.begin() as session:
        # Core: no unit of work for rows nobody reads back
        session.execute(insert(cast(Table, VerificationLog.__table__)), rows)
        for event in events:
            trail.append(session, event)

