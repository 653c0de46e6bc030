"""Keeping the newest backups of a folder and deleting the rest (a scheduled backup's retention).

Only files named as `tessera backup create` names them (``tessera-backup-YYYYmmddTHHMMSSZ.tbk``)
are considered, newest first by the time in their name; ``--keep N`` keeps the newest N, and
``max_age`` (if given) also deletes those older than it, but never the newest one.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from pathlib import Path

SUFFIX = ".tbk"
_NAME = re.compile(r"^tessera-backup-(\d{8}T\d{6}Z)\.tbk$")


def backup_name(at: datetime.datetime) -> str:
    """The file name of a backup made at ``at`` (UTC)."""
    return f"tessera-backup-{at.astimezone(datetime.timezone.utc):%Y%m%dT%H%M%SZ}{SUFFIX}"


@dataclass(frozen=True)
class Backup:
    path: Path
    made: datetime.datetime


def backups(folder: Path) -> list[Backup]:
    """The backups in ``folder``, newest first."""
    found = []
    for path in folder.iterdir():
        match = _NAME.match(path.name)
        if match and path.is_file():
            made = datetime.datetime.strptime(match[1], "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
            found.append(Backup(path, made))
    return sorted(found, key=lambda b: b.made, reverse=True)


def prune(folder: Path, keep: int, max_age: datetime.timedelta | None = None,
          now: datetime.datetime | None = None, dry_run: bool = False) -> list[Backup]:
    """Delete the backups of ``folder`` beyond the newest ``keep`` (and those older than ``max_age``,
    the newest always kept); returns what was (or, with ``dry_run``, would be) deleted."""
    if keep < 1:
        raise ValueError("keep at least one backup")
    now = now or datetime.datetime.now(datetime.timezone.utc)
    found = backups(folder)
    doomed = [b for i, b in enumerate(found) if i >= keep or (i > 0 and max_age is not None and now - b.made > max_age)]
    if not dry_run:
        for backup in doomed:
            backup.path.unlink(missing_ok=True)
    return doomed
