"""A real browser (headless Chromium driven by Playwright): first login with TOTP enrolment read
from the page, consent, landing on the demo departmental application with the right claims,
logout through the provider's end_session_endpoint."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pyotp
from playwright.sync_api import Page, expect

from tests.fixtures_browser import *  # noqa: F401,F403
from tests.fixtures_web import *  # noqa: F401,F403
from tests.fixtures_web import DemoApp, IdpServer

def test_first_login_consent_demo_app_and_logout(page: Page, idp: IdpServer, demo_app: DemoApp,
                                                 staff_user: tuple[str, str], tmp_path: Path) -> None:
    uid, password = staff_user
    page.goto(demo_app.base + "/")
    page.click("#login")
    # Tessera's login form (on /login, or shown in place by the authorization endpoint)
    expect(page).to_have_url(re.compile("^" + re.escape(idp.base + "/")))
    expect(page.locator("input[name=username]")).to_be_visible()
    page.fill("input[name=username]", uid)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    # first login: enrol TOTP from what the page shows
    expect(page.locator("#totp-secret")).to_be_visible()
    assert page.locator(".qr svg").count() == 1
    secret = page.locator("#totp-secret").inner_text().replace(" ", "")
    # the QR code as the person's phone sees it, read by zbar: the whole code, carrying that secret
    shot = tmp_path / "qr.png"
    page.locator(".qr").screenshot(path=str(shot))
    read = subprocess.run(["zbarimg", "--quiet", "--raw", str(shot)], capture_output=True, text=True, timeout=30)
    assert read.returncode == 0, "zbarimg cannot read the QR code of the page"
    uri = urlsplit(read.stdout.strip())
    assert uri.scheme == "otpauth" and uri.netloc == "totp" and parse_qs(uri.query)["secret"] == [secret]
    page.fill("input[name=code]", pyotp.TOTP(secret).now())
    page.click("button[type=submit]")
    expect(page.locator("#recovery-codes li")).to_have_count(10)
    page.click("#continue")
    # consent for the (untrusted) demo application
    expect(page.locator("#allow")).to_be_visible()
    assert "Travel claims" in page.content()
    page.click("#allow")
    # back on the demo application with verified claims
    expect(page.locator("#welcome")).to_be_visible()
    assert page.url.startswith(demo_app.base)
    claim = lambda name: page.locator(f'[data-claim="{name}"]').inner_text()  # noqa: E731
    assert claim("sub") == uid
    assert claim("email") == f"{uid}@finance.tessera.example"
    assert claim("department") == "finance"
    assert "auditors" in claim("roles")
    assert claim("amr") == "pwd, otp"
    assert claim("iss") == idp.base and claim("aud") == demo_app.client["client_id"]
    # logout: the demo app sends the browser to Tessera's end_session_endpoint and back
    page.click("#logout")
    expect(page.locator("#logged-out")).to_be_visible()
    assert page.url.startswith(demo_app.base + "/?state=")
    page.goto(idp.base + "/account")
    expect(page).to_have_url(re.compile(re.escape(idp.base) + "/login"))
    # logging in to the demo again asks for the password again (the Tessera session is gone)
    page.goto(demo_app.base + "/login")
    expect(page.locator("input[name=password]")).to_be_visible()
    assert not page.errors  # type: ignore[attr-defined]  (no CSP violations or script errors)
