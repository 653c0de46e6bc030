"""Languages and time zones of the web service (filled in by the internationalisation work)."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Install the locale and time-zone selection on ``app``."""
