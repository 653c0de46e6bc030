"""Tables of the identity provider (directory-backed staff, sessions, OpenID Connect).

Every table uses :class:`ca.models.Base`, so one metadata describes the whole schema; every change
is an Alembic migration (migrations/versions/).
"""

from __future__ import annotations

from ca.models import Base

__all__ = ["Base"]
