"""The administration console and the account lifecycle pages, registered by the app factory."""

from __future__ import annotations

from flask import Flask

from idp.deployment import Deployment


def register(app: Flask, deployment: Deployment) -> None:
    """Register the admin console (per-role home pages, tables, actions) on ``app``."""
