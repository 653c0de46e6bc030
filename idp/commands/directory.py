"""`tessera directory`: Operate the staff directory (private slapd or an external LDAP)."""

from __future__ import annotations

import click


@click.group(name="directory")
def group() -> None:
    """Operate the staff directory (private slapd or an external LDAP)."""
