"""Engine and session factory for the certificate store (SQLite or PostgreSQL)."""

from __future__ import annotations

import os
import weakref
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

#: every engine of this process, so that a forked child leaves their pooled connections to the parent
_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()


def _forget_parents_connections() -> None:
    """In a forked child: a fresh pool for every engine; the parent's connections stay open for the
    parent (SQLAlchemy, "Using Connection Pools with Multiprocessing or os.fork()": two processes on
    one SQLite handle or one PostgreSQL socket corrupt both)."""
    for engine in list(_ENGINES):
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_parents_connections)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine with safe per-dialect settings.

    SQLite: foreign keys on, WAL so readers never block the writer, a busy timeout so two
    processes (gunicorn workers, the CLI) wait for each other instead of failing.
    PostgreSQL: a pooled connection is pinged when checked out, so one that a server restart
    dropped is replaced rather than failing the request.
    A process forked after using the engine opens connections of its own (:func:`_forget_parents_connections`).
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

    else:
        engine = create_engine(url, pool_pre_ping=True, **kwargs)
    _ENGINES.add(engine)
    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def read_snapshot(session: Session) -> Connection:
    """Begin ``session``'s transaction as one snapshot: every read in it sees the database as it
    was at its first read, whatever other transactions commit meanwhile. Call it first in the
    session. PostgreSQL: REPEATABLE READ (its default, READ COMMITTED, takes a new snapshot per
    statement). SQLite: an explicit deferred BEGIN (the driver would run each SELECT in a
    transaction of its own); in WAL mode the snapshot never blocks a writer. For readers that
    compare one row with many others, such as the audit chain's head and its entries."""
    if session.get_bind().dialect.name == "postgresql":
        return session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    connection = session.connection()
    if not connection.connection.dbapi_connection.in_transaction:  # type: ignore[union-attr]
        connection.exec_driver_sql("BEGIN")
    return connection
