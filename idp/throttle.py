"""Login throttling on top of the directory's password policy.

ppolicy locks an account after N wrong passwords; this adds limits per account (also counting
wrong TOTP codes, which the directory never sees) and per client address (password spraying
across many accounts). While a limit is reached the login page says the same generic sentence as
for a wrong password, so the throttle reveals nothing about which accounts exist.
A directory that cannot be reached never counts (:class:`idp.directory_errors.DirectoryUnavailable`).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable

from sqlalchemy import Engine, delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from ca.held_connection import HeldStatement
from ca.models import UtcDateTime

from idp.models import LoginThrottle as ThrottleRow


# every login asks twice whether it is blocked and once whether a count is to clear: on the held
# driver connection (ca.held_connection), one statement each
_BLOCKED = "SELECT 1 FROM idp_login_throttle WHERE key IN (?, ?) AND blocked_until > ? LIMIT 1"
_EXISTS = "SELECT 1 FROM idp_login_throttle WHERE key = ?"


class LoginThrottle:
    def __init__(self, sessions: sessionmaker[Session], clock: Callable[[], datetime.datetime],
                 account_limit: int, address_limit: int, window: datetime.timedelta,
                 tuning: Callable[[str], int] | None = None) -> None:
        self.sessions = sessions
        self.engine: Engine = sessions.kw["bind"]
        self.clock = clock
        self._account_limit = account_limit
        self._address_limit = address_limit
        self._window = window
        #: the runtime settings in force (idp/runtime_settings.py), read on each use; None: fixed
        self._tuning = tuning
        self._blocked = HeldStatement(self.engine, _BLOCKED, "login throttle", params=(None, None, UtcDateTime()))
        self._exists = HeldStatement(self.engine, _EXISTS, "login throttle")

    @property
    def account_limit(self) -> int:
        return self._tuning("throttle.account_failures") if self._tuning else self._account_limit

    @property
    def address_limit(self) -> int:
        return self._tuning("throttle.address_failures") if self._tuning else self._address_limit

    @property
    def window(self) -> datetime.timedelta:
        return datetime.timedelta(seconds=self._tuning("throttle.window_seconds")) if self._tuning else self._window

    @staticmethod
    def _keys(username: str, address: str | None) -> list[str]:
        keys = [f"account:{username.strip().lower()[:150]}"]
        if address:
            keys.append(f"address:{address[:64]}")
        return keys

    def blocked(self, username: str, address: str | None) -> bool:
        """True while the account or the address has used up its failures in the window."""
        keys = self._keys(username, address)
        return self._blocked.run((keys[0], keys[-1], self.clock())).row is not None

    def failure(self, username: str, address: str | None) -> None:
        try:
            self._count(username, address)
        except IntegrityError:  # two workers created the same row at once: count again on it
            self._count(username, address)

    def _count(self, username: str, address: str | None) -> None:
        now = self.clock()
        with self.sessions.begin() as session:
            for key in self._keys(username, address):
                limit = self.account_limit if key.startswith("account:") else self.address_limit
                row = session.get(ThrottleRow, key, with_for_update=True)
                if row is None:
                    row = ThrottleRow(key=key, failures=0, window_start=now)
                    session.add(row)
                if now - row.window_start > self.window:
                    row.failures, row.window_start, row.blocked_until = 0, now, None
                row.failures += 1
                if row.failures >= limit:
                    row.blocked_until = now + self.window

    def success(self, username: str) -> None:
        """A complete login clears the account's count (not the address's)."""
        key = self._keys(username, None)[0]
        if self._exists.run((key,)).row is None:
            return  # the usual case: no write at all
        with self.sessions.begin() as session:
            session.execute(delete(ThrottleRow).where(ThrottleRow.key == key))
