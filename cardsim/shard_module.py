"""One PKCS#11 module instance per card shard, several in one process.

SoftHSM2 reads ``SOFTHSM2_CONF`` (so: one token folder) when it is initialised, and keeps one
state per loaded library. A process that reads cards of several shards therefore loads one
private copy of the module per shard: the copy lives in an anonymous memory file
(``memfd_create``), so the dynamic loader sees a new file and gives it its own globals, and
nothing is left on disk. ``SOFTHSM2_CONF`` points at the shard's configuration only while that
copy runs C_Initialize (PKCS#11 v2.40 section 5.4); the copy keeps it until it is finalised.

One process, no threads (docs/platform-notes.md, Process model): the environment switch around C_Initialize is
not thread-safe, and neither is SoftHSM2 without OS locking.
"""

from __future__ import annotations

import ctypes
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pkcs11

from cardsim.config import CardShard

T = TypeVar("T")

#: (module path, shard configuration) -> path of this process's private copy
_copies: dict[tuple[str, str], str] = {}


def module_copy(module_path: str, conf: Path) -> str:
    """The path of this process's own copy of ``module_path`` for the shard configured by ``conf``."""
    key = (os.path.realpath(module_path), str(conf))
    path = _copies.get(key)
    if path is None:
        fd = os.memfd_create(f"pkcs11-shard-{conf.parent.name}", 0)  # kept open: the mapping's file
        with open(key[0], "rb") as source:
            os.write(fd, source.read())
        path = _copies[key] = f"/proc/self/fd/{fd}"
    return path


@contextmanager
def pointed_at(conf: Path) -> Iterator[None]:
    """``SOFTHSM2_CONF`` set to ``conf`` for the duration (around a C_Initialize), then restored."""
    before = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    try:
        yield
    finally:
        if before is None:
            del os.environ["SOFTHSM2_CONF"]
        else:
            os.environ["SOFTHSM2_CONF"] = before


def initialised_for(conf: Path, initialise: Callable[[], T]) -> T:
    """Run ``initialise`` (a C_Initialize, or a python-pkcs11 load / reinitialize) for ``conf``."""
    with pointed_at(conf):
        return initialise()


class ShardLibrary:
    """One card shard seen through python-pkcs11 (readers, the card agent): the shard's own copy
    of the module and a label -> token index, built once (docs/platform-notes.md: ``get_token``
    scans every slot) and rebuilt by :meth:`reinitialise`."""

    def __init__(self, shard: CardShard, module_path: str) -> None:
        self.shard = shard
        self.module = module_copy(module_path, shard.softhsm_conf)
        with shard.locked(exclusive=False):  # never while a writer is creating a token
            self.lib = initialised_for(shard.softhsm_conf, lambda: pkcs11.lib(self.module))
            self.index()

    def index(self) -> None:
        self.tokens: dict[str, Any] = {}
        for slot in self.lib.get_slots(token_present=True):
            token = _token_in(slot)
            if token is not None and token.flags & pkcs11.TokenFlag.TOKEN_INITIALIZED:
                self.tokens.setdefault(token.label, token)

    def reinitialise(self) -> None:
        with self.shard.locked(exclusive=False):
            initialised_for(self.shard.softhsm_conf, self.lib.reinitialize)
            self.index()

    def close_all_sessions(self, slot_id: int) -> None:
        """python-pkcs11 leaks the session of a failed login: close them (docs/platform-notes.md)."""
        ctypes.CDLL(self.module).C_CloseAllSessions(ctypes.c_ulong(slot_id))


def read_token_info(read: Callable[[], T], errors: tuple[type[Exception], ...], tries: int = 5) -> T | None:
    """What ``read`` reads of a token; None if it still fails after ``tries``. SoftHSM2 rewrites a
    token's file at every login, and C_GetTokenInfo in another process meanwhile fails
    (CKR_GENERAL_ERROR): a card someone is logging in to is read again rather than left out. A
    token whose file its writer never finished fails for good, and is left out."""
    for attempt in range(tries):
        try:
            return read()
        except errors:
            time.sleep(0.002 * (attempt + 1))
    return None


def _token_in(slot: Any) -> Any | None:
    """The slot's token (python-pkcs11); None if it cannot be read (:func:`read_token_info`)."""
    return read_token_info(slot.get_token, (pkcs11.exceptions.PKCS11Error,))
