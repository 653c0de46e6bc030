"""The one declarative base: every package's tables live on its metadata, so one Alembic history
(``store/migrations``) covers the whole schema."""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    """Base class of every table of Tessera (certificate store, audit trail, cards, identity provider)."""
