"""The identity provider's stores on SQLite and on a private PostgreSQL: sessions (rotation,
timeouts, end all of a person), throttling, second factor, tokens (rotation, families, a leaver),
the client registry's validation."""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from store.engine import make_engine, make_session_factory
from store import schema
from idp.oidc.clients import ClientRegistrationError, ClientRegistry
from idp.oidc.tokens import TokenStore
from idp.second_factor import SecondFactor
from idp.secretbox import SecretBox
from idp.sessions import SessionStore, StaffSession
from idp.throttle import LoginThrottle


class Clock:
    def __init__(self) -> None:
        self.now = datetime.datetime(2026, 11, 25, 9, 0, 0, tzinfo=datetime.timezone.utc)

    def __call__(self) -> datetime.datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += datetime.timedelta(**kwargs)


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[sessionmaker[Session], Clock]]:
    url = f"sqlite:///{tmp_path / 'idp.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    if request.param == "postgres":
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    schema.upgrade(engine)
    yield make_session_factory(engine), Clock()
    engine.dispose()


def test_sessions_rotate_time_out_and_end_everywhere(db) -> None:  # type: ignore[no-untyped-def]
    sessions, clock = db
    store = SessionStore(sessions, clock, datetime.timedelta(minutes=30), datetime.timedelta(hours=12))
    s = StaffSession()
    s["_user_id"] = "alice"
    first = store.save(s, "127.0.0.1", "test")
    assert store.load(first)["_user_id"] == "alice"  # type: ignore[index]
    s.rotate()
    second = store.save(s, "127.0.0.1", "test")
    assert second != first and store.load(first) is None and store.load(second) is not None
    other = StaffSession({"_user_id": "alice"})
    third = store.save(other, None, None)
    bob = store.save(StaffSession({"_user_id": "bob"}), None, None)
    assert len(store.list_for("alice")) == 2
    assert store.end_all("alice") == 2
    assert store.load(second) is None and store.load(third) is None and store.load(bob) is not None
    # idle timeout: 30 minutes without a request
    clock.advance(minutes=29)
    loaded = store.load(bob)
    assert loaded is not None
    store.touch(loaded)
    clock.advance(minutes=29)
    assert store.load(bob) is not None  # touched 29 minutes ago
    clock.advance(minutes=2)
    assert store.load(bob) is None
    # absolute timeout: 12 hours even when active
    busy = StaffSession({"_user_id": "carol"})
    sid = store.save(busy, None, None)
    started = clock.now
    for _ in range(30):
        clock.advance(minutes=28)
        live = store.load(sid)
        if live is None:
            break
        store.touch(live)
    lasted = clock.now - started
    assert store.load(sid) is None
    assert datetime.timedelta(hours=12) < lasted <= datetime.timedelta(hours=12, minutes=28)


def test_throttle_per_account_and_address(db) -> None:  # type: ignore[no-untyped-def]
    sessions, clock = db
    throttle = LoginThrottle(sessions, clock, account_limit=3, address_limit=5, window=datetime.timedelta(minutes=15),
                             account_wide_limit=6)
    for _ in range(3):
        assert not throttle.blocked("alice", "10.0.0.1")
        throttle.failure("alice", "10.0.0.1")
    # the pair (alice, 10.0.0.1) is used up; alice from elsewhere is not
    assert throttle.blocked("alice", "10.0.0.1") and throttle.blocked("ALICE ", "10.0.0.1")
    assert not throttle.blocked("alice", "10.0.0.9") and not throttle.blocked("bob", "10.0.0.2")
    throttle.failure("bob", "10.0.0.1")
    throttle.failure("carol", "10.0.0.1")
    assert throttle.blocked("dave", "10.0.0.1")  # the address sprayed five failures
    assert not throttle.blocked("dave", "10.0.0.3")
    clock.advance(minutes=16)
    assert not throttle.blocked("alice", "10.0.0.1")
    throttle.failure("bob", "10.0.0.4")
    throttle.success("bob", "10.0.0.4")
    throttle.failure("bob", "10.0.0.4")
    throttle.failure("bob", "10.0.0.4")
    assert not throttle.blocked("bob", "10.0.0.4")  # the success cleared the pair's count


def test_throttle_account_wide_limit_spares_the_usual_address(db) -> None:  # type: ignore[no-untyped-def]
    sessions, clock = db
    throttle = LoginThrottle(sessions, clock, account_limit=3, address_limit=100,
                             window=datetime.timedelta(minutes=15), account_wide_limit=6)
    throttle.success("erin", "192.0.2.7")  # erin's usual address
    for n in range(6):  # an attacker on six addresses, one failure each
        throttle.failure("erin", f"198.51.100.{n}")
    assert throttle.blocked("erin", "198.51.100.200")  # the account-wide limit for every other place
    assert throttle.blocked("ERIN", "203.0.113.1")
    assert not throttle.blocked("erin", "192.0.2.7")  # ... but not from where erin logs in
    # an account that does not exist is counted and blocked the same way
    for n in range(6):
        throttle.failure("nobody-here", f"198.51.100.{n}")
    assert throttle.blocked("nobody-here", "203.0.113.1")
    # the usual address is still held by its own pair counter
    for _ in range(3):
        throttle.failure("erin", "192.0.2.7")
    assert throttle.blocked("erin", "192.0.2.7")
    # an address stops being usual after the configured days without a login
    clock.advance(minutes=16)
    assert not throttle.blocked("erin", "192.0.2.7")
    clock.advance(days=91)
    for n in range(6):
        throttle.failure("erin", f"198.51.100.{n}")
    assert throttle.blocked("erin", "192.0.2.7")


def test_second_factor_on_both_databases(db) -> None:  # type: ignore[no-untyped-def]
    sessions, clock = db
    factor = SecondFactor(sessions, SecretBox(os.urandom(32)), clock)
    assert factor.remember("alice", {"sub": "alice", "name": "Alice"}) is False
    assert factor.claims("alice") == {"sub": "alice", "name": "Alice"}
    enrolment = factor.begin_enrolment("alice")
    codes = factor.confirm_enrolment("alice", factor.verifier.code_at(enrolment.secret, clock.now.timestamp()))
    assert codes and factor.remember("alice", {"sub": "alice", "name": "Alice B"}) is True
    assert factor.claims("alice")["name"] == "Alice B"  # type: ignore[index]
    clock.advance(seconds=30)
    code = factor.verifier.code_at(enrolment.secret, clock.now.timestamp())
    assert factor.verify("alice", code) == "otp" and factor.verify("alice", code) is None
    assert factor.verify("alice", codes[3]) == "recovery" and factor.verify("alice", codes[3]) is None
    factor.reset("alice")
    assert not factor.is_enrolled("alice") and factor.recovery_codes_left("alice") == 0


def test_tokens_families_and_a_leaver(db) -> None:  # type: ignore[no-untyped-def]
    sessions, clock = db
    clients = ClientRegistry(sessions, clock)
    client = clients.add("RP", ["https://rp.example/cb"], client_id="rp-1")
    tokens = TokenStore(sessions, clock, lambda uid: uid, clients.get)
    tokens.save({"access_token": "a1", "refresh_token": "r1", "scope": "openid", "expires_in": 900}, client.client_id,
                "alice", "fam-1", 1, "pwd otp")
    tokens.save({"access_token": "a2", "refresh_token": "r2", "scope": "openid", "expires_in": 900}, client.client_id,
                "alice", "fam-2", 1, "pwd otp")
    tokens.save({"access_token": "b1", "refresh_token": "s1", "scope": "openid", "expires_in": 900}, client.client_id,
                "bob", "fam-3", 1, "pwd otp")
    first = tokens.by_refresh_token("r1")
    assert first is not None and first.get_user() == "alice" and not first.is_expired() and not first.is_revoked()
    assert tokens.spend_refresh_token(first.id) and not tokens.spend_refresh_token(first.id)
    assert tokens.by_access_token("nope") is None
    assert tokens.revoke_family("fam-1") == 1
    assert tokens.by_access_token("a1").is_revoked() and not tokens.by_access_token("a2").is_revoked()  # type: ignore[union-attr]
    assert tokens.revoke_user("alice") == 1
    assert tokens.by_access_token("a2").is_revoked() and tokens.by_refresh_token("r2").refresh_used_at is not None  # type: ignore[union-attr]
    assert not tokens.by_access_token("b1").is_revoked()  # type: ignore[union-attr]
    clock.advance(seconds=901)
    assert tokens.by_access_token("b1").is_expired()  # type: ignore[union-attr]
    assert clients.remove("rp-1") and clients.get("rp-1") is None and tokens.by_access_token("b1") is None


@pytest.mark.parametrize("kwargs,message", [
    ({"redirect_uris": ["http://rp.example/cb"]}, "https"),
    ({"redirect_uris": ["https://rp.example/cb#x"]}, "fragment"),
    ({"redirect_uris": ["/relative"]}, "absolute"),
    ({"redirect_uris": []}, "redirect URI"),
    ({"redirect_uris": ["https://rp.example/cb"], "auth_method": "private_key_jwt"}, "jwks"),
    ({"redirect_uris": ["https://rp.example/cb"], "auth_method": "magic"}, "token_endpoint_auth_method"),
    ({"redirect_uris": ["https://rp.example/cb"], "scopes": ["email"]}, "openid"),
    ({"redirect_uris": ["https://rp.example/cb"], "client_id": "a b"}, "client id"),
    ({"redirect_uris": ["https://rp.example/cb"], "id_token_alg": "HS256"}, "ES256"),
])
def test_client_registration_is_validated(db, kwargs, message) -> None:  # type: ignore[no-untyped-def]
    sessions, clock = db
    registry = ClientRegistry(sessions, clock)
    with pytest.raises(ClientRegistrationError, match=message):
        registry.add("RP", **kwargs)
    assert registry.list() == []


def test_client_secret_checked_in_constant_time_and_ids_unique(db) -> None:  # type: ignore[no-untyped-def]
    sessions, clock = db
    registry = ClientRegistry(sessions, clock)
    new = registry.add("RP", ["https://rp.example/cb", "http://127.0.0.1:8080/cb"], client_id="rp-x")
    client = registry.get("rp-x")
    assert client is not None and new.client_secret and client.check_client_secret(new.client_secret)
    assert not client.check_client_secret(new.client_secret + "x") and not client.check_client_secret("")
    assert client.check_redirect_uri("https://rp.example/cb") and not client.check_redirect_uri("https://rp.example/cb/")
    assert client.get_default_redirect_uri() is None  # two registered: the request must name one
    with pytest.raises(ClientRegistrationError, match="exists"):
        registry.add("RP again", ["https://rp.example/cb"], client_id="rp-x")


def test_generated_client_ids_never_start_with_a_dash() -> None:
    from idp.oidc.clients import new_client_id

    ids = [new_client_id() for _ in range(2000)]  # ~1 in 64 raw tokens starts with "-": this would catch it
    assert not any(i.startswith("-") for i in ids) and len(set(ids)) == len(ids)
