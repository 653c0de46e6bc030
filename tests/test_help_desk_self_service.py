"""Self-service (issue 17 item 2): the account page links to the password change page, the
directory's expiry warning (ppolicy timeBeforeExpiration, draft-behera section 6.2) is shown after
the login with a link to change the password, and the authenticator is re-enrolled from the account
page with the present code first (a wrong one counted and refused; the old secret works until the
new one is confirmed, then never again)."""

from __future__ import annotations

import re
import time

import pyotp

from tests.fixtures_admin import *  # noqa: F403
from tests.fixtures_admin import PASSWORD, IdpServer, audit_entries, audit_tip, new_uid
from tests.fixtures_web import StaffAgent, csrf_of


def test_account_page_links_and_the_expiry_warning_after_login(idp: IdpServer, slapd) -> None:  # type: ignore[no-untyped-def]
    policy = new_uid("exp")
    slapd.add_policy(policy, pwdMaxAge=str(10 * 86400))  # inside the default policy's 14-day warning
    uid = new_uid("sw")
    slapd.create_user(uid, PASSWORD, policy=policy)
    agent = StaffAgent(idp, uid, PASSWORD)
    account = agent.login()  # the first login (enrolment): the warning waits on the account page
    assert account.status_code == 200
    assert f'href="/password/change?username={uid}" id="change-password"' in account.text
    assert 'href="/account/authenticator" id="replace-authenticator"' in account.text
    assert re.search(r"Your password expires in (9|10) days", account.text)

    again = StaffAgent(idp, uid, PASSWORD, secret=agent.secret)
    again.last_step = agent.last_step
    page = again.password_step("/account")
    assert page.status_code == 200 and 'action="/login/code"' in page.text
    warned = again.post(idp.url("/login/code"), data={"code": again.code(), "csrf_token": csrf_of(page.text)},
                        allow_redirects=False)
    assert warned.status_code == 200 and 'id="password-warning"' in warned.text
    assert f'href="/password/change?username={uid}" id="password-warning-change"' in warned.text
    assert 'href="/account" id="continue"' in warned.text
    assert again.get(idp.url("/account"), allow_redirects=False).status_code == 200  # logged in all the same
    change = again.get(idp.url(f"/password/change?username={uid}")).text
    assert "Choose a new password: at least" in change and "initial password must be replaced" not in change
    changed = again.post(idp.url("/password/change"), data={
        "csrf_token": csrf_of(change), "username": uid, "current_password": PASSWORD,
        "new_password": "Orchard-silver-5-late-frost", "new_password_again": "Orchard-silver-5-late-frost"})
    assert 'id="password-changed"' in changed.text
    assert 'id="password-warning"' not in again.get(idp.url("/account")).text  # a new password: no warning

    plain = StaffAgent(idp, _staff(slapd), PASSWORD)
    assert 'id="password-warning"' not in plain.login().text  # 180 days: no warning


def _staff(slapd) -> str:  # type: ignore[no-untyped-def]
    uid = new_uid("sw")
    slapd.create_user(uid, PASSWORD)
    return uid


def test_re_enrolment_needs_the_present_code_and_replaces_secret_and_codes(idp: IdpServer, slapd) -> None:  # type: ignore[no-untyped-def]
    uid = _staff(slapd)
    agent = StaffAgent(idp, uid, PASSWORD)
    agent.login()
    old_secret, old_codes = agent.secret, agent.recovery_codes
    form = agent.get(idp.url("/account/authenticator"))
    assert form.status_code == 200 and 'action="/account/authenticator"' in form.text
    before = audit_tip(idp)
    wrong = agent.post(idp.url("/account/authenticator"), data={"code": "000000", "csrf_token": csrf_of(form.text)})
    assert wrong.status_code == 401 and 'id="code-error"' in wrong.text
    recovery = agent.post(idp.url("/account/authenticator"), data={"code": old_codes[0], "csrf_token": csrf_of(form.text)})
    assert recovery.status_code == 401  # a recovery code does not prove the authenticator
    early = agent.post(idp.url("/account/authenticator/confirm"), data={"code": "123456", "csrf_token": csrf_of(form.text)},
                       allow_redirects=False)
    assert early.status_code == 302 and early.headers["Location"].endswith("/account/authenticator")
    shown = agent.post(idp.url("/account/authenticator"), data={"code": agent.code(), "csrf_token": csrf_of(form.text)})
    assert shown.status_code == 200 and 'action="/account/authenticator/confirm"' in shown.text
    new_secret = re.search(r'id="totp-secret">([^<]+)<', shown.text).group(1).replace(" ", "")  # type: ignore[union-attr]
    assert new_secret != old_secret
    done = agent.post(idp.url("/account/authenticator/confirm"),
                      data={"code": pyotp.TOTP(new_secret).now(), "csrf_token": csrf_of(shown.text)})
    assert done.status_code == 200
    assert len(re.findall(r"<li>([a-z0-9]{5}-[a-z0-9]{5})</li>", done.text)) == 10
    trail = [(e["event_type"], e["result"]) for e in audit_entries(idp, f"staff:{uid}", before)]
    assert ("totp.re-enrol", "failure") in trail and ("totp.re-enrol", "success") in trail

    with_old = StaffAgent(idp, uid, PASSWORD, secret=old_secret)
    page = with_old.password_step()
    unused_step = pyotp.TOTP(old_secret).at(time.time() + 30)  # the next step: inside the window, never used
    refused = with_old.post(idp.url("/login/code"), data={"code": unused_step,
                                                          "csrf_token": csrf_of(page.text)})
    assert refused.status_code == 401
    spent = with_old.post(idp.url("/login/code"), data={"code": old_codes[1], "csrf_token": csrf_of(page.text)})
    assert spent.status_code == 401  # the old recovery codes went with the old secret
    with_new = StaffAgent(idp, uid, PASSWORD, secret=new_secret)
    with_new.last_step = int(time.time() // 30)  # the step confirmed just now is spent
    logged_in = with_new.login()
    assert logged_in.status_code == 302 and logged_in.headers["Location"].endswith("/account")
