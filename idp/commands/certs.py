"""`tessera cert`: Staff certificates from the directory entry."""

from __future__ import annotations

import click


@click.group(name="cert")
def group() -> None:
    """Staff certificates from the directory entry."""
