"""The engine every room shares (store.engine), on SQLite and PostgreSQL: a pooled connection the
server dropped is replaced before a statement fails on it, and a forked process never uses the
parent's connections. A read run on the driver (store.driver_read) answers as the engine does,
returns its connection to the pool and fails as the engine fails."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import datetime

import pytest
from sqlalchemy import Column, Engine, Integer, LargeBinary, MetaData, String, Table, bindparam, func, insert, select, text
from sqlalchemy.exc import DBAPIError

from store.driver_read import DriverRead
from store.engine import make_engine
from store.types import UtcDateTime

_METADATA = MetaData()
_PAIRS = Table("engine_probe", _METADATA, Column("k", String(20), primary_key=True), Column("v", Integer, nullable=False),
               Column("at", UtcDateTime()), Column("blob", LargeBinary))


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'engine.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    _METADATA.drop_all(engine)
    _METADATA.create_all(engine)
    try:
        yield engine
    finally:
        _METADATA.drop_all(engine)
        engine.dispose()


def test_a_connection_the_server_dropped_is_replaced(engine: Engine) -> None:
    """A PostgreSQL restart (here: the backend terminated) drops every pooled connection; the next
    checkout pings, finds it dead and opens another, so the request does not fail."""
    if engine.dialect.name != "postgresql":
        pytest.skip("a server that drops the connection: PostgreSQL")
    with engine.connect() as conn:
        before = conn.scalar(text("SELECT pg_backend_pid()"))
    with make_engine(engine.url.render_as_string(hide_password=False)).connect() as other:
        assert other.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": before})
    with engine.begin() as conn:
        conn.execute(insert(_PAIRS), {"k": "after", "v": 1})
        assert conn.scalar(text("SELECT pg_backend_pid()")) != before


def test_a_forked_child_opens_its_own_connection(engine: Engine) -> None:
    """A process forked after the parent used the engine (a worker, a batch) gets a fresh pool:
    the parent's pooled connection is neither used nor closed by the child."""
    def backend(conn_engine: Engine) -> object:
        with conn_engine.connect() as conn:
            return conn.connection.driver_connection

    with engine.begin() as conn:
        conn.execute(insert(_PAIRS), {"k": "parent", "v": 1})
    parents = backend(engine)
    read, written = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report whether it wrote on a connection of its own, then leave at once
        ok = False
        try:
            ok = backend(engine) is not parents
            with engine.begin() as conn:
                conn.execute(insert(_PAIRS), {"k": "child", "v": 2})
        finally:
            os.write(written, b"1" if ok else b"0")
            os._exit(0)
    os.close(written)
    assert os.read(read, 1) == b"1"
    os.waitpid(pid, 0)
    os.close(read)
    assert backend(engine) is parents  # the parent's own is untouched and still works
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(_PAIRS)) == 2


def test_a_driver_read_answers_as_the_engine_and_gives_its_connection_back(engine: Engine) -> None:
    at = datetime.datetime(2026, 11, 25, 14, 0, 0, 123456, tzinfo=datetime.timezone.utc)
    with engine.begin() as conn:
        conn.execute(insert(_PAIRS), [{"k": "a", "v": 1, "at": at, "blob": b"\x00\xff"}, {"k": "b", "v": 2, "at": None, "blob": None}])
    query = select(_PAIRS.c.v, _PAIRS.c.at, _PAIRS.c.blob).where(_PAIRS.c.k == bindparam("k"), _PAIRS.c.v > bindparam("least"))
    read = DriverRead(engine, query)
    for k in ("a", "b", "missing"):
        with engine.connect() as conn:
            expected = conn.execute(query, {"k": k, "least": 0}).first()
        got = read.first({"k": k, "least": 0})
        assert (got is None and expected is None) or tuple(got or ()) == tuple(expected or ())
    row = read.first({"k": "a", "least": 0})
    assert row is not None and row.at == at and row.at.tzinfo is not None and row.blob == b"\x00\xff" and row.v == 1
    assert read.first({"k": "a", "least": 1}) is None
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    with engine.begin() as conn:  # committed elsewhere: the next read sees it
        conn.execute(_PAIRS.update().where(_PAIRS.c.k == "a").values(v=5))
    assert (read.first({"k": "a", "least": 0}) or (None,))[0] == 5


def test_a_driver_read_fails_as_the_engine_fails(engine: Engine) -> None:
    """A statement the database refuses raises SQLAlchemy's exception (the web layer's 503 for an
    outage keys on it), and the connection still goes back."""
    read = DriverRead(engine, select(_PAIRS.c.v).where(_PAIRS.c.k == bindparam("k")))
    _METADATA.drop_all(engine)
    with pytest.raises(DBAPIError) as refused:
        read.first({"k": "a"})
    with engine.connect() as conn, pytest.raises(DBAPIError) as through_engine:
        conn.execute(select(_PAIRS.c.v).where(_PAIRS.c.k == "a"))
    assert type(refused.value) is type(through_engine.value)
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    _METADATA.create_all(engine)


def test_a_driver_read_after_the_server_dropped_the_connection(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("a server that drops the connection: PostgreSQL")
    with engine.begin() as conn:
        conn.execute(insert(_PAIRS), {"k": "a", "v": 1})
        before = conn.scalar(text("SELECT pg_backend_pid()"))
    with make_engine(engine.url.render_as_string(hide_password=False)).connect() as other:
        assert other.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": before})
    read = DriverRead(engine, select(_PAIRS.c.v).where(_PAIRS.c.k == bindparam("k")))
    assert tuple(read.first({"k": "a"}) or ()) == (1,)


def test_a_driver_read_with_the_statements_own_values(engine: Engine) -> None:
    """Values written into the select (a LIMIT, a literal) go with it, processed as the engine would;
    an expanding IN (rendered per call by the engine) is refused when the read is made."""
    with engine.begin() as conn:
        conn.execute(insert(_PAIRS), [{"k": "a", "v": 1}, {"k": "b", "v": 2}])
    query = select(_PAIRS.c.k).where(_PAIRS.c.v >= bindparam("least"), _PAIRS.c.k != "b").order_by(_PAIRS.c.k).limit(1)
    read = DriverRead(engine, query)
    for least in (0, 2):
        with engine.connect() as conn:
            expected = conn.execute(query, {"least": least}).first()
        got = read.first({"least": least})
        assert (None if expected is None else tuple(expected)) == (None if got is None else tuple(got))
    assert read.first({"least": 0}) == ("a",)
    with pytest.raises(ValueError):
        DriverRead(engine, select(_PAIRS.c.v).where(_PAIRS.c.k.in_(["a", "b"])))


@pytest.mark.parametrize("url", ["sqlite:////nonexistent-folder/tessera.db",
                                 "postgresql+psycopg://tessera@127.0.0.1:{port}/tessera?connect_timeout=2"])
def test_a_driver_read_without_a_database_fails_as_the_engine_fails(url: str) -> None:
    """No connection to be had (server down, file unreadable): SQLAlchemy's exception, as the engine
    raises it at check-out (the web layer's 503 keys on it), never the driver's own."""
    from tests.servers import free_port

    engine = make_engine(url.format(port=free_port()))
    try:
        read = DriverRead(engine, select(_PAIRS.c.v).where(_PAIRS.c.k == bindparam("k")))
        with pytest.raises(DBAPIError) as refused:
            read.first({"k": "a"})
        with pytest.raises(DBAPIError) as through_engine:
            engine.connect()
        assert type(refused.value) is type(through_engine.value)
        assert refused.value.connection_invalidated == through_engine.value.connection_invalidated
    finally:
        engine.dispose()
