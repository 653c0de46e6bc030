"""Exporting the trail for a SIEM (JSON lines) or a spreadsheet (CSV, RFC 4180), streamed.

Every exported line carries the entry's ``seq``, ``prev_hash`` and ``entry_hash``, so the receiver
can re-check the chain over a contiguous export with :mod:`audit.chain`. Times are RFC 3339 UTC
with microseconds, exactly as hashed.
"""

from __future__ import annotations

import csv
import datetime
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TextIO, TypeVar, Unpack

from sqlalchemy import Select, select
from sqlalchemy.orm import Session, sessionmaker

from audit import chain
from audit.models import AuditEntry

FIELDS = ("seq", "time", "type", "subject", "subject_role", "object", "result", "source_address", "request_id",
          "details", "prev_hash", "entry_hash")
FORMATS = ("jsonl", "csv")


#: a select of any columns over the audit entries
_Query = TypeVar("_Query", bound=Select[Unpack[tuple[Any, ...]]])


@dataclass(frozen=True)
class EntryFilter:
    """Which entries: ``since`` inclusive, ``until`` exclusive, an event type (``admin.*`` matches a
    family) and a subject."""

    since: datetime.datetime | None = None
    until: datetime.datetime | None = None
    event_type: str | None = None
    subject: str | None = None

    def apply(self, query: _Query) -> _Query:
        """``query`` (any columns: entries, counts, reports) limited to the entries this filter names."""
        if self.since is not None:
            query = query.where(AuditEntry.at >= self.since)
        if self.until is not None:
            query = query.where(AuditEntry.at < self.until)
        if self.event_type:
            if self.event_type.endswith(".*"):
                prefix = self.event_type[:-1].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                query = query.where(AuditEntry.event_type.like(prefix + "%", escape="\\"))
            else:
                query = query.where(AuditEntry.event_type == self.event_type)
        if self.subject:
            query = query.where(AuditEntry.subject == self.subject)
        return query

    def as_dict(self) -> dict[str, str]:
        out = {}
        if self.since:
            out["since"] = chain.canonical_time(self.since)
        if self.until:
            out["until"] = chain.canonical_time(self.until)
        if self.event_type:
            out["type"] = self.event_type
        if self.subject:
            out["subject"] = self.subject
        return out


_COLUMNS = (AuditEntry.seq, AuditEntry.at, AuditEntry.event_type, AuditEntry.subject, AuditEntry.subject_role,
            AuditEntry.object, AuditEntry.result, AuditEntry.source_address, AuditEntry.request_id,
            AuditEntry.details, AuditEntry.prev_hash, AuditEntry.entry_hash)


def iter_entries(sessions: sessionmaker[Session], where: EntryFilter = EntryFilter(),
                 limit: int | None = None, offset: int = 0, newest_first: bool = False) -> Iterator[dict[str, Any]]:
    """Entries as plain dicts (``details`` parsed), streamed in sequence order."""
    query = where.apply(select(*_COLUMNS)).order_by(AuditEntry.seq.desc() if newest_first else AuditEntry.seq)
    if limit is not None:
        query = query.limit(limit)
    if offset:
        query = query.offset(offset)
    with sessions() as session:
        for row in session.execute(query, execution_options={"yield_per": 5000, "stream_results": True}):
            values = list(row)
            values[1] = chain.canonical_time(values[1])
            values[9] = json.loads(values[9])
            yield dict(zip(FIELDS, values, strict=True))


def count_entries(sessions: sessionmaker[Session], where: EntryFilter = EntryFilter()) -> int:
    from sqlalchemy import func

    with sessions() as session:
        return int(session.scalar(where.apply(select(func.count()).select_from(AuditEntry))) or 0)


def export_jsonl(entries: Iterator[dict[str, Any]], out: TextIO) -> int:
    """One JSON object per line (JSON Lines), keys in :data:`FIELDS` order. Returns the count."""
    n = 0
    for entry in entries:
        out.write(json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n")
        n += 1
    return n


def export_csv(entries: Iterator[dict[str, Any]], out: TextIO) -> int:
    """CSV with a header row; ``details`` as its canonical JSON text. Returns the count."""
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(FIELDS)
    n = 0
    for entry in entries:
        row = [entry[f] for f in FIELDS]
        row[9] = chain.canonical_details(row[9])
        writer.writerow(["" if v is None else v for v in row])
        n += 1
    return n


def export(sessions: sessionmaker[Session], fmt: str, out: TextIO, where: EntryFilter = EntryFilter()) -> int:
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}: use {' or '.join(FORMATS)}")
    entries = iter_entries(sessions, where)
    return export_jsonl(entries, out) if fmt == "jsonl" else export_csv(entries, out)
