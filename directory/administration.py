"""Writing to the staff directory for the account lifecycle, as the IdP's service account.

Reading stays in :mod:`directory.client`; this module creates entries, changes group membership
(RFC 4511 section 4.6 modify of the group's ``member``: the memberof overlay keeps ``memberOf``),
sets a post, disables and re-enables accounts (the ppolicy permanent lock ``pwdAccountLockedTime:
000001010000Z``, draft-behera 5.3.3) and marks an initial password as one that must be changed
(``pwdReset: TRUE``, draft-behera 5.3.7). Every value in a DN or filter is escaped (RFC 4514
section 2.4, RFC 4515 section 3). A directory that Tessera may only read refuses every write.
"""

from __future__ import annotations

import math
import secrets
import string
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from ldap3 import MODIFY_ADD, MODIFY_DELETE, MODIFY_REPLACE, NONE, SIMPLE, SUBTREE, Connection, Server
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn

from directory.client import valid_username
from directory.config import DirectoryConfig
from directory.errors import DirectoryError, DirectoryUnavailable
from directory.person_names import written_name

PERMANENT_LOCK = "000001010000Z"
_RESULT_NO_SUCH_ATTRIBUTE = 16
_RESULT_ATTRIBUTE_EXISTS = 20
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
    def _connection(self) -> Iterator[Connection]:
        cfg = self.config
        if cfg.read_only:
            raise DirectoryError("The directory is read-only for Tessera: make this change in the directory itself.")
        last: Exception | None = None
        for url in cfg.urls:
            target = "ldapi://" + url[len("ldapi://"):] if url.startswith("ldapi://") else url
            conn = Connection(Server(target, get_info=NONE, connect_timeout=cfg.connect_timeout,
                                     use_ssl=url.startswith("ldaps://")),
                              user=cfg.bind_dn, password=cfg.bind_password, authentication=SIMPLE,
                              receive_timeout=max(1, math.ceil(cfg.operation_timeout)), raise_exceptions=False)
            try:
                if cfg.start_tls and url.startswith("ldap://"):
                    conn.open()
                    conn.start_tls()
                if not conn.bind():
                    raise DirectoryUnavailable("The directory refused Tessera's service account.")
            except (LDAPException, OSError) as exc:
                last = exc
                continue
            try:
                yield conn
            finally:
                try:
                    conn.unbind()
                except (LDAPException, OSError):
                    pass
            return
        raise DirectoryUnavailable() from last

    def _run(self, operation: Callable[[Connection], T]) -> T:
        with self._connection() as conn:
            try:
                return operation(conn)
            except (LDAPException, OSError) as exc:
                raise DirectoryUnavailable() from exc

    @staticmethod
    def _check(conn: Connection, what: str, allowed: tuple[int, ...] = ()) -> None:
        code = int((conn.result or {}).get("result", -1))
        if code != 0 and code not in allowed:
            raise DirectoryError(f"The directory refused to {what}: {conn.result.get('description')} "
                                 f"{conn.result.get('message') or ''}".strip())

    def person_dn(self, uid: str) -> str:
        return f"{self.config.attributes.uid}={escape_rdn(uid)},{self.config.people_base}"

    def group_dn(self, group: str) -> str:
        return f"{self.config.attributes.group_name}={escape_rdn(group)},{self.config.groups_base}"

    # -- reading what the writes need -------------------------------------------------------------
    def search_people(self, text: str = "", department: str | None = None, limit: int = 2000) -> list[dict[str, Any]]:
        """People whose user name, name or post contains ``text`` (case-insensitive): dicts of
        uid, name, department, title, groups, enabled; sorted by user name."""
        a = self.config.attributes
        parts = [f"(objectClass={a.person_class})"]
        if text:
            value = escape_filter_chars(text.strip()[:64])
            parts.append(f"(|({a.uid}=*{value}*)({a.name}=*{value}*)({a.title}=*{value}*))")
        if department:
            parts.append(f"({a.department}={escape_filter_chars(department)})")
        ldap_filter = f"(&{''.join(parts)})"

        def operation(conn: Connection) -> list[dict[str, Any]]:
            conn.search(self.config.people_base, ldap_filter, search_scope=SUBTREE, size_limit=limit,
                        attributes=[a.uid, a.name, a.department, a.title, a.member_of, a.locked_time])
            out = []
            for entry in conn.response or []:
                if entry.get("type") != "searchResEntry":
                    continue
                attrs = {k.lower(): v for k, v in entry["attributes"].items()}

                def first(name: str) -> str:
                    value = attrs.get(name.lower())
                    if isinstance(value, list):
                        return str(value[0]) if value else ""
                    return str(value or "")

                groups = attrs.get(a.member_of.lower()) or []
                locked = attrs.get(a.locked_time.lower()) or []
                out.append({"uid": first(a.uid), "name": first(a.name), "department": first(a.department),
                            "title": first(a.title),
                            "groups": sorted(str(g).split(",")[0].split("=", 1)[-1] for g in groups),
                            "enabled": PERMANENT_LOCK not in [str(v) for v in (locked if isinstance(locked, list) else [locked])]})
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

        def operation(conn: Connection) -> str:
            conn.add(dn, [a.person_class], attributes)
            if int((conn.result or {}).get("result", -1)) == _RESULT_ALREADY_EXISTS:
                raise DirectoryError(f"the directory already has a person {uid!r}")
            self._check(conn, f"create {uid}")
            conn.modify(dn, {"pwdReset": [(MODIFY_REPLACE, ["TRUE"])]})
            if int((conn.result or {}).get("result", -1)) != 0:
                conn.delete(dn)  # all or nothing: no account whose initial password need not change
                self._check(conn, f"mark the initial password of {uid} as must-change")
            return dn

        return self._run(operation)

    def delete_person(self, uid: str) -> None:
        """Remove an entry (only to undo a creation whose transaction failed)."""
        def operation(conn: Connection) -> None:
            conn.delete(self.person_dn(uid))
            self._check(conn, f"delete {uid}", (32,))

        self._run(operation)

    def add_to_group(self, uid: str, group: str) -> None:
        def operation(conn: Connection) -> None:
            conn.modify(self.group_dn(group), {self.config.attributes.group_member: [(MODIFY_ADD, [self.person_dn(uid)])]})
            self._check(conn, f"add {uid} to {group}", (_RESULT_ATTRIBUTE_EXISTS,))

        self._run(operation)

    def remove_from_group(self, uid: str, group: str) -> None:
        def operation(conn: Connection) -> None:
            conn.modify(self.group_dn(group), {self.config.attributes.group_member: [(MODIFY_DELETE, [self.person_dn(uid)])]})
            self._check(conn, f"remove {uid} from {group}", (_RESULT_NO_SUCH_ATTRIBUTE,))

        self._run(operation)

    def set_post(self, uid: str, title: str, department: str | None = None) -> None:
        a = self.config.attributes
        changes: dict[str, Any] = {a.title: [(MODIFY_REPLACE, [title])]}
        if department:
            changes[a.department] = [(MODIFY_REPLACE, [department])]

        def operation(conn: Connection) -> None:
            conn.modify(self.person_dn(uid), changes)
            self._check(conn, f"set the post of {uid}")

        self._run(operation)

    def disable(self, uid: str) -> None:
        """Lock the account permanently: every bind fails, as for a disabled account."""
        def operation(conn: Connection) -> None:
            conn.modify(self.person_dn(uid), {self.config.attributes.locked_time: [(MODIFY_REPLACE, [PERMANENT_LOCK])]})
            self._check(conn, f"disable {uid}")

        self._run(operation)

    def enable(self, uid: str) -> None:
        """Lift the permanent lock (undoing a leaver whose other steps failed)."""
        def operation(conn: Connection) -> None:
            conn.modify(self.person_dn(uid), {self.config.attributes.locked_time: [(MODIFY_DELETE, [])]})
            self._check(conn, f"enable {uid}", (_RESULT_NO_SUCH_ATTRIBUTE,))

        self._run(operation)
