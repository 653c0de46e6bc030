"""The governance tables on SQLite and on a private PostgreSQL cluster: applications searched and
paged, four-eyes requests (one pending per operation and target, never approved by their
requester), and the hashed password history trimmed to the newest entries."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from store import schema
from idp.account_lifecycle import Lifecycle
from idp.deployment import Deployment
from idp.governance_models import AccountApplication, PasswordHistory
from idp.password_policy import PasswordPolicy, WeakPassword
from idp.roles import FourEyesViolation, GovernanceError
from idp.settings import Settings


@pytest.fixture(params=["sqlite", "postgres"])
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'gov.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    d = Deployment(Settings.from_env(tmp_path, env={"TESSERA_DATABASE_URL": url}))
    if request.param == "postgres":
        with d.engine.begin() as conn:  # a clean schema per test
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    schema.upgrade(d.engine)
    try:
        yield d
    finally:
        d.engine.dispose()


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def test_applications_are_searched_and_paged(deployment: Deployment) -> None:
    with deployment.sessions.begin() as s:
        for i in range(30):
            s.add(AccountApplication(kind="new-account", uid=f"user{i:02d}", given_name="芳", surname=f"王{i}",
                                     department="finance" if i % 2 else "tax", post="Analyst" if i < 20 else "Head",
                                     groups_json="[]", status="applied" if i < 25 else "issued", applied_by="officer",
                                     applied_at=now()))
    lc = Lifecycle(deployment)
    rows, total = lc.applications(limit=10)
    assert total == 30 and len(rows) == 10 and rows[0].uid == "user29"  # newest first
    rows, total = lc.applications(limit=10, offset=25)
    assert total == 30 and [r.uid for r in rows] == [f"user{i:02d}" for i in range(4, -1, -1)]
    assert lc.applications(text="HEAD")[1] == 10  # case-insensitive, on the post too
    assert lc.applications(status="issued", department="finance")[1] == 3
    assert lc.applications(text="王1")[1] == 11  # 王1 and 王10..19
    with pytest.raises(GovernanceError):
        lc.applications(status="bogus")


def test_four_eyes_requests(deployment: Deployment) -> None:
    lc = Lifecycle(deployment)
    with deployment.sessions.begin() as s:
        row = lc.four_eyes.request(s, "add-administrator", "staff:xugang", "luochao", {"group": "auditors"})
    with pytest.raises(FourEyesViolation, match="already waiting"):
        with deployment.sessions.begin() as s:
            lc.four_eyes.request(s, "add-administrator", "staff:xugang", "someone", {"group": "auditors"})
    with pytest.raises(GovernanceError, match="not a four-eyes operation"):
        with deployment.sessions.begin() as s:
            lc.four_eyes.request(s, "delete-everything", "x", "luochao")
    with pytest.raises(FourEyesViolation, match="second administrator"):
        with deployment.sessions.begin() as s:
            lc.four_eyes.pending_row(s, row.id, "luochao")
    with deployment.sessions.begin() as s:
        pending = lc.four_eyes.pending_row(s, row.id, "second")
        lc.four_eyes.decide(pending, "second", "executed", "xugang added to auditors")
    with pytest.raises(FourEyesViolation, match="executed"):
        with deployment.sessions.begin() as s:
            lc.four_eyes.pending_row(s, row.id, "third")
    views, total = lc.four_eyes.list("executed")
    assert total == 1 and views[0].decided_by == "second" and views[0].details == {"group": "auditors"}


def test_password_history_is_hashed_and_trimmed(deployment: Deployment) -> None:
    policy = PasswordPolicy(deployment.sessions, now, history=2)
    words = ["Quiet-harbour-1-lamp-post", "Quiet-harbour-2-lamp-post", "Quiet-harbour-3-lamp-post"]
    for word in words:
        with deployment.sessions.begin() as s:
            policy.remember(s, "xugang", word)
    with deployment.sessions() as s:
        assert s.scalar(select(func.count()).select_from(PasswordHistory)) == 2
    with pytest.raises(WeakPassword):
        policy.check("xugang", words[2])
    policy.check("xugang", words[0])
