"""`tessera audit`: verify, export and report on the tamper-evident audit trail."""

from __future__ import annotations

import click


@click.group(name="audit")
def group() -> None:
    """Verify, export and report on the tamper-evident audit trail."""
