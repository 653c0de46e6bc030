"""The staff directory client: who a staff member is, and whether their password is right.

The password is checked by binding as the user (RFC 4513 section 5.1.3), never by reading a
hash. The bind carries the password policy request control, and the response control
(:mod:`idp.ppolicy`) says whether the account is locked, the password expired or must change.
Connections are pooled and reused (a search connection bound as the service account, and
connections that only ever bind as users), every filter value is escaped (RFC 4515 section 3),
and the configured servers are tried in order: one that fails is skipped for a while.
A directory that cannot be reached raises :class:`DirectoryUnavailable` - never a failed login.
"""

from __future__ import annotations

import logging
import math
import os
import re
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from argon2 import PasswordHasher, Type
from argon2.exceptions import VerificationError
from ldap3 import BASE, MODIFY_DELETE, NONE, SIMPLE, SUBTREE, Connection, Server, Tls
from ldap3.core.exceptions import (LDAPCommunicationError, LDAPExceptionError, LDAPResponseTimeoutError,
                                   LDAPStartTLSError)
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import parse_dn

from idp.directory_config import DirectoryConfig
from idp.directory_errors import (AccountDisabled, AccountLocked, DirectoryError, DirectoryUnavailable,
                                  InvalidCredentials, PasswordExpired, PasswordMustChange, PasswordRejected)
from idp.ppolicy import CONTROL_OID, PolicyControlError, PolicyResponse, decode_policy_response

__all__ = [
    "Directory", "DirectoryConfig", "StaffMember", "DirectoryError", "InvalidCredentials", "AccountLocked",
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
_COMMUNICATION = (LDAPCommunicationError, LDAPResponseTimeoutError, LDAPStartTLSError, OSError)

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
        tls = None
        if config.ca_file or config.start_tls or any(u.startswith("ldaps://") for u in config.urls):
            tls = Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=config.ca_file, version=ssl.PROTOCOL_TLS_CLIENT)
        self._targets: list[tuple[str, bool]] = []
        for url in config.urls:
            if url.startswith("ldapi://"):
                # ldap3 wants the socket path itself, not the percent-encoded form of RFC 4516
                url = "ldapi://" + urllib.parse.unquote(url[len("ldapi://"):])
            self._targets.append((url, url.startswith("ldaps://")))
        self._tls = tls
        self._connect_timeout = config.connect_timeout
        self.urls = list(config.urls)
        self._failed_until = [0.0] * len(self._targets)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._targets)

    def server(self, index: int) -> Server:
        """A new ldap3 Server each time: ldap3 would otherwise remember a failed address for a while."""
        url, use_ssl = self._targets[index]
        return Server(url, get_info=NONE, connect_timeout=self._connect_timeout, tls=self._tls, use_ssl=use_ssl)

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
        self._idle: list[Connection] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(config.pool_size)
        self._pid = os.getpid()

    def _connect(self) -> Connection:
        cfg = self._config
        errors: list[str] = []
        for index in self._servers.in_order():
            server = self._servers.server(index)
            conn = Connection(server, user=cfg.bind_dn if self._service and cfg.bind_dn else None,
                              password=cfg.bind_password if self._service and cfg.bind_dn else None,
                              authentication=SIMPLE if self._service and cfg.bind_dn else None,
                              receive_timeout=max(1, math.ceil(cfg.operation_timeout)), raise_exceptions=False,
                              auto_referrals=False, read_only=cfg.read_only, return_empty_attributes=False)
            try:
                conn.open(read_server_info=False)
                if cfg.start_tls and not self._servers.urls[index].startswith(("ldaps://", "ldapi://")):
                    if not conn.start_tls(read_server_info=False):
                        raise LDAPStartTLSError(f"StartTLS refused: {conn.result.get('description')}")
                if self._service and cfg.bind_dn and not conn.bind(read_server_info=False):
                    result = conn.result or {}
                    if result.get("result") in _RESULTS_UNAVAILABLE:
                        raise LDAPCommunicationError(str(result.get("description")))
                    # the service account itself is refused: a configuration fault, not the user's
                    log.error("directory %s refused the service account %s: %s", self._servers.urls[index],
                              cfg.bind_dn, result.get("description"))
                    conn.unbind()
                    raise DirectoryUnavailable()
            except _COMMUNICATION as exc:
                errors.append(f"{self._servers.urls[index]}: {exc}")
                self._servers.failed(index)
                _close_quietly(conn)
                continue
            self._servers.succeeded(index)
            return conn
        log.warning("no directory server answered: %s", "; ".join(errors))
        raise DirectoryUnavailable()

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """A connection for one operation; returned to the pool unless it broke."""
        if os.getpid() != self._pid:  # forked (gunicorn worker): the parent's sockets are not ours
            self._idle, self._pid = [], os.getpid()
            self._slots = threading.BoundedSemaphore(self._config.pool_size)
        if not self._slots.acquire(timeout=self._config.operation_timeout):
            raise DirectoryUnavailable("The staff directory is busy at the moment. Please try again in a moment.")
        try:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                conn = self._connect()
            try:
                yield conn
            except BaseException:
                _close_quietly(conn)
                raise
            with self._lock:
                self._idle.append(conn)
        finally:
            self._slots.release()

    def run(self, operation: Callable[[Connection], T]) -> T:
        """Run ``operation`` on a pooled connection; a broken connection is replaced and retried."""
        attempts = len(self._servers) + 1  # a stale pooled connection, then every server
        for _ in range(attempts):
            try:
                with self.connection() as conn:
                    return operation(conn)
            except _COMMUNICATION as exc:
                # the idle connections went the same way (a restarted server): drop them all
                log.info("directory connection lost (%s); retrying", exc)
                self.close()
                continue
            except LDAPExceptionError as exc:  # a reply ldap3 cannot handle: the directory's fault, not the user's
                log.error("unexpected directory error: %s: %s", type(exc).__name__, exc)
                raise DirectoryUnavailable() from exc
        raise DirectoryUnavailable()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            _close_quietly(conn)


def _close_quietly(conn: Connection) -> None:
    try:
        conn.unbind()
    except (LDAPExceptionError, OSError):
        pass


def _result_code(conn: Connection) -> int:
    return int((conn.result or {}).get("result", -1))


def _policy_response(conn: Connection) -> PolicyResponse | None:
    control = ((conn.result or {}).get("controls") or {}).get(CONTROL_OID)
    if not control or not isinstance(control.get("value"), bytes | bytearray):
        return None
    try:
        return decode_policy_response(bytes(control["value"]))
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
    def _search_entries(self, base: str, ldap_filter: str, attributes: list[str], size_limit: int = 0,
                        ) -> list[dict[str, Any]]:
        def operation(conn: Connection) -> list[dict[str, Any]]:
            conn.search(base, ldap_filter, search_scope=SUBTREE, attributes=attributes, size_limit=size_limit,
                        time_limit=int(self.config.operation_timeout) or 1)
            code = _result_code(conn)
            if code in _RESULTS_UNAVAILABLE:
                raise LDAPCommunicationError(str(conn.result.get("description")))
            if code not in (0, 4, 32):  # success, sizeLimitExceeded, noSuchObject
                log.error("directory search under %s failed: %s", base, conn.result.get("description"))
                raise DirectoryUnavailable()
            if code == 4 and not size_limit:
                log.warning("the directory truncated a search under %s (its size limit for %s)", base,
                            self.config.bind_dn or "anonymous")
            return [{"dn": e["dn"], "attributes": {k.lower(): v for k, v in e["attributes"].items()}}
                    for e in (conn.response or []) if e.get("type") == "searchResEntry"]

        return self._search.run(operation)

    def departments(self) -> dict[str, str]:
        """Department id -> name, read from ou=departments (cached for five minutes)."""
        with self._departments_lock:
            if time.monotonic() - self._departments_at < self.DEPARTMENT_CACHE_SECONDS:
                return self._departments
        a = self.config.attributes
        entries = self._search_entries(self.config.departments_base, "(objectClass=organizationalUnit)",
                                       [a.department_id, a.department_name])
        result: dict[str, str] = {}
        for entry in entries:
            ids = _values(entry, a.department_id)
            if ids and entry["dn"].lower() != self.config.departments_base.lower():
                result[ids[0]] = (_values(entry, a.department_name) or ids)[0]
        with self._departments_lock:
            self._departments, self._departments_at = result, time.monotonic()
        return result

    def _group_names_by_search(self, dn: str) -> list[str]:
        a = self.config.attributes
        ldap_filter = f"(&(objectClass={a.group_class})({a.group_member}={escape_filter_chars(dn)}))"
        return [n for e in self._search_entries(self.config.groups_base, ldap_filter, [a.group_name])
                for n in _values(e, a.group_name)[:1]]

    def _member(self, entry: dict[str, Any]) -> StaffMember:
        a = self.config.attributes
        uid = (_values(entry, a.uid) or [""])[0]
        given, surname = (_values(entry, a.given_name) or [""])[0], (_values(entry, a.surname) or [""])[0]
        name = ((_values(entry, a.display_name) if a.display_name else []) or _values(entry, a.name)
                or [f"{given} {surname}".strip() or uid])[0]
        department = (_values(entry, a.department) or [""])[0]
        if a.member_of:
            groups = [_first_rdn_value(dn) for dn in _values(entry, a.member_of)]
        else:
            groups = self._group_names_by_search(entry["dn"])
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
            uid=uid, dn=entry["dn"], name=name, given_name=given, surname=surname,
            email=(_values(entry, a.mail) or [None])[0], department=department,
            department_name=departments.get(department, department), title=(_values(entry, a.title) or [None])[0],
            roles=group_set & self.config.role_groups, groups=group_set,
            is_approver=self.config.approver_group in group_set, enabled=enabled,
        )

    def _entry(self, username: str) -> dict[str, Any] | None:
        a = self.config.attributes
        ldap_filter = f"(&(objectClass={a.person_class})({a.uid}={escape_filter_chars(username)}))"
        entries = self._search_entries(self.config.people_base, ldap_filter, a.person_attributes(), size_limit=2)
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
            self.config.groups_base, f"(&(objectClass={a.group_class})({a.group_name}={escape_filter_chars(group)}))",
            [a.group_member], size_limit=2)
        if len(groups) != 1:
            return []
        if a.member_of:
            ldap_filter = f"(&(objectClass={a.person_class})({a.member_of}={escape_filter_chars(groups[0]['dn'])}))"
            entries = self._search_entries(self.config.people_base, ldap_filter, a.person_attributes())
        else:
            members = {dn.lower() for dn in _values(groups[0], a.group_member)}
            entries = [e for e in self._search_entries(self.config.people_base, f"(objectClass={a.person_class})",
                                                       a.person_attributes()) if e["dn"].lower() in members]
        return sorted((self._member(e) for e in entries), key=lambda m: m.uid)

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
        if not valid_username(username):
            _equalise_timing(password)
            raise InvalidCredentials()
        entry = self._entry(username)
        if entry is None:
            _equalise_timing(password)
            raise InvalidCredentials()
        member = self._member(entry)

        def bind(conn: Connection) -> tuple[int, str, PolicyResponse | None]:
            conn.rebind(user=member.dn, password=password, read_server_info=False,
                        controls=[(CONTROL_OID, False, None)])
            code = _result_code(conn)
            if code in _RESULTS_UNAVAILABLE:
                raise LDAPCommunicationError(str(conn.result.get("description")))
            return code, str((conn.result or {}).get("message") or ""), _policy_response(conn)

        code, message, policy = self._binds.run(bind)
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
            raise PasswordRejected("Passwords are changed in the organisation's own directory, not here.")
        if not isinstance(new_password, str) or not new_password or len(new_password) > MAX_PASSWORD_LENGTH \
                or "\x00" in new_password:
            raise PasswordRejected()
        try:
            member = self.authenticate(username, old_password)
        except PasswordMustChange as exc:
            member = exc.member  # type: ignore[assignment]
        assert member is not None

        def change(conn: Connection) -> tuple[int, PolicyResponse | None]:
            conn.rebind(user=member.dn, password=old_password, read_server_info=False)
            if _result_code(conn) in _RESULTS_UNAVAILABLE:
                raise LDAPCommunicationError(str(conn.result.get("description")))
            if _result_code(conn) != 0:
                return _result_code(conn), None
            conn.extend.standard.modify_password(user=member.dn, old_password=old_password,
                                                 new_password=new_password, controls=[(CONTROL_OID, False, None)])
            if _result_code(conn) in _RESULTS_UNAVAILABLE:
                raise LDAPCommunicationError(str(conn.result.get("description")))
            return _result_code(conn), _policy_response(conn)

        code, policy = self._binds.run(change)
        if code == _RESULT_INVALID_CREDENTIALS:
            raise InvalidCredentials()
        if code != 0:
            reasons = {
                "passwordTooShort": "The new password is too short.",
                "insufficientPasswordQuality": "The new password is too weak.",
                "passwordInHistory": "The new password was used recently: choose another one.",
                "passwordTooYoung": "The password was changed too recently to change it again.",
            }
            raise PasswordRejected(reasons.get(policy.error if policy else "", None))

    # -- operating -------------------------------------------------------------------------
    def unlock(self, username: str) -> StaffMember:
        """Lift a ppolicy lockout (pwdAccountLockedTime, pwdFailureTime), as the service account.

        A permanent administrative lock (a disabled account) is left alone. Raises
        DirectoryError if the directory is read-only or the user does not exist.
        """
        if self.config.read_only:
            raise DirectoryError("The directory is read-only for Tessera: unlock the account in the directory itself.")
        member = self.find(username)
        if member is None:
            raise DirectoryError(f"No staff member {username!r} in the directory.")
        if not member.enabled:
            raise AccountDisabled(f"{username!r} is disabled by an administrator, not locked out: unlocking does not apply.")
        a = self.config.attributes
        if not a.locked_time:
            raise DirectoryError("This directory has no ppolicy lockout to lift.")

        def operation(conn: Connection) -> int:
            # pwdFailureTime is NO-USER-MODIFICATION; slapd's ppolicy drops it with the lock
            conn.search(member.dn, "(objectClass=*)", search_scope=BASE, attributes=[a.locked_time])
            locked = any(v for e in (conn.response or []) if e.get("type") == "searchResEntry"
                         for v in e["attributes"].values())
            if locked:
                conn.modify(member.dn, {a.locked_time: [(MODIFY_DELETE, [])]})
                return _result_code(conn)
            return 0

        code = self._search.run(operation)
        if code != 0:
            raise DirectoryError(f"The directory refused to unlock {username!r} (result {code}).")
        return member

    def check(self) -> str:
        """The URL of the first server that answers a search as the service account."""
        self._search_entries(self.config.base_dn, "(objectClass=*)", ["1.1"], size_limit=1)
        return self._servers.urls[self._servers.in_order()[0]]

    def close(self) -> None:
        """Unbind every pooled connection (the Directory can still be used afterwards)."""
        self._search.close()
        self._binds.close()

    def __enter__(self) -> "Directory":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _values(entry: dict[str, Any], attribute: str) -> list[str]:
    if not attribute:
        return []
    value = entry["attributes"].get(attribute.lower())
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return [str(value)]


def _first_rdn_value(dn: str) -> str:
    try:
        return str(parse_dn(dn)[0][1])
    except (LDAPExceptionError, IndexError, ValueError):
        return ""
