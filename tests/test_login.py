"""Staff login over HTTP against the running service and a real slapd: both factors, the
generic failure message, ppolicy lockout, injection strings, throttling, the directory going
away (503, not a failure) and coming back, sessions (rotation, timeouts, log out everywhere),
CSRF and the security headers."""

from __future__ import annotations

import datetime
import hashlib
import re
import sqlite3

import pytest
from urllib.parse import urlsplit

import requests

from tests.fixtures_web import *  # noqa: F401,F403
from tests.fixtures_web import PASSWORD, IdpServer, StaffAgent, csrf_of, new_uid, post_login

GENERIC = "The user name or password is incorrect, or there were too many attempts."


def cookie_value(response: requests.Response, name: str = "tessera_session") -> str | None:
    header = response.headers.get("Set-Cookie", "")
    match = re.search(name + r"=([^;]+)", header)
    return match.group(1) if match else None


def test_first_login_enrols_then_code_login(idp: IdpServer, staff_user: tuple[str, str]) -> None:
    agent = StaffAgent(idp, *staff_user)
    page = agent.login()
    assert page.status_code == 200 and staff_user[0] in page.text
    assert len(agent.recovery_codes) == 10
    # the enrolment page showed an inline SVG QR code, no outside image
    second = StaffAgent(idp, *staff_user, secret=agent.secret)
    second.last_step = agent.last_step
    assert second.login().status_code == 302
    assert second.get(idp.url("/account"), allow_redirects=False).status_code == 200


def test_enrolment_page_renders_qr_locally(idp: IdpServer, staff_user: tuple[str, str]) -> None:
    agent = StaffAgent(idp, *staff_user)
    response = agent.password_step()
    page = agent.get(idp.url(response.headers["Location"]))
    assert "<svg" in page.text and 'id="totp-secret"' in page.text
    assert "http" not in re.search(r"<svg.*?</svg>", page.text, re.S).group(0).replace("http://www.w3.org", "")
    assert "otpauth" not in page.text or "src=" not in page.text


def test_wrong_password_and_unknown_user_look_the_same(idp: IdpServer, staff_user: tuple[str, str]) -> None:
    wrong = post_login(requests.Session(), idp, staff_user[0], "not-the-password")
    unknown = post_login(requests.Session(), idp, new_uid("nobody"), "not-the-password")
    assert wrong.status_code == unknown.status_code == 401
    assert GENERIC in wrong.text and GENERIC in unknown.text
    strip = lambda text, name: re.sub(r'value="[^"]*"', "", text).replace(name, "")  # noqa: E731
    assert strip(wrong.text, staff_user[0]) .count("error") == strip(unknown.text, "x").count("error")


@pytest.mark.parametrize("username", ["*)(uid=*", "admin)(|(uid=*", "*", "he\x00guiying", "a" * 5000, "(&)", "\\2a",
                                      "uid=admin,ou=people,dc=tessera,dc=example", "ä" * 300])
def test_injection_strings_fail_cleanly(idp: IdpServer, slapd, username: str) -> None:  # type: ignore[no-untyped-def]
    response = post_login(requests.Session(), idp, username, slapd.seed_password)
    assert response.status_code == 401, response.status_code
    assert GENERIC in response.text
    response = post_login(requests.Session(), idp, username, "*")
    assert response.status_code == 401


def test_directory_lockout_says_no_more_than_a_wrong_password(idp: IdpServer, slapd) -> None:  # type: ignore[no-untyped-def]
    """This slapd locks after 5 failures (the product's sits above the throttle): the locked account
    gets the generic sentence, as an unknown name does, so the lock reveals no account."""
    uid = new_uid("lock")
    slapd.create_user(uid, PASSWORD)
    for _ in range(5):
        assert post_login(requests.Session(), idp, uid, "wrong-password").status_code == 401
    locked = post_login(requests.Session(), idp, uid, PASSWORD)
    unknown = post_login(requests.Session(), idp, new_uid("nobody"), PASSWORD)
    assert locked.status_code == unknown.status_code == 401
    assert GENERIC in locked.text and "locked" not in locked.text and GENERIC in unknown.text
    with slapd.directory() as directory:
        from directory.errors import AccountLocked

        with pytest.raises(AccountLocked):  # it is the directory's lock that refused it
            directory.authenticate(uid, PASSWORD)


def test_disabled_account_and_expired_password(idp: IdpServer, slapd) -> None:  # type: ignore[no-untyped-def]
    uid = new_uid("dis")
    slapd.create_user(uid, PASSWORD)
    slapd.disable(uid)
    response = post_login(requests.Session(), idp, uid, PASSWORD)
    assert response.status_code == 401 and GENERIC in response.text and "disabled" not in response.text
    uid = new_uid("chg")
    slapd.create_user(uid, PASSWORD, must_change=True)
    response = post_login(requests.Session(), idp, uid, PASSWORD)
    # the right one-time password: on to the password change page, never logged in with it
    assert response.status_code in (302, 303), response.status_code
    assert urlsplit(response.headers["Location"]).path == "/password/change"


def test_two_administrator_roles_refused_at_login(idp: IdpServer, slapd) -> None:  # type: ignore[no-untyped-def]
    uid = new_uid("two")
    slapd.create_user(uid, PASSWORD, groups=("auditors", "security-administrators"))
    response = post_login(requests.Session(), idp, uid, PASSWORD)
    assert response.status_code == 403 and "administrator roles" in response.text, response.text[:500]
    plain = new_uid("one")
    slapd.create_user(plain, PASSWORD, groups=("auditors",))
    assert post_login(requests.Session(), idp, plain, PASSWORD).status_code in (302, 303)


def test_wrong_codes_throttle_the_account(idp: IdpServer, staff_user: tuple[str, str]) -> None:
    agent = StaffAgent(idp, *staff_user)
    agent.login()
    attacker = requests.Session()
    response = post_login(attacker, idp, *staff_user)
    assert response.status_code == 200 and 'action="/login/code"' in response.text  # the code form in place
    page = response
    import time

    import pyotp

    totp = pyotp.TOTP(agent.secret)
    valid = {totp.at(time.time() + offset) for offset in (-60, -30, 0, 30, 60)}
    wrong_code = next(c for c in ("000000", "111111", "222222", "333333", "444444", "555555") if c not in valid)
    for _ in range(10):
        wrong = attacker.post(idp.url("/login/code"), data={"code": wrong_code, "csrf_token": csrf_of(page.text)},
                              allow_redirects=False)
        if wrong.status_code != 401 or GENERIC in wrong.text:
            break
    # the account's limit is reached: even the right password gets the generic sentence now
    blocked = post_login(requests.Session(), idp, *staff_user)
    assert blocked.status_code == 401 and GENERIC in blocked.text


def test_directory_down_is_503_and_not_a_failure(idp: IdpServer, slapd, staff_user: tuple[str, str]) -> None:  # type: ignore[no-untyped-def]
    agent = StaffAgent(idp, *staff_user)
    agent.login()
    uid = staff_user[0]
    slapd.stop()
    try:
        for _ in range(7):  # more than ppolicy's 5 and enough to count if it counted
            down = post_login(requests.Session(), idp, uid, "wrong-password")
            assert down.status_code == 503, down.status_code
            assert "directory is unavailable" in down.text
    finally:
        slapd.start()
    with sqlite3.connect(idp.home / "tessera.db") as db:
        row = db.execute("SELECT failures FROM idp_login_throttle WHERE key = ?", (f"account:{uid}",)).fetchone()
    assert row is None or row[0] == 0
    again = StaffAgent(idp, *staff_user, secret=agent.secret)
    again.last_step = agent.last_step
    assert again.login().status_code == 302  # ppolicy did not lock, nothing was counted


def _session_rows(idp: IdpServer) -> int:
    with sqlite3.connect(idp.home / "tessera.db") as db:
        return int(db.execute("SELECT count(*) FROM idp_web_session").fetchone()[0])


def test_login_form_keeps_no_record_and_session_id_rotates(idp: IdpServer, staff_user: tuple[str, str]) -> None:
    agent = StaffAgent(idp, *staff_user)
    planted = "planted-by-an-attacker-" + "x" * 20
    agent.cookies.set("tessera_session", planted, domain="127.0.0.1", path="/")  # session fixation: an id chosen before login
    rows = _session_rows(idp)
    page = agent.get(idp.url("/login"))
    assert cookie_value(page) is None and _session_rows(idp) == rows, "a login form must not create a session"
    # its CSRF token is signed for a random value in a cookie of its own (signed double-submit)
    set_cookie = page.headers["Set-Cookie"]
    assert cookie_value(page, "tessera_csrf") and "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie
    assert "Path=/" in set_cookie
    after_password = agent.post(idp.url("/login"), data={"username": staff_user[0], "password": staff_user[1],
                                                         "csrf_token": csrf_of(page.text)}, allow_redirects=False)
    first = cookie_value(after_password)
    assert first and first != planted and agent.cookies.get("tessera_session") == first
    set_cookie = after_password.headers["Set-Cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie and "Path=/" in set_cookie
    agent.finish(after_password)
    final = agent.cookies.get("tessera_session")
    assert final not in (planted, first)
    # the password step's id is worthless once the login completed
    old = requests.Session()
    old.cookies.set("tessera_session", first)
    assert old.get(idp.url("/account"), allow_redirects=False).status_code in (302, 303)
    assert agent.get(idp.url("/account"), allow_redirects=False).status_code == 200


def test_security_headers(idp: IdpServer) -> None:
    response = requests.get(idp.url("/login"), timeout=10)
    csp = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"
    assert "Strict-Transport-Security" not in response.headers  # plain HTTP: HSTS would be meaningless


def test_secure_cookies_and_hsts_under_tls(idp: IdpServer, staff_user: tuple[str, str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from idp.app import create_app
    from idp.settings import Settings

    env = dict(idp.env, TESSERA_PUBLIC_URL="https://sso.tessera.example")
    for name, value in idp.directory.env.items():  # the directory settings are read from the environment
        monkeypatch.setenv(name, value)
    app = create_app(Settings.from_env(idp.home, env))
    try:
        client = app.test_client()
        response = client.get("/login", base_url="https://sso.tessera.example")
        assert response.headers["Strict-Transport-Security"].startswith("max-age=")
        cookie = response.headers["Set-Cookie"]
        assert cookie.startswith("__Host-tessera_csrf=") and "Secure" in cookie and "HttpOnly" in cookie \
            and "Domain" not in cookie
        response = client.post("/login", base_url="https://sso.tessera.example",
                               data={"username": staff_user[0], "password": staff_user[1],
                                     "csrf_token": csrf_of(response.get_data(as_text=True))})
        assert response.status_code in (200, 302), response.get_data(as_text=True)[-1500:]
        cookie = response.headers["Set-Cookie"]
        assert cookie.startswith("__Host-tessera=") and "Secure" in cookie and "HttpOnly" in cookie and "Domain" not in cookie
    finally:
        app.extensions["tessera"].close()


def test_csrf_required_on_forms(idp: IdpServer, staff_user: tuple[str, str]) -> None:
    session = requests.Session()
    session.get(idp.url("/login"))
    missing = session.post(idp.url("/login"), data={"username": staff_user[0], "password": staff_user[1]}, allow_redirects=False)
    assert missing.status_code == 400
    other = requests.Session()
    foreign_token = csrf_of(other.get(idp.url("/login")).text)
    foreign = session.post(idp.url("/login"), data={"username": staff_user[0], "password": staff_user[1],
                                                   "csrf_token": foreign_token}, allow_redirects=False)
    assert foreign.status_code == 400
    assert "CSRF" in foreign.text
    # the signed token of a visitor without a session works only with that visitor's own cookie
    pair = requests.Session()
    token = csrf_of(pair.get(idp.url("/login")).text)
    stolen = requests.Session()
    stolen.cookies.set("tessera_csrf", "A" * 43)
    assert stolen.post(idp.url("/login"), data={"username": staff_user[0], "password": "wrong",
                                                "csrf_token": token}, allow_redirects=False).status_code == 400
    assert pair.post(idp.url("/login"), data={"username": staff_user[0], "password": "wrong",
                                              "csrf_token": token}, allow_redirects=False).status_code == 401


def test_logout_everywhere_ends_other_sessions(idp: IdpServer, staff_user: tuple[str, str]) -> None:
    first = StaffAgent(idp, *staff_user)
    first.login()
    second = StaffAgent(idp, *staff_user, secret=first.secret)
    second.last_step = first.last_step
    second.login()
    assert second.get(idp.url("/account"), allow_redirects=False).status_code == 200
    page = first.get(idp.url("/account"))
    assert page.text.count("(this one)") == 1
    done = first.post(idp.url("/account/logout-everywhere"), data={"csrf_token": csrf_of(page.text)})
    assert done.status_code == 200 and "logged out" in done.text
    assert second.get(idp.url("/account"), allow_redirects=False).status_code == 302
    assert first.get(idp.url("/account"), allow_redirects=False).status_code == 302


def _age_session(idp: IdpServer, agent: requests.Session, column: str, seconds: int) -> None:
    sid = agent.cookies.get("tessera_session")
    assert sid
    past = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=seconds)).replace(tzinfo=None)
    with sqlite3.connect(idp.home / "tessera.db") as db:
        assert db.execute(f"UPDATE idp_web_session SET {column} = ? WHERE id_hash = ?",
                          (past.isoformat(sep=" "), hashlib.sha256(sid.encode()).hexdigest())).rowcount == 1


@pytest.mark.parametrize("column,seconds", [("last_seen_at", 31 * 60), ("created_at", 13 * 3600)])
def test_idle_and_absolute_timeouts(idp: IdpServer, staff_user: tuple[str, str], column: str, seconds: int) -> None:
    agent = StaffAgent(idp, *staff_user)
    agent.login()
    assert agent.get(idp.url("/account"), allow_redirects=False).status_code == 200
    _age_session(idp, agent, column, seconds)
    assert agent.get(idp.url("/account"), allow_redirects=False).status_code == 302


def test_recovery_code_logs_in_once(idp: IdpServer, staff_user: tuple[str, str]) -> None:
    agent = StaffAgent(idp, *staff_user)
    agent.login()
    code = agent.recovery_codes[0]
    for expected in (302, 401):
        fresh = requests.Session()
        page = post_login(fresh, idp, *staff_user)
        assert page.status_code == 200, page.status_code
        done = fresh.post(idp.url("/login/code"), data={"code": code, "csrf_token": csrf_of(page.text)}, allow_redirects=False)
        assert done.status_code == expected


def test_open_redirect_refused(idp: IdpServer, staff_user: tuple[str, str]) -> None:
    agent = StaffAgent(idp, *staff_user)
    done = agent.login(next_path="//evil.example/x")
    assert "evil.example" not in done.headers.get("Location", "")


def test_totp_code_replay_refused_over_http(idp: IdpServer, staff_user: tuple[str, str]) -> None:
    agent = StaffAgent(idp, *staff_user)
    agent.login()  # enrolment consumed the code of agent.last_step
    import pyotp

    used = pyotp.TOTP(agent.secret).generate_otp(agent.last_step)
    replay = requests.Session()
    replay.headers["Accept-Language"] = "en"
    page = post_login(replay, idp, *staff_user)
    assert page.status_code == 200, page.status_code
    again = replay.post(idp.url("/login/code"), data={"code": used, "csrf_token": csrf_of(page.text)}, allow_redirects=False)
    assert again.status_code == 401 and "already used" in again.text
    fresh = replay.post(idp.url("/login/code"), data={"code": agent.code(), "csrf_token": csrf_of(page.text)},
                        allow_redirects=False)
    assert fresh.status_code == 302


def test_proxy_headers_only_trusted_when_configured(idp: IdpServer) -> None:
    from idp.app import create_app
    from idp.settings import Settings

    for hops, expect_hsts in (("0", False), ("1", True)):
        app = create_app(Settings.from_env(idp.home, dict(idp.env, TESSERA_PROXY_HOPS=hops)))
        try:
            response = app.test_client().get("/login", headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"})
            assert ("Strict-Transport-Security" in response.headers) is expect_hsts
        finally:
            app.extensions["tessera"].close()
