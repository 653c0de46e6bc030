"""Fixtures of the directory and single sign-on tests: a real private slapd.

Fixture API (session-scoped ``slapd``; one slapd on its own free port and folder, stopped by PID)::

    slapd.config          DirectoryConfig for this slapd (IdP service account, embedded layout)
    slapd.url             "ldap://127.0.0.1:PORT"
    slapd.suffix          "dc=tessera,dc=example"
    slapd.seed_password   the password of every seed staff member (e.g. "heguiying", "wangfang", ...)
    slapd.admin_password  the rootdn's (cn=admin,<suffix>) password
    slapd.env             {"TESSERA_LDAP_URLS": ..., "TESSERA_LDAP_BASE_DN": ..., ...}: this directory
                          as an external one (read_only=false), for a `tessera serve` under test
    slapd.stop()          stop slapd (by PID); the DirectoryConfig stays valid
    slapd.start()         start it again on the same port, with the same data
    slapd.running         True while it runs
    slapd.directory()     a new directory.client.Directory on slapd.config (close it after use)
    slapd.admin()         a python-ldap LDAPObject bound as the rootdn (unbind_s() it after use);
                          encoded({"cn": "x", "member": [dn, ...]}) makes the modlist of its add_s
    slapd.create_user(uid, password, *, department="finance", title=None, groups=(), given_name="Test",
                      surname=None, mail=None, policy=None, must_change=False) -> dn
                          a new staff member (password hashed by slapd as argon2id); ``groups`` are role
                          group cns ("auditors", ...); ``policy`` a cn made by add_policy; ``must_change``
                          sets pwdReset (the default policy has pwdMustChange: TRUE)
    slapd.add_policy(name, **attributes) -> dn
                          a pwdPolicy entry cn=<name>,ou=policies (e.g. pwdMaxAge="1",
                          pwdGraceAuthNLimit="0") based on the default policy's values
    slapd.unlock(uid)     clear pwdAccountLockedTime and pwdFailureTime
    slapd.disable(uid)    lock permanently (pwdAccountLockedTime 000001010000Z): the account is disabled
    new_uid(prefix="t")   a fresh unique user name (module-level function)

Another private slapd for a test of its own: ``SlapdServer(folder, max_failure=5, tls=(cert, key),
service_size_limit=1000)`` then ``.start()`` / ``.stop()`` (tls adds ``.folder.ldaps_url`` and
StartTLS, see test_directory_tls.py; service_size_limit limits the IdP's searches as Active
Directory's MaxPageSize does, see test_directory.py).

Tests that stop slapd must start it again in a ``finally`` (it is shared by the session).
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import ldap
import pytest

from directory.client import Directory
from directory.config import DirectoryConfig
from directory.slapd import DirectoryFolder, EmbeddedSlapd, build_directory
from tests.servers import free_port

__all__ = ["SlapdServer", "encoded", "slapd", "new_uid"]

_counter = itertools.count(1)


def new_uid(prefix: str = "t") -> str:
    """A user name no other test uses (unique per process)."""
    return f"{prefix}{os.getpid()}x{next(_counter)}"


def encoded(attributes: Mapping[str, str | Sequence[str]]) -> list[tuple[str, list[bytes]]]:
    """python-ldap's modlist for add_s: each value (or list of values) in UTF-8."""
    return [(name, [v.encode() for v in ([values] if isinstance(values, str) else values)])
            for name, values in attributes.items()]


class SlapdServer:
    """A private slapd built exactly like the embedded one (template, seed, argon2, ppolicy)."""

    def __init__(self, base: Path, *, max_failure: int = 5, tls: tuple[Path, Path] | None = None,
                 service_size_limit: int | None = None) -> None:
        self.base = base
        self.folder = DirectoryFolder(base / "ldap")
        self.secrets = base / "secrets"
        build_directory(self.folder, self.secrets, port=free_port(), max_failure=max_failure, durable=False, tls=tls,
                        service_size_limit=service_size_limit)
        self.process = EmbeddedSlapd(self.folder)
        self.config = DirectoryConfig.embedded_for(self.folder.path, self.secrets)
        self.suffix = self.folder.suffix
        self.seed_password = (self.secrets / "ldap-demo.password").read_text().strip()
        self.admin_password = (self.secrets / "ldap-admin.password").read_text().strip()

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.folder.url

    @property
    def running(self) -> bool:
        return self.process.is_running()

    def start(self) -> None:
        self.process.start()

    def stop(self) -> None:
        self.process.stop()

    @property
    def env(self) -> dict[str, str]:
        return {
            "TESSERA_LDAP_URLS": self.url,
            "TESSERA_LDAP_BASE_DN": self.suffix,
            "TESSERA_LDAP_BIND_DN": self.config.bind_dn,
            "TESSERA_LDAP_BIND_PASSWORD": self.config.bind_password,
            "TESSERA_LDAP_READ_ONLY": "false",
        }

    def directory(self) -> Directory:
        return Directory(self.config)

    def admin(self) -> Any:
        conn = ldap.initialize(self.url)
        conn.simple_bind_s(self.folder.root_dn, self.admin_password)
        return conn

    # -- data ------------------------------------------------------------------------------
    def create_user(self, uid: str, password: str, *, department: str = "finance", title: str | None = None,
                    groups: tuple[str, ...] | list[str] = (), given_name: str = "Test", surname: str | None = None,
                    mail: str | None = None, policy: str | None = None, must_change: bool = False) -> str:
        dn = f"uid={uid},ou=people,{self.suffix}"
        attributes: dict[str, str] = {
            "uid": uid, "cn": f"{given_name} {surname or uid}", "givenName": given_name, "sn": surname or uid,
            "mail": mail or f"{uid}@{department}.tessera.example", "departmentNumber": department,
            "userPassword": password,
        }
        if title:
            attributes["title"] = title
        if policy:
            attributes["pwdPolicySubentry"] = f"cn={policy},ou=policies,{self.suffix}"
        conn = self.admin()
        try:
            conn.add_s(dn, encoded({"objectClass": "inetOrgPerson", **attributes}))
            for group in groups:
                conn.modify_s(f"cn={group},ou=groups,{self.suffix}", [(ldap.MOD_ADD, "member", [dn.encode()])])
            if must_change:
                conn.modify_s(dn, [(ldap.MOD_REPLACE, "pwdReset", [b"TRUE"])])
        finally:
            conn.unbind_s()
        return dn

    def add_policy(self, name: str, **attributes: str) -> str:
        dn = f"cn={name},ou=policies,{self.suffix}"
        conn = self.admin()
        try:
            [(_, default)] = conn.search_s(f"cn=default,ou=policies,{self.suffix}", ldap.SCOPE_BASE,
                                           "(objectClass=pwdPolicy)", ["*"])
            base = {k: v for k, v in default.items() if k.lower().startswith("pwd")}
            base.update({k: [v.encode()] for k, v in attributes.items()})
            conn.add_s(dn, encoded({"objectClass": ["device", "pwdPolicy"], "cn": name}) + list(base.items()))
        finally:
            conn.unbind_s()
        return dn

    def _modify_user(self, uid: str, changes: list[tuple[int, str, list[bytes] | None]]) -> None:
        conn = self.admin()
        try:
            for change in changes:
                try:
                    conn.modify_s(f"uid={uid},ou=people,{self.suffix}", [change])
                except ldap.NO_SUCH_ATTRIBUTE:  # absent attribute: ignored
                    pass
        finally:
            conn.unbind_s()

    def unlock(self, uid: str) -> None:
        self._modify_user(uid, [(ldap.MOD_DELETE, "pwdAccountLockedTime", None),
                                (ldap.MOD_DELETE, "pwdFailureTime", None)])

    def disable(self, uid: str) -> None:
        self._modify_user(uid, [(ldap.MOD_REPLACE, "pwdAccountLockedTime", [b"000001010000Z"])])


@pytest.fixture(scope="session")
def slapd() -> Iterator[SlapdServer]:
    """A private slapd with the seed organisation, on a free port, stopped by PID at the end."""
    base = Path(tempfile.mkdtemp(prefix="tessera-slapd-"))  # short path: the ldapi socket name is limited
    server = SlapdServer(base)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
