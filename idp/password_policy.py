"""The staff password policy, checked before a password reaches the directory.

Rules (the classified-system protection rules' password requirements, NIST SP 800-63B 5.1.1.2):

- at least :data:`MIN_LENGTH` (12) characters, at most 1024;
- not a common password: the candidate, lower-cased, and its core with leading and trailing digits
  and symbols stripped (``Password123!`` -> ``password``) are looked up in the shipped list
  ``idp/common_passwords.txt``;
- not containing the user name (nor the given name or surname, when known), case-insensitively;
- not one of the last :data:`HISTORY` passwords of the same person: the history is kept as
  argon2id hashes (``gov_password_history``), never in clear.

The directory's own ppolicy (pwdMinLength, pwdInHistory) stays on as a second line.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from idp.governance_models import PasswordHistory
from directory.person_names import is_han, written_name
from translatable import N_, Text

MIN_LENGTH = 12
MAX_LENGTH = 1024
HISTORY = 5
COMMON_PASSWORDS = Path(__file__).resolve().parent / "common_passwords.txt"
_HASHER = PasswordHasher(time_cost=3, memory_cost=4096, parallelism=1, type=Type.ID)
_EDGES = re.compile(r"^[\d\W_]+|[\d\W_]+$")
_NOT_LETTERS = re.compile(r"[\d\W_]+")


class WeakPassword(ValueError):
    """The password breaks the policy; ``reasons`` says how, in words for the person choosing it
    (English text a page shows in its language: translatable)."""

    kind = "weak-password"

    def __init__(self, reasons: list[Text]) -> None:
        self.reasons = reasons
        super().__init__(" ".join(reasons))


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """The shipped list (lower case), read once per process."""
    lines = COMMON_PASSWORDS.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip().lower() for line in lines if line.strip() and not line.startswith("#"))


def _repeated_unit(text: str) -> str:
    """``abcabc`` -> ``abc``: the shortest unit ``text`` repeats (itself when it repeats nothing)."""
    for size in range(1, len(text) // 2 + 1):
        if len(text) % size == 0 and text[:size] * (len(text) // size) == text:
            return text[:size]
    return text


def is_common(password: str) -> bool:
    """On the list as it is, without its leading/trailing digits and symbols, with only its letters,
    or as a repetition of a listed word (``Password123!Password123!``)."""
    lowered = password.lower()
    listed = common_passwords()
    letters = _NOT_LETTERS.sub("", lowered)
    for candidate in (lowered, _EDGES.sub("", lowered), letters, _repeated_unit(lowered),
                      _EDGES.sub("", _repeated_unit(lowered)), _repeated_unit(letters)):
        if len(candidate) >= 4 and candidate in listed:
            return True
    return False


def problems(password: str, username: str, names: Iterable[str] = (), min_length: int = MIN_LENGTH) -> list[Text]:
    """Every rule ``password`` breaks (empty: it passes), history aside, in English text a page shows
    in its language (translatable). ``names``: the given name, then the family name.
    ``min_length`` may raise the minimum (a runtime setting), never lower it below :data:`MIN_LENGTH`."""
    if not isinstance(password, str):
        return [N_("The password must be text.")]
    found: list[Text] = []
    min_length = max(MIN_LENGTH, min_length)
    if len(password) < min_length:
        found.append(N_("Use at least %(count)s characters.", count=min_length))
    if len(password) > MAX_LENGTH or "\x00" in password:
        found.append(N_("Use at most %(count)s printable characters.", count=MAX_LENGTH))
    if is_common(password):
        found.append(N_("This password is on the list of common passwords: choose one nobody would guess."))
    lowered = password.lower()
    names = [n for n in names if n]
    # a Chinese name is one or two characters a part: the whole name (张伟) counts from two
    whole = [written_name(names[0], names[1])] if len(names) >= 2 else []
    for name in [username, *names, *whole]:
        shortest = 2 if is_han(name) else 3
        if name and len(name) >= shortest and name.lower() in lowered:
            found.append(N_("The password may not contain your user name or your name."))
            break
    return found


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def _matches(stored: str, password: str) -> bool:
    try:
        return _HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


class PasswordPolicy:
    """The rules above plus the hashed history of each staff member's recent passwords."""

    def __init__(self, sessions: sessionmaker[Session], clock: Callable[[], datetime.datetime],
                 history: int = HISTORY, tuning: Callable[[str], int] | None = None) -> None:
        self.sessions = sessions
        self.clock = clock
        self.history = history
        #: the runtime settings in force (idp/runtime_settings.py): password.min_length; None: the floor
        self._tuning = tuning

    @property
    def min_length(self) -> int:
        return max(MIN_LENGTH, self._tuning("password.min_length")) if self._tuning else MIN_LENGTH

    def recently_used(self, uid: str, password: str) -> bool:
        with self.sessions() as session:
            hashes = session.scalars(select(PasswordHistory.password_hash).where(PasswordHistory.uid == uid)
                                     .order_by(PasswordHistory.id.desc()).limit(self.history)).all()
        return any(_matches(h, password) for h in hashes)

    def check(self, uid: str, password: str, names: Iterable[str] = ()) -> None:
        """Raise :class:`WeakPassword` with every broken rule, including reuse of a recent password."""
        found = problems(password, uid, names, self.min_length)
        if isinstance(password, str) and not found and self.recently_used(uid, password):
            found.append(N_("This password was one of your last %(count)s: choose a new one.", count=self.history))
        if found:
            raise WeakPassword(found)

    def remember(self, session: Session, uid: str, password: str) -> None:
        """Add ``password`` (hashed) to ``uid``'s history inside the caller's transaction; keep the newest only."""
        session.add(PasswordHistory(uid=uid, password_hash=hash_password(password), created_at=self.clock()))
        session.flush()
        keep = select(PasswordHistory.id).where(PasswordHistory.uid == uid).order_by(
            PasswordHistory.id.desc()).limit(self.history)
        session.execute(delete(PasswordHistory).where(PasswordHistory.uid == uid,
                                                      PasswordHistory.id.not_in(keep.scalar_subquery())))
