"""The citizen-facing and service-facing parts of the web service, registered by the app factory."""

from __future__ import annotations

from flask import Flask

from idp.deployment import Deployment


def register(app: Flask, deployment: Deployment) -> None:
    """Register the citizen login, the citizen portal and the verification API on ``app``."""
