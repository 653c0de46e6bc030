"""`tessera card agent`: the card agent on the citizen's machine (added to the `card` group)."""

from __future__ import annotations
