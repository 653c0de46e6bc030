"""The verification API's rate limit: one token bucket per service for the whole deployment, every
worker of every node together; a batch costs one token per item; over the limit the call is
answered 429 with Retry-After (RFC 6585 section 4, RFC 9110 section 10.2.3).

The bucket is a row of ``api_rate_bucket`` (migration 0015, :class:`idp.citizen_models.ApiRateBucket`).
A worker does not write it per call: it *leases* a chunk of tokens (:data:`CHUNK_SECONDS` of the
rate, at least the call's cost) in one statement, an upsert that refills the row by the time
passed on the database's clock, takes the chunk if the row has that much, and returns what is
left. The worker then spends the chunk locally, under a lock, until it is gone or
:data:`LEASE_SECONDS` old. Every token a worker spends was taken from the shared row, so over any
time ``t`` a service gets at most ``burst + rate x t`` plus the chunks other workers still hold (at
most one chunk each), whatever the number of workers and nodes. A refusal is remembered by the
worker until the row can have refilled enough (at least :data:`CHUNK_SECONDS`), so a service over
its limit costs each worker at most one write per :data:`CHUNK_SECONDS`, however often it calls.

The database's clock (PostgreSQL ``clock_timestamp()``, SQLite ``julianday('now')``) refills the
bucket, so the nodes' clocks do not have to agree for the limit to hold.

If the database cannot be reached the limiter fails closed: the statement's error propagates and
the call is answered 503 with Retry-After (:func:`idp.problems.database_outage`). The call could
not be recorded anyway (:mod:`idp.verification_api.group_commit`), and an unrecorded verification
must not be answered.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, Float, bindparam, case
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import FunctionElement

from idp.citizen_models import ApiRateBucket
from idp.verification_api.inputs import MAX_BATCH

__all__ = ["CHUNK_SECONDS", "LEASE_SECONDS", "RateLimiter"]

#: a lease is this many seconds of the rate (at least the call's cost): at most 1/CHUNK_SECONDS
#: writes per second per service when it spends its whole rate
CHUNK_SECONDS = 0.05
#: tokens a worker leased and has not spent are dropped after this long (a lowered rate is then
#: in force everywhere, and a worker that stopped seeing a service holds none of its tokens)
LEASE_SECONDS = 10.0


class DatabaseSeconds(FunctionElement[float]):
    """Now on the database's clock, in seconds since the epoch (one clock for every node)."""

    type = Float()
    inherit_cache = True
    name = "database_seconds"


@compiles(DatabaseSeconds, "postgresql")
def _postgresql_seconds(_element: DatabaseSeconds, _compiler: SQLCompiler, **_kw: Any) -> str:
    return "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)"


@compiles(DatabaseSeconds, "sqlite")
def _sqlite_seconds(_element: DatabaseSeconds, _compiler: SQLCompiler, **_kw: Any) -> str:
    return "((julianday('now') - 2440587.5) * 86400.0)"  # the Julian day of 1970-01-01T00:00Z


def _lease_statement(dialect: str) -> Any:
    """The one statement of a lease: create the bucket full and take a chunk from it, or refill it
    by the time passed and take the chunk if it is there; returns the tokens left and the tokens
    granted (the chunk or 0)."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    row = ApiRateBucket
    now = DatabaseSeconds()
    rate, burst = bindparam("rate", type_=Float()), bindparam("burst", type_=Float())
    chunk = bindparam("chunk", type_=Float())
    refilled = row.tokens + (now - row.refilled_at) * rate
    available = case((refilled > burst, burst), else_=refilled)
    granted = case((available >= chunk, chunk), else_=0.0)
    statement = insert(row).values(key=bindparam("key"), tokens=bindparam("first_left", type_=Float()),
                                   granted=bindparam("first_granted", type_=Float()), refilled_at=now)
    return statement.on_conflict_do_update(
        index_elements=[row.key], set_={"tokens": available - granted, "granted": granted, "refilled_at": now},
    ).returning(row.tokens, row.granted)


_STATEMENTS = {name: _lease_statement(name) for name in ("postgresql", "sqlite")}


@dataclass
class _Lease:
    """What one worker holds of one service's bucket."""

    tokens: float = 0.0
    #: monotonic time after which the tokens are dropped
    expires: float = 0.0
    #: the last refusal: tokens the bucket had, at (monotonic) when, refilled at which rate, and the
    #: chunk of that rate
    left: float = 0.0
    refused_at: float = -math.inf
    refused_rate: float = 0.0
    refused_chunk: float = 0.0
    #: held while this worker asks the bucket: its other threads wait for the answer, not ask again
    asking: threading.Lock = field(default_factory=threading.Lock)

    def spend(self, cost: int, now: float) -> float | None:
        """From what this worker holds: 0 when allowed, the seconds to wait while a refusal stands
        (until the bucket can have a lease for ``cost``, and at least :data:`CHUNK_SECONDS`, so a
        refused worker asks again at most that often), None when only the bucket can say."""
        if self.tokens >= cost and now < self.expires:
            self.tokens -= cost
            return 0.0
        if self.refused_rate > 0:
            refill = (max(cost, self.refused_chunk) - self.left) / self.refused_rate
            wait = self.refused_at + max(refill, CHUNK_SECONDS) - now
            if wait > 0:
                return wait
        return None


class RateLimiter:
    """A token bucket per service shared by every worker and node (the module's docstring):
    ``rate()`` per second (the value in force: the system administrator may change it at run time,
    idp.runtime_settings ``api.rate_per_second``), ``burst`` at most (default twice the rate, at
    least one full batch)."""

    def __init__(self, engine: Engine, rate: Callable[[], float], burst: float | None = None,
                 ticks: Callable[[], float] = time.monotonic) -> None:
        self.engine = engine
        self.rate = rate
        self.burst = burst
        self.ticks = ticks
        self._statement = _STATEMENTS[engine.dialect.name]
        self._leases: dict[str, _Lease] = {}
        self._lock = threading.Lock()

    def take(self, service: str, cost: int) -> float:
        """0 when allowed; otherwise the seconds to wait. Raises the store's error when the
        database cannot be reached (fail closed)."""
        with self._lock:
            lease = self._leases.setdefault(service, _Lease())
            answer = lease.spend(cost, self.ticks())
        if answer is not None:
            return answer
        with lease.asking:
            with self._lock:  # another thread may have leased meanwhile
                answer = lease.spend(cost, self.ticks())
            if answer is not None:
                return answer
            return self._ask(service, lease, cost)

    def _ask(self, service: str, lease: _Lease, cost: int) -> float:
        """Lease a chunk from the shared bucket (one statement) and spend ``cost`` of it."""
        rate = float(self.rate())
        burst = self.burst if self.burst is not None else max(rate * 2, MAX_BATCH)
        base = min(burst, math.ceil(rate * CHUNK_SECONDS))
        chunk = max(cost, base)
        first = chunk if burst >= chunk else 0
        with self.engine.begin() as connection:
            left, granted = connection.execute(self._statement, {
                "key": hashlib.sha256(service.encode()).hexdigest(), "rate": rate, "burst": burst, "chunk": chunk,
                "first_left": burst - first, "first_granted": first}).one()
        now = self.ticks()
        with self._lock:
            if granted <= 0:
                lease.left, lease.refused_at, lease.refused_rate, lease.refused_chunk = left, now, rate, base
                return (chunk - left) / rate if rate > 0 else 3600.0
            held = lease.tokens if now < lease.expires else 0.0
            lease.tokens, lease.expires, lease.refused_rate = held + granted - cost, now + LEASE_SECONDS, 0.0
            return 0.0
