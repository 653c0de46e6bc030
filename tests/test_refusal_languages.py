"""Refusals of domain code in the staff's language, the audit trail in English (translatable/, idp/i18n.py).

Against the running service and its directory (tests.fixtures_admin): an officer applying for an
account of another department is refused in Chinese or in English as the page asks, while the
audit entry's reason stays English; the password policy's rules on /password/change come in the
page's language. Without a server: the English text (``str``) of a refusal and of a role's name is
what the command line prints, whatever a page shows.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import requests
from flask import Flask
from flask_babel import Babel

from idp import i18n
from idp.roles import GovernanceError, check_grant
from tests.fixtures_admin import *
from tests.fixtures_admin import PASSWORD, AdminAgent, IdpServer, audit_entries, audit_tip, new_uid
from tests.fixtures_web import csrf_of

ZH = {"Accept-Language": "zh-CN", "Accept": "text/html"}
EN = {"Accept-Language": "en", "Accept": "text/html"}
OTHER_DEPARTMENT = "audit-office"
ENGLISH_CONFLICT = ("Refused: the account is already a security administrator; no account may hold two administrator "
                    "roles. Remove that role first.")
ENGLISH_REFUSAL = f"Only an officer of the department '{OTHER_DEPARTMENT}' may apply for its accounts."


def _apply_elsewhere(idp: IdpServer, officer: AdminAgent, headers: dict[str, str]) -> requests.Response:
    """The finance officer applies (confirmed) for an account of another department."""
    data = {"csrf_token": officer.csrf(), "confirmed": "yes", "uid": new_uid("elsewhere"), "given_name": "Wei",
            "surname": "Zhang", "department": OTHER_DEPARTMENT, "post": "Clerk"}
    return officer.post(idp.url("/admin/applications/new"), data=data, headers=headers, allow_redirects=False)


def _refusal(page: requests.Response) -> str:
    found = re.search(r'id="refusal">([^<]*)<', page.text)
    assert found, page.text[-600:]
    return found.group(1)


def test_a_refusal_in_the_console_follows_the_page_and_the_trail_stays_english(
        idp: IdpServer, admins: dict[str, str], admin_agents: dict[str, AdminAgent]) -> None:
    officer = admin_agents["officer"]
    before = audit_tip(idp)
    chinese = _apply_elsewhere(idp, officer, ZH)
    assert chinese.status_code == 403
    assert _refusal(chinese) == "只有 &#39;audit-office&#39; 部门的经办人才能为该部门申请账号。"
    english = _apply_elsewhere(idp, officer, EN)
    assert english.status_code == 403 and _refusal(english) == ENGLISH_REFUSAL.replace("'", "&#39;")
    refused = [e for e in audit_entries(idp, f"staff:{admins['officer']}", before)
               if e["event_type"] == "admin.account.apply"]
    assert [e["result"] for e in refused] == ["refused", "refused"]
    assert [json.loads(e["details"])["reason"] for e in refused] == [ENGLISH_REFUSAL] * 2
    assert all(json.loads(e["details"])["kind"] == "forbidden" for e in refused)


def test_a_refusal_as_a_problem_document_in_the_language_asked_for(idp: IdpServer,
                                                                     admin_agents: dict[str, AdminAgent]) -> None:
    auditor = admin_agents["auditor"]
    chinese = auditor.get(idp.url("/admin/people"), headers={"Accept": "application/json", "Accept-Language": "zh-CN"})
    assert chinese.status_code == 403 and chinese.headers["Content-Type"] == "application/problem+json"
    assert chinese.json()["detail"] == "已拒绝：审计管理员无权执行此操作（people.read），此操作由安全管理员负责。"
    english = auditor.get(idp.url("/admin/people"), headers={"Accept": "application/json", "Accept-Language": "en"})
    assert english.json()["detail"] == ("Refused: the auditor may not do this (people.read); it is the security "
                                        "administrator's duty.")
    assert english.json()["type"] == chinese.json()["type"]


def test_a_weak_password_is_refused_in_chinese(idp: IdpServer, slapd) -> None:  # type: ignore[no-untyped-def]
    uid = new_uid("weakzh")
    slapd.create_user(uid, PASSWORD, given_name="Wei", surname=f"Zhang{uid[-4:]}")
    session = requests.Session()
    session.headers["Accept-Language"] = "zh-CN"
    form = session.get(idp.url("/password/change"), params={"username": uid}, timeout=30)
    weak = "password"
    answer = session.post(idp.url("/password/change"), timeout=30, data={
        "csrf_token": csrf_of(form.text), "username": uid, "current_password": PASSWORD, "new_password": weak,
        "new_password_again": weak})
    found = re.search(r'id="password-error">([^<]*)<', answer.text)
    assert answer.status_code == 400 and found, answer.text[-600:]
    assert found.group(1) == "密码至少 12 个字符。 此密码属于常见密码，请选择一个他人无法猜到的密码。"
    again = session.post(idp.url("/password/change"), timeout=30, data={
        "csrf_token": csrf_of(form.text), "username": uid, "current_password": PASSWORD, "new_password": weak,
        "new_password_again": "other"})
    assert "两次输入的新密码不一致。" in again.text


@pytest.mark.parametrize(("locale", "expected"), [
    ("zh_CN", "已拒绝：该账号已是安全管理员，任何账号不得同时担任两个管理员角色。请先移除该角色。"),
    ("en", ENGLISH_CONFLICT),
])
def test_shown_translates_the_template_and_the_role_within(locale: str, expected: str) -> None:
    app = Flask("idp", root_path=str(Path(i18n.__file__).resolve().parent))
    app.config.update(BABEL_TRANSLATION_DIRECTORIES="translations")
    Babel(app, locale_selector=lambda: locale)
    with pytest.raises(GovernanceError) as caught:
        check_grant(["security-administrators"], "auditors")
    assert str(caught.value) == ENGLISH_CONFLICT  # what the command line prints and the trail records
    with app.test_request_context("/"):
        assert i18n.shown(caught.value) == expected
