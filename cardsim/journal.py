"""The issuance journal: one locked file per card being made, so a crash leaves no orphan token.

Issuing a card touches three stores that share no transaction: the card token, the CA's
certificates and the registry (SQL). The journal makes it all-or-nothing: before the token is
created, ``pending/<number>`` is created and locked (flock) by the issuing process; the token's
serial is added once known; the SQL commit comes last; then the entry is removed. A later
process sweeps entries nobody holds: if the registry has the card, the commit happened and the
entry is just dropped; if not, the half-made token (and its counter) are deleted.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass
class JournalEntry:
    path: Path
    fd: int

    def note(self, **values: str) -> None:
        data = json.loads(os.pread(self.fd, 4096, 0) or b"{}")
        data.update(values)
        raw = json.dumps(data).encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, raw, 0)

    def close(self) -> None:
        """The card is registered (or fully undone): drop the entry and its lock."""
        self.path.unlink(missing_ok=True)
        os.close(self.fd)

    def release(self) -> None:
        """Keep the entry for a later sweep (undoing failed), but give up the lock."""
        os.close(self.fd)


def begin(folder: Path, number: str) -> JournalEntry:
    path = folder / number
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    entry = JournalEntry(path, fd)
    entry.note(number=number, started=str(time.time()))
    return entry


def abandoned(folder: Path) -> Iterator[tuple[dict[str, str], Callable[[], None]]]:
    """Entries whose issuer is gone: (what was noted, a function that drops the entry)."""
    for path in sorted(folder.iterdir()) if folder.exists() else []:
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)  # its issuer is still at work
            continue
        try:
            data = json.loads(os.pread(fd, 4096, 0) or b"{}")
        except ValueError:
            data = {}
        data.setdefault("number", path.name)

        def drop(path: Path = path, fd: int = fd) -> None:
            path.unlink(missing_ok=True)

        try:
            yield data, drop
        finally:
            os.close(fd)
