"""Tables of the citizen card registry.

Every table uses :class:`ca.models.Base`, so one metadata describes the whole schema; every change
is an Alembic migration (migrations/versions/).
"""

from __future__ import annotations

from ca.models import Base

__all__ = ["Base"]
