"""`tessera admin`: administrator roles, account applications and the staff account lifecycle."""

from __future__ import annotations

import click


@click.group(name="admin")
def group() -> None:
    """Administrator roles, account applications and the staff account lifecycle."""
