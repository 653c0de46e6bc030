"""Fixtures of the audit trail tests. Import at the top of a test module:
``from tests.fixtures_audit import *``.

    audit_store      function scope, on SQLite and on the private PostgreSQL cluster: a fresh schema,
                     a CA with file keys, the audit signer, and an :class:`AuditTrail` that checkpoints
                     every 10 entries with the in-process TSA (see :class:`AuditStore`)
    audit_home       function scope: a fresh `tessera init` home (PKCS#11 token) on the test slapd, for
                     CLI tests, with a logged-in auditor: ``audit_home.auditor`` (their uid; the home's
                     ``env`` presents their operator token), for ``tessera audit list --as ...``
    tamper(store, *sql)  run SQL as the database administrator with the append-only triggers off
    witnessed(store)     the store's trail and checkpointer rebuilt with a witness file (audit.witness)
    rewrite_tail(store, first, edit)  the outside tester's attack: entries from ``first`` on read out,
                         edited (changed, deleted, inserted, swapped, cut), re-chained with recomputed
                         hashes, written back with the head moved to the new tip (triggers off)
"""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, delete, insert, select, text
from sqlalchemy.orm import Session, sessionmaker

from audit.checkpoints import Checkpointer, prepare_audit_signer
from audit.trail import AuditEvent, AuditTrail
from ca.authority import CertificateAuthority
from ca.hierarchy import HierarchyPlan
from ca.keyring import Keyring
from ca.urls import PublicUrls
from store import schema
from store.engine import make_engine, make_session_factory
from tests.conftest import Home, copy_home
from tests.fixtures_ca import file_key_ca
from tests.fixtures_directory import new_uid
from tests.fixtures_operators import enrol, token_of
from tests.fixtures_web import PASSWORD
from tests.servers import free_port, tessera_env

__all__ = ["AuditHome", "AuditStore", "audit_store", "audit_home", "tamper", "fill", "root_pem", "witnessed", "rewrite_tail"]


@dataclass
class AuditStore:
    dialect: str
    url: str
    engine: Engine
    sessions: sessionmaker[Session]
    ca: CertificateAuthority
    trail: AuditTrail
    checkpointer: Checkpointer
    folder: Path


@pytest.fixture(params=["sqlite", "postgres"])
def audit_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AuditStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'audit.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    if request.param == "postgres":
        with engine.begin() as conn:  # a clean schema per test
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    sessions, ca = file_key_ca(engine, tmp_path / "keys")
    assert prepare_audit_signer(ca)  # file backend, beside the staff CA's key
    assert prepare_audit_signer(ca) == []  # idempotent
    checkpointer = Checkpointer(ca, sessions)
    trail = AuditTrail(sessions, ca.clock, checkpointer, checkpoint_every=10)
    yield AuditStore(request.param, url, engine, sessions, ca, trail, checkpointer, tmp_path)
    engine.dispose()


def fill(store: AuditStore, count: int, start: int = 0) -> None:
    """``count`` varied events, one transaction each."""
    kinds = ["login.password", "login.totp", "login.failure", "cert.issue", "admin.role.grant", "card.lost"]
    for i in range(start, start + count):
        store.trail.record(AuditEvent(kinds[i % len(kinds)], f"staff:user{i % 4}",
                                      "failure" if i % 5 == 0 else "success", subject_role="staff",
                                      object=f"cert:{i:04x}", source_address=f"192.0.2.{i % 250}",
                                      request_id=f"req-{i}", details={"n": i, "via": "test", "名前": "Jüri"}))


def tamper(store: AuditStore, *statements: str) -> None:
    """The tamperer has database-administrator rights: turn the append-only triggers off, then write."""
    with store.engine.begin() as conn:
        if store.dialect == "sqlite":
            for table in ("audit_entry", "audit_checkpoint"):
                for action in ("update", "delete"):
                    conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_no_{action}")
        else:
            conn.exec_driver_sql("ALTER TABLE audit_entry DISABLE TRIGGER USER")
            conn.exec_driver_sql("ALTER TABLE audit_checkpoint DISABLE TRIGGER USER")
        for statement in statements:
            conn.exec_driver_sql(statement)


def witnessed(store: AuditStore, checkpoint_every: int = 10, syslog: str | None = None) -> Path:
    """Give ``store`` a trail and checkpointer whose checkpoints are witnessed in a file; its path."""
    from audit.witness import Witness

    path = store.folder / "audit-witness.log"
    store.checkpointer = Checkpointer(store.ca, store.sessions, witness=Witness(path, syslog))
    store.trail = AuditTrail(store.sessions, store.ca.clock, store.checkpointer, checkpoint_every=checkpoint_every)
    return path


def rewrite_tail(store: AuditStore, first: int, edit: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> None:
    """As a database administrator who knows the documented encoding: read entries ``first``..,
    let ``edit`` change the list, then write it back as entries ``first``.. chained to entry
    ``first - 1`` with recomputed hashes, and point the head at the new tip."""
    from audit import chain
    from audit.models import AuditEntry

    table = AuditEntry.__table__
    tamper(store)  # triggers off
    with store.engine.begin() as conn:
        rows = [dict(r) for r in conn.execute(select(table).where(table.c.seq >= first).order_by(table.c.seq)).mappings()]
        previous = conn.execute(select(table.c.entry_hash).where(table.c.seq == first - 1)).scalar() or chain.GENESIS
        conn.execute(delete(table).where(table.c.seq >= first))
        seq = first - 1
        for row in edit(rows):
            seq += 1
            canonical = chain.canonical_bytes(seq, chain.canonical_time(row["at"]), row["event_type"], row["subject"],
                                              row["subject_role"], row["object"], row["result"], row["source_address"],
                                              row["request_id"], row["details"])
            row.update(seq=seq, prev_hash=previous, entry_hash=chain.entry_hash(previous, canonical))
            conn.execute(insert(table).values(**row))
            previous = row["entry_hash"]
        conn.execute(text("UPDATE audit_head SET seq = :s, entry_hash = :h WHERE id = 1"), {"s": seq, "h": previous})


def root_pem(ca: CertificateAuthority, folder: Path) -> Path:
    from cryptography.hazmat.primitives.serialization import Encoding

    path = folder / "root.pem"
    path.write_bytes(ca.authority_certificate("root").public_bytes(Encoding.PEM))
    return path


@dataclass
class AuditHome(Home):
    """A home on another directory than its own, with an auditor who logged in to it."""

    extra: dict[str, str] = field(default_factory=dict)
    auditor: str = ""
    #: entries `tessera init` wrote (the CA's own certificates, each a ``cert.issue``)
    initial: int = 0

    @property
    def env(self) -> dict[str, str]:
        return tessera_env(self.path, self.public_url, **self.extra)


#: slapd URL -> the home `tessera init` made on it, which every audit_home of this process copies
_templates: dict[str, AuditHome] = {}


def _template(tmp_path_factory: pytest.TempPathFactory, slapd: Any) -> AuditHome:
    if slapd.url not in _templates:
        port = free_port()
        home = AuditHome(tmp_path_factory.mktemp("audit-home-template"), f"http://127.0.0.1:{port}", port,
                         dict(slapd.env))
        made = home.cli("init")
        assert b"created the audit trail signer" in made.stdout + made.stderr  # `tessera init` prepares it
        with contextlib.closing(sqlite3.connect(home.path / "tessera.db")) as db:
            home.initial = db.execute("SELECT count(*) FROM audit_entry").fetchone()[0]
        _templates[slapd.url] = home
    return _templates[slapd.url]


@pytest.fixture()
def audit_home(tmp_path_factory: pytest.TempPathFactory, slapd: Any) -> AuditHome:
    """A fresh home: a copy of one the real `tessera init` made once in this process (CA keys on its
    SoftHSM2 token) using the test slapd, and an auditor with TOTP enrolled on it and logged in
    (`tessera admin login`)."""
    template = _template(tmp_path_factory, slapd)  # its URL (in the CA's certificates) and port are the copy's
    home = AuditHome(copy_home(template.path, tmp_path_factory.mktemp("audit-home")), template.public_url,
                     template.port, dict(slapd.env), initial=template.initial)
    home.auditor = new_uid("aud")
    slapd.create_user(home.auditor, PASSWORD, title="Auditor", groups=("auditors",))
    home.extra["TESSERA_OPERATOR_TOKEN"] = token_of(home.env, enrol(home.env, home.auditor, PASSWORD))
    return home


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=60)
