"""Runtime settings (issue 6 item 3): bounds and the password floor, a change and its audit entry in
one transaction (SQLite and PostgreSQL), the cached accessor of each worker, and the console and
`tessera config` on the running service: the system administrator changes, the security
administrator only sees, the auditor does not even see; every refusal on the trail."""

from __future__ import annotations

import datetime
import json
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import delete, select

from audit.errors import AuditEventInvalid, AuditUnavailable
from audit.models import AuditEntry
from audit.trail import AuditEvent
from idp.runtime_settings import (TUNABLES, InvalidSetting, RuntimeSetting, RuntimeSettings, may_change, may_read,
                                  require)
from idp.roles import AUDITOR, SECURITY_ADMIN, SYSTEM_ADMIN, Forbidden
from idp.settings import Settings
from tests.fixtures_admin import *  # noqa: F403
from tests.fixtures_admin import AdminAgent, IdpServer, audit_entries, audit_tip
from tests.fixtures_audit import AuditStore, audit_store, tamper  # noqa: F401
from tests.fixtures_operators import operator_tokens, run_as  # noqa: F401


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _event(**change: Any) -> AuditEvent:
    return AuditEvent("admin.config.set", "staff:sysadmin", "success", subject_role="system-admin",
                      object="config:test", details=change)


def _runtime(store: AuditStore, ttl: float = 0.0, env: dict[str, str] | None = None,
             ticks: Callable[[], float] = time.monotonic) -> RuntimeSettings:
    return RuntimeSettings(store.sessions, Settings.from_env(store.folder, env=env or {}), _now, ttl=ttl, ticks=ticks)


def _config_entries(store: AuditStore) -> list[AuditEntry]:
    with store.sessions() as s:
        return list(s.scalars(select(AuditEntry).where(AuditEntry.event_type == "admin.config.set")))


# -- the store -------------------------------------------------------------------------------------
def test_defaults_come_from_the_environment(audit_store: AuditStore) -> None:
    runtime = _runtime(audit_store, env={"TESSERA_SESSION_IDLE_SECONDS": "600"})
    assert runtime.get("session.idle_seconds") == 600
    assert runtime.get("password.min_length") == 12
    shown = {v.name: v for v in runtime.show()}
    assert set(shown) == set(TUNABLES)
    assert shown["session.idle_seconds"].changed_by is None and shown["session.idle_seconds"].value == 600


def test_a_change_and_its_audit_entry_commit_together(audit_store: AuditStore) -> None:
    runtime = _runtime(audit_store)
    done = runtime.set("throttle.account_failures", "5", audit_store.trail, _event, "staff:sysadmin")
    assert (done.old, done.new, done.changed) == (10, 5, True)
    assert runtime.get("throttle.account_failures") == 5
    [entry] = _config_entries(audit_store)
    assert json.loads(entry.details) == {"old": 10, "new": 5}
    view = {v.name: v for v in runtime.show()}["throttle.account_failures"]
    assert view.changed_by == "staff:sysadmin" and view.value == 5 and view.default == 10
    again = runtime.set("throttle.account_failures", 5, audit_store.trail, _event, "staff:sysadmin")
    assert not again.changed and len(_config_entries(audit_store)) == 1  # no change, nothing recorded


def test_an_audit_entry_that_cannot_be_written_undoes_the_change(audit_store: AuditStore) -> None:
    runtime = _runtime(audit_store)

    def secret_event(**change: Any) -> AuditEvent:  # the trail refuses it: the change must go with it
        return _event(password="x", **change)

    with pytest.raises(AuditEventInvalid):
        runtime.set("session.idle_seconds", "900", audit_store.trail, secret_event, "staff:sysadmin")
    assert runtime.get("session.idle_seconds") == 1800
    tamper(audit_store, "DELETE FROM audit_head")  # the chain head is gone: appends fail
    with pytest.raises(AuditUnavailable):
        runtime.set("session.idle_seconds", "900", audit_store.trail, _event, "staff:sysadmin")
    with audit_store.sessions() as s:
        assert s.scalars(select(RuntimeSetting)).all() == []
    assert runtime.get("session.idle_seconds") == 1800


@pytest.mark.parametrize("name,value,words", [
    ("password.min_length", "11", "may not go below 12"),
    ("password.min_length", "0", "may not go below 12"),
    ("password.min_length", "129", "from 12 to 128"),
    ("totp.window_steps", "2", "from 0 to 1"),
    ("session.idle_seconds", "-5", "not '-5'"),
    ("session.idle_seconds", "1e3", "not '1e3'"),
    ("session.idle_seconds", "", "a whole number of seconds"),
    ("session.idle_seconds", "９００", "not '９００'"),
    ("throttle.account_failures", "1000000000000", "a whole number of failures"),
    ("api.rate_per_second", True, "a whole number"),
    ("common_passwords", "0", "unknown setting 'common_passwords'"),
    ("password.check_common", "0", "unknown setting"),
])
def test_bad_values_are_refused_with_a_clear_message(audit_store: AuditStore, name: str, value: object,
                                                     words: str) -> None:
    runtime = _runtime(audit_store)
    with pytest.raises(InvalidSetting, match=re.escape(words)) as caught:
        runtime.set(name, value, audit_store.trail, _event, "staff:sysadmin")
    assert caught.value.status == 400
    assert _config_entries(audit_store) == []


def test_the_absolute_timeout_is_never_shorter_than_the_idle_one(audit_store: AuditStore) -> None:
    runtime = _runtime(audit_store)
    runtime.set("session.absolute_seconds", "3600", audit_store.trail, _event, "staff:sysadmin")
    with pytest.raises(InvalidSetting, match="may not be shorter than the idle timeout"):
        runtime.set("session.idle_seconds", "7200", audit_store.trail, _event, "staff:sysadmin")
    assert runtime.get("session.idle_seconds") == 1800


def test_concurrent_changes_cannot_break_the_rule_between_two_settings(audit_store: AuditStore) -> None:
    """Alone each change is fine (idle 7200 < absolute 43200; absolute 3600 > idle 1800); together
    they would make the absolute timeout shorter than the idle one: exactly one of them wins."""
    import threading

    for _ in range(5):
        with audit_store.sessions.begin() as s:
            s.execute(delete(RuntimeSetting))
        barrier = threading.Barrier(2)
        outcome: dict[str, str] = {}

        def change(name: str, value: str, barrier: threading.Barrier = barrier,
                   outcome: dict[str, str] = outcome) -> None:
            runtime = _runtime(audit_store)
            barrier.wait()
            try:
                runtime.set(name, value, audit_store.trail, _event, "staff:sysadmin")
                outcome[name] = "changed"
            except InvalidSetting:
                outcome[name] = "refused"
            except Exception as exc:  # noqa: BLE001  (reported by the assertion below)
                outcome[name] = repr(exc)

        threads = [threading.Thread(target=change, args=a) for a in
                   (("session.idle_seconds", "7200"), ("session.absolute_seconds", "3600"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(outcome.values()) == ["changed", "refused"], outcome
        runtime = _runtime(audit_store)
        assert runtime.get("session.absolute_seconds") >= runtime.get("session.idle_seconds")


def test_every_worker_sees_a_change_within_its_ttl(audit_store: AuditStore) -> None:
    now = [1000.0]  # the workers' monotonic clock, moved by hand: no sleep, no race with a slow machine
    writer = _runtime(audit_store, ttl=30, ticks=lambda: now[0])
    reader = _runtime(audit_store, ttl=30, ticks=lambda: now[0])
    assert reader.get("password.min_length") == 12  # cached now
    writer.set("password.min_length", "16", audit_store.trail, _event, "staff:sysadmin")
    assert writer.get("password.min_length") == 16  # the writing worker: at once
    now[0] += 29.9
    assert reader.get("password.min_length") == 12  # another worker: its cache, for at most the TTL
    now[0] += 0.2
    assert reader.get("password.min_length") == 16


def test_who_may_read_and_change() -> None:
    assert may_read({SYSTEM_ADMIN}) and may_change({SYSTEM_ADMIN})
    assert may_read({SECURITY_ADMIN}) and not may_change({SECURITY_ADMIN})
    for groups in ({AUDITOR}, set(), {"approvers"}, {SYSTEM_ADMIN, SECURITY_ADMIN}):
        assert not may_read(groups) and not may_change(groups)
    with pytest.raises(Forbidden, match="the security administrator may not change"):
        require({SECURITY_ADMIN}, change=True)
    with pytest.raises(Forbidden, match="the auditor may not see"):
        require({AUDITOR}, change=False)


# -- the running service ------------------------------------------------------------------------------
def _refused_entries(idp: IdpServer, uid: str, since: int) -> list[dict[str, Any]]:
    return [e for e in audit_entries(idp, f"staff:{uid}", since) if e["result"] == "refused"]


def _min_length_shown(agent: AdminAgent) -> int:
    page = agent.get(agent.idp.url("/password/change")).text
    match = re.search(r"at least (\d+) characters", page)
    assert match, page[:800]
    return int(match.group(1))


def test_the_system_administrator_changes_a_setting_in_the_console(idp: IdpServer, admins: dict[str, str],
                                                                  admin_agents: dict[str, AdminAgent]) -> None:
    agent = admin_agents["system-admin"]
    page = agent.get(idp.url("/admin/config"))
    assert page.status_code == 200 and 'id="runtime-settings"' in page.text
    assert 'for="value-password-min_length"' in page.text  # every field labelled
    before = audit_tip(idp)
    asked = agent.act("/admin/config/password.min_length", confirmed=False, value="14")
    assert asked.status_code == 200 and 'id="confirm"' in asked.text and "password.min_length" in asked.text
    assert _min_length_shown(agent) == 12  # nothing changed before the confirmation
    try:
        done = agent.act("/admin/config/password.min_length", value="14")
        assert done.status_code == 200 and "12 -&gt; 14" in done.text, done.text[:600]
        [entry] = [e for e in audit_entries(idp, f"staff:{admins['system-admin']}", before)
                   if e["event_type"] == "admin.config.set"]
        assert entry["result"] == "success" and entry["object"] == "config:password.min_length"
        assert entry["subject_role"] == "system-admin" and json.loads(entry["details"]) == {"old": 12, "new": 14}
        home = agent.get(idp.url("/admin/")).text  # the home page lists what differs from start-up
        assert re.search(r"<code>password\.min_length</code></td><td>14 characters</td><td>12</td>", home), home[:2000]
        # both workers of `tessera serve --workers 2` use the new value within their cache's TTL
        deadline = time.monotonic() + 10
        while _min_length_shown(agent) != 14:
            assert time.monotonic() < deadline, "a worker never saw the change"
            time.sleep(0.2)
        time.sleep(2.5)
        assert {_min_length_shown(agent) for _ in range(20)} == {14}
        short = agent.post(idp.url("/password/change"), data={
            "csrf_token": agent.csrf(), "username": admins["officer"], "current_password": PASSWORD,
            "new_password": "Thirteen-ch4r", "new_password_again": "Thirteen-ch4r"})
        assert short.status_code == 400 and "Use at least 14 characters." in short.text
        bad = agent.act("/admin/config/password.min_length", value="8")
        assert bad.status_code == 400 and "may not go below 12" in bad.text
        assert [e["event_type"] for e in _refused_entries(idp, admins["system-admin"], before)] == ["admin.config.set"]
    finally:
        agent.act("/admin/config/password.min_length", value="12")


def test_the_security_administrator_sees_but_cannot_change(idp: IdpServer, admins: dict[str, str],
                                                          admin_agents: dict[str, AdminAgent]) -> None:
    agent = admin_agents["security-admin"]
    page = agent.get(idp.url("/admin/config"))
    assert page.status_code == 200 and 'id="runtime-settings"' in page.text
    assert 'name="value"' not in page.text and "only the system administrator changes them" in page.text
    home = agent.get(idp.url("/admin/")).text
    assert 'href="/admin/config"' in home and "Settings changed at run time" in home
    before = audit_tip(idp)
    refused = agent.act("/admin/config/session.idle_seconds", value="600")
    assert refused.status_code == 403 and "may not change the configuration" in refused.text
    [entry] = _refused_entries(idp, admins["security-admin"], before)
    assert entry["event_type"] == "admin.config.set" and entry["object"] == "config:session.idle_seconds"


def test_the_auditor_does_not_see_the_configuration(idp: IdpServer, admins: dict[str, str],
                                                    admin_agents: dict[str, AdminAgent]) -> None:
    agent = admin_agents["auditor"]
    assert 'href="/admin/config"' not in agent.get(idp.url("/admin/")).text
    before = audit_tip(idp)
    response = agent.get(idp.url("/admin/config"), headers={"Accept": "application/json"})
    assert response.status_code == 403
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert "the auditor may not see the configuration" in response.json()["detail"]
    refused = agent.act("/admin/config/session.idle_seconds", value="600")
    assert refused.status_code == 403
    assert [e["event_type"] for e in _refused_entries(idp, admins["auditor"], before)] == \
        ["admin.config.read", "admin.config.set"]


def test_cli_config_show_and_set(idp: IdpServer, admins: dict[str, str], operator_tokens: dict[str, str]) -> None:
    assert b"Usage: tessera config set" in idp.cli("config", "set", "--help").stdout
    shown = json.loads(run_as(idp, operator_tokens, "config", "show", "--as", admins["security-admin"], "--json").stdout)
    assert {row["name"] for row in shown} == set(TUNABLES)
    before = audit_tip(idp)
    try:
        done = run_as(idp, operator_tokens, "config", "set", "throttle.window_seconds", "600", "--as", admins["system-admin"], "--json")
        assert json.loads(done.stdout) == {"name": "throttle.window_seconds", "old": 900, "new": 600, "changed": True}
        [entry] = [e for e in audit_entries(idp, f"staff:{admins['system-admin']}", before)
                   if e["event_type"] == "admin.config.set"]
        assert json.loads(entry["details"]) == {"old": 900, "new": 600, "channel": entry_channel(entry)}
        text = run_as(idp, operator_tokens, "config", "show", "--as", admins["system-admin"]).stdout.decode()
        assert re.search(rf"throttle\.window_seconds\s+600 .*staff:{admins['system-admin']}", text), text
    finally:
        run_as(idp, operator_tokens, "config", "set", "throttle.window_seconds", "900", "--as", admins["system-admin"])
    for args, status, words in [
        (("set", "password.min_length", "10", "--as", admins["system-admin"]), 1, "may not go below 12"),
        (("set", "no.such", "1", "--as", admins["system-admin"]), 1, "unknown setting 'no.such'"),
        (("set", "session.idle_seconds", "600", "--as", admins["security-admin"]), 3, "may not change"),
        (("show", "--as", admins["auditor"]), 3, "the auditor may not see"),
        (("set", "session.idle_seconds", "600"), 2, "Missing option '--as'"),
    ]:
        result = run_as(idp, operator_tokens, "config", *args, check=False) if "--as" in args else \
            idp.cli("config", *args, check=False)
        err = result.stderr.decode()
        assert result.returncode == status and words in err and "Traceback" not in err, (args, err)


def entry_channel(entry: dict[str, Any]) -> str:
    channel = json.loads(entry["details"]).get("channel", "")
    assert channel.startswith("cli:")
    return str(channel)


# -- the consumers read the value in force ---------------------------------------------------------
def test_each_consumer_follows_a_change(audit_store: AuditStore) -> None:
    from idp.password_policy import PasswordPolicy, WeakPassword
    from idp.sessions import SessionStore
    from idp.throttle import LoginThrottle
    from idp.totp import TotpVerifier

    runtime = _runtime(audit_store)
    day = datetime.timedelta(days=1)
    sessions = SessionStore(audit_store.sessions, _now, day, day, runtime.get)
    throttle = LoginThrottle(audit_store.sessions, _now, 50, 500, day, runtime.get)
    verifier = TotpVerifier(tuning=runtime.get)
    passwords = PasswordPolicy(audit_store.sessions, _now, tuning=runtime.get)
    assert (sessions.idle, sessions.absolute) == (datetime.timedelta(minutes=30), datetime.timedelta(hours=12))
    assert (throttle.account_limit, throttle.window, verifier.window, passwords.min_length) == (
        10, datetime.timedelta(minutes=15), 1, 12)
    for name, value in [("session.idle_seconds", "600"), ("session.absolute_seconds", "3600"),
                        ("throttle.account_failures", "4"), ("throttle.address_failures", "40"),
                        ("throttle.window_seconds", "120"), ("totp.window_steps", "0"), ("password.min_length", "16")]:
        runtime.set(name, value, audit_store.trail, _event, "staff:sysadmin")
    assert (sessions.idle, sessions.absolute) == (datetime.timedelta(minutes=10), datetime.timedelta(hours=1))
    assert (throttle.account_limit, throttle.address_limit, throttle.window) == (4, 40, datetime.timedelta(minutes=2))
    # window 0: only the current step's code is accepted, the previous step's is not
    secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    now = time.time()
    assert verifier.match(secret, verifier.code_at(secret, now - 30), now) is None
    assert verifier.match(secret, verifier.code_at(secret, now), now) is not None
    with pytest.raises(WeakPassword, match="at least 16"):
        passwords.check("someone", "Fjord-Quilt-93x")  # 15 characters: enough for the floor, not for 16


def test_a_lower_throttle_limit_applies_to_the_running_server(idp: IdpServer, admins: dict[str, str], slapd,  # type: ignore[no-untyped-def]
                                                              operator_tokens: dict[str, str]) -> None:
    import requests

    from tests.fixtures_web import PASSWORD, new_uid, post_login

    uid = new_uid("thr")
    slapd.create_user(uid, PASSWORD)
    run_as(idp, operator_tokens, "config", "set", "throttle.account_failures", "3", "--as", admins["system-admin"])
    try:
        time.sleep(2.5)  # every worker's cached value is at most 2 s old
        for _ in range(3):
            assert post_login(requests.Session(), idp, uid, "not the password").status_code == 401
        # the account's third failure reached the new limit (ppolicy would lock only at 5): the right
        # password now gets the generic sentence too
        blocked = post_login(requests.Session(), idp, uid, PASSWORD)
        assert blocked.status_code == 401 and "too many attempts" in blocked.text
    finally:
        run_as(idp, operator_tokens, "config", "set", "throttle.account_failures", "10", "--as", admins["system-admin"])
