"""The verification API's group commit (idp.verification_api.group_commit.GroupCommit): concurrent calls share a
transaction, nobody returns before the write holding their record is done, a failed write fails
every call in it, and a call that ends without a record does not hold the others up."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from idp.verification_api.group_commit import GroupCommit


class Store:
    """A write function that keeps what it was given, slowly, and can be told to fail."""

    def __init__(self, delay: float = 0.003) -> None:
        self.groups: list[list[Any]] = []
        self.failed_groups: list[list[Any]] = []
        self.written: set[Any] = set()
        self.fail_items: set[Any] = set()
        self.delay = delay
        self._lock = threading.Lock()
        self.writing = 0
        self.overlap = False

    def write(self, items: list[Any]) -> None:
        with self._lock:
            self.writing += 1
            self.overlap = self.overlap or self.writing > 1
        try:
            time.sleep(self.delay)
            if self.fail_items & set(items):
                with self._lock:
                    self.failed_groups.append(list(items))
                raise RuntimeError("the store is down")
            with self._lock:
                self.groups.append(list(items))
                self.written.update(items)
        finally:
            with self._lock:
                self.writing -= 1


def _calls(group: GroupCommit, store: Store, items: list[int], results: dict[int, str]) -> list[threading.Thread]:
    def call(item: int) -> None:
        with group.ticket() as ticket:
            time.sleep(0.001 * (item % 3))  # the calls' own work
            try:
                ticket.submit(item)
            except RuntimeError as exc:
                results[item] = f"failed: {exc}"
                return
            # answered only once the record is written
            results[item] = "written" if item in store.written else "answered before its record was written"

    return [threading.Thread(target=call, args=(i,)) for i in items]


def test_concurrent_calls_share_writes_and_wait_for_them() -> None:
    store = Store()
    group = GroupCommit(store.write)
    results: dict[int, str] = {}
    threads = _calls(group, store, list(range(40)), results)
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert results == {i: "written" for i in range(40)}
    assert sorted(i for g in store.groups for i in g) == list(range(40))  # each exactly once
    assert len(store.groups) < 40, "no call shared a transaction"
    assert not store.overlap, "two writes at once"


def test_a_failed_write_fails_every_call_in_it_and_only_those() -> None:
    store = Store(delay=0.01)
    store.fail_items = {7}
    group = GroupCommit(store.write)
    results: dict[int, str] = {}
    threads = _calls(group, store, list(range(12)), results)
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    failed = {i for i, r in results.items() if r.startswith("failed")}
    assert len(store.failed_groups) == 1 and 7 in store.failed_groups[0]
    assert failed == set(store.failed_groups[0])  # the whole group of item 7, nobody else
    assert all(results[i] == "written" for i in set(range(12)) - failed)
    assert not failed & store.written and len(failed) + len(store.written) == 12


def test_a_call_without_a_record_does_not_hold_the_writer() -> None:
    store = Store(delay=0)
    group = GroupCommit(store.write)
    with group.ticket():
        pass  # e.g. a 400 or a 429: no record
    idle = group.ticket()
    idle.__enter__()  # a call still in progress elsewhere: the writer waits for it at most LINGER
    try:
        started = time.monotonic()
        with group.ticket() as ticket:
            ticket.submit("alone")
        assert time.monotonic() - started < GroupCommit.LINGER + 0.5
    finally:
        idle.__exit__(None, None, None)
    assert store.groups == [["alone"]]
    with group.ticket() as ticket:
        ticket.submit("again")
        with pytest.raises(RuntimeError):
            ticket.submit("twice")


def test_calls_sharing_an_entry_stay_within_the_audit_details_limit() -> None:
    """Concurrent calls of one service share an ``api.verify`` entry, split so that no entry's
    details pass the trail's limit (the AuditEvent refuses such an entry); each call is listed."""
    from audit.trail import MAX_DETAILS_BYTES
    from audit import chain
    from idp.verification_api.group_commit import _audit_events, _Call

    citizens = [f"3{n:010d}" for n in range(50)]
    calls = [_Call("Tax Office/verifier", f"certificate:batch-{i}", f"127.0.0.{i % 3}",
                   {"citizens": citizens[: 1 + (i * 7) % 50], "items": 100, "valid": 99, "client_id": "x" * 22}, [])
             for i in range(40)]
    calls.append(_Call("Insurance/verifier", "certificate:abc", "127.0.0.1",
                       {"citizens": ["38001010000"], "items": 1, "valid": 1, "service_certificate": "ab" * 20}, []))
    events = _audit_events(calls)
    listed = []
    for event in events:
        assert len(chain.canonical_details(dict(event.details)).encode()) <= MAX_DETAILS_BYTES
        listed += [c["object"] for c in event.details["calls"]] if "calls" in event.details else [event.object]
    assert sorted(listed) == sorted(c.object for c in calls)
    alone = [e for e in events if e.subject == "service:Insurance/verifier"]
    assert len(alone) == 1 and alone[0].object == "certificate:abc" and alone[0].details["citizens"] == ["38001010000"]
    assert all(e.subject == "service:Tax Office/verifier" for e in events if e is not alone[0])
