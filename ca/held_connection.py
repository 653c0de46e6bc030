"""One hot SQL statement run on a DBAPI connection held per thread, beside SQLAlchemy.

SQLAlchemy's per-statement overhead is most of the cost of a one-row lookup, so a request's hot
statement (an OCSP answer, a card-login nonce) runs straight on the driver. The connection is
held per thread and per process (a forked worker opens its own) in autocommit mode, so every
statement is its own transaction: it sees the latest committed state, and a writing statement
holds SQLite's write lock only while the driver runs it (no return to Python, which may wait for
the GIL, between the write and its commit). Any driver error drops the connection and reports ``None``: the
caller then runs the same statement through the engine.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Executed:
    """What one run of the statement returned."""

    #: the first row, for a statement that returns rows
    row: tuple[Any, ...] | None
    #: the rows the statement changed (DELETE, UPDATE), as the driver counts them
    rowcount: int


class HeldStatement:
    """One statement, written with ``?`` parameter marks, on a driver connection held per thread."""

    def __init__(self, engine: Engine, sql: str, name: str) -> None:
        self._engine = engine
        self._sql = sql if engine.dialect.paramstyle == "qmark" else sql.replace("?", "%s")
        #: says which statement in the warning when the driver fails
        self.name = name
        self._local = threading.local()

    def _connection(self) -> Any:
        held = getattr(self._local, "held", None)
        if held is None or held[0] != os.getpid():
            fairy = self._engine.raw_connection()
            driver = fairy.driver_connection
            if self._engine.dialect.name == "sqlite":
                driver.isolation_level = None  # type: ignore[union-attr]  (sqlite3: autocommit)
            else:
                driver.autocommit = True  # type: ignore[union-attr]  (psycopg)
            held = (os.getpid(), fairy)
            self._local.held = held
        return held[1]

    def execute(self, params: Sequence[Any]) -> Executed | None:
        """Run the statement once; None when the driver failed (the connection is dropped)."""
        try:
            connection = self._connection()
            cursor = connection.cursor()
            try:
                cursor.execute(self._sql, tuple(params))
                row = cursor.fetchone() if cursor.description is not None else None
                rowcount = cursor.rowcount
            finally:
                cursor.close()
        except Exception as exc:  # noqa: BLE001  any driver error: forget the connection, the engine answers
            _log.warning("%s: held connection unavailable: %s", self.name, type(exc).__name__)
            held = getattr(self._local, "held", None)
            self._local.held = None
            if held is not None:
                held[1].invalidate()
            return None
        return Executed(None if row is None else tuple(row), rowcount)
