"""The staff directory client: who a staff member is, and whether their password is right.

The password is checked by binding as the user (RFC 4513 section 5.1.3), never by reading a
hash. The bind carries the password policy request control, and the response control
(:mod:`directory.ppolicy`) says whether the account is locked, the password expired or must change.
LDAPv3 is OpenLDAP's libldap, through python-ldap; its connections (:mod:`directory.connection`)
are pooled and reused per process (a search connection bound as the service account, and
connections that only ever bind as users); filters are built as structures
(:mod:`directory.filters`), so no value can change a filter's meaning; searches that can return
many entries (groups, departments, a group's members) are paged (RFC 2696); the configured servers
are tried in order: one that fails is skipped for a while. A directory that cannot be reached, or
does not answer in LDAPv3, raises :class:`DirectoryUnavailable`
- never a failed login.
"""

from __future__ import annotations

import datetime
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TypeVar

from argon2 import PasswordHasher, Type
from argon2.exceptions import VerificationError
from asn1crypto.core import GeneralizedTime
import ldap
import ldap.dn

from directory.config import DirectoryConfig
from directory.connection import BASE, SUBTREE, Entry, LdapConnection, ProtocolError, Result
from directory.errors import (AccountDisabled, AccountLocked, DirectoryError, DirectoryUnavailable,
                              InvalidCredentials, PasswordExpired, PasswordMustChange, PasswordRejected)
from directory.filters import Filter, all_of, equals, present
from directory.person_names import written_name
from directory.ppolicy import CONTROL_OID, REQUEST_CONTROL, PolicyControlError, PolicyResponse, decode_policy_response
from directory.saslprep import prepare_password
from translatable import N_

__all__ = [
    "AccountState", "Directory", "DirectoryConfig", "StaffMember", "DirectoryError", "InvalidCredentials", "AccountLocked",
    "AccountDisabled", "PasswordExpired", "PasswordMustChange", "PasswordRejected", "DirectoryUnavailable",
    "valid_username",
]

log = logging.getLogger("tessera.directory")

# A user name: letters, digits and . _ @ - (uid, sAMAccountName, or a mail-like login).
# Anything else (filter metacharacters, NUL, control characters, over 128 characters) cannot be
# a staff member's name and is refused before the directory is asked.
_USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}")
MAX_PASSWORD_LENGTH = 1024
_PERMANENT_LOCK = "000001010000Z"  # pwdAccountLockedTime meaning "locked by an administrator"
_AD_DISABLED = 0x2  # userAccountControl ACCOUNTDISABLE
# Active Directory's reasons in the bind diagnostic: "AcceptSecurityContext error, data 775, ..."
_AD_REASON = re.compile(r"\bdata ([0-9a-f]{3,4})\b")
_RESULT_INVALID_CREDENTIALS = 49
_RESULTS_UNAVAILABLE = {51, 52, 80}  # busy, unavailable, other (e.g. mdb full)
_SKIP_FAILED_SERVER_SECONDS = 30.0
_POLICY_REQUEST = (REQUEST_CONTROL,)  # the ppolicy request control: no value (draft-behera 6.1)


class _ServerBusy(OSError):
    """The server answered busy / unavailable (results 51, 52, 80): try another one."""


# The same argon2id cost as the directory's hashes, so an unknown user costs as long as a known one.
_TIMING_HASHER = PasswordHasher(time_cost=3, memory_cost=4096, parallelism=1, type=Type.ID)
_TIMING_HASH = _TIMING_HASHER.hash("tessera timing equaliser")

T = TypeVar("T")


@dataclass(frozen=True)
class StaffMember:
    """A staff member as the directory describes them."""

    uid: str
    dn: str
    name: str
    given_name: str
    surname: str
    email: str | None
    department: str
    department_name: str
    title: str | None
    roles: frozenset[str]
    groups: frozenset[str]
    is_approver: bool
    enabled: bool
    # set by authenticate() from the ppolicy warning (draft-behera 6.2): the password expires in
    # this many seconds, or it has expired and only this many grace logins remain
    password_expires_in: int | None = None
    grace_logins_remaining: int | None = None


@dataclass(frozen=True)
class AccountState:
    """What the password policy says of an account now (draft-behera-ldap-password-policy-11,
    section 5.3 state attributes read as the service account, against the entry's policy, section
    5.2). None where the directory does not say (Active Directory, a policy Tessera cannot read)."""

    disabled: bool
    #: locked out after failed binds (pwdAccountLockedTime, 5.3.3) and not yet past pwdLockoutDuration
    locked: bool | None = None
    #: when the lockout ends by itself; None while locked: only an unlock ends it (pwdLockoutDuration 0)
    locked_until: datetime.datetime | None = None
    #: the password was set by an administrator and must change at the next login (pwdReset, 5.3.7)
    must_change: bool | None = None
    password_changed_at: datetime.datetime | None = None  # pwdChangedTime (5.3.2)
    #: pwdChangedTime + pwdMaxAge (5.2.4); None: the password never expires, or the policy is unknown
    password_expires_at: datetime.datetime | None = None
    expired: bool | None = None


def _generalized_time(values: list[str]) -> datetime.datetime | None:
    """The first GeneralizedTime of ``values`` (RFC 4517 section 3.3.13, X.680's GeneralizedTime) as
    an aware datetime in UTC, read by asn1crypto (fractions of the hour or minute, offsets from UTC);
    None when absent, not a time, without a time zone (which RFC 4517 requires) or before year 1
    (the permanent lock's ``000001010000Z``)."""
    if not values:
        return None
    try:
        moment = GeneralizedTime(values[0]).native
        if not isinstance(moment, datetime.datetime) or moment.tzinfo is None:
            return None
        return moment.astimezone(datetime.timezone.utc)
    except (ValueError, OverflowError):  # not GeneralizedTime (UnicodeError is a ValueError), out of range
        return None


def _seconds(values: list[str]) -> int:
    try:
        return max(0, int(values[0])) if values else 0
    except ValueError:
        return 0


def valid_username(username: object) -> bool:
    """Whether ``username`` can be a staff user name at all (see ``_USERNAME``)."""
    return isinstance(username, str) and _USERNAME.fullmatch(username) is not None


def _equalise_timing(password: str) -> None:
    try:
        _TIMING_HASHER.verify(_TIMING_HASH, password)
    except VerificationError:
        pass


class _ServerList:
    """The configured servers in failover order; one that failed is skipped for a while."""

    def __init__(self, config: DirectoryConfig) -> None:
        self._config = config
        self.urls = list(config.urls)
        self._failed_until = [0.0] * len(self.urls)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.urls)

    def open(self, index: int) -> LdapConnection:
        """A new connection to server ``index`` (StartTLS done, if configured)."""
        cfg = self._config
        return LdapConnection(self.urls[index], connect_timeout=cfg.connect_timeout,
                              operation_timeout=cfg.operation_timeout, ca_file=cfg.ca_file,
                              start_tls=cfg.start_tls)

    def in_order(self) -> list[int]:
        """Healthy servers first (configured order), then those that failed recently."""
        now = time.monotonic()
        with self._lock:
            healthy = [i for i, until in enumerate(self._failed_until) if until <= now]
            resting = [i for i, until in enumerate(self._failed_until) if until > now]
        return healthy + resting

    def failed(self, index: int) -> None:
        with self._lock:
            self._failed_until[index] = time.monotonic() + _SKIP_FAILED_SERVER_SECONDS

    def succeeded(self, index: int) -> None:
        with self._lock:
            self._failed_until[index] = 0.0


class _Pool:
    """Reusable connections of one kind (service-bound, or user-bind only), thread-safe."""

    def __init__(self, config: DirectoryConfig, servers: _ServerList, *, service: bool) -> None:
        self._config = config
        self._servers = servers
        self._service = service
        self._idle: list[LdapConnection] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(config.pool_size)
        self._pid = os.getpid()

    def _connect(self) -> LdapConnection:
        cfg = self._config
        errors: list[str] = []
        for index in self._servers.in_order():
            conn = None
            try:
                conn = self._servers.open(index)
                if self._service and cfg.bind_dn:
                    result = conn.bind(cfg.bind_dn, cfg.bind_password.encode())
                    _raise_if_busy(result)
                    if result.code != 0:
                        # the service account itself is refused: a configuration fault, not the user's
                        log.error("directory %s refused the service account %s: result %d %s",
                                  self._servers.urls[index], cfg.bind_dn, result.code, result.diagnostic)
                        conn.close()
                        raise DirectoryUnavailable()
            except (OSError, ProtocolError) as exc:  # unreachable, or not answering in LDAP
                errors.append(f"{self._servers.urls[index]}: {type(exc).__name__}: {exc}")
                self._servers.failed(index)
                if conn is not None:
                    conn.close()
                continue
            self._servers.succeeded(index)
            return conn
        log.warning("no directory server answered: %s", "; ".join(errors))
        raise DirectoryUnavailable()

    @contextmanager
    def connection(self) -> Iterator[LdapConnection]:
        """A connection for one operation; returned to the pool unless it broke."""
        if os.getpid() != self._pid:  # forked (gunicorn worker): the parent's sockets are not ours
            self._idle, self._pid = [], os.getpid()
            self._slots = threading.BoundedSemaphore(self._config.pool_size)
        if not self._slots.acquire(timeout=self._config.operation_timeout):
            raise DirectoryUnavailable(N_("The staff directory is busy at the moment. Please try again in a moment."))
        try:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            fresh = conn is None
            if conn is None:
                conn = self._connect()
            try:
                yield conn
            except BaseException as exc:
                conn.close()
                if fresh and isinstance(exc, OSError):  # libldap connects with the first request: that failed
                    self._servers.failed(self._servers.urls.index(conn.url))
                raise
            with self._lock:
                self._idle.append(conn)
        finally:
            self._slots.release()

    def run(self, operation: Callable[[LdapConnection], T]) -> T:
        """Run ``operation`` on a pooled connection; a broken connection is replaced and retried."""
        attempts = len(self._servers) + 1  # a stale pooled connection, then every server
        for _ in range(attempts):
            try:
                with self.connection() as conn:
                    return operation(conn)
            except OSError as exc:
                # the idle connections went the same way (a restarted server): drop them all
                log.info("directory connection lost (%s: %s); retrying", type(exc).__name__, exc)
                self.close()
                continue
            except ProtocolError as exc:  # a reply that is not LDAP: the directory's fault, not the user's
                log.error("unexpected reply from the directory: %s", exc)
                raise DirectoryUnavailable() from exc
        raise DirectoryUnavailable()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def _raise_if_busy(result: Result) -> None:
    if result.code in _RESULTS_UNAVAILABLE:
        raise _ServerBusy(f"result {result.code} {result.diagnostic}".strip())


def _policy_response(result: Result) -> PolicyResponse | None:
    value = result.controls.get(CONTROL_OID)
    if not isinstance(value, bytes):
        return None
    try:
        return decode_policy_response(value)
    except PolicyControlError as exc:
        log.warning("undecodable password policy control from the directory: %s", exc)
        return None


class Directory:
    """The staff directory of one configuration (thread-safe; one per process)."""

    DEPARTMENT_CACHE_SECONDS = 300.0

    def __init__(self, config: DirectoryConfig) -> None:
        self.config = config
        self._servers = _ServerList(config)
        self._search = _Pool(config, self._servers, service=True)
        self._binds = _Pool(config, self._servers, service=False)
        self._departments: dict[str, str] = {}
        self._departments_at = -1e9
        self._departments_lock = threading.Lock()

    # -- reading ---------------------------------------------------------------------------
    def _search_entries(self, base: str, search_filter: Filter, attributes: list[str], size_limit: int = 0,
                        scope: int = SUBTREE) -> list[Entry]:
        """Entries under ``base``; a search for an unbounded number of them is paged (RFC 2696)."""
        time_limit = int(self.config.operation_timeout) or 1

        def operation(conn: LdapConnection) -> list[Entry]:
            result, entries = conn.search(base, search_filter, attributes, scope=scope, size_limit=size_limit,
                                          time_limit=time_limit, paged=not size_limit)
            _raise_if_busy(result)
            if result.code not in (0, 4, 32):  # success, sizeLimitExceeded, noSuchObject
                log.error("directory search under %s failed: result %d %s", base, result.code, result.diagnostic)
                raise DirectoryUnavailable()
            if result.code == 4 and not size_limit:
                log.warning("the directory truncated a search under %s (its size limit for %s)", base,
                            self.config.bind_dn or "anonymous")
            return entries

        return self._search.run(operation)

    def departments(self) -> dict[str, str]:
        """Department id -> name, read from ou=departments (cached for five minutes)."""
        with self._departments_lock:
            if time.monotonic() - self._departments_at < self.DEPARTMENT_CACHE_SECONDS:
                return self._departments
        a = self.config.attributes
        entries = self._search_entries(self.config.departments_base, equals("objectClass", "organizationalUnit"),
                                       [a.department_id, a.department_name])
        result: dict[str, str] = {}
        for entry in entries:
            ids = _values(entry, a.department_id)
            if ids and entry.dn.lower() != self.config.departments_base.lower():
                result[ids[0]] = (_values(entry, a.department_name) or ids)[0]
        with self._departments_lock:
            self._departments, self._departments_at = result, time.monotonic()
        return result

    def _group_names_by_search(self, dn: str) -> list[str]:
        a = self.config.attributes
        search_filter = all_of(equals("objectClass", a.group_class), equals(a.group_member, dn))
        return [n for e in self._search_entries(self.config.groups_base, search_filter, [a.group_name])
                for n in _values(e, a.group_name)[:1]]

    def _member(self, entry: Entry) -> StaffMember:
        a = self.config.attributes
        uid = (_values(entry, a.uid) or [""])[0]
        given, surname = (_values(entry, a.given_name) or [""])[0], (_values(entry, a.surname) or [""])[0]
        name = ((_values(entry, a.display_name) if a.display_name else []) or _values(entry, a.name)
                or [written_name(given, surname) or uid])[0]
        department = (_values(entry, a.department) or [""])[0]
        if a.member_of:
            groups = [_first_rdn_value(dn) for dn in _values(entry, a.member_of)]
        else:
            groups = self._group_names_by_search(entry.dn)
        group_set = frozenset(g for g in groups if g)
        if a.account_control:
            try:
                enabled = not int((_values(entry, a.account_control) or ["0"])[0]) & _AD_DISABLED
            except ValueError:
                enabled = False
        else:
            enabled = _PERMANENT_LOCK not in (_values(entry, a.locked_time) if a.locked_time else [])
        departments = self.departments() if department else {}
        return StaffMember(
            uid=uid, dn=entry.dn, name=name, given_name=given, surname=surname,
            email=next(iter(_values(entry, a.mail)), None), department=department,
            department_name=departments.get(department, department), title=next(iter(_values(entry, a.title)), None),
            roles=group_set & self.config.role_groups, groups=group_set,
            is_approver=self.config.approver_group in group_set, enabled=enabled,
        )

    def _entry(self, username: str) -> Entry | None:
        a = self.config.attributes
        search_filter = all_of(equals("objectClass", a.person_class), equals(a.uid, username))
        entries = self._search_entries(self.config.people_base, search_filter, a.person_attributes(), size_limit=2)
        if len(entries) != 1:
            if len(entries) > 1:
                log.warning("user name %r matches %d directory entries: refused", username, len(entries))
            return None
        return entries[0]

    def find(self, username: str) -> StaffMember | None:
        """The staff member with this user name, or None (also for a malformed name)."""
        if not valid_username(username):
            return None
        entry = self._entry(username)
        return self._member(entry) if entry else None

    def members_of(self, group: str) -> list[StaffMember]:
        """Every staff member of a group (by its cn, e.g. "auditors"), sorted by user name."""
        if not isinstance(group, str) or not group or len(group) > 256 or "\x00" in group:
            return []
        a = self.config.attributes
        groups = self._search_entries(
            self.config.groups_base, all_of(equals("objectClass", a.group_class), equals(a.group_name, group)),
            [a.group_member], size_limit=2)
        if len(groups) != 1:
            return []
        person = equals("objectClass", a.person_class)
        if a.member_of:
            entries = self._search_entries(self.config.people_base, all_of(person, equals(a.member_of, groups[0].dn)),
                                           a.person_attributes())
        else:
            members = {dn.lower() for dn in _values(groups[0], a.group_member)}
            entries = [e for e in self._search_entries(self.config.people_base, person, a.person_attributes())
                       if e.dn.lower() in members]
        return sorted((self._member(e) for e in entries), key=lambda m: m.uid)

    #: the password policy of an entry without pwdPolicySubentry: ``ppolicy_default`` in Tessera's
    #: own directory (ldap/slapd.conf.template); slapd does not publish it as an attribute
    DEFAULT_POLICY_RDN = "cn=default,ou=policies"

    def account_state(self, member: StaffMember, now: datetime.datetime | None = None) -> AccountState:
        """The ppolicy state of ``member``'s account (locked, must change, expired, disabled), as
        the service account reads it: the state attributes are operational, asked for by name."""
        a = self.config.attributes
        if not a.locked_time:  # Active Directory: only the account control's disabled flag is read
            return AccountState(disabled=not member.enabled)
        now = now or datetime.datetime.now(datetime.timezone.utc)
        state_names = [a.locked_time, "pwdReset", "pwdChangedTime", "pwdPolicySubentry"]
        entries = self._search_entries(member.dn, present("objectClass"), state_names, size_limit=1, scope=BASE)
        if not entries:
            return AccountState(disabled=not member.enabled)
        entry = entries[0]
        policy_dn = (_values(entry, "pwdPolicySubentry")
                     or [f"{self.DEFAULT_POLICY_RDN},{self.config.base_dn}"])[0]
        policies = self._search_entries(policy_dn, equals("objectClass", "pwdPolicy"),
                                        ["pwdMaxAge", "pwdLockoutDuration"], size_limit=1, scope=BASE)
        policy = policies[0] if policies else None
        locked_at = _generalized_time(_values(entry, a.locked_time))
        locked = locked_until = None
        if policy is not None:
            duration = _seconds(_values(policy, "pwdLockoutDuration"))
            locked_until = locked_at + datetime.timedelta(seconds=duration) if locked_at and duration else None
            locked = locked_at is not None and (locked_until is None or locked_until > now)
        elif locked_at is not None:
            locked = True
        changed = _generalized_time(_values(entry, "pwdChangedTime"))
        max_age = _seconds(_values(policy, "pwdMaxAge")) if policy is not None else 0
        expires = changed + datetime.timedelta(seconds=max_age) if changed and max_age else None
        return AccountState(
            disabled=not member.enabled, locked=locked, locked_until=locked_until if locked else None,
            must_change=(_values(entry, "pwdReset") or ["FALSE"])[0].upper() == "TRUE",
            password_changed_at=changed, password_expires_at=expires,
            expired=(expires <= now) if expires else (False if policy is not None and changed else None))

    # -- authenticating --------------------------------------------------------------------
    def authenticate(self, username: str, password: str) -> StaffMember:
        """Check the password by binding as the user (RFC 4513 5.1.3) with the ppolicy control.

        Raises InvalidCredentials (wrong password, unknown or malformed user name, all alike),
        AccountLocked, AccountDisabled, PasswordExpired, PasswordMustChange or DirectoryUnavailable.
        """
        if not isinstance(password, str) or not password or len(password) > MAX_PASSWORD_LENGTH or "\x00" in password:
            # an empty password would be an unauthenticated bind (RFC 4513 5.1.2): never a login
            _equalise_timing(password if isinstance(password, str) else "")
            raise InvalidCredentials()
        try:
            prepared: bytes | None = prepare_password(password)
        except ValueError:  # a string SASLprep prohibits is nobody's password
            prepared = None
        if prepared is None or not valid_username(username):
            _equalise_timing(password)
            raise InvalidCredentials()
        entry = self._entry(username)
        if entry is None:
            _equalise_timing(password)
            raise InvalidCredentials()
        member = self._member(entry)

        def bind(conn: LdapConnection) -> Result:
            result = conn.bind(member.dn, prepared, _POLICY_REQUEST)
            _raise_if_busy(result)
            return result

        result = self._binds.run(bind)
        code, message, policy = result.code, result.diagnostic, _policy_response(result)
        if code == 0:
            if policy is not None and policy.must_change:
                raise PasswordMustChange(member=member)
            if not member.enabled:
                raise AccountDisabled(member=member)
            if policy is not None and (policy.time_before_expiration is not None
                                       or policy.grace_logins_remaining is not None):
                member = replace(member, password_expires_in=policy.time_before_expiration,
                                 grace_logins_remaining=policy.grace_logins_remaining)
            return member
        if code != _RESULT_INVALID_CREDENTIALS:
            log.warning("bind of %s refused with result %d", member.dn, code)
            raise InvalidCredentials()
        if policy is not None:
            if policy.locked:
                raise (AccountLocked if member.enabled else AccountDisabled)(member=member)
            if policy.expired:
                raise PasswordExpired(member=member)
        reason = _AD_REASON.search(message)
        if reason is not None:  # Active Directory: reasons are only given for the right password
            error = {"775": AccountLocked, "532": PasswordExpired, "773": PasswordMustChange,
                     "533": AccountDisabled, "701": AccountDisabled}.get(reason.group(1))
            if error is not None:
                raise error(member=member)
        raise InvalidCredentials()

    def change_password(self, username: str, old_password: str, new_password: str) -> None:
        """The user changes their own password (RFC 3062 password modify, bound as the user).

        Works for a password that must change after a reset. Raises InvalidCredentials for a
        wrong old password and PasswordRejected (with the policy's reason) for a weak new one.
        """
        if self.config.read_only:
            raise PasswordRejected(N_("Passwords are changed in the organisation's own directory, not here."))
        try:
            member = self.authenticate(username, old_password)
        except PasswordMustChange as exc:
            member = exc.member  # type: ignore[assignment]
        assert member is not None
        self.modify_own_password(member, old_password, new_password)

    def modify_own_password(self, member: StaffMember, old_password: str, new_password: str) -> None:
        """RFC 3062 password modify of ``member``'s password, bound as ``member`` with
        ``old_password`` (a password :meth:`authenticate` accepted just before), with the ppolicy
        control so the directory's own policy (pwdInHistory, pwdMinLength) says why it refuses.

        Raises InvalidCredentials when the bind fails after all, PasswordRejected with the reason.
        """
        if self.config.read_only:
            raise PasswordRejected(N_("Passwords are changed in the organisation's own directory, not here."))
        if not isinstance(new_password, str) or not new_password or len(new_password) > MAX_PASSWORD_LENGTH \
                or "\x00" in new_password:
            raise PasswordRejected()
        try:
            old, new = prepare_password(old_password), prepare_password(new_password)
        except ValueError:
            raise PasswordRejected(N_("The new password holds characters a password cannot have.")) from None

        def change(conn: LdapConnection) -> tuple[int, PolicyResponse | None]:
            bound = conn.bind(member.dn, old)
            _raise_if_busy(bound)
            if bound.code != 0:
                return bound.code, None
            result = conn.modify_password(member.dn, old, new, _POLICY_REQUEST)
            _raise_if_busy(result)
            return result.code, _policy_response(result)

        code, policy = self._binds.run(change)
        if code == _RESULT_INVALID_CREDENTIALS:
            raise InvalidCredentials()
        if code != 0:
            reasons = {
                "passwordTooShort": N_("The new password is too short."),
                "insufficientPasswordQuality": N_("The new password is too weak."),
                "passwordInHistory": N_("The new password was used recently: choose another one."),
                "passwordTooYoung": N_("The password was changed too recently to change it again."),
            }
            raise PasswordRejected(reasons.get(policy.error or "") if policy else None)

    # -- operating -------------------------------------------------------------------------
    def unlock(self, username: str) -> StaffMember:
        """Lift a ppolicy lockout (pwdAccountLockedTime, pwdFailureTime), as the service account.

        A permanent administrative lock (a disabled account) is left alone. Raises
        DirectoryError if the directory is read-only or the user does not exist.
        """
        if self.config.read_only:
            raise DirectoryError(N_("The directory is read-only for Tessera: "
                                    "unlock the account in the directory itself."))
        member = self.find(username)
        if member is None:
            raise DirectoryError(N_("No staff member %(uid)r in the directory.", uid=username))
        if not member.enabled:
            raise AccountDisabled(f"{username!r} is disabled by an administrator, not locked out: "
                                  "unlocking does not apply.")
        a = self.config.attributes
        if not a.locked_time:
            raise DirectoryError(N_("This directory has no password-policy lockout to lift."))

        def operation(conn: LdapConnection) -> int:
            # pwdFailureTime is NO-USER-MODIFICATION; slapd's ppolicy drops it with the lock
            found, entries = conn.search(member.dn, present("objectClass"), [a.locked_time], scope=BASE)
            _raise_if_busy(found)
            if any(values for e in entries for values in e.attributes.values()):
                result = conn.modify(member.dn, {a.locked_time: [(ldap.MOD_DELETE, [])]})
                _raise_if_busy(result)
                return result.code
            return 0

        code = self._search.run(operation)
        if code != 0:
            raise DirectoryError(N_("The directory refused to unlock %(uid)r (result %(code)s).",
                                    uid=username, code=code))
        return member

    def check(self) -> str:
        """The URL of the first server that answers a search as the service account."""
        self._search_entries(self.config.base_dn, present("objectClass"), ["1.1"], size_limit=1, scope=BASE)
        return self._servers.urls[self._servers.in_order()[0]]

    def close(self) -> None:
        """Unbind every pooled connection (the Directory can still be used afterwards)."""
        self._search.close()
        self._binds.close()

    def __enter__(self) -> "Directory":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _values(entry: Entry, attribute: str) -> list[str]:
    return entry.attributes.get(attribute.lower(), []) if attribute else []


def _first_rdn_value(dn: str) -> str:
    """The value of ``dn``'s first RDN (RFC 4514): ``approvers`` of ``cn=approvers,ou=groups,...``."""
    try:
        return str(ldap.dn.str2dn(dn)[0][0][1])
    except (ldap.DECODING_ERROR, IndexError):
        return ""
