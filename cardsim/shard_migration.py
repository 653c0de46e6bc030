"""Moving the cards of a card folder made before sharding into their shards (run by `tessera init`).

Before shards, every card token lived in ``<cards>/tokens`` under ``<cards>/softhsm2.conf``.
SoftHSM2 keeps each token in a folder of its own, so a card moves by renaming its token folder
into the ``tokens`` folder of the shard its number names (:func:`cardsim.numbers.shard_of`);
PIN/PUK counters and the registry do not change. Each rename is atomic and the old folder is
removed last, so an interrupted migration is finished by running it again; until then the card
layer refuses to start (:meth:`cardsim.config.CardSettings.require`). Run it with the card
services stopped: a process that has the old folder open would not see the moves.

Tokens that are not cards (no card-number label, or a token SoftHSM2 never finished) are kept
aside in ``<cards>/unsorted-tokens`` rather than deleted.
"""

from __future__ import annotations

import os

from cardsim import cryptoki as ck
from cardsim.config import CardSettings
from cardsim.numbers import is_card_number


def _labels_by_folder(settings: CardSettings) -> dict[str, str]:
    """token folder name -> label, read once through SoftHSM2 over the old folder."""
    conf = settings.folder / "softhsm2.conf"
    if not conf.exists():
        return {}
    p11 = ck.Cryptoki(settings.module_path, conf)
    try:
        labels = {}
        for slot in p11.slot_ids():
            label, serial, initialised = p11.token_info(slot)
            if initialised and len(serial) == 16:
                for folder in settings.legacy_token_dir.glob(f"*-*-*-{serial[:4]}-{serial[4:]}"):
                    labels[folder.name] = label
        return labels
    finally:
        p11.finalize()


def migrate(settings: CardSettings) -> list[str]:
    """Move every card of the pre-shard folder into its shard; a line per step done."""
    legacy = settings.legacy_token_dir
    if not legacy.exists():
        return []
    settings.prepare()
    labels = _labels_by_folder(settings)
    moved, aside = 0, 0
    for folder in sorted(p for p in legacy.iterdir() if p.is_dir()):
        label = labels.get(folder.name, "")
        if is_card_number(label):
            shard = settings.shard_of(label)
            shard.prepare()
            os.rename(folder, shard.token_dir / folder.name)
            moved += 1
        else:
            unsorted = settings.folder / "unsorted-tokens"
            unsorted.mkdir(mode=0o700, exist_ok=True)
            os.rename(folder, unsorted / folder.name)
            aside += 1
    for leftover in legacy.iterdir():  # SoftHSM2 lock files, nothing of a token
        leftover.unlink()
    (settings.folder / "softhsm2.conf").unlink(missing_ok=True)
    legacy.rmdir()
    done = [f"moved {moved} card token(s) from {legacy} into {len(settings.existing_shards())} shard(s)"]
    if aside:
        done.append(f"kept {aside} token folder(s) that are not cards in {settings.folder / 'unsorted-tokens'}")
    return done
