"""A Core select run straight on the DBAPI driver, for the reads a benchmark showed to need it.

SQLAlchemy's work around one small statement (cache lookup, execution context, result object) can
cost more than the statement itself. Where that puts a target at stake, and only there, the select
(built from the models' tables like any other) is compiled once for the engine's dialect and run
on the driver's cursor; docs/platform-notes.md ("SQLAlchemy") names each such read and its
measured gain. Everything else stays as through the engine:

* the pooled connection is checked out for the one statement and back in at once, so the pool's
  pre-ping, reset on return and fork handling (:mod:`store.engine`) apply;
* parameters and results pass through the column types' processors (e.g.
  :class:`store.types.UtcDateTime` on SQLite); values written into the select (a ``LIMIT``) go
  with it; an expanding ``IN``, which the engine renders per call, is refused;
* a driver error, at check-out (no server, no file) or from the statement, is raised as
  SQLAlchemy's own exception (``OperationalError``, ``IntegrityError`` ...:
  :meth:`sqlalchemy.exc.DBAPIError.instance`, ``connection_invalidated`` set as the engine sets
  it), so callers and the web layer's outage answer (503) see what the engine would raise; a
  connection the driver reports lost is invalidated, never put back in the pool.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping
from typing import Any, Unpack

from sqlalchemy import Engine, Select
from sqlalchemy.exc import DBAPIError


class DriverRead:
    """One select, compiled once for ``engine``; :meth:`first` runs it and returns its first row."""

    def __init__(self, engine: Engine, statement: Select[Unpack[tuple[Any, ...]]]) -> None:
        dialect = engine.dialect
        compiled = statement.compile(dialect=dialect)
        self._engine = engine
        self._sql = compiled.string
        #: positional paramstyles (SQLite's qmark) take the values in this order; named ones a mapping
        self._order: tuple[str, ...] | None = tuple(compiled.positiontup or ()) if compiled.positional else None
        binds = {name: bind for bind, name in compiled.bind_names.items()}
        if any(bind.expanding for bind in binds.values()):
            raise ValueError("an expanding IN parameter is rendered per call by the engine: list its members "
                             "as bindparam()s")
        #: the caller's parameters, and the statement's own values (a LIMIT's), processed once here
        self._params = _processors({name: bind.type for name, bind in binds.items() if bind.required}, dialect,
                                   bind=True)
        fixed = {name: bind.effective_value for name, bind in binds.items() if not bind.required}
        for name, processor in _processors({name: binds[name].type for name in fixed}, dialect, bind=True):
            fixed[name] = processor(fixed[name])
        self._fixed = fixed
        columns = list(statement.selected_columns)
        self._results = _processors({i: c.type for i, c in enumerate(columns)}, dialect, bind=False)
        self._row = namedtuple("Row", [c.key or f"column_{i}" for i, c in enumerate(columns)],  # type: ignore[misc]
                               rename=True)
        self._driver_error: type[Exception] = dialect.loaded_dbapi.Error

    def first(self, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """The first row (a named tuple, as typed values), or None."""
        values = {**self._fixed, **params}
        for name, processor in self._params:
            values[name] = processor(values[name])
        arguments: Any = [values[name] for name in self._order] if self._order is not None else values
        engine = self._engine
        try:
            pooled = engine.raw_connection()
        except self._driver_error as exc:  # no connection to be had (a server down, a file unreadable)
            raise self._error(None, None, exc, engine.dialect.is_disconnect(exc, None, None)) from exc  # type: ignore[arg-type]
        try:
            cursor = pooled.driver_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.execute(self._sql, arguments)
                row = cursor.fetchone()
            finally:
                cursor.close()
        except self._driver_error as exc:
            lost = engine.dialect.is_disconnect(exc, pooled.dbapi_connection, None)  # type: ignore[arg-type]
            if lost:
                pooled.invalidate(exc)
            raise self._error(self._sql, arguments, exc, lost) from exc
        finally:
            pooled.close()  # back to the pool (reset there), or discarded when invalidated
        if row is None:
            return None
        if self._results:
            row = list(row)
            for i, processor in self._results:
                row[i] = processor(row[i])
        return self._row(*row)

    def _error(self, sql: str | None, arguments: Any, exc: Exception, lost: bool) -> BaseException:
        """``exc`` as the engine raises it (:meth:`sqlalchemy.engine.Connection._handle_dbapi_exception`)."""
        return DBAPIError.instance(sql, arguments, exc, self._driver_error, connection_invalidated=lost,
                                   hide_parameters=self._engine.hide_parameters, dialect=self._engine.dialect)


def _processors(types: Mapping[Any, Any], dialect: Any, bind: bool) -> tuple[tuple[Any, Callable[[Any], Any]], ...]:
    """(key, processor) for each type that has one on ``dialect``, as the engine would apply them."""
    found = []
    for key, type_ in types.items():
        impl = type_.dialect_impl(dialect)
        processor = impl.bind_processor(dialect) if bind else impl.result_processor(dialect, None)
        if processor is not None:
            found.append((key, processor))
    return tuple(found)
