"""Separation of duties: every forbidden action for every role is refused (403) and audited as
``refused``; allowed reads answer 200; no account holds two administrator roles; four eyes for
adding an administrator. Against the running service, its directory and its audit trail."""

from __future__ import annotations

import pytest
import requests
import ldap

from idp.roles import ADMIN_ROLES, PERMISSIONS, login_refusal, may
from tests.fixtures_admin import *  # noqa: F401,F403
from tests.fixtures_admin import PASSWORD, AdminAgent, IdpServer, audit_entries, audit_tip, new_uid
from tests.fixtures_operators import operator_tokens, run_as  # noqa: F401
from tests.fixtures_web import post_login

ROLES = ("system-admin", "security-admin", "auditor", "officer")
GROUP_OF = {"system-admin": "system-administrators", "security-admin": "security-administrators",
            "auditor": "auditors", "officer": None}
APPLY = "apply"      # only staff without an administrator role, for their own department
APPROVE = "approve"  # only the department's approvers without an administrator role
LIST_APPLICATIONS = "applications"  # security administrators (all) and staff (own department)

#: (name, method, path, form, rule: a permission or one of the special rules, audited event type)
ACTIONS: list[tuple[str, str, str, dict[str, str] | None, str, str]] = [
    ("people", "GET", "/admin/people", None, "people.read", "admin.people.read"),
    ("person", "GET", "/admin/people/{officer}", None, "people.read", "admin.people.read"),
    ("grant role", "POST", "/admin/people/{officer}/grant", {"group": "approvers"}, "role.grant", "admin.role.grant"),
    ("remove role", "POST", "/admin/people/{approver}/remove-role", {"group": "approvers"}, "role.remove",
     "admin.role.revoke"),
    ("change post", "POST", "/admin/people/{officer}/change-post", {"post": "Analyst"}, "account.change-post",
     "admin.account.change-post"),
    ("leaver", "POST", "/admin/people/{officer}/leaver", {}, "account.leaver", "admin.account.leaver"),
    ("reset password", "POST", "/admin/people/{officer}/reset-password", {}, "account.reset-password",
     "admin.staff.reset-password"),
    ("reset second factor", "POST", "/admin/people/{officer}/reset-second-factor", {},
     "account.reset-second-factor", "admin.staff.reset-second-factor"),
    ("unlock", "POST", "/admin/people/{officer}/unlock", {}, "account.unlock", "admin.staff.unlock"),
    ("end sessions", "POST", "/admin/people/{officer}/end-sessions", {}, "account.end-sessions",
     "admin.staff.end-sessions"),
    ("issue", "POST", "/admin/applications/{application}/issue", {}, "account.issue", "admin.account.issue"),
    ("certificates", "GET", "/admin/certificates", None, "cert.read", "admin.cert.read"),
    ("certificate", "GET", "/admin/certificates/{serial}", None, "cert.read", "admin.cert.read"),
    ("revoke", "POST", "/admin/certificates/{serial}/revoke", {"reason": "superseded"}, "cert.revoke", "cert.revoke"),
    ("cards", "GET", "/admin/cards", None, "card.read", "admin.card.read"),
    ("block card", "POST", "/admin/cards/0000000000/block", {}, "card.block", "admin.card.block"),
    ("four-eyes list", "GET", "/admin/four-eyes", None, "four-eyes.request", "admin.four-eyes.read"),
    ("revoke issuing CA", "POST", "/admin/four-eyes/revoke-issuing-ca", {"ca": "citizen"}, "four-eyes.request",
     "admin.four-eyes.request"),
    ("add administrator", "POST", "/admin/four-eyes/add-administrator", {"uid": "{officer}", "group": "auditors"},
     "role.grant", "admin.role.grant"),
    ("four-eyes approve", "POST", "/admin/four-eyes/999999/approve", {}, "four-eyes.approve",
     "admin.four-eyes.approve"),
    ("clients", "GET", "/admin/clients", None, "client.read", "admin.client.read"),
    ("client", "GET", "/admin/clients/{client}", None, "client.read", "admin.client.read"),
    ("add client", "POST", "/admin/clients/new", {"name": "Sneaky", "redirect_uri": "http://127.0.0.1:9/x"},
     "client.add", "admin.client.add"),
    ("remove client", "POST", "/admin/clients/{client}/remove", {}, "client.remove", "admin.client.remove"),
    ("configuration", "GET", "/admin/config", None, "config.read", "admin.config.read"),
    ("change setting", "POST", "/admin/config/session.idle_seconds", {"value": "1800"}, "config.change",
     "admin.config.set"),
    ("audit trail", "GET", "/admin/audit", None, "audit.read", "audit.read"),
    ("audit entry", "GET", "/admin/audit/1", None, "audit.read", "audit.read"),
    ("audit export", "POST", "/admin/audit/export", {"format": "jsonl"}, "audit.export", "audit.export"),
    ("audit reports", "GET", "/admin/audit/reports", None, "audit.report", "audit.report"),
    ("apply", "POST", "/admin/applications/new", {"uid": "{newuid}", "given_name": "Nora", "surname": "New",
                                                   "department": "finance", "post": "Clerk"}, APPLY,
     "admin.account.apply"),
    ("approve", "POST", "/admin/applications/{application}/approve", {}, APPROVE, "admin.account.approve"),
    ("applications", "GET", "/admin/applications", None, LIST_APPLICATIONS, "admin.account.read"),
]


#: what each role may do, written out here independently of idp.roles (the issue's words)
MAY: dict[str, set[str]] = {
    "system-admin": {"config.read", "config.change", "client.read", "client.add", "client.remove"},
    "security-admin": {"people.read", "account.change-post", "account.leaver", "account.issue", "role.grant",
                       "account.reset-password", "account.reset-second-factor", "account.unlock",
                       "account.end-sessions", "role.remove", "cert.read", "cert.revoke", "card.read", "card.block", "four-eyes.request",
                       "four-eyes.approve", "config.read", LIST_APPLICATIONS},
    "auditor": {"audit.read", "audit.export", "audit.report"},
    "officer": {APPLY, LIST_APPLICATIONS},  # APPROVE: none of these four is a finance approver
}


def allowed(role: str, rule: str) -> bool:
    return rule in MAY[role]


FORBIDDEN = [(role, action) for role in ROLES for action in ACTIONS if not allowed(role, action[4])]


@pytest.fixture(scope="module")
def targets(idp: IdpServer, admins: dict[str, str], admin_agents: dict[str, AdminAgent]) -> dict[str, str]:
    import json

    client = idp.add_client("Roles test client", "http://127.0.0.1:9/cb")
    serial = json.loads(idp.cli("ca", "list", "--json", "--limit", "1").stdout)[0]["serial"]
    applied = admin_agents["officer"].act("/admin/applications/new", uid=new_uid("appl"), given_name="Ada",
                                          surname="Applicant", department="finance", post="Clerk")
    assert applied.status_code == 302, applied.text[:600]
    application = applied.headers["Location"].rstrip("/").rsplit("/", 1)[-1]
    return {"officer": admins["officer"], "approver": admins["approver"], "client": client["client_id"],
            "serial": serial, "application": application}


def test_the_table_covers_every_permission() -> None:
    covered = {a[4] for a in ACTIONS}
    assert set().union(*PERMISSIONS.values()) - {"account.read"} <= covered
    for role, group in GROUP_OF.items():  # the module's table says the same as the words
        if group:
            assert {p for p in covered if p in PERMISSIONS[group]} == MAY[role] - {LIST_APPLICATIONS}
    assert len(FORBIDDEN) > 50


@pytest.mark.parametrize("group,holders,refused", [
    ("auditors", ["a1"], "the last auditor"),
    ("auditors", ["a1", "a2"], None),
    ("system-administrators", ["a1"], "the last system administrator"),
    ("security-administrators", ["a1", "a2"], "one of the last 2 security administrators"),
    ("security-administrators", ["a1", "a2", "a3"], None),
    ("security-administrators", ["a2", "a3"], None),  # a1 does not hold it (any more): the others stay
    ("approvers", ["a1"], None),  # not an administrator role
])
def test_an_administrator_role_never_loses_its_last_holders(group: str, holders: list[str],
                                                            refused: str | None) -> None:
    from idp.roles import GovernanceError, check_removal

    if refused is None:
        check_removal(group, "a1", holders)
        return
    with pytest.raises(GovernanceError) as caught:
        check_removal(group, "a1", holders)
    assert refused in str(caught.value) and "Refused: a1 is" in str(caught.value)


@pytest.mark.parametrize("role,action", FORBIDDEN, ids=[f"{r}-{a[0].replace(' ', '_')}" for r, a in FORBIDDEN])
def test_forbidden_action_refused_and_audited(idp: IdpServer, admins: dict[str, str],
                                              admin_agents: dict[str, AdminAgent], targets: dict[str, str],
                                              role: str, action: tuple[str, str, str, dict[str, str] | None, str, str]) -> None:
    name, method, path, form, rule, event_type = action
    agent = admin_agents[role]
    values = dict(targets, newuid=new_uid("nu"))
    url = path.format(**values)
    before = audit_tip(idp)
    if method == "GET":
        response = agent.get(idp.url(url), headers={"Accept": "application/json"}, allow_redirects=False)
    else:
        response = agent.act(url, **{k: v.format(**values) for k, v in (form or {}).items()})
    assert response.status_code == 403, f"{role} {name}: {response.status_code} {response.text[:300]}"
    if method == "GET":
        problem = response.json()
        assert response.headers["Content-Type"].startswith("application/problem+json")
        assert problem["status"] == 403 and "may not" in problem["detail"]
    else:
        assert 'id="refusal"' in response.text
    entries = [e for e in audit_entries(idp, f"staff:{admins[role]}", before) if e["result"] == "refused"]
    assert [e["event_type"] for e in entries] == [event_type], entries
    assert entries[0]["subject_role"] == ("staff" if role == "officer" else ADMIN_ROLES[GROUP_OF[role]][0])
    assert entries[0]["source_address"] == "127.0.0.1" and entries[0]["request_id"]


@pytest.mark.parametrize("role", ROLES)
def test_allowed_reads_answer(idp: IdpServer, admin_agents: dict[str, AdminAgent], targets: dict[str, str],
                              role: str) -> None:
    reads = [a for a in ACTIONS if a[1] == "GET" and allowed(role, a[4])]
    assert reads or role == "officer"
    for name, _, path, _, _, _ in reads:
        response = admin_agents[role].get(idp.url(path.format(**targets)))
        assert response.status_code == 200, f"{role} {name}: {response.status_code} {response.text[:300]}"


def test_a_second_administrator_role_is_refused_when_granting(idp: IdpServer, admins: dict[str, str],
                                                              admin_agents: dict[str, AdminAgent]) -> None:
    before = audit_tip(idp)
    response = admin_agents["security-admin"].act(f"/admin/people/{admins['system-admin']}/grant", group="auditors")
    assert response.status_code == 409 and "two administrator roles" in response.text
    refused = [e for e in audit_entries(idp, f"staff:{admins['security-admin']}", before) if e["result"] == "refused"]
    assert refused and refused[-1]["event_type"] == "admin.role.grant"
    assert refused[-1]["object"] == f"staff:{admins['system-admin']}"


def test_an_account_the_directory_gives_two_roles_is_refused_with_a_clear_message(idp: IdpServer, slapd) -> None:  # type: ignore[no-untyped-def]
    assert login_refusal(["auditors", "security-administrators"]) is not None
    assert login_refusal(["auditors", "approvers"]) is None
    uid = new_uid("two")
    slapd.create_user(uid, PASSWORD, groups=("auditors", "system-administrators"))
    # refused at login, with the clear message and a refused audit entry
    before = audit_tip(idp)
    refused_login = post_login(requests.Session(), idp, uid, PASSWORD)
    assert refused_login.status_code == 403 and "holds two administrator roles" in refused_login.text
    assert [(e["event_type"], e["result"]) for e in audit_entries(idp, "address:127.0.0.1", before)
            if e["object"] == f"staff:{uid}"] == [("login.password", "refused")]
    # a second role given in the directory after the login: the console refuses on every request
    uid = new_uid("late")
    slapd.create_user(uid, PASSWORD, groups=("auditors",))
    agent = AdminAgent(idp, uid, PASSWORD)
    agent.login("/account")
    conn = slapd.admin()
    conn.modify_s(f"cn=system-administrators,ou=groups,{slapd.suffix}",
                  [(ldap.MOD_ADD, "member", [f"uid={uid},ou=people,{slapd.suffix}".encode()])])
    conn.unbind_s()
    before = audit_tip(idp)
    page = agent.get(idp.url("/admin/"), headers={"Accept": "text/html"})
    assert page.status_code == 409
    assert "holds two administrator roles (auditor and system administrator)" in page.text
    refused = audit_entries(idp, f"staff:{uid}", before)
    assert [(e["event_type"], e["result"], e["subject_role"]) for e in refused] == [
        ("admin.console", "refused", "conflicting")]
    # and it may do nothing an auditor or a system administrator could
    assert agent.get(idp.url("/admin/audit"), headers={"Accept": "application/json"}).status_code == 409


def test_adding_an_administrator_needs_a_second_security_administrator(idp: IdpServer, slapd, admins: dict[str, str],  # type: ignore[no-untyped-def]
                                                                      admin_agents: dict[str, AdminAgent]) -> None:
    uid = new_uid("newadm")
    slapd.create_user(uid, PASSWORD, department="it-centre")
    first, second = admin_agents["security-admin"], admin_agents["security-admin-2"]
    asked = first.act(f"/admin/people/{uid}/grant", group="auditors")
    assert asked.status_code == 302 and "/admin/four-eyes/" in asked.headers["Location"]
    request_path = asked.headers["Location"].replace(idp.base, "")
    request_id = request_path.rsplit("/", 1)[-1]
    with slapd.directory() as directory:
        assert "auditors" not in directory.find(uid).groups  # nothing happens on one pair of eyes
    before = audit_tip(idp)
    own = first.act(f"/admin/four-eyes/{request_id}/approve")
    assert own.status_code == 409 and "second administrator" in own.text
    assert [e["result"] for e in audit_entries(idp, f"staff:{admins['security-admin']}", before)] == ["refused"]
    with slapd.directory() as directory:
        assert "auditors" not in directory.find(uid).groups
    # an auditor cannot be the second pair of eyes either
    assert admin_agents["auditor"].act(f"/admin/four-eyes/{request_id}/approve").status_code == 403
    done = second.act(f"/admin/four-eyes/{request_id}/approve")
    assert done.status_code == 302, done.text[:400]
    page = second.get(idp.url(request_path))
    assert 'id="four-eyes-status">executed<' in page.text
    with slapd.directory() as directory:
        assert "auditors" in directory.find(uid).groups
    entries = audit_entries(idp, f"staff:{admins['security-admin-2']}", before)
    assert [(e["event_type"], e["result"], e["object"]) for e in entries] == [
        ("admin.four-eyes.approve", "success", f"staff:{uid}")]
    # and once an auditor, a second administrator role is refused (even through four eyes)
    again = first.act(f"/admin/people/{uid}/grant", group="security-administrators")
    assert again.status_code == 409


def test_nobody_grants_themselves_a_role(idp: IdpServer, admins: dict[str, str],
                                         admin_agents: dict[str, AdminAgent]) -> None:
    response = admin_agents["security-admin"].act(f"/admin/people/{admins['security-admin']}/grant", group="approvers")
    assert response.status_code == 403 and "themselves" in response.text


def test_cli_refuses_a_forbidden_act_with_exit_3_and_audits_it(idp: IdpServer, admins: dict[str, str],
                                                                operator_tokens: dict[str, str]) -> None:
    before = audit_tip(idp)
    result = run_as(idp, operator_tokens, "admin", "leaver", admins["officer"], "--as", admins["auditor"], "--yes",
                    check=False)
    assert result.returncode == 3 and b"refused" in result.stderr and b"Traceback" not in result.stderr
    entries = audit_entries(idp, f"staff:{admins['auditor']}", before)
    assert [(e["event_type"], e["result"]) for e in entries] == [("admin.account.leaver", "refused")]
    assert '"channel":"cli:' in entries[0]["details"]
    for command in ("applications", "apply", "approve", "issue", "change-post", "leaver", "grant", "remove-role",
                    "four-eyes"):
        assert idp.cli("admin", command, "--help").returncode == 0
    unknown = idp.cli("admin", "issue", "1", "--as", "nobody-here", check=False)
    assert unknown.returncode == 4 and b"not logged in" in unknown.stderr and b"Traceback" not in unknown.stderr
