"""The engine every room shares (store.engine), on SQLite and PostgreSQL: a pooled connection the
server dropped is replaced before a statement fails on it, and a forked process never uses the
parent's connections."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, func, insert, select, text

from store.engine import make_engine

_METADATA = MetaData()
_PAIRS = Table("engine_probe", _METADATA, Column("k", String(20), primary_key=True), Column("v", Integer, nullable=False))


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
