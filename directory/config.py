"""Where the staff directory is and how to read it: built from ``TESSERA_LDAP_*`` variables.

Without ``TESSERA_LDAP_URLS`` the embedded default is used: the private slapd under
``$TESSERA_HOME/ldap`` (created by ``tessera init``), its port in ``ldap/port`` and the IdP's
service account password in ``secrets/ldap-idp.password``. See docs/directory.md for the table.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from directory.errors import DirectoryError
from directory.filters import is_attribute_description

EMBEDDED_SUFFIX = "dc=tessera,dc=example"
DEFAULT_ROLE_GROUPS = ("system-administrators", "security-administrators", "auditors", "approvers")


class DirectoryConfigError(DirectoryError, ValueError):
    """The directory settings are incomplete or contradictory."""

    kind = "directory-configuration"


@dataclass(frozen=True)
class AttributeMap:
    """Names of the attributes Tessera reads; AD and other schemas differ only here."""

    uid: str = "uid"
    mail: str = "mail"
    name: str = "cn"
    display_name: str = "displayName"
    given_name: str = "givenName"
    surname: str = "sn"
    title: str = "title"
    department: str = "departmentNumber"
    member_of: str = "memberOf"  # "" = no memberOf: groups are searched by member instead
    person_class: str = "inetOrgPerson"
    group_class: str = "groupOfNames"
    group_name: str = "cn"
    group_member: str = "member"
    department_id: str = "ou"  # attribute of a department entry holding its id
    department_name: str = "description"
    # how an administrator disables an account: ppolicy's permanent lock (OpenLDAP) or AD's flag
    locked_time: str = "pwdAccountLockedTime"
    account_control: str = ""  # "userAccountControl" on Active Directory

    @classmethod
    def active_directory(cls) -> "AttributeMap":
        """Active Directory: sAMAccountName, memberOf, department, userAccountControl."""
        return cls(uid="sAMAccountName", mail="mail", name="cn", display_name="displayName", given_name="givenName",
                   surname="sn", title="title", department="department", member_of="memberOf",
                   person_class="user", group_class="group", group_name="cn", group_member="member",
                   department_id="ou", department_name="description", locked_time="",
                   account_control="userAccountControl")

    def person_attributes(self) -> list[str]:
        names = [self.uid, self.mail, self.name, self.display_name, self.given_name, self.surname, self.title,
                 self.department, self.member_of, self.locked_time, self.account_control]
        return sorted({n for n in names if n})


@dataclass(frozen=True)
class DirectoryConfig:
    """One directory: its servers in failover order, how to bind and where things live."""

    urls: tuple[str, ...]
    bind_dn: str
    bind_password: str = field(repr=False)
    base_dn: str
    people_base: str
    groups_base: str
    departments_base: str
    start_tls: bool = False
    ca_file: str | None = None
    connect_timeout: float = 2.0
    operation_timeout: float = 5.0
    pool_size: int = 8
    #: seconds all the directory work of one web request may take together (directory.connection.deadline)
    deadline: float = 8.0
    #: the same for one ``tessera`` command, counted from its first exchange with a server: room for
    #: one operation timeout on a hung server and a failover, never a hang
    command_deadline: float = 15.0
    #: failures or timeouts in a row after which a server is not asked for breaker_cooldown seconds
    breaker_failures: int = 3
    breaker_cooldown: float = 30.0
    #: calls of one process that may wait on one server at once (the rest fail instead of holding threads)
    server_concurrency: int = 2
    attributes: AttributeMap = field(default_factory=AttributeMap)
    role_groups: frozenset[str] = frozenset(DEFAULT_ROLE_GROUPS)
    approver_group: str = "approvers"
    read_only: bool = False
    embedded: bool = False
    # the private slapd's folder when embedded (tessera serve starts it, generate loads into it)
    embedded_dir: Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "urls", tuple(self.urls))
        if not self.urls:
            raise DirectoryConfigError("no directory URL configured (TESSERA_LDAP_URLS)")
        for url in self.urls:
            if not url.startswith(("ldap://", "ldaps://", "ldapi://")):
                raise DirectoryConfigError(f"directory URL {url!r} is not ldap://, ldaps:// or ldapi://")
        if self.connect_timeout <= 0 or self.operation_timeout <= 0:
            raise DirectoryConfigError("directory timeouts must be positive")
        if self.pool_size < 1:
            raise DirectoryConfigError("TESSERA_LDAP_POOL_SIZE must be at least 1")
        if self.deadline <= 0 or self.command_deadline <= 0 or self.breaker_cooldown <= 0:
            raise DirectoryConfigError("TESSERA_LDAP_DEADLINE, TESSERA_LDAP_COMMAND_DEADLINE and "
                                       "TESSERA_LDAP_BREAKER_COOLDOWN must be positive")
        if self.breaker_failures < 1 or self.server_concurrency < 1:
            raise DirectoryConfigError("TESSERA_LDAP_BREAKER_FAILURES and TESSERA_LDAP_SERVER_CONCURRENCY must be "
                                       "at least 1")
        for name, value in vars(self.attributes).items():
            if value and name not in ("person_class", "group_class") and not is_attribute_description(value):
                raise DirectoryConfigError(f"the directory attribute for {name} is not an attribute name: {value!r}")

    def with_urls(self, *urls: str) -> "DirectoryConfig":
        return replace(self, urls=tuple(urls))

    @classmethod
    def embedded_for(cls, ldap_dir: Path, secrets_dir: Path, suffix: str = EMBEDDED_SUFFIX) -> "DirectoryConfig":
        """The private slapd in ``ldap_dir`` (port file) read by the IdP service account."""
        port_file = ldap_dir / "port"
        password_file = secrets_dir / "ldap-idp.password"
        try:
            port = int(port_file.read_text().strip())
            password = password_file.read_text().strip()
        except (OSError, ValueError):
            raise DirectoryConfigError(
                f"the embedded directory is not prepared ({port_file} or {password_file} missing): "
                "run `tessera init`, or set TESSERA_LDAP_URLS for an external directory") from None
        return cls(urls=(f"ldap://127.0.0.1:{port}",), bind_dn=f"cn=idp,ou=services,{suffix}", bind_password=password,
                   base_dn=suffix, people_base=f"ou=people,{suffix}", groups_base=f"ou=groups,{suffix}",
                   departments_base=f"ou=departments,{suffix}", embedded=True, embedded_dir=ldap_dir)

    @classmethod
    def from_env(cls, home: Path, env: Mapping[str, str] | None = None) -> "DirectoryConfig":
        """``TESSERA_LDAP_*`` (docs/directory.md), or the embedded slapd of ``home`` when no URL is set."""
        env = os.environ if env is None else env
        home = Path(home)

        def get(name: str, default: str = "") -> str:
            return (env.get(f"TESSERA_LDAP_{name}") or default).strip()

        def flag(name: str, default: bool) -> bool:
            value = get(name).lower()
            if not value:
                return default
            if value in ("1", "true", "yes", "on"):
                return True
            if value in ("0", "false", "no", "off"):
                return False
            raise DirectoryConfigError(f"TESSERA_LDAP_{name}={value!r} is not a boolean (true/false)")

        def number(name: str, default: float) -> float:
            value = get(name)
            try:
                return float(value) if value else default
            except ValueError:
                raise DirectoryConfigError(f"TESSERA_LDAP_{name}={value!r} is not a number") from None

        urls = tuple(u for u in get("URLS").replace(",", " ").split() if u)
        if not urls:
            base = cls.embedded_for(home / "ldap", home / "secrets")
        else:
            base_dn = get("BASE_DN")
            if not base_dn:
                raise DirectoryConfigError("TESSERA_LDAP_BASE_DN is required with TESSERA_LDAP_URLS")
            password = get("BIND_PASSWORD")
            password_file = get("BIND_PASSWORD_FILE")
            if password_file:
                try:
                    password = Path(password_file).read_text().strip()
                except OSError as exc:
                    raise DirectoryConfigError(f"cannot read TESSERA_LDAP_BIND_PASSWORD_FILE: {exc}") from None
            base = cls(urls=urls, bind_dn=get("BIND_DN"), bind_password=password, base_dn=base_dn,
                       people_base=get("PEOPLE_BASE", f"ou=people,{base_dn}"),
                       groups_base=get("GROUPS_BASE", f"ou=groups,{base_dn}"),
                       departments_base=get("DEPARTMENTS_BASE", f"ou=departments,{base_dn}"),
                       read_only=True)
        active_directory = get("SCHEMA").lower() in ("ad", "active-directory")
        mapping = AttributeMap.active_directory() if active_directory else AttributeMap()
        overrides = {}
        for name in AttributeMap.__dataclass_fields__:
            value = env.get(f"TESSERA_LDAP_ATTR_{name.upper()}")
            if value is not None:
                overrides[name] = value.strip()
        if overrides:
            mapping = replace(mapping, **overrides)
        roles = get("ROLE_GROUPS")
        return replace(
            base,
            start_tls=flag("START_TLS", base.start_tls),
            ca_file=get("CA_FILE") or base.ca_file,
            connect_timeout=number("CONNECT_TIMEOUT", base.connect_timeout),
            operation_timeout=number("TIMEOUT", base.operation_timeout),
            pool_size=int(number("POOL_SIZE", base.pool_size)),
            deadline=number("DEADLINE", base.deadline),
            command_deadline=number("COMMAND_DEADLINE", base.command_deadline),
            breaker_failures=int(number("BREAKER_FAILURES", base.breaker_failures)),
            breaker_cooldown=number("BREAKER_COOLDOWN", base.breaker_cooldown),
            server_concurrency=int(number("SERVER_CONCURRENCY", base.server_concurrency)),
            attributes=mapping,
            role_groups=frozenset(r for r in roles.replace(",", " ").split()) if roles else base.role_groups,
            approver_group=get("APPROVER_GROUP", base.approver_group),
            read_only=flag("READ_ONLY", base.read_only),
        )
