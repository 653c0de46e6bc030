"""DirectoryConfig.from_env: the embedded default, an external directory, Active Directory mapping."""

from __future__ import annotations

from pathlib import Path

import pytest

from directory.config import AttributeMap, DirectoryConfig, DirectoryConfigError


def _embedded_home(tmp_path: Path) -> Path:
    (tmp_path / "ldap").mkdir()
    (tmp_path / "ldap" / "port").write_text("38999\n")
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "ldap-idp.password").write_text("service-secret\n")
    return tmp_path


def test_embedded_default(tmp_path: Path) -> None:
    config = DirectoryConfig.from_env(_embedded_home(tmp_path), {})
    assert config.urls == ("ldap://127.0.0.1:38999",)
    assert config.embedded and not config.read_only and config.embedded_dir == tmp_path / "ldap"
    assert config.bind_dn == "cn=idp,ou=services,dc=tessera,dc=example" and config.bind_password == "service-secret"
    assert config.people_base == "ou=people,dc=tessera,dc=example"
    assert "service-secret" not in repr(config)


def test_embedded_not_prepared_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DirectoryConfigError, match="tessera init"):
        DirectoryConfig.from_env(tmp_path, {})


def test_external_directory_with_failover_and_tls(tmp_path: Path) -> None:
    secret = tmp_path / "bind.password"
    secret.write_text("from-a-file\n")
    config = DirectoryConfig.from_env(tmp_path, {
        "TESSERA_LDAP_URLS": "ldap://dir1.example:389, ldap://dir2.example:389",
        "TESSERA_LDAP_BASE_DN": "o=gov", "TESSERA_LDAP_BIND_DN": "cn=sso,o=gov",
        "TESSERA_LDAP_BIND_PASSWORD_FILE": str(secret), "TESSERA_LDAP_START_TLS": "true",
        "TESSERA_LDAP_CA_FILE": "/etc/ssl/gov-ca.pem", "TESSERA_LDAP_TIMEOUT": "3",
        "TESSERA_LDAP_PEOPLE_BASE": "ou=staff,o=gov", "TESSERA_LDAP_ATTR_DEPARTMENT": "ou",
        "TESSERA_LDAP_ROLE_GROUPS": "auditors,admins",
    })
    assert config.urls == ("ldap://dir1.example:389", "ldap://dir2.example:389")
    assert config.read_only and not config.embedded  # not our directory: read-only by default
    assert config.start_tls and config.ca_file == "/etc/ssl/gov-ca.pem" and config.operation_timeout == 3.0
    assert config.bind_password == "from-a-file" and config.people_base == "ou=staff,o=gov"
    assert config.groups_base == "ou=groups,o=gov" and config.attributes.department == "ou"
    assert config.role_groups == frozenset({"auditors", "admins"})


def test_active_directory_mapping(tmp_path: Path) -> None:
    config = DirectoryConfig.from_env(tmp_path, {"TESSERA_LDAP_URLS": "ldaps://ad.gov.example",
                                                 "TESSERA_LDAP_BASE_DN": "dc=gov,dc=example",
                                                 "TESSERA_LDAP_SCHEMA": "active-directory"})
    assert config.attributes == AttributeMap.active_directory()
    assert config.attributes.uid == "sAMAccountName" and config.attributes.account_control == "userAccountControl"


@pytest.mark.parametrize("env, message", [
    ({"TESSERA_LDAP_URLS": "http://x", "TESSERA_LDAP_BASE_DN": "o=x"}, "not ldap"),
    ({"TESSERA_LDAP_URLS": "ldap://x"}, "BASE_DN"),
    ({"TESSERA_LDAP_URLS": "ldap://x", "TESSERA_LDAP_BASE_DN": "o=x", "TESSERA_LDAP_START_TLS": "maybe"}, "boolean"),
    ({"TESSERA_LDAP_URLS": "ldap://x", "TESSERA_LDAP_BASE_DN": "o=x", "TESSERA_LDAP_TIMEOUT": "soon"}, "number"),
    ({"TESSERA_LDAP_URLS": "ldap://x", "TESSERA_LDAP_BASE_DN": "o=x", "TESSERA_LDAP_TIMEOUT": "-1"}, "positive"),
    ({"TESSERA_LDAP_URLS": "ldap://x", "TESSERA_LDAP_BASE_DN": "o=x",
      "TESSERA_LDAP_BIND_PASSWORD_FILE": "/nonexistent/file"}, "cannot read"),
    ({"TESSERA_LDAP_URLS": "ldap://x", "TESSERA_LDAP_BASE_DN": "o=x", "TESSERA_LDAP_ATTR_UID": "uid)(cn=*"},
     "not an attribute name"),
])
def test_bad_settings_are_clear_errors(tmp_path: Path, env: dict[str, str], message: str) -> None:
    with pytest.raises(DirectoryConfigError, match=message):
        DirectoryConfig.from_env(tmp_path, env)
