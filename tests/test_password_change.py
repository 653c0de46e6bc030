"""``/password/change`` proves the current password first (issue 12, finding 3): no policy or
history answer before a directory bind as the user succeeded; unknown and known accounts alike;
the throttle counts every failure, also once ppolicy has locked the account; the audit trail holds
the true result; the history is written only when the directory took the new password.

Against the running service and the session's slapd (pwdMaxFailure 5, so the ppolicy lock is
reachable here); the history and the audit trail are read from the service's database."""

from __future__ import annotations

import json
import re
import sqlite3
import time

import requests

from idp.password_change import NOT_ACCEPTED
from tests.fixtures_web import *  # noqa: F401,F403
from tests.fixtures_web import PASSWORD, IdpServer, StaffAgent, csrf_of, new_uid

NEW = "Second-horse-8-battery"
THIRD = "Third-staple-9-kettle!"


def _db(idp: IdpServer) -> sqlite3.Connection:
    return sqlite3.connect(idp.home / "tessera.db")


def _history(idp: IdpServer, uid: str) -> int:
    with _db(idp) as db:
        return int(db.execute("SELECT count(*) FROM gov_password_history WHERE uid = ?", (uid,)).fetchone()[0])


def _tip(idp: IdpServer) -> int:
    with _db(idp) as db:
        return int(db.execute("SELECT coalesce(max(seq), 0) FROM audit_entry").fetchone()[0])


def _changes(idp: IdpServer, uid: str, since: int) -> list[tuple[str, str, str]]:
    """(result, subject, reason) of the password.change entries on ``uid`` after ``since``."""
    with _db(idp) as db:
        rows = db.execute("SELECT result, subject, details FROM audit_entry WHERE event_type = 'password.change' "
                          "AND object = ? AND seq > ? ORDER BY seq", (f"staff:{uid}", since)).fetchall()
    return [(r[0], r[1], json.loads(r[2] or "{}").get("reason", "")) for r in rows]


def _pair_failures(idp: IdpServer, uid: str) -> int:
    with _db(idp) as db:
        row = db.execute("SELECT failures FROM idp_login_throttle WHERE key = ?", (f"pair:{uid}|127.0.0.1",)).fetchone()
    return int(row[0]) if row else 0


def _change(session: requests.Session, idp: IdpServer, uid: str, current: str, new: str) -> tuple[int, str]:
    english = {"Accept-Language": "en"}  # the answers are compared in English
    page = session.get(idp.url("/password/change"), params={"username": uid}, headers=english)
    response = session.post(idp.url("/password/change"), headers=english, data={
        "csrf_token": csrf_of(page.text), "username": uid, "current_password": current,
        "new_password": new, "new_password_again": new})
    error = re.search(r'id="password-error">([^<]*)<', response.text)
    if 'id="password-changed"' in response.text:
        return response.status_code, "changed"
    return response.status_code, error.group(1) if error else response.text[-300:]


def _person(slapd) -> str:  # type: ignore[no-untyped-def]
    uid = new_uid("pc")
    slapd.create_user(uid, PASSWORD, given_name="Petra", surname=f"Change{uid[-4:]}")
    return uid


def test_no_policy_or_history_answer_before_the_current_password(idp: IdpServer, slapd) -> None:  # type: ignore[no-untyped-def]
    uid = _person(slapd)
    session = requests.Session()
    since = _tip(idp)
    assert _change(session, idp, uid, PASSWORD, NEW) == (200, "changed")
    assert _history(idp, uid) == 1
    assert _changes(idp, uid, since) == [("success", f"staff:{uid}", "")]
    unknown = new_uid("nobody")
    # guesses as new_password with a wrong current one: the finding's leaks (history, user name,
    # name, length); four, as the fifth failure would make this slapd lock the account
    took: dict[str, list[float]] = {"known": [], "unknown": []}
    for new in (NEW, f"xx-{uid}-yy-zz-1", "Petra-is-the-best-1", "short"):
        started = time.monotonic()
        known_answer = _change(requests.Session(), idp, uid, "not-the-password-1", new)
        took["known"].append(time.monotonic() - started)
        started = time.monotonic()
        unknown_answer = _change(requests.Session(), idp, unknown, "not-the-password-1", new)
        took["unknown"].append(time.monotonic() - started)
        assert known_answer == unknown_answer == (401, NOT_ACCEPTED), (new, known_answer, unknown_answer)
    print({name: f"{sorted(t)[len(t) // 2] * 1000:.0f} ms" for name, t in took.items()})
    # nothing of the attacker's reached the history, and every try is audited as the failure it was
    assert _history(idp, uid) == 1
    entries = _changes(idp, uid, since)[1:]
    assert len(entries) == 4 and {(result, reason) for result, _, reason in entries} == {
        ("failure", "invalid-credentials")}
    assert all(subject == "address:127.0.0.1" for _, subject, _ in entries)
    assert ("failure", "address:127.0.0.1", "invalid-credentials") in _changes(idp, unknown, since)
    # with the current password proven, the policy speaks (and the history: NEW is the newest)
    since = _tip(idp)
    status, text = _change(session, idp, uid, NEW, NEW)
    assert status == 400 and "last 5" in text
    status, text = _change(session, idp, uid, NEW, f"xx-{uid}-yy-zz-1")
    assert status == 400 and "user name" in text
    assert _history(idp, uid) == 1
    assert [(r, reason) for r, _, reason in _changes(idp, uid, since)] == [("refused", "policy")] * 2


def test_directory_refusal_writes_no_history_and_audits_a_refusal(idp: IdpServer, slapd) -> None:  # type: ignore[no-untyped-def]
    """The directory's own pwdInHistory refuses a password Tessera's history no longer holds: the
    transaction with the success entry and the history row rolls back."""
    uid = _person(slapd)
    session = requests.Session()
    assert _change(session, idp, uid, PASSWORD, NEW) == (200, "changed")
    with _db(idp) as db:  # forget Tessera's history: only the directory remembers PASSWORD now
        db.execute("DELETE FROM gov_password_history WHERE uid = ?", (uid,))
    since = _tip(idp)
    status, text = _change(session, idp, uid, NEW, PASSWORD)
    assert status == 400 and "used recently" in text, text
    assert _history(idp, uid) == 0
    assert _changes(idp, uid, since) == [("refused", f"staff:{uid}", "password-rejected")]
    with slapd.directory() as directory:  # the directory still has NEW
        assert directory.authenticate(uid, NEW).uid == uid


def test_throttle_keeps_counting_after_the_ppolicy_lock(idp: IdpServer, slapd) -> None:  # type: ignore[no-untyped-def]
    uid = _person(slapd)
    session = requests.Session()
    since = _tip(idp)
    answers = [_change(session, idp, uid, f"wrong-guess-{n}", NEW) for n in range(12)]
    assert answers == [(401, NOT_ACCEPTED)] * 12
    # slapd locked the account after five failures; the throttle counted on to its limit (10)
    assert _pair_failures(idp, uid) == 10
    reasons = [reason for _, _, reason in _changes(idp, uid, since)]
    assert reasons[:5] == ["invalid-credentials"] * 5 and "account-locked" in reasons[5:10]
    assert reasons[10:] == ["throttled"] * 2
    # the right password is refused too now, and says no more
    assert _change(session, idp, uid, PASSWORD, NEW) == (401, NOT_ACCEPTED)
    assert _history(idp, uid) == 0
    assert all(result == "failure" for result, _, _ in _changes(idp, uid, since))


def test_one_time_password_changed_then_login(idp: IdpServer, slapd) -> None:  # type: ignore[no-untyped-def]
    uid = new_uid("pc")
    slapd.create_user(uid, PASSWORD, must_change=True)
    session = requests.Session()
    assert _change(session, idp, uid, PASSWORD, THIRD) == (200, "changed")
    agent = StaffAgent(idp, uid, THIRD)
    assert agent.password_step().headers.get("Location", "").endswith("/login/enrol")
    # the one-time password is gone
    assert _change(session, idp, uid, PASSWORD, NEW) == (401, NOT_ACCEPTED)

