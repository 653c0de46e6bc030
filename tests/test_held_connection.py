"""The held driver connection of the hot paths (store.held_connection), on SQLite and PostgreSQL:
every statement sees and leaves committed state, and a dropped connection is reported once and
replaced."""

from __future__ import annotations

import datetime
import logging
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, bindparam, text
from sqlalchemy.exc import IntegrityError

from store.engine import make_engine
from store.held_connection import HeldStatement
from store.types import UtcDateTime


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Engine, str]]:
    url = f"sqlite:///{tmp_path / 'held.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    table = f"held_{secrets.token_hex(4)}"
    with engine.begin() as conn:
        conn.execute(text(f"CREATE TABLE {table} (k VARCHAR(20) PRIMARY KEY, v INTEGER NOT NULL)"))
    try:
        yield engine, table
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"DROP TABLE {table}"))
        engine.dispose()


def test_reads_see_the_latest_commit_and_deletes_commit_at_once(engine: tuple[Engine, str]) -> None:
    eng, table = engine
    read = HeldStatement(eng, f"SELECT v FROM {table} WHERE k = ?", "test read")
    delete = HeldStatement(eng, f"DELETE FROM {table} WHERE k = ? AND v > ?", "test delete")
    missing = read.execute(("a",))
    assert missing is not None and missing.row is None
    with eng.begin() as conn:
        conn.execute(text(f"INSERT INTO {table} (k, v) VALUES ('a', 1)"))
    first = read.execute(("a",))
    assert first is not None and first.row == (1,)
    with eng.begin() as conn:  # another connection changes it: the held one must not read a stale snapshot
        conn.execute(text(f"UPDATE {table} SET v = 2 WHERE k = 'a'"))
    second = read.execute(("a",))
    assert second is not None and second.row == (2,)
    assert (delete.execute(("a", 5)) or pytest.fail("driver failed")).rowcount == 0
    assert (delete.execute(("a", 1)) or pytest.fail("driver failed")).rowcount == 1
    with eng.connect() as conn:  # committed: another connection no longer sees the row
        assert conn.execute(text(f"SELECT count(*) FROM {table}")).scalar() == 0


def test_a_dropped_connection_is_reported_and_replaced(engine: tuple[Engine, str],
                                                       caplog: pytest.LogCaptureFixture) -> None:
    eng, table = engine
    if eng.dialect.name != "postgresql":
        pytest.skip("a server that drops the connection: PostgreSQL")
    with eng.begin() as conn:
        conn.execute(text(f"INSERT INTO {table} (k, v) VALUES ('secret-key', 7)"))
    read = HeldStatement(eng, f"SELECT pg_backend_pid(), v FROM {table} WHERE k = ?", "test read")
    before = read.execute(("secret-key",))
    assert before is not None and before.row is not None and before.row[1] == 7
    with eng.connect() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": before.row[0]}).scalar()
    with caplog.at_level(logging.WARNING, logger="store.held_connection"):
        assert read.execute(("secret-key",)) is None  # the caller answers through the engine
    assert "test read: held connection unavailable" in caplog.text
    assert "secret-key" not in caplog.text  # parameters are never logged
    after = read.execute(("secret-key",))
    assert after is not None and after.row is not None and after.row[1] == 7 and after.row[0] != before.row[0]


def test_typed_values_go_in_and_come_out_as_through_the_engine(engine: tuple[Engine, str]) -> None:
    """A UtcDateTime parameter is stored as the engine stores it (on SQLite: the same text, so the
    engine's comparisons hold) and comes back aware UTC; untyped positions pass through."""
    eng, table = engine
    with eng.begin() as conn:
        conn.execute(text(f"ALTER TABLE {table} ADD COLUMN at TIMESTAMP"))
    at = datetime.datetime(2026, 11, 25, 14, 0, 0, tzinfo=datetime.timezone.utc)  # no microseconds
    write = HeldStatement(eng, f"INSERT INTO {table} (k, v, at) VALUES (?, ?, ?)", "test write",
                          params=(None, None, UtcDateTime()))
    assert write.execute(("t", 1, at)) is not None
    read = HeldStatement(eng, f"SELECT at, v FROM {table} WHERE k = ?", "test read", results=(UtcDateTime(),))
    got = read.execute(("t",))
    assert got is not None and got.row == (at, 1)
    probe = text(f"SELECT count(*) FROM {table} WHERE at = :at").bindparams(bindparam("at", type_=UtcDateTime()))
    with eng.connect() as conn:
        assert conn.execute(probe, {"at": at}).scalar() == 1


def test_the_statements_of_a_thread_share_one_connection(engine: tuple[Engine, str]) -> None:
    eng, table = engine
    if eng.dialect.name != "postgresql":
        pytest.skip("the server names the connection: PostgreSQL")
    first = HeldStatement(eng, "SELECT pg_backend_pid()", "first")
    second = HeldStatement(eng, f"SELECT pg_backend_pid(), count(*) FROM {table}", "second")
    a, b = first.execute(()), second.execute(())
    assert a is not None and b is not None and a.row is not None and b.row is not None and a.row[0] == b.row[0]


def test_a_refused_row_raises_integrity_error_and_keeps_the_connection(engine: tuple[Engine, str],
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    """A constraint's refusal is the caller's to handle (e.g. invalid_client for a removed client),
    as through the engine: not a dropped connection, not a retry."""
    eng, table = engine
    write = HeldStatement(eng, f"INSERT INTO {table} (k, v) VALUES (?, ?)", "test write")
    assert write.run(("dup", 1)).rowcount == 1
    with caplog.at_level(logging.WARNING, logger="store.held_connection"), pytest.raises(IntegrityError):
        write.run(("dup", 2))
    assert "held connection unavailable" not in caplog.text
    assert write.run(("other", 3)).rowcount == 1


def test_a_forked_child_opens_its_own_connection(engine: tuple[Engine, str]) -> None:
    """A worker forked after the parent used a held statement must not share the parent's driver
    connection (two processes on one SQLite handle or one PostgreSQL socket corrupt both)."""
    import os

    from store import held_connection

    eng, table = engine
    write = HeldStatement(eng, f"INSERT INTO {table} (k, v) VALUES (?, ?)", "test write")
    assert write.execute(("parent", 1)) is not None
    parents = held_connection._held.connections[eng][1]
    read, written = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report whether it got a connection of its own, then leave at once
        ok = False
        try:
            done = write.execute(("child", 2))
            ok = done is not None and done.rowcount == 1 and held_connection._held.connections[eng][1] is not parents
        finally:
            os.write(written, b"1" if ok else b"0")
            os._exit(0)
    os.close(written)
    assert os.read(read, 1) == b"1"
    os.waitpid(pid, 0)
    os.close(read)
    assert (write.execute(("parent-again", 3)) or pytest.fail("driver failed")).rowcount == 1
    assert held_connection._held.connections[eng][1] is parents  # the parent's own is untouched
