"""A checkpoint made while other threads append (the scheduler beside a busy service) must not
mistake their entries for entries "added outside the trail": the head and the entries it covers
are read in one snapshot (store.engine.read_snapshot)."""

from __future__ import annotations

import threading

from audit.trail import AuditEvent
from tests.fixtures_audit import AuditStore, audit_store  # noqa: F401


def test_checkpoints_beside_appending_threads_are_never_refused(audit_store: AuditStore) -> None:  # noqa: F811
    audit_store.trail.record(AuditEvent("login.password", "staff:first", "success"))
    stop = threading.Event()
    errors: list[BaseException] = []

    def append() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                audit_store.trail.record(AuditEvent("login.password", f"staff:u{n}", "success"))
            except BaseException as exc:  # reported by the assertion below
                errors.append(exc)
                return

    writers = [threading.Thread(target=append) for _ in range(3)]
    for w in writers:
        w.start()
    try:
        made = [audit_store.checkpointer.checkpoint() for _ in range(25)]
    finally:
        stop.set()
        for w in writers:
            w.join(30)
    assert errors == []
    assert len({c.seq for c in made}) > 1  # the head moved while checkpoints were made
