"""The administration console and the account lifecycle pages, registered by the app factory."""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """Register the admin console (per-role home pages, tables, actions) on ``app``."""
    import idp.governance_models  # noqa: F401  (the governance tables on the one metadata)
    from idp import admin_console, password_change

    admin_console.register(app)
    password_change.register(app)
