"""The embedded directory: a private slapd under the home folder (created by `tessera init`)."""

from __future__ import annotations

from idp.settings import Settings


def prepare_embedded_directory(settings: Settings) -> list[str]:
    """Create the private slapd's configuration and seed data if missing; a line per step done."""
    return []
