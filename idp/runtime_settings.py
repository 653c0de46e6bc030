"""Runtime settings: the few knobs the system administrator may turn while the service runs.

Everything else stays in the ``TESSERA_*`` environment (:mod:`idp.settings`) and needs a restart:
addresses, database, keys, PINs and the directory are not changed from a web page. What may change
here is bounded so that no value weakens the service below its documented floor:

* session idle and absolute timeouts (the absolute one never shorter than the idle one);
* login throttle limits and window (per account, per address);
* the TOTP verification window, 0 or 1 time steps either side (RFC 6238 section 5.2 recommends
  at most one step of network delay);
* the verification API's rate per service (requests per second);
* the password policy's minimum length: 12 or more, never lower. The common-password check and the
  user-name check are not settings at all: they are always on.

Values live in the ``idp_runtime_setting`` table (migration 0007): a row exists only for a setting
that was changed; the others have their environment value. A change and its audit entry
(``admin.config.set``: old value, new value, who) commit in one transaction, or neither does.
Every worker process reads through :meth:`RuntimeSettings.get`, which reloads the whole (small)
table at most every ``ttl`` seconds: a change is in force everywhere within that time, no restart.

Who may do what: the system administrator reads and changes; the security administrator reads
only; the auditor and everyone else neither (refused and audited by the caller).
"""

from __future__ import annotations

import datetime
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Integer, String, false, select, text, update
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from store.base import Base
from store.types import UtcDateTime
from idp.password_policy import MIN_LENGTH as PASSWORD_FLOOR
from idp.roles import ADMIN_ROLES, SECURITY_ADMIN, SYSTEM_ADMIN, Forbidden, GovernanceError, admin_roles_of, either
from idp.settings import Settings
from translatable import N_, Text

if TYPE_CHECKING:
    from audit.trail import AuditEvent, AuditTrail

__all__ = ["RuntimeSetting", "RuntimeSettings", "SettingChange", "SettingView", "TUNABLES", "Tunable",
           "CONFIG_PERMISSIONS", "InvalidSetting", "may_change", "may_read", "require"]

#: seconds a worker serves its cached values before reading the table again
DEFAULT_TTL = 2.0


class RuntimeSetting(Base):
    """A setting changed at run time (absent: the environment's value applies)."""

    __tablename__ = "idp_runtime_setting"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(Integer)
    changed_by: Mapped[str] = mapped_column(String(255))
    changed_at: Mapped[datetime.datetime] = mapped_column(UtcDateTime())


@dataclass(frozen=True)
class Tunable:
    """One setting that may change at run time: its bounds, unit and environment default. The label
    and the unit are English text that a page shows in its own language (translatable)."""

    name: str
    label: Text
    unit: Text
    minimum: int
    maximum: int
    default: Callable[[Settings], int]


def _api_rate(_settings: Settings) -> int:
    # the verification API reads this variable itself (idp/verification_api/rate_limit.py); same default
    return int(float(os.environ.get("TESSERA_API_RATE_PER_SECOND") or 100))


TUNABLES: dict[str, Tunable] = {t.name: t for t in (
    Tunable("session.idle_seconds", N_("Staff session idle timeout"), N_("seconds"), 60, 24 * 3600,
            lambda s: s.session_idle_seconds),
    Tunable("session.absolute_seconds", N_("Staff session absolute timeout"), N_("seconds"), 5 * 60, 7 * 24 * 3600,
            lambda s: s.session_absolute_seconds),
    Tunable("throttle.account_failures", N_("Login failures per account from one address before a pause"),
            N_("failures"), 3, 100, lambda s: s.throttle_account_failures),
    Tunable("throttle.address_failures", N_("Login failures per client address before a pause"), N_("failures"),
            10, 10_000, lambda s: s.throttle_address_failures),
    Tunable("throttle.window_seconds", N_("Login throttle window (and pause)"), N_("seconds"), 60, 24 * 3600,
            lambda s: s.throttle_window_seconds),
    Tunable("totp.window_steps", N_("TOTP codes accepted either side of now (RFC 6238 section 5.2)"),
            N_("time steps"), 0, 1, lambda _s: 1),
    Tunable("api.rate_per_second", N_("Verification API requests per second per service"), N_("requests/s"),
            1, 10_000, _api_rate),
    Tunable("password.min_length", N_("Password minimum length (never below 12)"), N_("characters"),
            PASSWORD_FLOOR, 128, lambda _s: PASSWORD_FLOOR),
)}


class InvalidSetting(GovernanceError):
    """An unknown setting or a value outside its bounds (400)."""

    kind = "invalid-setting"
    status = 400


#: the configuration permissions per administrator role (the auditor and other staff: none). Named as
#: idp.roles names permissions; idp.roles.PERMISSIONS knows only "config.read", for the system
#: administrator (docs/governance.md, "Configuration").
CONFIG_PERMISSIONS: dict[str, frozenset[str]] = {
    SYSTEM_ADMIN: frozenset({"config.read", "config.change"}),
    SECURITY_ADMIN: frozenset({"config.read"}),
}


def _permissions(groups: Iterable[str]) -> frozenset[str]:
    roles = admin_roles_of(groups)
    return CONFIG_PERMISSIONS.get(roles[0], frozenset()) if len(roles) == 1 else frozenset()


def may_read(groups: Iterable[str]) -> bool:
    """The system and the security administrator see the runtime settings."""
    return "config.read" in _permissions(groups)


def may_change(groups: Iterable[str]) -> bool:
    """Only the system administrator changes them."""
    return "config.change" in _permissions(groups)


def require(groups: Iterable[str], change: bool) -> None:
    """Raise :class:`Forbidden` unless ``groups`` may read (with ``change``: change) the settings.

    Conflicting roles are refused before this, by the console and the CLI (idp.roles.login_refusal).
    """
    groups = list(groups)
    permission = "config.change" if change else "config.read"
    if permission not in _permissions(groups):
        roles = admin_roles_of(groups)
        holders = either([ADMIN_ROLES[g][1] for g, perms in CONFIG_PERMISSIONS.items() if permission in perms])
        if len(roles) == 1:
            template = (N_("Refused: the %(role)s may not change the configuration (%(permission)s); only the "
                           "%(holders)s may.") if change else
                        N_("Refused: the %(role)s may not see the configuration (%(permission)s); only the "
                           "%(holders)s may."))
            raise Forbidden(Text(template, role=ADMIN_ROLES[roles[0]][1], permission=permission, holders=holders))
        template = (N_("Refused: a staff member without an administrator role may not change the configuration "
                       "(%(permission)s); only the %(holders)s may.") if change else
                    N_("Refused: a staff member without an administrator role may not see the configuration "
                       "(%(permission)s); only the %(holders)s may."))
        raise Forbidden(Text(template, permission=permission, holders=holders))


@dataclass(frozen=True)
class SettingView:
    """A setting as shown: its value now and where that value comes from."""

    name: str
    label: str
    unit: str
    minimum: int
    maximum: int
    value: int
    default: int
    changed_by: str | None
    changed_at: datetime.datetime | None


@dataclass(frozen=True)
class SettingChange:
    """The outcome of :meth:`RuntimeSettings.set`: ``changed`` is False when ``new`` was in force already."""

    name: str
    old: int
    new: int
    changed: bool


def parse_value(tunable: Tunable, raw: object) -> int:
    """``raw`` (text from a form or the command line, or an int) as a value within the bounds."""
    bounds = N_("a whole number of %(unit)s from %(minimum)s to %(maximum)s", unit=tunable.unit,
                minimum=tunable.minimum, maximum=tunable.maximum)
    if isinstance(raw, bool):
        raise InvalidSetting(N_("%(name)s must be %(bounds)s", name=tunable.name, bounds=bounds))
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, str) and raw.strip().isascii() and raw.strip().isdigit() and len(raw.strip()) <= 9:
        value = int(raw.strip())
    else:
        shown = raw[:32] if isinstance(raw, str) else type(raw).__name__
        raise InvalidSetting(N_("%(name)s must be %(bounds)s, not %(value)s", name=tunable.name, bounds=bounds,
                                value=repr(shown)))
    if not tunable.minimum <= value <= tunable.maximum:
        if tunable.name == "password.min_length" and value < PASSWORD_FLOOR:
            raise InvalidSetting(N_("password.min_length may not go below %(floor)s (the password policy's floor)",
                                    floor=PASSWORD_FLOOR))
        raise InvalidSetting(N_("%(name)s must be %(bounds)s, not %(value)s", name=tunable.name, bounds=bounds,
                                value=value))
    return value


def _consistent(values: Mapping[str, int]) -> None:
    """Rules between settings, checked on the values as they would be after a change."""
    if values["session.absolute_seconds"] < values["session.idle_seconds"]:
        raise InvalidSetting(N_("the session absolute timeout may not be shorter than the idle timeout "
                                "(%(absolute)s < %(idle)s seconds)", absolute=values["session.absolute_seconds"],
                                idle=values["session.idle_seconds"]))


#: PostgreSQL's LOCK TABLE has no SQLAlchemy construct: the one statement kept as text
_PG_LOCK = text("LOCK TABLE idp_runtime_setting IN SHARE ROW EXCLUSIVE MODE")
#: a write that changes nothing (UPDATE ... WHERE 0 = 1): it takes SQLite's write lock
_SQLITE_CLAIM = update(RuntimeSetting).where(false()).values(value=RuntimeSetting.value)


def _claim(session: Session) -> None:
    """Serialise setters before they read: the rule between two settings (absolute >= idle) must
    hold against a concurrent change of the other one. PostgreSQL: a table lock that excludes other
    writers (readers go on). SQLite: a write statement first, so the transaction holds the write
    lock before its reads (in WAL mode a reader that writes later fails instead of waiting)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_PG_LOCK)
    else:
        session.execute(_SQLITE_CLAIM)


class RuntimeSettings:
    """The runtime settings of one deployment: a cached accessor for every worker, and the audited setter."""

    def __init__(self, sessions: sessionmaker[Session], settings: Settings,
                 clock: Callable[[], datetime.datetime], ttl: float = DEFAULT_TTL,
                 ticks: Callable[[], float] = time.monotonic) -> None:
        """``clock`` stamps changes; ``ticks`` (seconds, monotonic) ages the cache."""
        self.sessions = sessions
        self.defaults = {name: t.default(settings) for name, t in TUNABLES.items()}
        self.clock = clock
        self.ttl = ttl
        self.ticks = ticks
        self._lock = threading.Lock()
        self._values: dict[str, int] = {}
        self._loaded_at = float("-inf")

    # -- reading -----------------------------------------------------------------------------------
    def _rows(self, session: Session) -> dict[str, RuntimeSetting]:
        return {row.name: row for row in session.scalars(select(RuntimeSetting))}

    def _effective(self, rows: Mapping[str, RuntimeSetting]) -> dict[str, int]:
        return {name: rows[name].value if name in rows else default for name, default in self.defaults.items()}

    def get(self, name: str) -> int:
        """The value in force (at most ``ttl`` seconds old). Raises KeyError for an unknown name."""
        if name not in TUNABLES:
            raise KeyError(name)
        if self.ticks() - self._loaded_at > self.ttl:
            loaded_at = self.ticks()
            with self.sessions() as session:
                values = self._effective(self._rows(session))
            with self._lock:
                self._values, self._loaded_at = values, loaded_at
        return self._values[name]

    def show(self) -> list[SettingView]:
        """Every runtime setting with its value, bounds and last change (read fresh, not cached)."""
        with self.sessions() as session:
            rows = self._rows(session)
        return [SettingView(name, t.label, t.unit, t.minimum, t.maximum,
                            rows[name].value if name in rows else self.defaults[name], self.defaults[name],
                            rows[name].changed_by if name in rows else None,
                            rows[name].changed_at if name in rows else None)
                for name, t in TUNABLES.items()]

    # -- changing ----------------------------------------------------------------------------------
    def set(self, name: str, raw: object, trail: "AuditTrail", event: Callable[..., "AuditEvent"],
            changed_by: str) -> SettingChange:
        """Change ``name`` to ``raw`` and record ``event(old=..., new=...)`` in the same transaction.

        ``event`` builds the audit event (the caller knows the actor); ``changed_by`` is the subject
        stored beside the value. Raises :class:`InvalidSetting` (nothing written) for an unknown
        name, a value out of bounds or one inconsistent with the other settings. Setting the value
        in force already changes and records nothing.
        """
        tunable = TUNABLES.get(name) if isinstance(name, str) else None
        if tunable is None:
            raise InvalidSetting(N_("unknown setting %(name)s: one of %(names)s", name=repr(str(name)[:64]),
                                    names=", ".join(TUNABLES)))
        value = parse_value(tunable, raw)
        with self.sessions.begin() as session:
            _claim(session)
            rows = self._rows(session)
            row = rows.get(name)
            values = self._effective(rows)
            old = values[name]
            if old == value:
                return SettingChange(name, old, value, False)
            values[name] = value
            _consistent(values)
            if row is None:
                row = RuntimeSetting(name=name, value=value, changed_by=changed_by, changed_at=self.clock())
                session.add(row)
            else:
                row.value, row.changed_by, row.changed_at = value, changed_by, self.clock()
            session.flush()
            trail.append(session, event(old=old, new=value))
        with self._lock:
            self._loaded_at = float("-inf")  # this worker sees its own change at once
        return SettingChange(name, old, value, True)
