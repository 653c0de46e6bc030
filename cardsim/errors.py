"""Typed errors of the card layer; the CLI prints them as one line, the web layer maps them to HTTP."""

from __future__ import annotations


class CardError(Exception):
    """Base of every error the card layer raises on purpose."""

    kind: str = "card-error"
