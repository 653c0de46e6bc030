"""Fixtures of the card tests (private card token folders, issuers)."""
