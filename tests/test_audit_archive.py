"""Audit retention (issue 16, item 7): entries older than 180 days move, with their checkpoints, to
archive files that verify alone and, with `verify --archive`, end to end with what stays; younger
entries are refused. On SQLite and PostgreSQL, with a clock that starts 200 days ago."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from audit.archive import RETENTION, ArchiveRefused, archive_entries
from audit.checkpoints import Checkpointer, prepare_audit_signer
from audit.models import AuditCheckpoint, AuditEntry
from audit.trail import AuditEvent, AuditTrail
from audit.verification import Problem, verify
from audit.witness import Witness
from ca.authority import CertificateAuthority
from ca.hierarchy import HierarchyPlan
from ca.keyring import Keyring
from ca.profiles import tsa_policy
from ca.tsa import TimeStampAuthority
from ca.urls import PublicUrls
from store import schema
from store.engine import make_engine, make_session_factory
from tests.fixtures_audit import *  # noqa: F401,F403  (audit_home and its fixtures)
from tests.fixtures_audit import AuditHome, AuditStore, tamper

NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


class Clock:
    def __init__(self, at: datetime.datetime) -> None:
        self.at = at

    def __call__(self) -> datetime.datetime:
        self.at += datetime.timedelta(milliseconds=1)
        return self.at


@pytest.fixture(params=["sqlite", "postgres"])
def old_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[AuditStore, Clock]]:
    """A CA, audit signer and witnessed trail (checkpoint every 10 entries) whose clock starts 200 days ago."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'audit.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    if request.param == "postgres":
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    schema.upgrade(engine)
    sessions = make_session_factory(engine)
    clock = Clock(NOW - datetime.timedelta(days=200))
    ca = CertificateAuthority(sessions, Keyring(None, lambda _path: b"correct horse battery staple"),
                              PublicUrls("https://pki.gov.example"), clock=clock)
    ca.initialise(HierarchyPlan(backend="file", key_dir=tmp_path / "keys"))
    prepare_audit_signer(ca)
    certificate, key_ref = ca.signer("tsa", "staff")
    tsa = TimeStampAuthority(ca.keyring.get(key_ref), certificate, ca.chain("staff"), tsa_policy(ca.policy_arc), lambda _t: None,
                             clock=clock)
    checkpointer = Checkpointer(ca, sessions, tsa, clock, Witness(tmp_path / "witness.log"))
    trail = AuditTrail(sessions, clock, checkpointer, checkpoint_every=10)
    yield AuditStore(request.param, url, engine, sessions, ca, trail, checkpointer, tmp_path), clock
    engine.dispose()


def append(store: AuditStore, count: int) -> None:
    for i in range(count):
        store.trail.record(AuditEvent("login.password", f"staff:user{i % 3}", "success", subject_role="staff",
                                      details={"n": i}))


def archive(store: AuditStore, before: datetime.datetime, name: str) -> Path:
    out = store.folder / name
    archive_entries(store.trail, store.ca.chain("staff"), before, out, "staff:auditor", NOW)
    return out


def first_seq(store: AuditStore) -> int:
    with store.sessions() as session:
        return int(session.scalar(select(func.min(AuditEntry.seq))) or 0)


def codes(problems: list[Problem]) -> list[str]:
    return sorted({p.code for p in problems})


def test_old_entries_move_to_archives_that_verify_alone_and_end_to_end(old_store: tuple[AuditStore, Clock]) -> None:
    store, clock = old_store
    witness = store.folder / "witness.log"
    append(store, 25)  # 200 days ago: checkpoints at 10 and 20
    clock.at = NOW - datetime.timedelta(days=190)
    append(store, 15)  # 26..40: checkpoints at 30 and 40
    clock.at = NOW - datetime.timedelta(days=5)
    append(store, 3)
    store.checkpointer.checkpoint()  # 43
    clock.at = NOW
    assert verify(store.sessions, witness=witness).ok

    # younger than 180 days: refused, nothing moves
    with pytest.raises(ArchiveRefused, match="younger than 180 days"):
        archive(store, NOW - RETENTION + datetime.timedelta(hours=1), "too-young.jsonl")
    assert first_seq(store) == 1 and not (store.folder / "too-young.jsonl").exists()

    # entries made before 195 days ago: 1..25; up to the newest checkpoint among them, 20
    first = archive(store, NOW - datetime.timedelta(days=195), "first.jsonl")
    assert first_seq(store) == 21
    header = json.loads(first.read_text().splitlines()[0])
    assert (header["first_seq"], header["last_seq"], header["entries"], header["checkpoints"]) == (1, 20, 20, 2)
    with store.sessions() as session:
        assert session.scalar(select(func.min(AuditCheckpoint.seq))) == 30
        moved = session.scalars(select(AuditEntry.details).where(AuditEntry.event_type == "audit.archive")).one()
        assert json.loads(moved)["last_seq"] == 20
    # the database alone is whole, and says what it did not check
    alone = verify(store.sessions, witness=witness)
    assert alone.ok, [str(p) for p in alone.problems]
    assert alone.archived_through == 20 and "not checked" in alone.notes[0]
    assert verify(store.sessions, witness=witness, archives=[first]).ok

    # a second archive, 21..40, continues the first; both together check end to end
    second = archive(store, NOW - datetime.timedelta(days=185), "second.jsonl")
    assert first_seq(store) == 41
    both = verify(store.sessions, witness=witness, archives=[second, first])
    assert both.ok and both.notes == [], [str(p) for p in both.problems]
    only_second = verify(store.sessions, witness=witness, archives=[second])
    assert only_second.ok and "older archives" in only_second.notes[0]
    only_first = verify(store.sessions, witness=witness, archives=[first])
    assert codes(only_first.problems) == ["archive-junction"]
    # the triggers are back: the trail is append-only again
    with pytest.raises(Exception, match="append-only"), store.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_entry WHERE seq = 41"))


def test_a_changed_archive_or_a_rewritten_junction_is_named(old_store: tuple[AuditStore, Clock]) -> None:
    store, clock = old_store
    append(store, 25)
    clock.at = NOW
    append(store, 6)  # checkpoint at 30: the newest stays
    first = archive(store, NOW - datetime.timedelta(days=190), "first.jsonl")
    lines = first.read_text().splitlines()
    entry = json.loads(lines[5])
    entry["entry"]["subject"] = "staff:nobody"
    changed = store.folder / "changed.jsonl"
    changed.write_text("\n".join(lines[:5] + [json.dumps(entry)] + lines[6:]) + "\n")
    found = codes(verify(store.sessions, archives=[changed]).problems)
    assert "entry-changed" in found and "archive-junction" in found  # and the file is not the one recorded
    # the database's first entry no longer chained to the archive's last
    tamper(store, "UPDATE audit_entry SET prev_hash = '" + "ab" * 32 + "' WHERE seq = 21")
    assert "entry-changed" in codes(verify(store.sessions, archives=[first]).problems) or \
        "entry-malformed" in codes(verify(store.sessions, archives=[first]).problems)


def test_nothing_to_archive_is_said(old_store: tuple[AuditStore, Clock]) -> None:
    store, clock = old_store
    append(store, 5)  # no checkpoint yet
    clock.at = NOW
    with pytest.raises(ArchiveRefused, match="nothing to archive"):
        archive(store, NOW - datetime.timedelta(days=190), "none.jsonl")


def test_the_command_refuses_young_entries_in_one_line(audit_home: AuditHome, tmp_path: Path) -> None:
    out = tmp_path / "archive.jsonl"
    recent = (NOW - datetime.timedelta(days=30)).strftime("%Y-%m-%d")
    refused = audit_home.cli("audit", "archive", "--before", recent, "--out", str(out), "--as", audit_home.auditor,
                             check=False)
    assert refused.returncode == 1 and not out.exists()
    assert refused.stderr.decode().strip().splitlines() == [
        f"Error: entries younger than 180 days stay in the database: --before must be "
        f"{(datetime.datetime.now(datetime.timezone.utc) - RETENTION):%Y-%m-%d} or earlier"]
    old = (NOW - datetime.timedelta(days=400)).strftime("%Y-%m-%d")
    nothing = audit_home.cli("audit", "archive", "--before", old, "--out", str(out), "--as", audit_home.auditor,
                             check=False)
    assert nothing.returncode == 1 and b"nothing to archive" in nothing.stderr
    assert b"--archive" in audit_home.cli("audit", "verify", "--help").stdout
