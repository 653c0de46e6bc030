"""Tokens and the session they were issued in, at the stores (SQLite and a private PostgreSQL): the
session's OpenID Connect sid survives the cookie's rotation, another person's login, an unnoticed
timeout and an explicit end each end the session's tokens (an offline grant's refresh token
excepted), and the listeners (back-channel logout) hear of every end."""

from __future__ import annotations

import datetime
from typing import Any

from idp.oidc.clients import ClientRegistry
from idp.oidc.tokens import TokenStore
from idp.sessions import EndedSession, SessionStore, StaffSession
from tests.test_login_stores import db  # noqa: F401  (the fixture)

HOUR = {"expires_in": 3600, "scope": "openid"}


def test_tokens_end_with_their_session(db) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    sessions, clock = db
    store = SessionStore(sessions, clock, datetime.timedelta(minutes=30), datetime.timedelta(hours=12))
    ClientRegistry(sessions, clock).add("RP", ["https://rp.example/cb"], client_id="rp-1")
    tokens = TokenStore(sessions, clock, lambda uid: uid, lambda cid: cid, store.alive)
    heard: list[EndedSession] = []

    def listener(ended: list[EndedSession]) -> None:
        heard.extend(ended)

    store.on_ended(listener)

    def login(uid: str) -> tuple[StaffSession, str]:
        session = StaffSession({"_user_id": uid})
        return session, store.save(session, None, None)

    def issue(name: str, session: StaffSession | None, offline: bool = False, uid: str = "alice") -> None:
        tokens.save({"access_token": "a" + name, "refresh_token": "r" + name, **HOUR}, "rp-1", uid, "fam-" + name, 1,
                    "pwd otp", session.oidc_sid if session else None, offline)

    def live(name: str) -> tuple[bool, bool]:
        access, refresh = tokens.by_access_token("a" + name), tokens.by_refresh_token("r" + name)
        assert access is not None and refresh is not None
        return not access.is_revoked(), not refresh.is_revoked()

    alice, cookie = login("alice")
    issue("1", alice)
    issue("2", alice, offline=True)
    issue("3", None)  # no session (issued before sessions were named)
    assert live("1") == live("2") == live("3") == (True, True)
    sid = alice.oidc_sid
    alice.rotate()
    cookie = store.save(alice, None, None)
    loaded = store.load(cookie)
    assert loaded is not None and loaded.oidc_sid == sid and live("1") == (True, True)
    # another person logs in over the session in the same browser: alice's session tokens end
    loaded["_user_id"] = "bob"
    store.save(loaded, None, None)
    assert live("1") == (False, False) and live("2") == (False, True) and live("3") == (True, True)
    loaded["_user_id"] = "alice"
    store.save(loaded, None, None)
    assert live("1") == (True, True)
    # a timeout nobody noticed
    clock.advance(minutes=31)
    assert live("1") == (False, False) and live("2") == (False, True) and live("3") == (True, True)
    # an explicit end: revoked for good, the listeners told
    bob, bob_cookie = login("bob")
    issue("4", bob, uid="bob")
    issue("5", bob, offline=True, uid="bob")
    store.delete(bob_cookie)
    assert heard[-1] == EndedSession("bob", bob.oidc_sid)
    assert live("4") == (False, False) and live("5") == (False, True)
    row: Any = tokens.by_access_token("a4")
    assert row.access_revoked and row.sid == bob.oidc_sid  # marked, not only judged by the missing row
    # every session of a person, and the purge of timed-out ones
    carol, _ = login("carol")
    issue("6", carol, uid="carol")
    assert store.end_all("carol") == 1 and live("6") == (False, False) and heard[-1].uid == "carol"
    dave, _ = login("dave")
    clock.advance(hours=1)
    assert store.purge_expired() >= 1 and EndedSession("dave", dave.oidc_sid) in heard
