"""Column types every package's tables share."""

from __future__ import annotations

import datetime

from sqlalchemy import DateTime, TypeDecorator


class UtcDateTime(TypeDecorator[datetime.datetime]):
    """Stores UTC without a zone (SQLite has none) and always hands back aware UTC datetimes."""

    impl = DateTime(timezone=False)
    cache_ok = True

    def process_bind_param(self, value: datetime.datetime | None, dialect: object) -> datetime.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(datetime.timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime.datetime | None, dialect: object) -> datetime.datetime | None:
        return None if value is None else value.replace(tzinfo=datetime.timezone.utc)
