"""Fixtures of the governance tests: administrators of each role in the test directory, agents
logged in to the admin console, and reading the audit trail of the running service.

Import at the top of a test module: ``from tests.fixtures_admin import *``.

    admins              session: {"system-admin": uid, "security-admin": uid, "security-admin-2": uid,
                        "auditor": uid, "officer": uid, "approver": uid} - fresh directory users
                        (password fixtures_web.PASSWORD), officer and approver in finance
    admin_agents        session: the same names -> AdminAgent, each logged in (password + TOTP)
    AdminAgent          StaffAgent with csrf() and act(path, **form) (a confirmed form post)
    audit_entries(idp, subject=None, since_seq=0) -> list of dicts, from the service's database
    audit_tip(idp)      the newest entry's seq
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.fixtures_web import PASSWORD, IdpServer, StaffAgent, csrf_of, idp, new_uid, slapd  # noqa: F401

__all__ = ["AdminAgent", "admins", "admin_agents", "audit_entries", "audit_tip", "idp", "slapd", "PASSWORD",
           "new_uid", "ROLE_GROUPS"]

ROLE_GROUPS = {
    "system-admin": ("system-administrators",),
    "security-admin": ("security-administrators",),
    "security-admin-2": ("security-administrators",),
    "auditor": ("auditors",),
    "officer": (),
    "approver": ("approvers",),
}


class AdminAgent(StaffAgent):
    """A logged-in staff member using the admin console without a browser."""

    def csrf(self) -> str:
        return csrf_of(self.get(self.idp.url("/account")).text)

    def act(self, path: str, confirmed: bool = True, **form: Any) -> requests.Response:
        """POST a console form (CSRF token added; ``confirmed=yes`` unless asked not to)."""
        data: dict[str, Any] = {"csrf_token": self.csrf(), **form}
        if confirmed:
            data["confirmed"] = "yes"
        return self.post(self.idp.url(path), data=data, allow_redirects=False,
                         headers={"Accept": "text/html"})


@pytest.fixture(scope="session")
def admins(slapd) -> dict[str, str]:  # type: ignore[no-untyped-def]  # noqa: F811
    made = {}
    for name, groups in ROLE_GROUPS.items():
        uid = new_uid(name.replace("-", "")[:6])
        slapd.create_user(uid, PASSWORD, department="finance", title=name.replace("-", " ").title(), groups=groups,
                          given_name=name.split("-")[0].title(), surname=f"Tester{uid[-3:]}")
        made[name] = uid
    return made


@pytest.fixture(scope="session")
def admin_agents(idp: IdpServer, admins: dict[str, str]) -> Iterator[dict[str, AdminAgent]]:  # noqa: F811
    agents = {}
    for name, uid in admins.items():
        agent = AdminAgent(idp, uid, PASSWORD)
        agent.login("/admin/")
        agents[name] = agent
    yield agents
    for agent in agents.values():
        agent.close()


def _database(idp: IdpServer) -> sqlite3.Connection:  # noqa: F811
    return sqlite3.connect(f"file:{idp.home / 'tessera.db'}?mode=ro", uri=True, timeout=30)


def audit_entries(idp: IdpServer, subject: str | None = None, since_seq: int = 0) -> list[dict[str, Any]]:  # noqa: F811
    """Entries of the service's audit trail after ``since_seq`` (optionally of one subject), oldest first."""
    conn = _database(idp)
    conn.row_factory = sqlite3.Row
    try:
        query = "SELECT * FROM audit_entry WHERE seq > ?"
        args: list[Any] = [since_seq]
        if subject:
            query += " AND subject = ?"
            args.append(subject)
        return [dict(r) for r in conn.execute(query + " ORDER BY seq", args)]
    finally:
        conn.close()


def audit_tip(idp: IdpServer) -> int:  # noqa: F811
    conn = _database(idp)
    try:
        return int(conn.execute("SELECT coalesce(max(seq), 0) FROM audit_entry").fetchone()[0])
    finally:
        conn.close()
