"""One hot SQL statement run on a DBAPI connection held per thread, beside SQLAlchemy.

SQLAlchemy's per-statement overhead is most of the cost of a one-row lookup, so a request's hot
statement (an OCSP answer, a session, a card-login nonce) runs straight on the driver. The
connection is held per thread, process and engine (a forked worker opens its own; every held
statement of a thread shares it) in autocommit mode, so every statement is its own transaction:
it sees the latest committed state, and a writing statement holds SQLite's write lock only while
the driver runs it (no return to Python, which may wait for the GIL, between the write and its
commit). Any driver error drops the connection: :meth:`HeldStatement.execute` reports ``None``
(the caller may answer another way), :meth:`HeldStatement.run` tries once more on a fresh one.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.types import TypeEngine

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Executed:
    """What one run of the statement returned."""

    #: the first row, for a statement that returns rows
    row: tuple[Any, ...] | None
    #: the rows the statement changed (DELETE, UPDATE), as the driver counts them
    rowcount: int


class _Held(threading.local):
    """Per thread: engine -> (fork generation, pooled connection, its driver connection); one connection serves every held statement of
    that engine in this thread, so a worker holds as many pooled connections as it has threads."""

    def __init__(self) -> None:
        self.connections: weakref.WeakKeyDictionary[Engine, tuple[int, Any, Any]] = weakref.WeakKeyDictionary()


_held = _Held()

#: bumped in a forked child: a connection held before the fork belongs to the parent (a generation
#: number instead of os.getpid(), which is a system call on every statement)
_generation = 0


def _forked() -> None:
    global _generation
    _generation += 1


os.register_at_fork(after_in_child=_forked)


def _processors(engine: Engine, types: Sequence[TypeEngine[Any] | None], bind: bool) -> tuple[tuple[int, Callable[[Any], Any]], ...]:
    """(position, processor) of every typed position that has a processor."""
    dialect = engine.dialect
    found = []
    for i, t in enumerate(types):
        if t is None:
            continue
        impl = t.dialect_impl(dialect)
        processor = impl.bind_processor(dialect) if bind else impl.result_processor(dialect, None)
        if processor is not None:
            found.append((i, processor))
    return tuple(found)


class HeldStatement:
    """One statement, written with ``?`` parameter marks, on the driver connection held per thread.

    ``params`` and ``results`` give SQLAlchemy types by position (None: passed as is), so values go
    in and come out exactly as through the engine (e.g. :class:`store.types.UtcDateTime` on SQLite)."""

    def __init__(self, engine: Engine, sql: str, name: str, params: Sequence[TypeEngine[Any] | None] = (),
                 results: Sequence[TypeEngine[Any] | None] = ()) -> None:
        self._engine = engine
        self._sql = sql if engine.dialect.paramstyle == "qmark" else sql.replace("?", "%s")
        #: says which statement in the warning when the driver fails
        self.name = name
        self._params = _processors(engine, params, bind=True)
        self._integrity: type[Exception] = engine.dialect.dbapi.IntegrityError  # type: ignore[union-attr]
        self._results = _processors(engine, results, bind=False)

    def _connection(self) -> Any:
        """The driver connection this thread holds for the engine (opened on first use)."""
        held = _held.connections.get(self._engine)
        if held is None or held[0] != _generation:
            fairy = self._engine.raw_connection()
            driver = fairy.driver_connection
            if self._engine.dialect.name == "sqlite":
                driver.isolation_level = None  # type: ignore[union-attr]  (sqlite3: autocommit)
            else:
                driver.autocommit = True  # type: ignore[union-attr]  (psycopg)
            held = (_generation, fairy, driver)
            _held.connections[self._engine] = held
        return held[2]

    def execute(self, params: Sequence[Any]) -> Executed | None:
        """Run the statement once; None when the driver failed (the connection is dropped). A row a
        constraint refuses raises :class:`sqlalchemy.exc.IntegrityError`, as through the engine."""
        values: Sequence[Any] = params
        if self._params:
            values = list(params)
            for i, processor in self._params:
                values[i] = processor(values[i])
        try:
            cursor = self._connection().cursor()  # the driver's own cursor: no pool wrapper per statement
            try:
                cursor.execute(self._sql, values)
                row = cursor.fetchone() if cursor.description is not None else None
                rowcount = cursor.rowcount
            finally:
                cursor.close()
        except self._integrity as exc:  # the data, not the connection: a constraint refused the row
            raise IntegrityError(self._sql, None, exc) from None
        except Exception as exc:  # noqa: BLE001  any driver error: forget the connection, the engine answers
            _log.warning("%s: held connection unavailable: %s", self.name, type(exc).__name__)
            held = _held.connections.pop(self._engine, None)
            if held is not None and held[0] == _generation:
                held[1].invalidate()
            return None
        if row is not None:
            if self._results:
                row = list(row)
                for i, processor in self._results:
                    row[i] = processor(row[i])
            row = tuple(row)
        return Executed(row, rowcount)

    def run(self, params: Sequence[Any]) -> Executed:
        """:meth:`execute`, tried once more on a fresh connection (a server restart drops every held
        one); raises :class:`StatementFailed` when the database is unreachable both times."""
        for _ in range(2):
            executed = self.execute(params)
            if executed is not None:
                return executed
        raise StatementFailed(f"{self.name}: the database cannot be reached")


class StatementFailed(RuntimeError):
    """A held statement failed on two connections in a row: the database is down or refusing."""
