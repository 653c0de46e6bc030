"""Bulk issuance from a CSV of applications: resumable, every bad row reported with its number.

A row's card carries the batch key ``<file name>:<national id>`` in the registry (unique), so a
run interrupted at any point and started again skips the cards already registered and issues
the rest; a card interrupted mid-way was never registered (cardsim.issuance) and is made again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from cardsim.citizens import parse_application
from cardsim.errors import InvalidApplication
from cardsim.identity_schemes import mask_any
from cardsim.issuance import WRITERS, CardIssuer, CardJob, IssuedCard


@dataclass
class BatchReport:
    issued: int = 0
    skipped: int = 0
    invalid: list[tuple[int, str]] = field(default_factory=list)  # (row number, why)
    failed: list[tuple[int, str]] = field(default_factory=list)
    seconds: float = 0.0
    cards: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"issued": self.issued, "skipped": self.skipped, "seconds": round(self.seconds, 2),
                "invalid": [{"row": r, "problem": p} for r, p in self.invalid],
                "failed": [{"row": r, "problem": p} for r, p in self.failed]}


def issue_batch(issuer: CardIssuer, rows: list[dict[str, Any]], source: str, envelope_dir: Path | None,
                progress: Callable[[int], None], writers: int = WRITERS) -> BatchReport:
    """Issue a card for each valid row (row 1 is the CSV header, so data rows start at 2); each
    card's PIN envelope is ``<envelope_dir>/<card number>.json``, written before the card is active."""
    started = time.monotonic()
    report = BatchReport()
    folder = envelope_dir or issuer.settings.envelope_dir
    keys = [f"{source}:{(row.get('national_id') or '').strip()}" for row in rows]
    done = issuer.issued_batch_keys(keys)
    seen: dict[str, int] = {}
    row_of: dict[str, int] = {}

    def jobs() -> Iterator[CardJob]:
        for number, (row, key) in enumerate(zip(rows, keys, strict=True), start=2):
            try:
                if None in row:
                    raise InvalidApplication("more values than header columns")
                application = parse_application(row)
                national_id = application.identity.national_id
                if national_id in seen:
                    raise InvalidApplication(f"the same national_id as row {seen[national_id]}")
                seen[national_id] = number
                if key in done:
                    report.skipped += 1
                    progress(1)
                    continue
                holder = issuer.active_card(national_id)
                if holder is not None:
                    raise InvalidApplication(f"national_id {mask_any(national_id)} already holds active card {holder}")
            except InvalidApplication as exc:
                report.invalid.append((number, str(exc)))
                progress(1)
                continue
            row_of[key] = number
            yield CardJob(application, batch_key=key, envelope_at=lambda card: folder / f"{card}.json")

    def issued(card: IssuedCard) -> None:
        report.issued += 1
        report.cards.append(card.number)
        progress(1)

    def failed(job: CardJob, exc: BaseException) -> None:
        report.failed.append((row_of.get(job.batch_key or "", 0), str(exc)))
        progress(1)

    issuer.issue_many(jobs(), issued, failed, writers=writers)
    report.invalid.sort()
    report.failed.sort()
    report.seconds = time.monotonic() - started
    return report

