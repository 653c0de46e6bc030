"""Login throttling in front of the directory: failures counted so that nobody can lock anybody out.

Three counters, each over a window (``throttle.window_seconds``, 15 minutes by default), each
blocking for one window once its limit is reached:

- per account AND source address (``pair:<account>|<address>``), the low limit
  (``throttle.account_failures``, 10): guessing one account's password from one place;
- per account from every address together (``account:<account>``), a generous limit
  (``throttle_account_wide_failures``, 50): guessing from many places at once;
- per source address across accounts (``address:<address>``, ``throttle.address_failures``, 100):
  password spraying.

An address the account completed a login from in the last ``throttle_usual_address_days`` (90)
days (``usual:<account>|<address>``) is held back by its own pair counter only: an attacker
failing from elsewhere, however often, never stops the owner logging in from their usual place.
The directory's own ppolicy lockout (pwdMaxFailure, :mod:`idp.slapd`) sits above all this as a
backstop, so the directory lock is not the way to deny an account service.

Every counter is kept by the user name as typed (lower-cased), whether the account exists or not:
an unknown account is counted, blocked and answered exactly as a known one, so the throttle
reveals nothing about which accounts exist. Wrong TOTP codes count like wrong passwords. A
directory that cannot be reached never counts (:class:`idp.directory_errors.DirectoryUnavailable`).
All rows live in ``idp_login_throttle`` (key, failures, window_start, blocked_until): a ``usual:``
row's ``window_start`` is the time of the last login from there.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, and_, bindparam, delete, exists, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased, sessionmaker

from idp.models import LoginThrottle as ThrottleRow
from store.driver_read import DriverRead

ACCOUNT_WIDE_FAILURES = 50
USUAL_ADDRESS_DAYS = 90
#: a usual address's row is written again after a login at most this often (a write per login otherwise)
_USUAL_REFRESH = datetime.timedelta(days=1)

# every login asks whether it is blocked: one Core statement, built once and run on the driver
# (store.driver_read; its measured gain in docs/platform-notes.md). The pair counter always applies;
# the account-wide and address counters do not for an address the account logged in from recently.
_USUAL = aliased(ThrottleRow)
_BLOCKED = select(ThrottleRow.key).where(
    ThrottleRow.blocked_until > bindparam("now"),
    or_(ThrottleRow.key == bindparam("pair"),
        and_(ThrottleRow.key.in_([bindparam("account"), bindparam("source")]),
             ~exists().where(_USUAL.key == bindparam("usual"), _USUAL.window_start > bindparam("since")))),
).limit(1)
# after a login: the pair's failures (to clear) and when the usual address was last written (on the
# driver too)
_AFTER_LOGIN = select(select(ThrottleRow.failures).where(ThrottleRow.key == bindparam("pair")).scalar_subquery(),
                      select(ThrottleRow.window_start).where(ThrottleRow.key == bindparam("usual")).scalar_subquery())

_FORGET_PAIR = delete(ThrottleRow).where(ThrottleRow.key == bindparam("pair"))


def _remember_usual(insert: Any) -> Any:
    """The address an account logged in from, as usual since now: the row made, or its time moved."""
    statement = insert(ThrottleRow).values(key=bindparam("usual"), failures=0, window_start=bindparam("now"))
    return statement.on_conflict_do_update(index_elements=[ThrottleRow.key],
                                           set_={"window_start": statement.excluded.window_start})


_REMEMBER_USUAL = {"sqlite": _remember_usual(sqlite.insert), "postgresql": _remember_usual(postgresql.insert)}


def _account(username: str) -> str:
    return username.strip().lower()[:120]


def _source(address: str | None) -> str:
    return (address or "unknown")[:64]


class LoginThrottle:
    """The counters above on the ``idp_login_throttle`` table."""

    def __init__(self, sessions: sessionmaker[Session], clock: Callable[[], datetime.datetime],
                 account_limit: int, address_limit: int, window: datetime.timedelta,
                 tuning: Callable[[str], int] | None = None, *,
                 account_wide_limit: int = ACCOUNT_WIDE_FAILURES, usual_address_days: int = USUAL_ADDRESS_DAYS) -> None:
        self.sessions = sessions
        self.engine: Engine = sessions.kw["bind"]
        self._blocked = DriverRead(self.engine, _BLOCKED)
        self._after_login = DriverRead(self.engine, _AFTER_LOGIN)
        self.clock = clock
        self._account_limit = account_limit
        self._address_limit = address_limit
        self._window = window
        #: the runtime settings in force (idp/runtime_settings.py), read on each use; None: fixed
        self._tuning = tuning
        self.usual_address_age = datetime.timedelta(days=usual_address_days)
        self._account_wide_limit = account_wide_limit

    @property
    def account_limit(self) -> int:
        """Failures of one account from one address in a window (the low limit)."""
        return self._tuning("throttle.account_failures") if self._tuning else self._account_limit

    @property
    def account_wide_limit(self) -> int:
        """Failures of one account from all addresses not usual for it, in a window. Never below
        the pair limit."""
        return max(self._account_wide_limit, self.account_limit)

    @property
    def address_limit(self) -> int:
        return self._tuning("throttle.address_failures") if self._tuning else self._address_limit

    @property
    def window(self) -> datetime.timedelta:
        return datetime.timedelta(seconds=self._tuning("throttle.window_seconds")) if self._tuning else self._window

    @staticmethod
    def _keys(username: str, address: str | None) -> tuple[str, str, str, str]:
        """(pair, account, address, usual) keys."""
        account, source = _account(username), _source(address)
        return f"pair:{account}|{source}", f"account:{account}", f"address:{source}", f"usual:{account}|{source}"

    def blocked(self, username: str, address: str | None) -> bool:
        """True while a counter that applies to this account from this address is used up."""
        pair, account, source, usual = self._keys(username, address)
        now = self.clock()
        return self._blocked.first({"now": now, "pair": pair, "account": account, "source": source, "usual": usual,
                                    "since": now - self.usual_address_age}) is not None

    def failure(self, username: str, address: str | None) -> None:
        """Count one failed password (or code) of ``username`` from ``address`` on all three counters."""
        try:
            self._count(username, address)
        except IntegrityError:  # two workers created the same row at once: count again on it
            self._count(username, address)

    def _count(self, username: str, address: str | None) -> None:
        now = self.clock()
        pair, account, source, _ = self._keys(username, address)
        limits = {pair: self.account_limit, account: self.account_wide_limit, source: self.address_limit}
        with self.sessions.begin() as session:
            for key in sorted(limits):  # one order in every worker: no deadlock between two counts
                row = session.get(ThrottleRow, key, with_for_update=True)
                if row is None:
                    row = ThrottleRow(key=key, failures=0, window_start=now)
                    session.add(row)
                if now - row.window_start > self.window:
                    row.failures, row.window_start, row.blocked_until = 0, now, None
                row.failures += 1
                if row.failures >= limits[key]:
                    row.blocked_until = now + self.window

    def clear(self, session: Session, username: str) -> int:
        """The help desk's unlock (:mod:`idp.help_desk`): forget ``username``'s failures and blocks,
        from every address and account-wide, in the caller's transaction (the one of its audit
        entry); the number of counters cleared. The address counters stay (other accounts' failures
        fill them), and so do the usual addresses (they are the owner's, not an attacker's)."""
        account = _account(username)
        deleted = session.execute(delete(ThrottleRow).where(or_(
            ThrottleRow.key == f"account:{account}", ThrottleRow.key.startswith(f"pair:{account}|", autoescape=True))))
        return int(cast("CursorResult[Any]", deleted).rowcount)

    def success(self, username: str, address: str | None = None) -> None:
        """A complete login: clears the pair's count (not the account-wide or address count, which
        an attacker elsewhere may be filling) and remembers ``address`` as usual for the account
        (no address: nothing to remember)."""
        pair, _, _, usual = self._keys(username, address)
        now = self.clock()
        row = self._after_login.first({"pair": pair, "usual": usual})
        assert row is not None  # a select of two scalar subqueries: always one row
        failures, seen = row
        fresh = address is None or (seen is not None and now - seen < _USUAL_REFRESH)
        if not failures and fresh:
            return  # the usual case: no write at all
        with self.engine.begin() as conn:
            conn.execute(_FORGET_PAIR, {"pair": pair})
            if not fresh:  # one statement whether or not the row exists (two workers at once: both land)
                conn.execute(_REMEMBER_USUAL[conn.dialect.name], {"usual": usual, "now": now})
