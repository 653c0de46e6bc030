"""What `tessera init` prepares for issuing cards (called from idp.home; idempotent)."""

from __future__ import annotations

from pathlib import Path

from ca.authority import CertificateAuthority


def prepare_card_issuer(home: Path, ca: CertificateAuthority) -> list[str]:
    """Create whatever card issuance needs that is missing; a line per step done."""
    return []
