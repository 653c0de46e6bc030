"""A Core select run straight on the DBAPI driver, for the reads a benchmark showed to need it.

SQLAlchemy's work around one small statement (cache lookup, execution context, result object) can
cost more than the statement itself. Where that puts a target at stake, and only there, the select
(built from the models' tables like any other) is compiled once for the engine's dialect and run
on the driver's cursor; docs/platform-notes.md ("SQLAlchemy") names each such read and its
measured gain. Everything else stays as through the engine:

* the pooled connection is checked out for the one statement and back in at once, so the pool's
  pre-ping, reset on return and fork handling (:mod:`store.engine`) apply;
* parameters and results pass through the column types' processors (e.g.
  :class:`store.types.UtcDateTime` on SQLite);
* a driver error is raised as SQLAlchemy's own exception (``OperationalError``,
  ``IntegrityError`` ...: :meth:`sqlalchemy.exc.DBAPIError.instance`), so callers and the web
  layer's outage answer (503) see what the engine would raise; a connection the driver reports
  lost is invalidated, never put back in the pool.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Engine, Select
from sqlalchemy.exc import DBAPIError


class DriverRead:
    """One select, compiled once for ``engine``; :meth:`first` runs it and returns its first row."""

    def __init__(self, engine: Engine, statement: Select[Any]) -> None:
        dialect = engine.dialect
        compiled = statement.compile(dialect=dialect)
        self._engine = engine
        self._sql = compiled.string
        #: positional paramstyles (SQLite's qmark) take the values in this order; named ones a mapping
        self._order: tuple[str, ...] | None = tuple(compiled.positiontup or ()) if compiled.positional else None
        self._params = _processors({name: bind.type for name, bind in compiled.binds.items()}, dialect, bind=True)
        columns = list(statement.selected_columns)
        self._results = _processors({i: c.type for i, c in enumerate(columns)}, dialect, bind=False)
        self._row = namedtuple("Row", [c.key or f"column_{i}" for i, c in enumerate(columns)])  # type: ignore[misc]
        self._driver_error: type[Exception] = dialect.loaded_dbapi.Error

    def first(self, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """The first row (a named tuple, as typed values), or None."""
        values = dict(params)
        for name, processor in self._params:
            values[name] = processor(values[name])
        arguments: Any = [values[name] for name in self._order] if self._order is not None else values
        pooled = self._engine.raw_connection()
        try:
            cursor = pooled.driver_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.execute(self._sql, arguments)
                row = cursor.fetchone()
            finally:
                cursor.close()
        except self._driver_error as exc:
            if self._engine.dialect.is_disconnect(exc, pooled.dbapi_connection, None):  # type: ignore[arg-type]
                pooled.invalidate(exc)
            raise DBAPIError.instance(self._sql, arguments, exc, self._driver_error) from exc
        finally:
            pooled.close()  # back to the pool (reset there), or discarded when invalidated
        if row is None:
            return None
        if self._results:
            row = list(row)
            for i, processor in self._results:
                row[i] = processor(row[i])
        return self._row(*row)


def _processors(types: Mapping[Any, Any], dialect: Any, bind: bool) -> tuple[tuple[Any, Callable[[Any], Any]], ...]:
    """(key, processor) for each type that has one on ``dialect``, as the engine would apply them."""
    found = []
    for key, type_ in types.items():
        impl = type_.dialect_impl(dialect)
        processor = impl.bind_processor(dialect) if bind else impl.result_processor(dialect, None)
        if processor is not None:
            found.append((key, processor))
    return tuple(found)
