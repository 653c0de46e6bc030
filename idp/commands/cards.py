"""`tessera card`: Citizen smart cards: issue, read, verify, PIN/PUK, lifecycle."""

from __future__ import annotations

import click


@click.group(name="card")
def group() -> None:
    """Citizen smart cards: issue, read, verify, PIN/PUK, lifecycle."""
