"""Tables of the audit trail, on :class:`ca.models.Base` (one metadata for the whole schema)."""

from __future__ import annotations

from ca.models import Base

__all__ = ["Base"]
