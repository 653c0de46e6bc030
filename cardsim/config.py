"""Card settings: ``TESSERA_CARD_*`` environment variables with defaults under the Tessera home.

The card tokens live in their own SoftHSM2 folders, never in the CA token's folder, and are
sharded: ``<home>/cards/shards/<NNN>/tokens``, each shard with its own ``softhsm2.conf``, at most
:attr:`CardSettings.shard_capacity` cards each (1,000 unless configured). SoftHSM2 reads every
token of its folder when it initialises (and C_InitToken slows with the folder's size), so one
folder of 10,000 cards made every issuance, reader and agent pay for all of them. The shard is
part of the card number (:func:`cardsim.numbers.shard_of`), so every process finds a card's
folder without a scan (docs/cards.md, "Where cards live").
"""

from __future__ import annotations

import datetime
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cardsim.errors import CardConfigurationError
from cardsim.numbers import SHARDS, shard_of

DEFAULT_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
#: cards per shard before issuance opens the next one (a few more when issuers race)
DEFAULT_SHARD_CAPACITY = 1000


@dataclass(frozen=True)
class CardShard:
    """One SoftHSM2 token folder of cards and its configuration."""

    index: int
    folder: Path

    @property
    def token_dir(self) -> Path:
        return self.folder / "tokens"

    @property
    def softhsm_conf(self) -> Path:
        return self.folder / "softhsm2.conf"

    def exists(self) -> bool:
        return self.softhsm_conf.exists()

    def prepare(self) -> None:
        """Create the shard's folder and configuration (idempotent; the configuration is written last)."""
        self.token_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not self.softhsm_conf.exists():
            # several writers may open a new shard at once: each writes its own file and renames
            # it into place (atomic, and every copy is the same), so none reads a half-written one
            partial = self.folder / f".softhsm2.conf.{os.getpid()}"
            partial.write_text(f"directories.tokendir = {self.token_dir}\nobjectstore.backend = file\n"
                               "log.level = ERROR\nslots.removable = false\n")
            os.replace(partial, self.softhsm_conf)

    @contextmanager
    def locked(self, exclusive: bool) -> Iterator[None]:
        """The shard's lock (flock on ``<shard>/.lock``): exclusive while a process creates or
        deletes a token, shared while SoftHSM2 reads the folder (C_Initialize and the slot index).
        SoftHSM2 reading a token that another process is still creating fails with
        CKR_GENERAL_ERROR, or aborts the process (an assertion in its slot manager)."""
        fd = os.open(self.folder / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)  # releases the lock (as the kernel does for a killed process)

    def token_count(self) -> int:
        """Token folders in the shard (one listing of one shard's folder)."""
        if not self.token_dir.exists():
            return 0
        with os.scandir(self.token_dir) as entries:
            return sum(1 for entry in entries if entry.is_dir())


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
    #: cards per shard (``TESSERA_CARD_SHARD_CAPACITY``) before issuance opens the next shard
    shard_capacity: int = DEFAULT_SHARD_CAPACITY
    #: ``TESSERA_DATA_KEY`` if set (else the embedded secrets file): the pseudonym key's source
    data_key_b64: str | None = field(default=None, repr=False)

    def pseudonym_key(self) -> bytes:
        """The key of the pseudonyms in citizen certificates (cardsim.pseudonyms), derived from
        the deployment's data key."""
        from cardsim.pseudonyms import pseudonym_key
        from store.data_key import DataKeyError, data_key_file, load_data_key

        try:
            return pseudonym_key(load_data_key(self.data_key_b64, data_key_file(self.home)))
        except DataKeyError as exc:
            raise CardConfigurationError(str(exc)) from None

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
        try:
            capacity = int(env.get("TESSERA_CARD_SHARD_CAPACITY") or DEFAULT_SHARD_CAPACITY)
        except ValueError:
            raise CardConfigurationError("TESSERA_CARD_SHARD_CAPACITY must be a whole number of cards") from None
        if not 1 <= capacity <= 10_000:
            raise CardConfigurationError("TESSERA_CARD_SHARD_CAPACITY must be between 1 and 10000")
        return cls(
            home=home,
            folder=folder,
            module_path=env.get("TESSERA_CARD_PKCS11_MODULE") or DEFAULT_MODULE,
            key_type=key_type,
            validity=datetime.timedelta(days=days),
            fsync_counters=(env.get("TESSERA_CARD_FSYNC") or "0") == "1",
            shard_capacity=capacity,
            data_key_b64=env.get("TESSERA_DATA_KEY") or None,
        )

    @property
    def shards_dir(self) -> Path:
        return self.folder / "shards"

    @property
    def legacy_token_dir(self) -> Path:
        """The single token folder of card homes made before sharding (moved by :meth:`prepare`)."""
        return self.folder / "tokens"

    def shard(self, index: int) -> CardShard:
        if not 0 <= index < SHARDS:
            raise CardConfigurationError(f"card shards are numbered 0 to {SHARDS - 1}")
        return CardShard(index, self.shards_dir / f"{index:03d}")

    def shard_of(self, number: str) -> CardShard:
        """The shard holding card ``number`` (a well-formed card number)."""
        return self.shard(shard_of(number))

    def existing_shards(self) -> list[CardShard]:
        """Every shard made so far, in order (for the few whole-folder tasks: init, the agent's
        "the one card in the reader")."""
        if not self.shards_dir.exists():
            return []
        names = sorted(p.name for p in self.shards_dir.iterdir() if p.name.isdigit() and len(p.name) == 3)
        return [s for s in (self.shard(int(n)) for n in names) if s.exists()]

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
        """Create the card folder and its first shard; True if anything was made. A card home made
        before sharding is moved into shards by :func:`cardsim.shard_migration.migrate`."""
        made = not self.shards_dir.exists()
        for path in (self.folder, self.shards_dir, self.counter_dir, self.pending_dir, self.envelope_dir):
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not self.existing_shards():
            self.shard(0).prepare()
        return made

    def require(self) -> None:
        if self.legacy_token_dir.exists():
            raise CardConfigurationError(
                f"the card folder {self.folder} predates card shards: run `tessera init` to move its cards into shards")
        if not self.shards_dir.exists():
            raise CardConfigurationError(f"no card folder at {self.folder}: run `tessera init` first")
