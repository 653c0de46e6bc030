"""Service accounts in the store, on SQLite and PostgreSQL: registration and removal all-or-nothing
with their in-transaction hook (the audit entry), and the live check of a service account's access
token that the verification API makes on every call (idp.oidc.tokens.TokenStore.service_token)."""

from __future__ import annotations

import datetime
import secrets
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import sessionmaker

from store.engine import make_engine
from store import schema
from idp.oidc.clients import ClientRegistrationError, ClientRegistry
from idp.oidc.tokens import TokenStore

START = datetime.datetime(2026, 11, 25, 9, 0, tzinfo=datetime.timezone.utc)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Engine, ClientRegistry, TokenStore, list[datetime.datetime]]:
    url = f"sqlite:///{tmp_path / 'tokens.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    schema.upgrade(engine)
    sessions = sessionmaker(bind=engine)
    now = [START]
    clients = ClientRegistry(sessions, lambda: now[0])
    return engine, clients, TokenStore(sessions, lambda: now[0], lambda _uid: None, clients.get), now


def _issue(tokens: TokenStore, client_id: str, uid: str | None = None, seconds: int = 300) -> str:
    value = secrets.token_urlsafe(32)
    tokens.save({"access_token": value, "scope": "verify", "expires_in": seconds}, client_id,
                uid or f"service:{client_id}", secrets.token_hex(16), 0, "")
    return value


def test_live_service_token_and_every_way_it_ends(store: Any) -> None:
    engine, clients, tokens, now = store
    account = clients.add_service("Tax Office batch")
    value = _issue(tokens, account.client_id)
    live = tokens.service_token(value)
    assert live is not None and live.client_id == account.client_id and live.name == "Tax Office batch"
    assert live.scopes == {"verify"} and live.expires_at == START + datetime.timedelta(seconds=300)
    assert tokens.service_token("not-a-token") is None
    now[0] = START + datetime.timedelta(seconds=301)
    assert tokens.service_token(value) is None  # expired
    now[0] = START
    revoked = _issue(tokens, account.client_id)
    with engine.begin() as conn:
        conn.execute(text("UPDATE idp_oauth_token SET access_revoked = :t WHERE uid = :u"),
                     {"t": True, "u": f"service:{account.client_id}"})
    assert tokens.service_token(revoked) is None
    rp = clients.add("Payroll", ["https://payroll.example/cb"])
    staff = _issue(tokens, rp.client_id, uid="heguiying")
    assert tokens.service_token(staff) is None  # a staff member's token is no service's
    kept = _issue(tokens, clients.add_service("Insurance fund").client_id)
    fresh = _issue(tokens, account.client_id)
    assert tokens.service_token(fresh) is not None
    assert clients.remove(account.client_id)
    assert tokens.service_token(fresh) is None  # removed with its account, at once
    assert tokens.service_token(kept) is not None


def test_registration_and_removal_commit_with_their_hook_or_not_at_all(store: Any) -> None:
    _engine, clients, _tokens, _now = store
    seen: list[str] = []

    def failing(_session: Any, client_id: str) -> None:
        seen.append(client_id)
        raise RuntimeError("the audit trail cannot be written")

    with pytest.raises(RuntimeError):
        clients.add_service("Unaudited", client_id="unaudited-service", on_change=failing)
    assert seen == ["unaudited-service"] and clients.get("unaudited-service") is None
    account = clients.add_service("Audited", on_change=lambda _s, cid: seen.append(cid))
    assert seen[-1] == account.client_id
    with pytest.raises(RuntimeError):
        clients.remove(account.client_id, on_change=failing)
    assert clients.get(account.client_id) is not None  # still there: the removal rolled back
    found = clients.get(account.client_id)
    assert found is not None and found.is_service and found.redirect_uris == [] and found.scopes == ["verify"]
    assert found.check_grant_type("client_credentials") and not found.check_grant_type("authorization_code")
    for bad in ({"scopes": ["openid"]}, {"scopes": []}, {"auth_method": "none"}, {"auth_method": "private_key_jwt"}):
        with pytest.raises(ClientRegistrationError):
            clients.add_service("Bad", **bad)
