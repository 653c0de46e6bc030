"""Writing to the staff directory for the account lifecycle, as the IdP's service account.

Reading stays in :mod:`directory.client`; this module creates entries, changes group membership
(RFC 4511 section 4.6 modify of the group's ``member``: the memberof overlay keeps ``memberOf``),
sets a post, disables and re-enables accounts (the ppolicy permanent lock ``pwdAccountLockedTime:
000001010000Z``, draft-behera 5.3.3) and marks an initial password, or one the help desk set, as
one that must be changed (``pwdReset: TRUE``, draft-behera 5.3.7). Every value in a DN is escaped (RFC 4514 section 2.4)
and filters are built as structures (:mod:`directory.filters`); the listing of people is paged
(RFC 2696). Connections verify TLS as the client's do (:mod:`directory.connection`). A directory
that Tessera may only read refuses every write.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import ldap
from ldap.dn import escape_dn_chars

from directory.client import valid_username
from directory.config import DirectoryConfig
from directory.connection import LdapConnection, ProtocolError, Result
from directory.errors import DirectoryError, DirectoryUnavailable
from directory.filters import all_of, any_of, contains, equals
from directory.person_names import written_name

PERMANENT_LOCK = "000001010000Z"
_RESULT_SIZE_LIMIT_EXCEEDED = 4
_RESULT_NO_SUCH_ATTRIBUTE = 16
_RESULT_ATTRIBUTE_EXISTS = 20
_RESULT_NO_SUCH_OBJECT = 32
_RESULT_ALREADY_EXISTS = 68
_INITIAL_ALPHABET = string.ascii_letters + string.digits
T = TypeVar("T")


def initial_password() -> str:
    """A one-time initial password: 20 random letters and digits (~119 bits), in groups of five."""
    raw = "".join(secrets.choice(_INITIAL_ALPHABET) for _ in range(20))
    return "-".join(raw[i:i + 5] for i in range(0, 20, 5))


class DirectoryWriter:
    """Lifecycle writes on one directory configuration (one short connection per operation)."""

    def __init__(self, config: DirectoryConfig) -> None:
        self.config = config

    # -- plumbing --------------------------------------------------------------------------------
    @contextmanager
    def _connection(self) -> Iterator[LdapConnection]:
        """A connection bound as the service account, to the first configured server that answers."""
        cfg = self.config
        if cfg.read_only:
            raise DirectoryError("The directory is read-only for Tessera: make this change in the directory itself.")
        last: Exception | None = None
        for url in cfg.urls:
            conn = None
            try:
                conn = LdapConnection(url, connect_timeout=cfg.connect_timeout, operation_timeout=cfg.operation_timeout,
                                      ca_file=cfg.ca_file, start_tls=cfg.start_tls)
                bound = conn.bind(cfg.bind_dn, cfg.bind_password.encode())
            except (OSError, ProtocolError) as exc:
                last = exc
                if conn is not None:
                    conn.close()
                continue
            try:
                if bound.code != 0:
                    raise DirectoryUnavailable("The directory refused Tessera's service account.")
                yield conn
            finally:
                conn.close()
            return
        raise DirectoryUnavailable() from last

    def _run(self, operation: Callable[[LdapConnection], T]) -> T:
        with self._connection() as conn:
            try:
                return operation(conn)
            except (OSError, ProtocolError) as exc:
                raise DirectoryUnavailable() from exc

    @staticmethod
    def _check(result: Result, what: str, allowed: tuple[int, ...] = ()) -> None:
        if result.code != 0 and result.code not in allowed:
            raise DirectoryError(f"The directory refused to {what}: {result.name} {result.diagnostic}".strip())

    def person_dn(self, uid: str) -> str:
        return f"{self.config.attributes.uid}={escape_dn_chars(uid)},{self.config.people_base}"

    def group_dn(self, group: str) -> str:
        return f"{self.config.attributes.group_name}={escape_dn_chars(group)},{self.config.groups_base}"

    # -- reading what the writes need -------------------------------------------------------------
    def search_people(self, text: str = "", department: str | None = None, limit: int = 2000) -> list[dict[str, Any]]:
        """People whose user name, name or post contains ``text`` (case-insensitive): dicts of
        uid, name, department, title, groups, enabled, lock_recorded; sorted by user name."""
        a = self.config.attributes
        parts = [equals("objectClass", a.person_class)]
        value = text.strip()[:64]
        if value:
            parts.append(any_of(contains(a.uid, value), contains(a.name, value), contains(a.title, value)))
        if department:
            parts.append(equals(a.department, department))
        attributes = [n for n in (a.uid, a.name, a.department, a.title, a.member_of, a.locked_time) if n]

        def operation(conn: LdapConnection) -> list[dict[str, Any]]:
            result, entries = conn.search(self.config.people_base, all_of(*parts), attributes, paged=True, limit=limit)
            self._check(result, "list people", (_RESULT_SIZE_LIMIT_EXCEEDED, _RESULT_NO_SUCH_OBJECT))
            out = []
            for entry in entries:
                values = entry.attributes
                first = {n: (values.get(n.lower()) or [""])[0] for n in (a.uid, a.name, a.department, a.title)}
                groups = values.get(a.member_of.lower(), []) if a.member_of else []
                locked = values.get(a.locked_time.lower(), []) if a.locked_time else []
                out.append({"uid": first[a.uid], "name": first[a.name], "department": first[a.department],
                            "title": first[a.title],
                            "groups": sorted(g.split(",")[0].split("=", 1)[-1] for g in groups),
                            "enabled": PERMANENT_LOCK not in locked,
                            # a lockout after failed binds, perhaps past its pwdLockoutDuration already
                            # (Directory.account_state tells)
                            "lock_recorded": any(v != PERMANENT_LOCK for v in locked)})
            return sorted(out, key=lambda p: p["uid"])

        return self._run(operation)

    # -- writing ---------------------------------------------------------------------------------
    def create_person(self, uid: str, given_name: str, surname: str, department: str, title: str,
                      password: str) -> str:
        """A new inetOrgPerson with ``password`` marked must-change (pwdReset); returns its DN."""
        if not valid_username(uid):
            raise DirectoryError(f"{uid!r} cannot be a user name (letters, digits, . _ @ -)")
        a = self.config.attributes
        dn = self.person_dn(uid)
        mail_domain = f"{department}.{self.config.base_dn.replace('dc=', '').replace(',', '.')}"
        written = written_name(given_name, surname)
        attributes = {a.uid: uid, a.name: written, a.given_name: given_name, a.surname: surname,
                      a.department: department, a.title: title, a.mail: f"{uid}@{mail_domain}",
                      "userPassword": password}
        if a.display_name:
            attributes[a.display_name] = written

        def operation(conn: LdapConnection) -> str:
            added = conn.add(dn, a.person_class, attributes)
            if added.code == _RESULT_ALREADY_EXISTS:
                raise DirectoryError(f"the directory already has a person {uid!r}")
            self._check(added, f"create {uid}")
            marked = conn.modify(dn, {"pwdReset": [(ldap.MOD_REPLACE, ["TRUE"])]})
            if marked.code != 0:
                conn.delete(dn)  # all or nothing: no account whose initial password need not change
                self._check(marked, f"mark the initial password of {uid} as must-change")
            return dn

        return self._run(operation)

    def reset_password(self, uid: str, password: str) -> None:
        """Set ``password`` (a one-time one: :func:`initial_password`) as the person's password,
        marked must-change (``pwdReset: TRUE``, draft-behera 5.3.7), in one modify (RFC 4511 section
        4.6: all or nothing). slapd hashes it (``ppolicy_hash_cleartext``) and drops a lockout with
        the old password; so it also drops the permanent lock of a disabled account, which the
        caller must refuse to reset (:meth:`directory.client.Directory.account_state`)."""
        changes: dict[str, Any] = {"userPassword": [(ldap.MOD_REPLACE, [password])],
                                   "pwdReset": [(ldap.MOD_REPLACE, ["TRUE"])]}

        def operation(conn: LdapConnection) -> None:
            result = conn.modify(self.person_dn(uid), changes)
            if result.code == _RESULT_NO_SUCH_OBJECT:
                raise DirectoryError(f"the directory has no person {uid!r}")
            self._check(result, f"reset the password of {uid}")

        self._run(operation)

    def delete_person(self, uid: str) -> None:
        """Remove an entry (only to undo a creation whose transaction failed)."""
        def operation(conn: LdapConnection) -> None:
            self._check(conn.delete(self.person_dn(uid)), f"delete {uid}", (_RESULT_NO_SUCH_OBJECT,))

        self._run(operation)

    def add_to_group(self, uid: str, group: str) -> None:
        def operation(conn: LdapConnection) -> None:
            member = self.config.attributes.group_member
            result = conn.modify(self.group_dn(group), {member: [(ldap.MOD_ADD, [self.person_dn(uid)])]})
            self._check(result, f"add {uid} to {group}", (_RESULT_ATTRIBUTE_EXISTS,))

        self._run(operation)

    def remove_from_group(self, uid: str, group: str) -> None:
        def operation(conn: LdapConnection) -> None:
            member = self.config.attributes.group_member
            result = conn.modify(self.group_dn(group), {member: [(ldap.MOD_DELETE, [self.person_dn(uid)])]})
            self._check(result, f"remove {uid} from {group}", (_RESULT_NO_SUCH_ATTRIBUTE,))

        self._run(operation)

    def set_post(self, uid: str, title: str, department: str | None = None) -> None:
        a = self.config.attributes
        changes: dict[str, Any] = {a.title: [(ldap.MOD_REPLACE, [title])]}
        if department:
            changes[a.department] = [(ldap.MOD_REPLACE, [department])]

        def operation(conn: LdapConnection) -> None:
            self._check(conn.modify(self.person_dn(uid), changes), f"set the post of {uid}")

        self._run(operation)

    def disable(self, uid: str) -> None:
        """Lock the account permanently: every bind fails, as for a disabled account."""
        def operation(conn: LdapConnection) -> None:
            locked_time = self.config.attributes.locked_time
            result = conn.modify(self.person_dn(uid), {locked_time: [(ldap.MOD_REPLACE, [PERMANENT_LOCK])]})
            self._check(result, f"disable {uid}")

        self._run(operation)

    def enable(self, uid: str) -> None:
        """Lift the permanent lock (undoing a leaver whose other steps failed)."""
        def operation(conn: LdapConnection) -> None:
            result = conn.modify(self.person_dn(uid), {self.config.attributes.locked_time: [(ldap.MOD_DELETE, [])]})
            self._check(result, f"enable {uid}", (_RESULT_NO_SUCH_ATTRIBUTE,))

        self._run(operation)
