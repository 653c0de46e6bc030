"""Card-login nonces on SQLite and PostgreSQL: 32 random bytes, single use, bound to one browser
session, refused after five minutes."""

from __future__ import annotations

import base64
import datetime
from pathlib import Path

import pytest

from store.engine import make_engine
from store import schema
from idp.card_login_nonces import NonceStore


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[NonceStore, list[datetime.datetime]]:
    url = f"sqlite:///{tmp_path / 'nonces.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    schema.upgrade(engine)
    now = [datetime.datetime(2026, 11, 25, 9, 0, tzinfo=datetime.timezone.utc)]
    if request.param == "postgresql":
        with engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM citizen_login_nonce")
    return NonceStore(engine, lambda: now[0]), now


def test_single_use_bound_and_expiring(store: tuple[NonceStore, list[datetime.datetime]]) -> None:
    nonces, now = store
    nonce = nonces.issue("session-a")
    assert len(base64.b64decode(nonce)) == 32
    assert nonces.issue("session-a") != nonce
    assert not nonces.consume(nonce, "session-b")  # another browser session
    assert nonces.consume(nonce, "session-a")
    assert not nonces.consume(nonce, "session-a")  # single use
    late = nonces.issue("session-a")
    now[0] += datetime.timedelta(minutes=4, seconds=59)
    assert nonces.consume(late, "session-a")
    expired = nonces.issue("session-a")
    now[0] += datetime.timedelta(minutes=5, seconds=1)
    assert not nonces.consume(expired, "session-a")
