"""`tessera client`: Register and manage OpenID Connect clients."""

from __future__ import annotations

import click


@click.group(name="client")
def group() -> None:
    """Register and manage OpenID Connect clients."""
