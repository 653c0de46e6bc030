"""Checkpoints by time: while the trail grows, a signed checkpoint at least every ``interval`` seconds.

Every process of the service (each worker, on every node) runs a :class:`CheckpointSchedule`
that ticks every ``interval / 12`` seconds. A tick does nothing unless entries were appended since
the newest checkpoint; then it claims the round with one compare-and-set on the shared row
``audit_checkpoint_schedule`` (``UPDATE ... SET due_at = now + interval - tick WHERE id = 1 AND
due_at <= now``): only the process whose update changed the row makes the checkpoint, so several
workers or nodes never make duplicate or competing ones. An entry therefore waits at most
``interval`` seconds for a checkpoint while the service runs. A refused or failed checkpoint is
logged (and a refusal audited, audit.trail); the next round tries again.

The clock is injectable (tests tick with a fake clock; no minute-long sleeps).
"""

from __future__ import annotations

import datetime
import logging
import os
import socket
import threading
from collections.abc import Callable
from typing import Any, cast

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from audit.checkpoints import Checkpointer
from audit.errors import AuditError
from audit.models import AuditCheckpoint, AuditCheckpointSchedule, AuditHead
from audit.trail import utc_now

log = logging.getLogger("tessera.audit")

#: ticks per interval: an entry waits at most interval (plus one tick's lag absorbed by due_at)
TICKS_PER_INTERVAL = 12


class CheckpointSchedule:
    """One process's share of the time-based checkpoints (see the module docstring)."""

    def __init__(self, checkpointer: Checkpointer, sessions: sessionmaker[Session], interval: float = 60.0,
                 clock: Callable[[], datetime.datetime] = utc_now, holder: str | None = None) -> None:
        if interval <= 0:
            raise ValueError("the checkpoint interval must be positive")
        self.checkpointer = checkpointer
        self.sessions = sessions
        self.interval = float(interval)
        self.tick_seconds = self.interval / TICKS_PER_INTERVAL
        self.clock = clock
        self.holder = (holder or f"{socket.gethostname()}:{os.getpid()}")[:255]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> AuditCheckpoint | None:
        """One round: the checkpoint made, or None (no new entries, another process's turn, or it failed)."""
        now = self.clock()
        try:
            with self.sessions() as session:
                head = session.scalar(select(AuditHead.seq).where(AuditHead.id == 1))
                newest = session.scalar(select(func.max(AuditCheckpoint.seq)))
            if not head or int(head) <= int(newest or 0):
                return None  # no activity since the newest checkpoint
            next_due = now + datetime.timedelta(seconds=self.interval - self.tick_seconds)
            with self.sessions.begin() as session:
                result = session.execute(
                    update(AuditCheckpointSchedule)
                    .where(AuditCheckpointSchedule.id == 1, AuditCheckpointSchedule.due_at <= now)
                    .values(due_at=next_due, holder=self.holder)
                    .execution_options(synchronize_session=False))
                claimed = cast("CursorResult[Any]", result).rowcount  # an UPDATE's result counts its rows
            if claimed != 1:
                return None
            return self.checkpointer.checkpoint()
        except AuditError as exc:  # refused (already logged loudly and audited) or unavailable
            log.error("time-based audit checkpoint not made: %s", exc)
        except SQLAlchemyError as exc:
            log.error("time-based audit checkpoint not made: the database is unavailable (%s)", type(exc).__name__)
        return None

    def run(self) -> None:
        """Tick until :meth:`stop` (the thread's body)."""
        while not self._stop.wait(self.tick_seconds):
            try:
                self.tick()
            except Exception:  # noqa: BLE001  (the thread must outlive one bad round; the next one retries)
                log.exception("time-based audit checkpoint failed")

    def stop(self, timeout: float | None = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def start(self) -> CheckpointSchedule:
        """Run :meth:`run` in a daemon thread of this process (PKCS#11 calls are serialised by ca.pkcs11_keys)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self.run, name="tessera-audit-checkpoints", daemon=True)
            self._thread.start()
        return self


def start(checkpointer: Checkpointer | None, sessions: sessionmaker[Session], interval: float,
          clock: Callable[[], datetime.datetime] = utc_now) -> CheckpointSchedule | None:
    """Start this process's time-based checkpoints (``interval`` seconds; 0 or no checkpointer: none).
    Call once per worker process, after it forked (e.g. in the app factory)."""
    if checkpointer is None or interval <= 0:
        return None
    return CheckpointSchedule(checkpointer, sessions, interval, clock).start()
