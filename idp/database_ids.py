"""Row identifiers in URL paths: ``<dbid:application_id>``, ``<dbid(bits=64):seq>``.

A path parameter that names a database row is matched only when the row could exist: ASCII
digits, no leading zero, from 1 to the column's largest value (SQL ``INTEGER``: 2**31 - 1,
``BIGINT``: 2**63 - 1, the same on SQLite and PostgreSQL). Anything else is no route at all, so a
404, before the view runs. Werkzeug's ``int`` converter accepted any length, and
``/admin/applications/99999999999999999999999`` reached the database driver as an integer it cannot
bind (``OverflowError`` on SQLite, ``DataError`` on PostgreSQL): a 500 caused by a request value.

Registered once by the application factory (:func:`install`), so every blueprint can use it.
"""

from __future__ import annotations

from flask import Flask
from werkzeug.routing import Map, ValidationError
from werkzeug.routing.converters import BaseConverter


class DatabaseIdConverter(BaseConverter):
    """A positive row id that fits the column: ``bits=32`` (SQL INTEGER, default) or ``bits=64`` (BIGINT)."""

    regex = r"[1-9][0-9]{0,18}"
    part_isolating = True
    weight = 50  # as Werkzeug's own number converters: tried before a string converter at the same place

    def __init__(self, map: Map, bits: int = 32) -> None:
        super().__init__(map)
        if bits not in (32, 64):
            raise ValueError("bits: 32 (SQL INTEGER) or 64 (BIGINT)")
        self.max = 2 ** (bits - 1) - 1

    def to_python(self, value: str) -> int:
        number = int(value)
        if number > self.max:
            raise ValidationError()
        return number

    def to_url(self, value: int) -> str:
        return str(int(value))


def install(app: Flask) -> None:
    """Make ``dbid`` available to every route of ``app`` (call before blueprints are registered)."""
    app.url_map.converters["dbid"] = DatabaseIdConverter
