"""A real browser (headless Chromium driven by Playwright): the citizen opens "Log in with ID card",
the page shows the card the local agent (a real `tessera card agent` subprocess on a SoftHSM2 card)
talks to, the citizen types the PIN and clicks the button, the agent signs the challenge through
PKCS#11, and the citizen lands logged in on the portal with their own records; a wrong PIN shows
the card's answer with the tries left."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.fixtures_browser import *  # noqa: F401,F403
from tests.fixtures_citizen import *  # noqa: F401,F403
from tests.fixtures_citizen import CitizenIdp
from tests.fixtures_web import running_demo_app
from tests.servers import free_port

def test_log_in_with_id_card_lands_on_the_portal(page: Page, citizen_idp: CitizenIdp) -> None:
    agent = citizen_idp.agents["alice"]  # the service's TESSERA_CARD_AGENT_URL points at this agent
    page.goto(citizen_idp.url("/citizen/"))
    expect(page).to_have_url(re.compile(re.escape(citizen_idp.url("/citizen/login"))))
    # the page shows which card the agent talks to
    expect(page.locator("#card-number")).to_have_text(agent.card.number)
    holder = str(citizen_idp.sql("SELECT holder FROM card WHERE number = ?", agent.card.number)[0][0])
    # (#card-holder, from the agent, is tested by test_citizen_login.test_agent_names_the_holder_as_written)
    page.fill("#pin", agent.card.pin)
    page.click("#card-login-button")
    expect(page.locator("#welcome")).to_be_visible()
    assert page.url == citizen_idp.url("/citizen/")
    expect(page.locator("#citizen-card")).to_have_text(agent.card.number)
    expect(page.locator('#record-identity [data-field="name"]')).to_have_text(holder)  # 张伟: family name first
    expect(page.locator('#record-tax [data-field="taxpayer_number"]')).to_have_text(re.compile(r"^\d{4}\*{10}[\dX]{4}$"))
    expect(page.locator('#record-insurance [data-field="insurance_types"]')).to_be_visible()
    expect(page.locator(f'tr[data-card="{agent.card.number}"] [data-status]')).to_have_attribute("data-status", "active")
    assert not page.errors  # type: ignore[attr-defined]  (no CSP violations or script errors)


def test_wrong_pin_in_the_browser_shows_the_tries_left(page: Page, citizen_idp: CitizenIdp) -> None:
    agent = citizen_idp.agents["alice"]
    page.goto(citizen_idp.url("/citizen/login"))
    expect(page.locator("#card-number")).to_have_text(agent.card.number)
    page.fill("#pin", "000000" if agent.card.pin != "000000" else "111111")
    page.click("#card-login-button")
    expect(page.locator("#card-error")).to_contain_text("2 tries left")
    # then the right PIN works (and resets the card's counter)
    page.fill("#pin", agent.card.pin)
    page.click("#card-login-button")
    expect(page.locator("#welcome")).to_be_visible()


@pytest.fixture(scope="module")
def citizen_demo(citizen_idp: CitizenIdp, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The demo departmental application registered with this IdP (untrusted: consent is asked)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    client = json.loads(citizen_idp.cli("client", "add", "Travel claims (demo)", "--redirect-uri", base + "/callback",
                                        "--post-logout-redirect-uri", base + "/", "--json").stdout)
    with running_demo_app(citizen_idp.base, client, tmp_path_factory.mktemp("citizen-demo"), port):
        yield base


def test_card_login_through_openid_connect_lands_on_the_demo_application(page: Page, citizen_idp: CitizenIdp,
                                                                        citizen_demo: str) -> None:
    agent = citizen_idp.agents["alice"]
    page.goto(citizen_demo + "/")
    page.click("#login-card")  # the application asks for acr urn:tessera:acr:card
    expect(page).to_have_url(re.compile(re.escape(citizen_idp.url("/citizen/login"))))
    expect(page.locator("#card-number")).to_have_text(agent.card.number)
    page.fill("#pin", agent.card.pin)
    page.click("#card-login-button")
    page.click("#allow")  # consent for this application
    expect(page.locator("#welcome")).to_be_visible()
    assert page.url.startswith(citizen_demo)
    expect(page.locator('[data-claim="amr"]')).to_have_text("sc, pin")
    expect(page.locator('[data-claim="acr"]')).to_have_text("urn:tessera:acr:card")
    # the application knows the citizen by their pseudonym, not by the identity number
    expect(page.locator('[data-claim="sub"]')).to_have_text(re.compile(r"^citizen:PSN-[A-Z2-7]{24}$"))


CITIZEN_WORDS = {
    "zh-CN": {"login": "市民登录", "records": "我的档案", "cards": "我的卡片", "report": "挂失",
              "id_number": "公民身份号码", "confirm": "确认挂失此卡", "medical": "医疗保险"},
    "en": {"login": "Citizen login", "records": "My records", "cards": "My cards", "report": "Report lost",
           "id_number": "Citizen identity number", "confirm": "Yes, report this card lost",
           "medical": "Medical insurance"},
}


@pytest.mark.parametrize("language", ["zh-CN", "en"])
def test_card_login_and_portal_in_each_language(browser: Browser, citizen_idp: CitizenIdp, language: str,
                                                tmp_path: Path) -> None:
    """Issue 13: a browser whose language is Chinese (or English) gets the card login, the portal and
    the report-lost confirmation in that language, with no words of the other; screenshots of each."""
    words, other = CITIZEN_WORDS[language], CITIZEN_WORDS["en" if language == "zh-CN" else "zh-CN"]
    agent = citizen_idp.agents["alice"]
    context = browser.new_context(locale=language)
    try:
        page = context.new_page()
        page.goto(citizen_idp.url("/citizen/login"))
        expect(page.locator("html")).to_have_attribute("lang", language)
        expect(page.locator("h1")).to_have_text(words["login"])
        expect(page.locator("#card-number")).to_have_text(agent.card.number)
        _shoot(page, f"{language}-card-login.png", tmp_path)
        page.fill("#pin", agent.card.pin)
        page.click("#card-login-button")
        expect(page.locator("#welcome")).to_be_visible()
        main = page.locator("main").inner_text()
        for key in ("records", "cards", "report", "id_number", "medical"):  # coded values in words too
            assert words[key] in main, (key, main)
            assert other[key] not in main, (key, main)
        assert "medical" not in page.locator("#record-insurance").inner_text()
        _shoot(page, f"{language}-portal.png", tmp_path)
        page.goto(citizen_idp.url(f"/citizen/cards/{agent.card.number}/lost"))  # the confirmation only
        expect(page.locator("#confirm-lost")).to_have_text(words["confirm"])
        _shoot(page, f"{language}-report-lost.png", tmp_path)
        assert citizen_idp.sql("SELECT status FROM card WHERE number = ?", agent.card.number) == [("active",)]
    finally:
        context.close()


def _shoot(page: Page, name: str, tmp_path: Path) -> None:
    """A screenshot in the test's folder, and in TESSERA_SCREENSHOT_DIR when set (docs/i18n.md)."""
    page.screenshot(path=str(tmp_path / name), full_page=True)
    folder = os.environ.get("TESSERA_SCREENSHOT_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / name), full_page=True)
