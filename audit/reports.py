"""Reports over the trail for analysis and the admin console's charts: counts per person, per
event type and per period (day or hour), each split by result."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session, sessionmaker

from audit.export import EntryFilter
from audit.models import AuditEntry

GROUPINGS = ("person", "type", "day", "hour")


@dataclass(frozen=True)
class ReportRow:
    key: str
    total: int
    success: int
    failure: int
    refused: int

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "total": self.total, "success": self.success, "failure": self.failure,
                "refused": self.refused}


def _period(dialect: str, granularity: str) -> Any:
    if dialect == "postgresql":
        pattern = "YYYY-MM-DD" if granularity == "day" else "YYYY-MM-DD\"T\"HH24:00"
        return func.to_char(AuditEntry.at, pattern)
    pattern = "%Y-%m-%d" if granularity == "day" else "%Y-%m-%dT%H:00"
    return func.strftime(pattern, AuditEntry.at)


def report(sessions: sessionmaker[Session], by: str, where: EntryFilter = EntryFilter(),
           limit: int = 1000) -> list[ReportRow]:
    """Counts grouped ``by`` person (subject), type, day or hour (UTC), in key order (periods) or
    by total, largest first (persons, types)."""
    if by not in GROUPINGS:
        raise ValueError(f"unknown report grouping {by!r}: use one of {', '.join(GROUPINGS)}")
    with sessions() as session:
        dialect = session.get_bind().dialect.name
        key = {"person": AuditEntry.subject, "type": AuditEntry.event_type}[by] if by in ("person", "type") \
            else _period(dialect, by)
        total = func.count()
        columns = [key.label("key"), total.label("total")] + [
            func.sum(case((AuditEntry.result == r, 1), else_=0)).label(r) for r in ("success", "failure", "refused")
        ]
        query = where.apply(select(*columns)).group_by(key)
        query = query.order_by(key) if by in ("day", "hour") else query.order_by(total.desc(), key)
        rows = session.execute(query.limit(limit)).all()
    return [ReportRow(str(r[0]), int(r[1]), int(r[2] or 0), int(r[3] or 0), int(r[4] or 0)) for r in rows]


def report_by_person(sessions: sessionmaker[Session], where: EntryFilter = EntryFilter()) -> list[ReportRow]:
    return report(sessions, "person", where)


def report_by_type(sessions: sessionmaker[Session], where: EntryFilter = EntryFilter()) -> list[ReportRow]:
    return report(sessions, "type", where)


def report_by_period(sessions: sessionmaker[Session], granularity: str = "day",
                     where: EntryFilter = EntryFilter()) -> list[ReportRow]:
    if granularity not in ("day", "hour"):
        raise ValueError("a period is a day or an hour")
    return report(sessions, granularity, where)
