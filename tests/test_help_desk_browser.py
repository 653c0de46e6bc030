"""The help desk in a real browser (headless Chromium, Playwright; issue 17): the security
administrator finds a locked-out staff member's page telling the lock truthfully, unlocks them,
resets their authenticator and their password (each confirmed from the keyboard), and the person
recovers: the one-time password, the password change it forces, the enrolment of a new
authenticator, their account page; then the administrator ends all their sessions and the
person's browser is logged out. On an administrator's account the same act waits for a second
security administrator, who approves it from the four-eyes page and is shown the result. No page
may log a script error or a CSP violation."""

from __future__ import annotations

import re

import pyotp
import requests
from playwright.sync_api import Page, expect

from tests.fixtures_admin import *  # noqa: F401,F403
from tests.fixtures_admin import PASSWORD, IdpServer, audit_entries, audit_tip, new_uid
from tests.fixtures_browser import browser  # noqa: F401  (the fixture)
from tests.fixtures_web import StaffAgent, post_login
from tests.test_admin_browser import People, confirm_with_keyboard, first_login, people  # noqa: F401

NEW_PASSWORD = "Meadow-copper-6-tall-kite"


def _act(page: Page, button: str, title: str) -> None:
    """Press a help-desk button on the person's page, confirm it from the keyboard, see its result."""
    page.click(f"#{button}")
    confirm_with_keyboard(page)
    expect(page.locator("#help-desk-title")).to_have_text(title)


def test_security_administrator_unlocks_resets_and_the_person_recovers(idp: IdpServer, slapd, people: People) -> None:  # type: ignore[no-untyped-def]
    security, person = new_uid("bhs"), new_uid("bhp")
    slapd.create_user(security, PASSWORD, department="it-centre", title="Security Officer",
                      groups=("security-administrators",))
    slapd.create_user(person, PASSWORD, department="tax", title="Clerk", given_name="Lina", surname="Lockwood")
    StaffAgent(idp, person, PASSWORD).login()  # an enrolled authenticator, then a lockout
    for _ in range(5):
        post_login(requests.Session(), idp, person, "Wrong-password-123")
    before = audit_tip(idp)

    sp = people.page()
    first_login(sp, idp, security, PASSWORD)
    sp.goto(idp.url("/admin/people?q=" + person))
    sp.get_by_role("link", name=person).first.click()
    expect(sp.locator("#enabled")).to_contain_text("locked out")
    expect(sp.locator("#second-factor-state")).to_have_attribute("data-state", "enrolled")

    _act(sp, "unlock", "Account unlocked")
    expect(sp.locator("#done")).to_contain_text("Directory lockout lifted: yes")
    sp.click("#back-to-person")
    expect(sp.locator("#enabled")).to_have_attribute("data-state", "enabled")

    _act(sp, "reset-second-factor", "Authenticator reset")
    sp.click("#back-to-person")
    expect(sp.locator("#second-factor-state")).to_have_attribute("data-state", "not-enrolled")

    _act(sp, "reset-password", "Password reset")
    one_time = sp.locator("#one-time-password").inner_text()
    assert len(one_time) >= 20
    sp.click("#back-to-person")
    expect(sp.locator("#password-state")).to_have_attribute("data-state", "must-change")

    # the person: the one-time password, the change it forces, a new authenticator
    pp = people.page()
    pp.goto(idp.url("/login"))
    pp.get_by_label("User name").fill(person)
    pp.get_by_label("Password").fill(one_time)
    pp.get_by_label("Password").press("Enter")
    expect(pp).to_have_url(re.compile(r"/password/change\?username=" + person))
    expect(pp.get_by_label("User name")).to_have_value(person)
    pp.get_by_label("Current (initial) password").fill(one_time)
    pp.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    pp.get_by_label("New password again").fill(NEW_PASSWORD)
    pp.get_by_label("New password again").press("Enter")
    expect(pp.locator("#password-changed")).to_be_visible()
    pp.click("#login-link")
    pp.get_by_label("User name").fill(person)
    pp.get_by_label("Password").fill(NEW_PASSWORD)
    pp.get_by_label("Password").press("Enter")
    expect(pp.locator("#totp-secret")).to_be_visible()  # the authenticator was reset: enrol again
    secret = pp.locator("#totp-secret").inner_text().replace(" ", "")
    pp.locator("input[name=code]").fill(pyotp.TOTP(secret).now())
    pp.locator("input[name=code]").press("Enter")
    expect(pp.locator("#recovery-codes li")).to_have_count(10)
    pp.click("#continue")
    expect(pp).to_have_url(re.compile(re.escape(idp.base) + "/account"))
    expect(pp.locator("h1")).to_have_text("Lina Lockwood")

    sp.reload()
    expect(sp.locator("#password-state")).to_have_attribute("data-state", "valid")
    expect(sp.locator("#second-factor-state")).to_have_attribute("data-state", "enrolled")

    # ending every session of the person logs their browser out
    _act(sp, "end-sessions", "Sessions ended")
    expect(sp.locator("#done")).to_contain_text(re.compile(r"Sessions ended: [1-9]"))
    pp.goto(idp.url("/account"))
    expect(pp).to_have_url(re.compile(r"/login"))
    trail = [(e["event_type"], e["result"], e["object"]) for e in audit_entries(idp, f"staff:{security}", before)]
    for act in ("unlock", "reset-second-factor", "reset-password", "end-sessions"):
        assert (f"admin.staff.{act}", "success", f"staff:{person}") in trail, act
    assert ("password.change", "success") in [(e["event_type"], e["result"])
                                              for e in audit_entries(idp, f"staff:{person}", before)]
    assert not people.errors, people.errors


def test_an_administrators_authenticator_reset_is_approved_by_a_second_one(idp: IdpServer, slapd, people: People) -> None:  # type: ignore[no-untyped-def]
    first, second, auditor = new_uid("bh1"), new_uid("bh2"), new_uid("bha")
    for uid in (first, second):
        slapd.create_user(uid, PASSWORD, department="it-centre", groups=("security-administrators",))
    slapd.create_user(auditor, PASSWORD, department="it-centre", groups=("auditors",))
    StaffAgent(idp, auditor, PASSWORD).login()

    one = people.page()
    first_login(one, idp, first, PASSWORD)
    one.goto(idp.url(f"/admin/people/{auditor}"))
    expect(one.locator("#help-desk-four-eyes")).to_be_visible()
    one.click("#reset-second-factor")
    expect(one.locator("#confirm-detail")).to_contain_text("four eyes")
    confirm_with_keyboard(one)
    expect(one.locator("#four-eyes-status")).to_have_text("pending")
    expect(one.locator("#approve")).to_have_count(0)  # not for the one who asked
    request_url = one.url

    two = people.page()
    first_login(two, idp, second, PASSWORD)
    two.goto(request_url)
    two.click("#approve")
    confirm_with_keyboard(two)
    expect(two.locator("#help-desk-title")).to_have_text("Authenticator reset")
    two.click("#back-to-person")
    expect(two.locator("#second-factor-state")).to_have_attribute("data-state", "not-enrolled")
    one.reload()
    expect(one.locator("#four-eyes-status")).to_have_text("executed")
    assert not people.errors, people.errors
