"""PIN envelopes: the number, holder, PIN and PUK of a new card, for the letter to the citizen.

The issuer writes a card's envelope before the SQL commit that activates the card
(:mod:`cardsim.issuance`), so an active card always has its envelope: the PIN and PUK exist
nowhere else. The file is written beside its final name, flushed to disk, then renamed, so a
crash leaves either the whole envelope or none; an issuance undone removes it again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_envelope(path: Path, number: str, holder: str, pin: str, puk: str) -> None:
    """Write the envelope to ``path`` (mode 0600, in a folder only the operator can enter), durably."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump({"card": number, "holder": holder, "pin": pin, "puk": puk}, fh, ensure_ascii=False)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(partial, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def remove_envelope(path: Path) -> None:
    """Remove the envelope of a card that was never registered (and a partial one)."""
    path.unlink(missing_ok=True)
    path.with_name(f".{path.name}.partial").unlink(missing_ok=True)
