"""PIN and PUK try counters, kept by the card layer because SoftHSM2 never locks a PIN.

A real card decrements its retry counter before it compares the PIN (ISO/IEC 7816-4 VERIFY),
so pulling the card mid-check costs a try. Here likewise: :meth:`TryCounter.attempt` writes the
incremented count to the card's counter file *before* the PKCS#11 login is tried and resets it
only after a success, so a process killed during an attempt gets no free guess. The file is
written with one ``pwrite`` of 8 bytes (atomic for a killed process; ``TESSERA_CARD_FSYNC=1``
adds an fsync for power loss). The counters belong to the card, so they live in the card folder
beside the tokens, not in the registry database: a service reading a card needs no SQL.
"""

from __future__ import annotations

import fcntl
import os
import re
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from cardsim.errors import CardBlocked, InvalidPin, PinBlocked, WrongPin

PIN_TRIES = 3
PUK_TRIES = 10
_FORMAT = struct.Struct("<II")
_PIN = re.compile(r"[0-9]{6,8}")
_PUK = re.compile(r"[0-9]{8}")

T = TypeVar("T")


def check_pin_form(pin: str) -> str:
    if not isinstance(pin, str) or not _PIN.fullmatch(pin):
        raise InvalidPin("a PIN has 6 to 8 digits")
    return pin


def check_puk_form(puk: str) -> str:
    if not isinstance(puk, str) or not _PUK.fullmatch(puk):
        raise InvalidPin("a PUK has 8 digits")
    return puk


@dataclass(frozen=True)
class TryState:
    pin_failures: int
    puk_failures: int

    @property
    def pin_blocked(self) -> bool:
        return self.pin_failures >= PIN_TRIES

    @property
    def card_blocked(self) -> bool:
        return self.puk_failures >= PUK_TRIES


class TryCounter:
    """The persistent PIN/PUK failure counts of one card."""

    def __init__(self, folder: Path, card_number: str, fsync: bool = False) -> None:
        if not card_number.isdigit():
            raise ValueError("card numbers are digits")
        self.path = folder / card_number
        self.fsync = fsync

    def create(self) -> None:
        self._write(TryState(0, 0), create=True)

    def read(self) -> TryState:
        try:
            with open(self.path, "rb") as fh:
                data = fh.read(_FORMAT.size)
        except FileNotFoundError:
            # a card without a counter file is treated as blocked, never as fresh
            return TryState(PIN_TRIES, PUK_TRIES)
        if len(data) != _FORMAT.size:
            return TryState(PIN_TRIES, PUK_TRIES)
        return TryState(*_FORMAT.unpack(data))

    def _write(self, state: TryState, create: bool = False) -> None:
        flags = os.O_WRONLY | (os.O_CREAT if create else 0)
        fd = os.open(self.path, flags, 0o600)
        try:
            self._put(fd, state)
        finally:
            os.close(fd)

    def _put(self, fd: int, state: TryState) -> None:
        os.pwrite(fd, _FORMAT.pack(state.pin_failures, state.puk_failures), 0)
        if self.fsync:
            os.fsync(fd)

    @contextmanager
    def _locked(self) -> Iterator[tuple[int | None, TryState]]:
        """The counter file held under an exclusive flock, and its state: one try at a time per
        card across every process (two concurrent wrong tries cannot both read the old count,
        and SoftHSM2, which rewrites the token file at each login, never sees two logins to one
        card at once). A missing or short file is a blocked card, as in :meth:`read`."""
        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            yield None, TryState(PIN_TRIES, PUK_TRIES)
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # released by close, or by the kernel if we are killed
            data = os.pread(fd, _FORMAT.size, 0)
            yield fd, (TryState(*_FORMAT.unpack(data)) if len(data) == _FORMAT.size else TryState(PIN_TRIES, PUK_TRIES))
        finally:
            os.close(fd)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    @contextmanager
    def _counted(self, which: str) -> Iterator[tuple[int, TryState]]:
        with self._locked() as (fd, state):
            if state.card_blocked:
                raise CardBlocked("the card is blocked for good (10 wrong PUKs)")
            if which == "pin" and state.pin_blocked:
                raise PinBlocked("the PIN is blocked after 3 wrong tries: unblock it with the PUK")
            assert fd is not None  # a missing counter reads as blocked
            counted = (TryState(state.pin_failures + 1, state.puk_failures) if which == "pin"
                       else TryState(state.pin_failures, state.puk_failures + 1))
            self._put(fd, counted)  # counted BEFORE the attempt
            if os.environ.get("TESSERA_CARD_CRASH_AT") == f"{which}-attempt":  # fault injection (tests)
                os.kill(os.getpid(), 9)
            yield fd, counted

    def attempt_pin(self, login: Callable[[], T], is_wrong: Callable[[Exception], bool]) -> T:
        """Run ``login`` (a PKCS#11 C_Login with the user PIN) as one counted try."""
        with self._counted("pin") as (fd, counted):
            try:
                result = login()
            except Exception as exc:
                if is_wrong(exc):
                    remaining = max(0, PIN_TRIES - counted.pin_failures)
                    if remaining == 0:
                        raise PinBlocked("wrong PIN: the PIN is now blocked (3 wrong tries)") from None
                    raise WrongPin(f"wrong PIN: {remaining} tries left", remaining) from None
                self._put(fd, TryState(counted.pin_failures - 1, counted.puk_failures))  # not a PIN try
                raise
            self._put(fd, TryState(0, counted.puk_failures))
            return result

    def attempt_puk(self, login: Callable[[], T], is_wrong: Callable[[Exception], bool]) -> T:
        """Run ``login`` (C_Login as SO with the PUK) as one counted try; success resets both."""
        with self._counted("puk") as (fd, counted):
            try:
                result = login()
            except Exception as exc:
                if is_wrong(exc):
                    remaining = max(0, PUK_TRIES - counted.puk_failures)
                    if remaining == 0:
                        raise CardBlocked("wrong PUK: the card is now blocked for good (10 wrong PUKs)") from None
                    raise WrongPin(f"wrong PUK: {remaining} tries left", remaining) from None
                self._put(fd, TryState(counted.pin_failures, counted.puk_failures - 1))
                raise
            return result

    def reset_after_unblock(self) -> None:
        self._write(TryState(0, 0))
