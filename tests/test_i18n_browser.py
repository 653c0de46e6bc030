"""The staff login with TOTP enrolment and the account page in a real browser (headless Chromium),
in Simplified Chinese and in English: the browser's language (Accept-Language from the context's
locale) and the language switch, judged by the words each page shows.

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
from tests.fixtures_web import IdpServer

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
