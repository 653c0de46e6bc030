"""The staff login with TOTP enrolment, the account page and the admin console in a real browser
(headless Chromium), in Simplified Chinese and in English: the browser's language (Accept-Language
from the context's locale) and the language switch, judged by the words each page shows.

Screenshots of both languages go to the test's temporary folder, and to docs/screenshots/ when
``TESSERA_SCREENSHOT_DIR`` names it (docs/i18n.md).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pyotp
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.fixtures_browser import *
from tests.fixtures_web import *
from tests.fixtures_web import PASSWORD, IdpServer, new_uid

#: what each page says, per language; and English that must not show on the Chinese pages
WORDS = {
    "zh-CN": {"nav": "工作人员登录", "enrol": "设置身份验证器应用", "codes": "您的恢复码", "account": "工作人员证书",
              "everywhere": "在所有设备上注销", "zone": "(北京时间)", "logout": "注销", "logged_out": "您已注销",
              "title": "我的账号 · Tessera"},
    "en": {"nav": "Staff login", "enrol": "Set up your authenticator app", "codes": "Your recovery codes",
           "account": "Staff certificates", "everywhere": "Log out everywhere",
           "zone": "(China Standard Time, UTC+8)", "logout": "Log out", "logged_out": "You are logged out",
           "title": "Your account · Tessera"},
}
ENGLISH_ONLY = ("Set up your authenticator", "Recovery codes", "Staff certificates", "Log out everywhere", "Sessions")


def _shoot(page: Page, name: str, tmp_path: Path) -> None:
    page.screenshot(path=str(tmp_path / name))
    folder = os.environ.get("TESSERA_SCREENSHOT_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / name))


def _main_text(page: Page) -> str:
    return page.locator("main").inner_text()


@pytest.mark.parametrize("language", ["zh-CN", "en"])
def test_staff_login_enrolment_and_account(browser: Browser, idp: IdpServer, staff_user: tuple[str, str],
                                           language: str, tmp_path: Path) -> None:
    """zh-CN: a browser set to Chinese. en: a browser set to Chinese whose user picks English with
    the language switch on the login page (remembered for every page after)."""
    words = WORDS[language]
    uid, password = staff_user
    context = browser.new_context(locale="zh-CN", viewport={"width": 900, "height": 760})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(idp.url("/login"))
        expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
        if language == "en":
            page.click("#lang-en")
            expect(page).to_have_url(idp.url("/login"))
        expect(page.locator("html")).to_have_attribute("lang", language)
        expect(page.locator("header.site")).to_contain_text(words["nav"])
        page.fill("input[name=username]", uid)
        page.fill("input[name=password]", password)
        page.click("main button[type=submit]")

        expect(page.locator("h1")).to_have_text(words["enrol"])
        expect(page.locator("html")).to_have_attribute("lang", language)
        _shoot(page, f"{language}-enrol.png", tmp_path)
        if language == "zh-CN":
            assert not [w for w in ENGLISH_ONLY if w in _main_text(page)]
        secret = page.locator("#totp-secret").inner_text().replace(" ", "")
        page.fill("input[name=code]", pyotp.TOTP(secret).now())
        page.click("main button[type=submit]")

        expect(page.locator("h1")).to_have_text(words["codes"])
        expect(page.locator("#recovery-codes li")).to_have_count(10)
        page.click("#continue")

        expect(page).to_have_title(words["title"])
        expect(page.locator("main")).to_contain_text(words["account"])
        expect(page.locator("#logout-everywhere")).to_have_text(words["everywhere"])
        this_session = page.locator("#sessions tr").first.locator("td").first.inner_text()
        assert re.match(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2} ", this_session) and words["zone"] in this_session, this_session
        if language == "zh-CN":
            assert not [w for w in ENGLISH_ONLY if w in _main_text(page)], _main_text(page)
        _shoot(page, f"{language}-account.png", tmp_path)

        logout = page.locator("header.site button[type=submit]")
        expect(logout).to_have_text(words["logout"])
        logout.click()
        expect(page.locator("h1")).to_have_text(words["logged_out"])
        expect(page.locator("html")).to_have_attribute("lang", language)
        assert not errors
    finally:
        context.close()


#: the staff login and a security administrator's console home, per language; English the Chinese pages must not show
ADMIN_WORDS = {
    "zh-CN": {"login": "工作人员登录", "user": "用户名", "password": "密码", "continue": "下一步",
              "citizen": "使用身份证登录", "home": "安全管理", "role": "安全管理员", "nav": "双人复核",
              "waiting": "已批准、等待开通的申请", "title": "首页 · Tessera 管理控制台"},
    "en": {"login": "Staff login", "user": "User name", "password": "Password", "continue": "Continue",
           "citizen": "Log in with ID card", "home": "Security administration", "role": "security-admin",
           "nav": "Four eyes", "waiting": "Approved applications waiting to be issued",
           "title": "Home · Tessera administration"},
}
ADMIN_ENGLISH_ONLY = ("Staff login", "User name", "Continue", "Security administration", "Four eyes", "Nothing waiting",
                      "Settings changed at run time", "Asked by", "Certificates", "Log out")


@pytest.mark.parametrize("language", ["zh-CN", "en"])
def test_staff_login_and_admin_console(browser: Browser, idp: IdpServer, slapd, language: str,  # type: ignore[no-untyped-def]
                                       tmp_path: Path) -> None:
    """A security administrator whose browser is set to ``language`` opens the console: the login
    form, the authenticator set-up and the console's home are in that language."""
    words = ADMIN_WORDS[language]
    uid = new_uid("brwsec")
    slapd.create_user(uid, PASSWORD, department="it-centre", groups=("security-administrators",))
    context = browser.new_context(locale=language, viewport={"width": 1000, "height": 760})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(idp.url("/admin/"))
        expect(page.locator("html")).to_have_attribute("lang", language)
        expect(page.locator("h1")).to_have_text(words["login"])
        expect(page.locator("main")).to_contain_text(words["citizen"])
        expect(page.locator("main button[type=submit]")).to_have_text(words["continue"])
        if language == "zh-CN":
            assert not [w for w in ADMIN_ENGLISH_ONLY if w in _main_text(page)], _main_text(page)
        _shoot(page, f"{language}-login.png", tmp_path)
        page.get_by_label(words["user"]).fill(uid)
        page.get_by_label(words["password"], exact=True).fill(PASSWORD)
        page.click("main button[type=submit]")

        secret = page.locator("#totp-secret").inner_text().replace(" ", "")
        page.fill("input[name=code]", pyotp.TOTP(secret).now())
        page.click("main button[type=submit]")
        page.click("#continue")

        expect(page).to_have_url(idp.url("/admin/"))
        expect(page.locator("html")).to_have_attribute("lang", language)
        expect(page).to_have_title(words["title"])
        expect(page.locator("#home-title")).to_have_text(words["home"])
        expect(page.locator("#role")).to_have_text(words["role"])
        expect(page.locator("nav.admin-nav")).to_contain_text(words["nav"])
        expect(page.locator("main")).to_contain_text(words["waiting"])
        if language == "zh-CN":
            shown = page.locator("body").inner_text()
            assert not [w for w in ADMIN_ENGLISH_ONLY if w in shown], shown
        _shoot(page, f"{language}-admin-home.png", tmp_path)
        assert not errors
    finally:
        context.close()
