"""The help desk (issue 17 item 1) on the running service: a security administrator resets a
password (one-time, must change: ppolicy pwdReset), resets the second factor (the next login enrols
again, old recovery codes void) and unlocks (the ppolicy lock and the login throttle), each after a
confirmation page and on the audit trail; an administrator's account only under four eyes; other
roles, oneself and a leaver refused. The person's page tells locked, must-change, expired, disabled
and enrolled apart (item 2), read from the directory."""

from __future__ import annotations

import datetime
import json
import re

import pytest
import requests

from directory.client import AccountState
from directory.errors import DirectoryError
from tests.fixtures_admin import *  # noqa: F403
from tests.fixtures_admin import PASSWORD, AdminAgent, IdpServer, audit_entries, audit_tip, new_uid
from tests.fixtures_operators import operator_tokens, run_as  # noqa: F401
from tests.fixtures_web import StaffAgent, csrf_of, post_login

NEW_PASSWORD = "Lantern-quiet-4-river-moss"


def _person(slapd, *, groups: tuple[str, ...] = (), **extra) -> str:  # type: ignore[no-untyped-def]
    uid = new_uid("hd")
    slapd.create_user(uid, PASSWORD, department="tax", title="Clerk", groups=groups, **extra)
    return uid


def _enrolled(idp: IdpServer, uid: str, password: str = PASSWORD) -> StaffAgent:
    agent = StaffAgent(idp, uid, password)
    agent.login()
    assert agent.secret
    return agent


def _state(agent: AdminAgent, uid: str) -> dict[str, str]:
    page = agent.get(agent.idp.url(f"/admin/people/{uid}")).text
    return dict(re.findall(r'id="(enabled|password-state|second-factor-state)" data-state="([a-z-]+)"', page))


def _trail(idp: IdpServer, since: int) -> list[tuple[str, str, str | None, str | None]]:
    return [(e["event_type"], e["result"], e["subject"], e["object"]) for e in audit_entries(idp, since_seq=since)]


def test_reset_password_confirmed_shown_once_must_change_at_next_login(idp: IdpServer, slapd, admin_agents) -> None:  # type: ignore[no-untyped-def]
    security = admin_agents["security-admin"]
    uid = _person(slapd)
    person = _enrolled(idp, uid)
    before = audit_tip(idp)
    asked = security.act(f"/admin/people/{uid}/reset-password", confirmed=False)
    assert asked.status_code == 200 and 'id="confirm"' in asked.text and "one-time password" in asked.text
    assert _trail(idp, before) == []  # nothing happens before the confirmation
    done = security.act(f"/admin/people/{uid}/reset-password")
    assert done.status_code == 200 and done.headers["Cache-Control"] == "no-store"
    one_time = re.search(r'id="one-time-password">([^<]+)<', done.text)
    assert one_time and len(one_time.group(1)) >= 20
    assert ("admin.staff.reset-password", "success", f"staff:{security.uid}", f"staff:{uid}") in _trail(idp, before)
    assert _state(security, uid)["password-state"] == "must-change"

    fresh = requests.Session()
    assert post_login(fresh, idp, uid, PASSWORD).status_code == 401  # the old password is gone
    sent = post_login(requests.Session(), idp, uid, one_time.group(1))
    assert sent.status_code == 302 and "/password/change" in sent.headers["Location"]
    page = fresh.get(idp.url(f"/password/change?username={uid}"))
    changed = fresh.post(idp.url("/password/change"), data={
        "csrf_token": csrf_of(page.text), "username": uid, "current_password": one_time.group(1),
        "new_password": NEW_PASSWORD, "new_password_again": NEW_PASSWORD})
    assert changed.status_code == 200 and 'id="password-changed"' in changed.text
    again = StaffAgent(idp, uid, NEW_PASSWORD, secret=person.secret)
    again.last_step = person.last_step  # a code is accepted once (RFC 6238 section 5.2)
    logged_in = again.login()  # the second factor was left alone: its code, no enrolment
    assert logged_in.status_code == 302 and logged_in.headers["Location"].endswith("/account")
    assert _state(security, uid)["password-state"] == "valid"


def test_reset_second_factor_voids_secret_and_codes_next_login_enrols(idp: IdpServer, slapd, admin_agents) -> None:  # type: ignore[no-untyped-def]
    security = admin_agents["security-admin"]
    uid = _person(slapd)
    person = _enrolled(idp, uid)
    assert _state(security, uid)["second-factor-state"] == "enrolled"
    before = audit_tip(idp)
    assert security.act(f"/admin/people/{uid}/reset-second-factor").status_code == 200
    assert ("admin.staff.reset-second-factor", "success", f"staff:{security.uid}", f"staff:{uid}") in _trail(idp, before)
    assert _state(security, uid)["second-factor-state"] == "not-enrolled"
    again = StaffAgent(idp, uid, PASSWORD, secret=person.secret)
    step = again.password_step()
    assert step.status_code == 302 and step.headers["Location"].endswith("/login/enrol")  # neither code nor recovery
    again.finish(step)
    assert again.secret and again.secret != person.secret


def test_unlock_clears_the_directory_lock_and_the_throttle(idp: IdpServer, slapd, admin_agents) -> None:  # type: ignore[no-untyped-def]
    security = admin_agents["security-admin"]
    uid = _person(slapd)
    for _ in range(10):  # ppolicy locks after 5, the throttle blocks this address after 10
        assert post_login(requests.Session(), idp, uid, "Wrong-password-123").status_code == 401
    assert _state(security, uid)["enabled"] == "locked"
    listed = security.get(idp.url(f"/admin/people?q={uid}")).text
    assert '<td data-state="locked">locked out</td>' in listed  # the table says so too, not "yes"
    assert post_login(requests.Session(), idp, uid, PASSWORD).status_code == 401
    before = audit_tip(idp)
    done = security.act(f"/admin/people/{uid}/unlock")
    assert done.status_code == 200 and "Directory lockout lifted: yes" in done.text
    entry = [e for e in audit_entries(idp, since_seq=before) if e["event_type"] == "admin.staff.unlock"]
    assert [e["result"] for e in entry] == ["success"] and json.loads(entry[0]["details"])["throttle_cleared"] == 2
    assert _state(security, uid)["enabled"] == "enabled"
    assert '<td data-state="enabled">yes</td>' in security.get(idp.url(f"/admin/people?q={uid}")).text
    assert post_login(requests.Session(), idp, uid, PASSWORD).status_code == 302


def test_end_all_sessions_logs_the_person_out_everywhere(idp: IdpServer, slapd, admin_agents) -> None:  # type: ignore[no-untyped-def]
    security = admin_agents["security-admin"]
    uid = _person(slapd)
    browser = _enrolled(idp, uid)
    assert browser.get(idp.url("/account"), allow_redirects=False).status_code == 200
    assert 'id="end-sessions"' in security.get(idp.url(f"/admin/people/{uid}")).text
    before = audit_tip(idp)
    asked = security.act(f"/admin/people/{uid}/end-sessions", confirmed=False)
    assert asked.status_code == 200 and 'id="confirm"' in asked.text and _trail(idp, before) == []
    done = security.act(f"/admin/people/{uid}/end-sessions")
    assert done.status_code == 200 and "Sessions ended: 1" in done.text, done.text
    assert browser.get(idp.url("/account"), allow_redirects=False).status_code in (302, 303)  # logged out
    entry = [e for e in audit_entries(idp, since_seq=before) if e["event_type"] == "admin.staff.end-sessions"]
    assert [e["result"] for e in entry] == ["success"] and json.loads(entry[0]["details"])["sessions_ended"] == 1


def test_an_administrators_account_only_under_four_eyes(idp: IdpServer, slapd, admin_agents) -> None:  # type: ignore[no-untyped-def]
    first, second = admin_agents["security-admin"], admin_agents["security-admin-2"]
    uid = _person(slapd, groups=("auditors",))
    _enrolled(idp, uid)
    before = audit_tip(idp)
    asked = first.act(f"/admin/people/{uid}/reset-password", confirmed=False)
    assert "four eyes" in asked.text
    made = first.act(f"/admin/people/{uid}/reset-password")
    assert made.status_code == 302 and "/admin/four-eyes/" in made.headers["Location"]
    request_id = int(made.headers["Location"].rstrip("/").rsplit("/", 1)[1])
    assert _state(first, uid)["password-state"] == "valid"  # nothing done yet
    assert 'action="/login/code"' in post_login(requests.Session(), idp, uid, PASSWORD).text  # still accepted
    own = first.act(f"/admin/four-eyes/{request_id}/approve")
    assert own.status_code == 409  # the requester is not the second pair of eyes
    done = second.act(f"/admin/four-eyes/{request_id}/approve")
    assert done.status_code == 200 and re.search(r'id="one-time-password">[^<]{20,}<', done.text)
    assert _state(first, uid)["password-state"] == "must-change"
    trail = _trail(idp, before)
    for expected in [("admin.four-eyes.request", "success", f"staff:{first.uid}", f"staff:{uid}"),
                     ("admin.four-eyes.approve", "refused", f"staff:{first.uid}", f"four-eyes:{request_id}"),
                     ("admin.four-eyes.approve", "success", f"staff:{second.uid}", f"staff:{uid}"),
                     ("admin.staff.reset-password", "success", f"staff:{second.uid}", f"staff:{uid}")]:
        assert expected in trail, expected
    # a second request for the same while none is pending is fine; the same twice pending is not
    assert first.act(f"/admin/people/{uid}/unlock").status_code == 302
    assert first.act(f"/admin/people/{uid}/unlock").status_code == 409


def test_refusals_other_roles_oneself_and_a_leaver(idp: IdpServer, slapd, admin_agents) -> None:  # type: ignore[no-untyped-def]
    security = admin_agents["security-admin"]
    uid = _person(slapd)
    before = audit_tip(idp)
    for role in ("system-admin", "auditor", "officer"):
        refused = admin_agents[role].act(f"/admin/people/{uid}/reset-password")
        assert refused.status_code == 403, role
    assert security.act(f"/admin/people/{security.uid}/unlock").status_code == 403
    slapd.disable(uid)
    assert _state(security, uid)["enabled"] == "disabled"
    assert security.act(f"/admin/people/{uid}/reset-password").status_code == 409
    assert security.act(f"/admin/people/{uid}/unlock").status_code == 409
    assert _state(security, uid)["enabled"] == "disabled"  # still: a reset would have lifted the lock
    assert '<td data-state="disabled">no</td>' in security.get(idp.url(f"/admin/people?q={uid}")).text
    refusals = [(e[0], e[1]) for e in _trail(idp, before) if e[3] == f"staff:{uid}" or e[2] == f"staff:{security.uid}"]
    assert ("admin.staff.reset-password", "refused") in refusals and ("admin.staff.unlock", "refused") in refusals
    missing = security.act("/admin/people/nobody-such-4711/unlock")
    assert missing.status_code == 404


def test_the_command_line_help_desk_as_proven_security_administrators(  # type: ignore[no-untyped-def]
        idp: IdpServer, slapd, admins, operator_tokens) -> None:  # noqa: F811
    first, second = admins["security-admin"], admins["security-admin-2"]
    uid = _person(slapd)
    _enrolled(idp, uid)
    for _ in range(5):
        post_login(requests.Session(), idp, uid, "Wrong-password-123")
    before = audit_tip(idp)
    unlocked = json.loads(run_as(idp, operator_tokens, "directory", "unlock", uid, "--as", first, "--json").stdout)
    assert unlocked == {"uid": uid, "act": "unlock", "throttle_cleared": 2, "was_locked": True}
    reset = json.loads(run_as(idp, operator_tokens, "directory", "reset-password", uid, "--as", first, "--json").stdout)
    assert len(reset["one_time_password"]) >= 20
    sent = post_login(requests.Session(), idp, uid, reset["one_time_password"])
    assert sent.status_code == 302 and "/password/change" in sent.headers["Location"]
    voided = run_as(idp, operator_tokens, "directory", "reset-second-factor", uid, "--as", first).stdout.decode()
    assert voided.startswith(f"reset-second-factor of {uid} done; was enrolled: True")
    refused = run_as(idp, operator_tokens, "directory", "reset-password", uid, "--as", admins["auditor"], check=False)
    assert refused.returncode == 3 and b"Traceback" not in refused.stderr
    unproven = run_as(idp, {}, "directory", "reset-password", uid, "--as", first, check=False)
    assert unproven.returncode == 4
    # an administrator's account: a request, carried out by the second security administrator
    admin_uid = _person(slapd, groups=("auditors",))
    asked = run_as(idp, operator_tokens, "directory", "reset-second-factor", admin_uid, "--as", first).stdout.decode()
    request_id = re.search(r"four-eyes request #(\d+)", asked)
    assert request_id, asked
    own = run_as(idp, operator_tokens, "admin", "four-eyes", "approve", request_id.group(1), "--as", first,
                 check=False)
    assert own.returncode == 1 and b"second administrator" in own.stderr
    done = run_as(idp, operator_tokens, "admin", "four-eyes", "approve", request_id.group(1), "--as", second).stdout.decode()
    assert done.startswith(f"reset-second-factor of {admin_uid} done")
    ended = json.loads(run_as(idp, operator_tokens, "sessions", "end", "--user", uid, "--as", first, "--json").stdout)
    assert ended["act"] == "end-sessions" and ended["sessions_ended"] >= 0
    trail = _trail(idp, before)
    assert ("admin.staff.end-sessions", "success", f"staff:{first}", f"staff:{uid}") in trail
    for expected in [("admin.staff.unlock", "success", f"staff:{first}", f"staff:{uid}"),
                     ("admin.staff.reset-password", "success", f"staff:{first}", f"staff:{uid}"),
                     ("admin.staff.reset-second-factor", "success", f"staff:{first}", f"staff:{uid}"),
                     ("admin.staff.reset-password", "refused", f"staff:{admins['auditor']}", f"staff:{uid}"),
                     ("admin.staff.reset-second-factor", "success", f"staff:{second}", f"staff:{admin_uid}")]:
        assert expected in trail, expected


def test_account_state_reads_lock_reset_and_expiry(slapd) -> None:  # type: ignore[no-untyped-def]
    policy = new_uid("pol")
    slapd.add_policy(policy, pwdMaxAge="86400", pwdLockoutDuration="0")
    uid = new_uid("st")
    slapd.create_user(uid, PASSWORD, policy=policy, must_change=True)
    directory = slapd.directory()
    try:
        member = directory.find(uid)
        assert member is not None
        now = datetime.datetime.now(datetime.timezone.utc)
        state = directory.account_state(member)
        assert state.must_change and not state.locked and state.expired is False and not state.disabled
        assert state.password_expires_at and 86000 < (state.password_expires_at - now).total_seconds() <= 86400
        later = directory.account_state(member, now + datetime.timedelta(days=2))
        assert later.expired is True
        for _ in range(5):
            with pytest.raises(DirectoryError):
                directory.authenticate(uid, "Wrong-password-123")
        locked = directory.account_state(member)
        assert locked.locked and locked.locked_until is None  # pwdLockoutDuration 0: until unlocked
        default = new_uid("st")
        slapd.create_user(default, PASSWORD)
        plain = directory.account_state(directory.find(default))  # type: ignore[arg-type]
        assert plain == AccountState(disabled=False, locked=False, must_change=False,
                                     password_changed_at=plain.password_changed_at,
                                     password_expires_at=plain.password_expires_at, expired=False)
        assert plain.password_expires_at is not None  # the default policy's pwdMaxAge
    finally:
        directory.close()
