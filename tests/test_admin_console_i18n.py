"""The admin console in both languages, and removing an administrator role by four eyes.

Against the running service and its directory (tests.fixtures_admin): the console's pages, the
words of its codes (states, roles) and its refusals follow the page's language; a problem document
is in English for a client that names no language; removing an administrator role only asks for a
second security administrator's approval, as granting one does.
"""

from __future__ import annotations

import re

import requests

from tests.fixtures_admin import *
from tests.fixtures_admin import PASSWORD, AdminAgent, IdpServer, audit_entries, audit_tip, new_uid

ZH = {"Accept-Language": "zh-CN", "Accept": "text/html"}
EN = {"Accept-Language": "en", "Accept": "text/html"}


def _lang_of(page: requests.Response) -> str:
    match = re.search(r'<html lang="([^"]+)"', page.text)
    assert match, page.text[:200]
    return match.group(1)


def _main(page: requests.Response) -> str:
    """The text of a page's <main>, tags taken out."""
    return re.sub(r"<[^>]+>", " ", page.text.split('<main id="main"', 1)[1].split("</main>", 1)[0])


def test_removing_an_administrator_role_needs_a_second_security_administrator(
        idp: IdpServer, slapd, admins: dict[str, str], admin_agents: dict[str, AdminAgent]) -> None:  # type: ignore[no-untyped-def]
    uid = new_uid("oldaud")
    slapd.create_user(uid, PASSWORD, department="audit-office", groups=("auditors",))
    first, second = admin_agents["security-admin"], admin_agents["security-admin-2"]
    before = audit_tip(idp)
    asked = first.act(f"/admin/people/{uid}/remove-role", group="auditors")
    assert asked.status_code == 302 and "/admin/four-eyes/" in asked.headers["Location"], asked.text[:400]
    request_path = asked.headers["Location"].replace(idp.base, "")
    with slapd.directory() as directory:
        assert "auditors" in directory.find(uid).groups  # nothing happens on one pair of eyes
    page = first.get(idp.url(request_path), headers=EN)
    assert 'id="flash">A second security administrator must approve this' in page.text
    assert "remove-administrator" in page.text and 'id="four-eyes-status">pending<' in page.text
    assert "Waiting for a second security administrator." in page.text
    again = first.get(idp.url(request_path), headers=EN)
    assert 'id="flash"' not in again.text  # told once
    entries = audit_entries(idp, f"staff:{admins['security-admin']}", before)
    done_now = [(e["event_type"], e["result"]) for e in entries]
    assert ("admin.four-eyes.request", "success") in done_now and ("admin.role.revoke", "success") not in done_now
    done = second.act(request_path + "/approve")
    assert done.status_code == 302, done.text[:400]
    with slapd.directory() as directory:
        assert "auditors" not in directory.find(uid).groups


def test_removing_an_ordinary_role_goes_back_to_the_person(idp: IdpServer, slapd,  # type: ignore[no-untyped-def]
                                                           admin_agents: dict[str, AdminAgent]) -> None:
    uid = new_uid("oldapp")
    slapd.create_user(uid, PASSWORD, department="finance", groups=("approvers",))
    removed = admin_agents["security-admin"].act(f"/admin/people/{uid}/remove-role", group="approvers")
    assert removed.status_code == 302 and removed.headers["Location"].endswith(f"/admin/people/{uid}")
    with slapd.directory() as directory:
        assert "approvers" not in directory.find(uid).groups


def test_console_pages_in_chinese(idp: IdpServer, admins: dict[str, str],
                                  admin_agents: dict[str, AdminAgent]) -> None:
    agent = admin_agents["security-admin"]
    home = agent.get(idp.url("/admin/"), headers=ZH)
    assert home.status_code == 200 and _lang_of(home) == "zh-CN"
    assert home.headers["Content-Language"] == "zh-CN"
    assert 'id="home-title">安全管理<' in home.text and 'id="role">安全管理员<' in home.text
    for words in ("Tessera 管理控制台", "人员", "证书", "双人复核", "已批准、等待开通的申请"):
        assert words in home.text, words
    person = agent.get(idp.url(f"/admin/people/{admins['officer']}"), headers=ZH)
    assert person.status_code == 200 and "要授予的角色" in person.text and "办理离职" in person.text
    assert '<option value="auditors">审计管理员</option>' in person.text  # the code stays the value
    for path in ("/admin/", f"/admin/people/{admins['officer']}", "/admin/people", "/admin/certificates",
                 "/admin/four-eyes", "/admin/applications"):
        text = _main(agent.get(idp.url(path), headers=ZH))
        for english in ("Search", "Status", "Previous page", "None.", "Grant", "Four-eyes requests", "Applied"):
            assert english not in text, (path, english)
    # the same pages in English are as they were
    english = agent.get(idp.url("/admin/"), headers=EN)
    assert _lang_of(english) == "en" and 'id="home-title">Security administration<' in english.text
    assert 'id="role">security-admin<' in english.text


def test_refusals_and_confirmations_in_chinese(idp: IdpServer, admins: dict[str, str],
                                               admin_agents: dict[str, AdminAgent]) -> None:
    auditor = admin_agents["auditor"]
    refused = auditor.get(idp.url("/admin/applications/new"), headers=ZH)
    assert refused.status_code == 403 and "管理员不能申请账号" in refused.text
    unknown = admin_agents["security-admin"].get(idp.url("/admin/four-eyes?status=nonsense"), headers=ZH)
    assert unknown.status_code == 400 and "未知状态" in unknown.text and "待复核" in unknown.text
    confirm = admin_agents["security-admin"].act(f"/admin/people/{admins['officer']}/leaver", confirmed=False)
    assert confirm.status_code == 200 and "Process " in confirm.text  # the English agent: English
    data = {"csrf_token": admin_agents["security-admin"].csrf()}
    confirm = admin_agents["security-admin"].post(idp.url(f"/admin/people/{admins['officer']}/leaver"), data=data,
                                                  headers=ZH, allow_redirects=False)
    assert confirm.status_code == 200 and "请确认：人员离职" in confirm.text and "办理离职" in confirm.text


def test_problem_titles_follow_the_language_asked_for(idp: IdpServer) -> None:
    """RFC 9457 3.1.3: a title changes only by localization; a client that names no language gets
    English (not the deployment's default), the type code never changes."""
    plain = requests.get(idp.url("/no-such-page"), headers={"Accept": "application/json"}, timeout=30)
    assert plain.status_code == 404 and plain.json()["title"] == "Not Found"
    chinese = requests.get(idp.url("/no-such-page"), headers={"Accept": "application/json", "Accept-Language": "zh-CN"},
                           timeout=30)
    assert chinese.json()["title"] == "未找到" and chinese.json()["type"] == plain.json()["type"]
    page = requests.get(idp.url("/no-such-page"), headers={"Accept": "text/html", "Accept-Language": "zh-CN"},
                        timeout=30)
    assert page.status_code == 404 and _lang_of(page) == "zh-CN" and "没有这个页面" in page.text


def test_staff_login_page_in_both_languages(idp: IdpServer) -> None:
    chinese = requests.get(idp.url("/login"), headers={"Accept-Language": "zh-CN"}, timeout=30)
    assert _lang_of(chinese) == "zh-CN"
    for words in ("工作人员登录", "用户名", "密码", "下一步", "使用身份证登录"):
        assert words in chinese.text, words
    english = requests.get(idp.url("/login"), headers={"Accept-Language": "en"}, timeout=30)
    assert "Log in with your directory user name and password." in english.text and "用户名" not in english.text
    wrong = requests.Session()
    wrong.headers["Accept-Language"] = "zh-CN"
    form = wrong.get(idp.url("/login"), timeout=30)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
    answer = wrong.post(idp.url("/login"), data={"username": new_uid("nobody"), "password": "x", "csrf_token": token},
                        timeout=30)
    assert answer.status_code == 401 and "用户名或密码不正确" in answer.text
