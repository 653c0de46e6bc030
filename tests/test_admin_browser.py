"""A real browser (headless Chromium driven by Playwright) through the whole staff account flow:
a department officer applies, the department's approver approves, a security administrator
issues, and the new staff member replaces the one-time password and logs in for the first time
with TOTP enrolment. Fields are found by their labels, confirmations are answered from the
keyboard, and no page may log a script error or a CSP violation. The auditor's reports render
their charts as inline SVG."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pyotp
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.fixtures_admin import *  # noqa: F401,F403
from tests.fixtures_admin import PASSWORD, IdpServer, audit_entries, audit_tip, new_uid
from tests.fixtures_browser import browser  # noqa: F401  (the fixture)

NEW_PASSWORD = "Harbour-violet-8-slow-comet"


class People:
    """One browser context (its own cookies) per person; every page's console errors are kept."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.contexts: list = []  # type: ignore[type-arg]
        self.errors: list[str] = []

    def page(self) -> Page:
        context = self.browser.new_context()
        self.contexts.append(context)
        page = context.new_page()
        page.on("console", self._console)
        return page

    def _console(self, msg) -> None:  # type: ignore[no-untyped-def]
        # the refused password (401) and the refused weak new password (400) are meant to happen
        if msg.type == "error" and not re.match(r"Failed to load resource: the server responded with a status of 40[013]",
                                                msg.text):
            self.errors.append(msg.text)

    def close(self) -> None:
        for context in self.contexts:
            context.close()


@pytest.fixture()
def people(browser: Browser) -> Iterator[People]:
    p = People(browser)
    try:
        yield p
    finally:
        p.close()


def first_login(page: Page, idp: IdpServer, uid: str, password: str, next_path: str = "/admin/") -> None:
    """Password, TOTP enrolment from what the page shows, recovery codes, continue."""
    page.goto(idp.url(f"/login?next={next_path}"))
    page.get_by_label("User name").fill(uid)
    page.get_by_label("Password").fill(password)
    page.get_by_label("Password").press("Enter")
    expect(page.locator("#totp-secret")).to_be_visible()
    secret = page.locator("#totp-secret").inner_text().replace(" ", "")
    code = page.locator("input[name=code]")
    code.fill(pyotp.TOTP(secret).now())
    code.press("Enter")
    expect(page.locator("#recovery-codes li")).to_have_count(10)
    page.click("#continue")


def confirm_with_keyboard(page: Page) -> None:
    """The confirmation page focuses its Confirm button: Enter answers it."""
    expect(page.locator("#confirm")).to_be_visible()
    expect(page.locator("#confirm")).to_be_focused()  # autofocus (applied after load: wait for it)
    page.keyboard.press("Enter")


def test_application_approval_issue_first_login_in_a_browser(idp: IdpServer, slapd, people: People) -> None:  # type: ignore[no-untyped-def]
    officer, approver, security = new_uid("bof"), new_uid("bap"), new_uid("bsa")
    slapd.create_user(officer, PASSWORD, department="tax", title="HR Officer")
    slapd.create_user(approver, PASSWORD, department="tax", title="Head of Department", groups=("approvers",))
    slapd.create_user(security, PASSWORD, department="it-centre", title="Security Officer",
                      groups=("security-administrators",))
    newcomer = new_uid("bnew")
    before = audit_tip(idp)

    # 1. the department officer applies
    op = people.page()
    first_login(op, idp, officer, PASSWORD)
    expect(op.locator("#home-title")).to_contain_text("Accounts of tax")
    op.click("#apply-link")
    op.get_by_label("User name").fill(newcomer)
    op.get_by_label("Given name").fill("Helena")
    op.get_by_label("Surname").fill("Hein")
    op.get_by_label("Post", exact=True).fill("Epidemiologist")
    op.get_by_label("Post", exact=True).press("Enter")
    confirm_with_keyboard(op)
    expect(op.locator("#app-status")).to_have_text("applied")
    application_url = op.url

    # 2. the department's approver approves
    ap = people.page()
    first_login(ap, idp, approver, PASSWORD)
    ap.goto(application_url)
    ap.click("#approve")
    confirm_with_keyboard(ap)
    expect(ap.locator("#app-status")).to_have_text("approved")

    # 3. the security administrator issues it from the home page's list
    sp = people.page()
    first_login(sp, idp, security, PASSWORD)
    expect(sp.locator("#role")).to_have_text("security-admin")
    sp.locator("#to-issue").get_by_role("link", name=re.compile(r"^\d+$")).first.click()
    expect(sp.locator("#app-uid")).to_have_text(newcomer)
    sp.click("#issue")
    confirm_with_keyboard(sp)
    initial = sp.locator("#initial-password").inner_text()
    change_url = sp.locator("#change-url").get_attribute("href")
    assert len(initial) >= 20 and change_url

    # 4. the newcomer replaces the one-time password, then logs in for the first time
    np = people.page()
    np.goto(idp.url("/login"))
    np.get_by_label("User name").fill(newcomer)
    np.get_by_label("Password").fill(initial)
    np.get_by_label("Password").press("Enter")
    np.wait_for_load_state()
    if "/password/change" not in np.url:  # the login page says so (or the login flow sends us there)
        expect(np.locator("#login-error")).to_contain_text("choose a new password")
        np.goto(change_url)
    expect(np.get_by_label("User name")).to_have_value(newcomer)
    np.get_by_label("Current (initial) password").fill(initial)
    np.get_by_label("New password", exact=True).fill("password1234")
    np.get_by_label("New password again").fill("password1234")
    np.click("#change-password")
    expect(np.locator("#password-error")).to_contain_text("common passwords")
    np.get_by_label("Current (initial) password").fill(initial)
    np.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    np.get_by_label("New password again").fill(NEW_PASSWORD)
    np.get_by_label("New password again").press("Enter")
    expect(np.locator("#password-changed")).to_be_visible()
    np.click("#login-link")
    np.get_by_label("User name").fill(newcomer)
    np.get_by_label("Password").fill(NEW_PASSWORD)
    np.get_by_label("Password").press("Enter")
    expect(np.locator("#totp-secret")).to_be_visible()  # TOTP enrolment on the first login
    secret = np.locator("#totp-secret").inner_text().replace(" ", "")
    np.locator("input[name=code]").fill(pyotp.TOTP(secret).now())
    np.locator("input[name=code]").press("Enter")
    expect(np.locator("#recovery-codes li")).to_have_count(10)
    np.click("#continue")
    expect(np).to_have_url(re.compile(re.escape(idp.base) + "/account"))
    assert "Helena Hein" in np.content()

    trail = [(e["event_type"], e["result"], e["subject"]) for e in audit_entries(idp, since_seq=before)]
    for expected in [("admin.account.apply", "success", f"staff:{officer}"),
                     ("admin.account.approve", "success", f"staff:{approver}"),
                     ("admin.account.issue", "success", f"staff:{security}"),
                     ("password.change", "success", f"staff:{newcomer}")]:
        assert expected in trail, expected
    assert not people.errors, people.errors  # no script errors, no CSP violations


def test_auditor_reports_render_svg_charts(idp: IdpServer, slapd, people: People) -> None:  # type: ignore[no-untyped-def]
    auditor = new_uid("baud")
    slapd.create_user(auditor, PASSWORD, department="it-centre", groups=("auditors",))
    page = people.page()
    first_login(page, idp, auditor, PASSWORD)
    expect(page.locator("#home-title")).to_have_text("Audit")
    page.goto(idp.url("/admin/audit/reports"))
    expect(page.locator("svg.chart")).to_have_count(3)
    assert page.locator("svg.chart rect").count() > 0
    page.goto(idp.url("/admin/audit?type=login"))
    expect(page.locator("#audit tbody tr").first).to_contain_text("login")
    page.goto(idp.url("/admin/people"))
    expect(page.locator("#refusal")).to_contain_text("may not")
    reads = [(e["event_type"], e["result"]) for e in audit_entries(idp, f"staff:{auditor}")]
    assert ("audit.report", "success") in reads and ("audit.read", "success") in reads
    assert ("admin.people.read", "refused") in reads
    assert not people.errors, people.errors


def test_system_administrator_changes_a_setting_from_the_keyboard(idp: IdpServer, slapd, people: People) -> None:  # type: ignore[no-untyped-def]
    sysadmin = new_uid("bsys")
    slapd.create_user(sysadmin, PASSWORD, department="it-centre", groups=("system-administrators",))
    page = people.page()
    first_login(page, idp, sysadmin, PASSWORD)
    expect(page.locator("#home-title")).to_have_text("System administration")
    page.get_by_role("link", name="Configuration", exact=True).first.click()
    field = page.get_by_label("New value of throttle.account_failures (failures)")
    expect(field).to_have_value("10")
    before = audit_tip(idp)
    try:
        field.fill("8")
        field.press("Enter")
        confirm_with_keyboard(page)
        expect(page.locator("main")).to_contain_text("throttle.account_failures: 10 -> 8")
        changes = [e for e in audit_entries(idp, f"staff:{sysadmin}", before) if e["event_type"] == "admin.config.set"]
        assert [(c["result"], c["object"]) for c in changes] == [("success", "config:throttle.account_failures")]
        page.goto(idp.url("/admin/config"))
        field = page.get_by_label("New value of throttle.account_failures (failures)")
        field.fill("2")  # below the range: the browser's own check stops it, nothing is sent
        field.press("Enter")
        expect(page.locator("#confirm")).to_have_count(0)
        assert len([e for e in audit_entries(idp, f"staff:{sysadmin}", before) if e["event_type"] == "admin.config.set"]) == 1
    finally:
        page.goto(idp.url("/admin/config"))
        page.get_by_label("New value of throttle.account_failures (failures)").fill("10")
        page.get_by_label("New value of throttle.account_failures (failures)").press("Enter")
        confirm_with_keyboard(page)
    assert not people.errors, people.errors


def test_departments_are_picked_from_the_directory(idp: IdpServer, slapd, people: People) -> None:  # type: ignore[no-untyped-def]
    """The people search and the change of post choose a department from the directory's
    organisation (a <select>, no free text); the application made names the department chosen."""
    security, mover = new_uid("bdsa"), new_uid("bdmv")
    slapd.create_user(security, PASSWORD, department="it-centre", groups=("security-administrators",))
    slapd.create_user(mover, PASSWORD, department="finance", title="Clerk")
    page = people.page()
    first_login(page, idp, security, PASSWORD)
    page.get_by_role("link", name="People", exact=True).click()
    page.get_by_label("User name, name or post").fill(mover)
    page.get_by_label("Department").select_option("tax")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#people tbody")).to_contain_text("Nobody matches.")  # the mover is in finance
    page.get_by_label("Department").select_option("finance")
    page.get_by_role("button", name="Search").click()
    page.locator("#people").get_by_role("link", name=mover).click()
    assert page.locator("input[name=department]").count() == 0  # no free text
    page.get_by_label("New post", exact=True).fill("Tax Inspector")
    page.locator("#change-post-department").select_option("tax")
    page.get_by_role("button", name="Record the change of post").click()
    confirm_with_keyboard(page)
    expect(page.locator("#app-status")).to_have_text("applied")
    expect(page.locator("dl.facts")).to_contain_text("tax")
    assert not people.errors, people.errors


def test_audit_dates_are_picked_and_a_wrong_one_is_explained(idp: IdpServer, slapd, people: People) -> None:  # type: ignore[no-untyped-def]
    """The auditor picks days in date fields (local time, said next to them); a wrong date in the
    address is explained next to its field, the filter form staying."""
    import datetime
    from zoneinfo import ZoneInfo

    auditor = new_uid("badt")
    slapd.create_user(auditor, PASSWORD, department="it-centre", groups=("auditors",))
    page = people.page()
    first_login(page, idp, auditor, PASSWORD)
    today = datetime.datetime.now(ZoneInfo("Asia/Shanghai")).date()
    page.goto(idp.url("/admin/audit"))
    expect(page.locator("#date-zone")).to_contain_text("Asia/Shanghai")
    assert page.get_by_label("Since (date)").get_attribute("type") == "date"
    page.get_by_label("Event type (e.g. admin.*)").fill("login.*")
    page.get_by_label("Since (date)").fill(today.isoformat())
    page.get_by_label("Until (date, included)").fill(today.isoformat())
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#audit tbody tr").first).to_contain_text("login")  # the auditor's own login today
    expect(page.get_by_label("Since (date)")).to_have_value(today.isoformat())
    page.get_by_label("Until (date, included)").fill((today - datetime.timedelta(days=2)).isoformat())
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#until-error")).to_contain_text("Until: the period ends before it begins")
    expect(page.get_by_label("Event type (e.g. admin.*)")).to_have_value("login.*")  # the form stays
    page.goto(idp.url("/admin/audit/reports?since=25.11.2026"))
    expect(page.locator("#since-error")).to_contain_text("Since: '25.11.2026' is not a date. Use year-month-day")
    expect(page.get_by_role("button", name="Report")).to_be_visible()
    assert page.locator("#refusal").count() == 0
    assert not people.errors, people.errors


def test_a_security_administrator_is_added_from_the_console_under_four_eyes(  # type: ignore[no-untyped-def]
        idp: IdpServer, slapd, people: People) -> None:
    """One security administrator asks on the four-eyes page for a staff member to become a security
    administrator; the page of the second leads with the pending request, who decides it from
    there; the new administrator's next login is the security administration's."""
    first, second, candidate = new_uid("bfa"), new_uid("bfb"), new_uid("bfc")
    for uid in (first, second):
        slapd.create_user(uid, PASSWORD, department="it-centre", groups=("security-administrators",))
    slapd.create_user(candidate, PASSWORD, department="it-centre", title="Security Officer")
    before = audit_tip(idp)

    a = people.page()
    first_login(a, idp, first, PASSWORD)
    a.get_by_role("link", name="Four eyes", exact=True).click()
    expect(a.locator("h2").first).to_have_text("Waiting for a decision")
    assert a.locator("#revoke-ca option").count() >= 1  # the issuing CAs, chosen not typed
    a.get_by_label("User name of the staff member").fill(candidate)
    a.get_by_label("Administrator role").select_option("security-administrators")
    a.get_by_role("button", name="Ask to add the administrator").click()
    confirm_with_keyboard(a)
    expect(a.locator("#flash")).to_contain_text("A second security administrator must approve this")
    expect(a.locator("#four-eyes-status")).to_have_text("pending")
    request_id = a.url.rsplit("/", 1)[-1]
    with slapd.directory() as directory:
        assert "security-administrators" not in directory.find(candidate).groups

    b = people.page()
    first_login(b, idp, second, PASSWORD)
    b.get_by_role("link", name="Four eyes", exact=True).click()
    b.locator("#pending").locator(f"#decide-{request_id}").click()
    b.click("#approve")
    confirm_with_keyboard(b)
    expect(b.locator("#four-eyes-status")).to_have_text("executed")

    c = people.page()
    first_login(c, idp, candidate, PASSWORD)
    expect(c.locator("#home-title")).to_have_text("Security administration")
    trail = [(e["event_type"], e["result"], e["subject"]) for e in audit_entries(idp, since_seq=before)]
    assert ("admin.four-eyes.request", "success", f"staff:{first}") in trail
    assert ("admin.four-eyes.approve", "success", f"staff:{second}") in trail
    assert not people.errors, people.errors
