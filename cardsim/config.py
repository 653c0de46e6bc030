"""Card settings: ``TESSERA_CARD_*`` environment variables with defaults under the Tessera home.

The card tokens live in their own SoftHSM2 folder (``<home>/cards/tokens``), never in the CA
token's folder: a process initialising SoftHSM reads every token of its folder, so 10,000 cards
beside the CA key would slow every CA and IdP worker (docs/cards.md, "Where cards live").
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path

from cardsim.errors import CardConfigurationError

DEFAULT_MODULE = "/usr/lib/softhsm/libsofthsm2.so"


@dataclass(frozen=True)
class CardSettings:
    """Where the card tokens are and how cards are made."""

    home: Path
    folder: Path
    module_path: str
    key_type: str
    validity: datetime.timedelta
    #: fsync the PIN/PUK try counters (survives power loss, not only a killed process)
    fsync_counters: bool

    @classmethod
    def from_env(cls, home: Path, env: dict[str, str] | None = None) -> "CardSettings":
        env = dict(os.environ if env is None else env)
        folder = Path(env.get("TESSERA_CARD_DIR") or home / "cards").resolve()
        key_type = env.get("TESSERA_CARD_KEY_TYPE") or "ec-p256"
        if key_type not in ("ec-p256", "ec-p384"):
            raise CardConfigurationError("TESSERA_CARD_KEY_TYPE must be ec-p256 or ec-p384")
        try:
            days = int(env.get("TESSERA_CARD_VALIDITY_DAYS") or 1826)
        except ValueError:
            raise CardConfigurationError("TESSERA_CARD_VALIDITY_DAYS must be a whole number of days") from None
        if not 1 <= days <= 3650:
            raise CardConfigurationError("TESSERA_CARD_VALIDITY_DAYS must be between 1 and 3650")
        return cls(
            home=home,
            folder=folder,
            module_path=env.get("TESSERA_CARD_PKCS11_MODULE") or DEFAULT_MODULE,
            key_type=key_type,
            validity=datetime.timedelta(days=days),
            fsync_counters=(env.get("TESSERA_CARD_FSYNC") or "0") == "1",
        )

    @property
    def token_dir(self) -> Path:
        return self.folder / "tokens"

    @property
    def softhsm_conf(self) -> Path:
        return self.folder / "softhsm2.conf"

    @property
    def counter_dir(self) -> Path:
        return self.folder / "counters"

    @property
    def pending_dir(self) -> Path:
        return self.folder / "pending"

    @property
    def envelope_dir(self) -> Path:
        return self.folder / "envelopes"

    def prepare(self) -> bool:
        """Create the card folder and its SoftHSM2 configuration; True if anything was made."""
        made = not self.softhsm_conf.exists()
        for path in (self.folder, self.token_dir, self.counter_dir, self.pending_dir, self.envelope_dir):
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if made:
            self.softhsm_conf.write_text(
                f"directories.tokendir = {self.token_dir}\nobjectstore.backend = file\nlog.level = ERROR\n"
                "slots.removable = false\n"
            )
        return made

    def require(self) -> None:
        if not self.softhsm_conf.exists():
            raise CardConfigurationError(f"no card folder at {self.folder}: run `tessera init` first")
