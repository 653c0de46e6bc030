"""The verification API's rate limit shared by every worker and node (issue 16 item 6), on SQLite
and PostgreSQL: limiters on one database stand for the workers of several nodes. Together they
admit a service's burst and rate once, not once each; a lease is one statement per chunk; a
refusal costs no statement until the bucket can have refilled; the database's clock refills it;
a database that cannot be reached fails the call closed (the app's 503)."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event, select, text

from idp.citizen_models import ApiRateBucket
from idp.problems import database_outage
from idp.verification_api.rate_limit import CHUNK_SECONDS, LEASE_SECONDS, DatabaseSeconds, RateLimiter
from store.engine import make_engine


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An empty store with the bucket table; PostgreSQL: a database of its own in the private cluster."""
    if request.param == "sqlite":
        made = make_engine(f"sqlite:///{tmp_path / 'rate.db'}")
    else:
        url: str = request.getfixturevalue("postgres_url")
        name = f"rate_{uuid.uuid4().hex[:12]}"
        with create_engine(url, isolation_level="AUTOCOMMIT").connect() as admin:
            admin.execute(text(f"CREATE DATABASE {name}"))
        made = make_engine(url.rsplit("/", 1)[0] + "/" + name)
    ApiRateBucket.__table__.create(made)  # type: ignore[attr-defined]
    yield made
    made.dispose()


def _statements(engine: Engine) -> list[str]:
    """Every statement ``engine`` runs from now on."""
    seen: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _count(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        seen.append(statement)

    return seen


def test_workers_and_nodes_share_one_burst(engine: Engine) -> None:
    """Four limiters (2 nodes x 2 workers), 1/s with a burst of 10: ten calls in all, not forty."""
    limiters = [RateLimiter(engine, lambda: 1.0, burst=10) for _ in range(4)]
    began = time.monotonic()
    admitted = sum(limiter.take("client:svc", 1) == 0 for limiter, _ in zip(itertools.cycle(limiters), range(40)))
    refill = time.monotonic() - began  # at 1/s
    assert 10 <= admitted <= 10 + int(refill) + 1
    assert all(limiter.take("client:other", 1) == 0 for limiter in limiters)  # a budget per service


def test_concurrent_workers_never_exceed_burst_plus_rate(engine: Engine) -> None:
    """Threads of four limiters spend a 200/s service's budget together for about a second, calling
    far more often than that: never more than the burst plus the rate for the time taken plus the
    chunks still held; a statement per chunk granted and, while refused, at most one per limiter
    every CHUNK_SECONDS, not one per call."""
    rate, burst = 200.0, 100.0
    limiters = [RateLimiter(engine, lambda: rate, burst=burst) for _ in range(4)]
    for limiter in limiters:  # connections made before the clock starts (slow on a loaded machine)
        assert limiter.take("certificate:O=Tax,CN=warm-up", 1) == 0
    statements = _statements(engine)
    admitted, calls = [0] * 8, [0] * 8
    stop, latest = time.monotonic() + 1.0, time.monotonic() + 10.0

    def spend(i: int) -> None:
        # about a second, longer (up to ten) while the burst is not yet spent: a loaded machine
        # may answer the first statements slowly, and the bounds below count the time taken
        while time.monotonic() < stop or (sum(admitted) < burst and time.monotonic() < latest):
            calls[i] += 1
            if limiters[i % 4].take("certificate:O=Tax,CN=verifier", 1) == 0:
                admitted[i] += 1
            else:
                time.sleep(0.001)

    began = time.monotonic()
    threads = [threading.Thread(target=spend, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    took = time.monotonic() - began
    chunk = rate * CHUNK_SECONDS
    assert sum(admitted) <= burst + rate * took + 4 * chunk
    assert sum(admitted) >= burst  # the burst at least, and refills beside it
    leases = [s for s in statements if s.lstrip().upper().startswith("INSERT INTO API_RATE_BUCKET")]
    assert len(leases) <= sum(admitted) / chunk + 4 + 4 * (took / CHUNK_SECONDS + 1)
    assert sum(calls) > 5 * len(leases)


def test_a_refusal_is_remembered_until_the_bucket_can_refill(engine: Engine) -> None:
    limiter = RateLimiter(engine, lambda: 2.0, burst=3)
    assert [limiter.take("client:busy", 1) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.take("client:busy", 1)
    assert 0 < wait <= 0.5
    statements = _statements(engine)
    again = [limiter.take("client:busy", 1) for _ in range(50)]
    assert statements == [] and all(0 < w <= wait for w in again)  # answered without the database
    assert limiter.take("client:busy", 5) >= 1.0  # more than the burst: never, and a longer wait said
    time.sleep(wait + 0.05)
    assert limiter.take("client:busy", 1) == 0.0


def test_unspent_tokens_are_dropped_when_the_lease_ends(engine: Engine) -> None:
    """A worker's leftover tokens last LEASE_SECONDS: a rate lowered meanwhile is then in force."""
    now = [1000.0]
    rate = [2000.0]
    limiter = RateLimiter(engine, lambda: rate[0], burst=4000, ticks=lambda: now[0])
    assert limiter.take("client:svc", 1) == 0.0  # leases a chunk of 100
    statements = _statements(engine)
    assert all(limiter.take("client:svc", 1) == 0.0 for _ in range(98)) and statements == []  # one left
    with engine.begin() as connection:
        connection.execute(ApiRateBucket.__table__.update().values(tokens=0))  # type: ignore[attr-defined]
    rate[0] = 1.0
    now[0] += LEASE_SECONDS + 1
    statements.clear()
    assert limiter.take("client:svc", 1) > 0 and len(statements) == 1  # asked the (empty) bucket


def test_the_database_clock_refills_the_bucket(engine: Engine) -> None:
    with engine.connect() as connection:
        seconds = connection.execute(select(DatabaseSeconds())).scalar_one()
    assert abs(seconds - time.time()) < 5
    RateLimiter(engine, lambda: 1.0, burst=100).take("client:svc", 1)
    with engine.begin() as connection:
        row = connection.execute(select(ApiRateBucket.tokens, ApiRateBucket.granted,
                                        ApiRateBucket.refilled_at)).one()
        assert (row.tokens, row.granted) == (99.0, 1.0) and abs(row.refilled_at - seconds) < 5
        # emptied 3 s before the first take on the database's clock: three tokens at 1/s since,
        # plus one per second the machine took between the takes (well under one, even loaded)
        connection.execute(ApiRateBucket.__table__.update().values(  # type: ignore[attr-defined]
            tokens=0, refilled_at=row.refilled_at - 3.0))
    assert RateLimiter(engine, lambda: 1.0, burst=100).take("client:svc", 2) == 0.0
    with engine.connect() as connection:
        assert 1 <= connection.execute(select(ApiRateBucket.tokens)).scalar_one() < 2


def test_an_unreachable_database_fails_closed(tmp_path: Path) -> None:
    limiter = RateLimiter(make_engine(f"sqlite:///{tmp_path / 'missing' / 'tessera.db'}"), lambda: 100.0)
    with pytest.raises(Exception) as raised:
        limiter.take("client:svc", 1)
    assert database_outage(raised.value)  # the app answers 503 with Retry-After, and nothing was verified
