"""Fixtures of the audit trail tests. Import at the top of a test module:
``from tests.fixtures_audit import *``.

    audit_store      function scope, on SQLite and on the private PostgreSQL cluster: a fresh schema,
                     a CA with file keys, the audit signer, and an :class:`AuditTrail` that checkpoints
                     every 10 entries with the in-process TSA (see :class:`AuditStore`)
    audit_home       function scope: a fresh `tessera init` home (PKCS#11 token) for CLI tests
    tamper(store, *sql)  run SQL as the database administrator with the append-only triggers off
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from audit.checkpoints import Checkpointer, prepare_audit_signer
from audit.trail import AuditEvent, AuditTrail
from ca.authority import CertificateAuthority
from ca.database import make_engine, make_session_factory
from ca.hierarchy import HierarchyPlan
from ca.keyring import Keyring
from ca.urls import PublicUrls
from idp import schema
from tests.conftest import Home
from tests.servers import free_port

__all__ = ["AuditStore", "audit_store", "audit_home", "tamper", "fill", "root_pem"]


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
    schema.upgrade(engine)
    sessions = make_session_factory(engine)
    keyring = Keyring(None, lambda _path: b"correct horse battery staple")
    ca = CertificateAuthority(sessions, keyring, PublicUrls("https://pki.gov.example"))
    ca.initialise(HierarchyPlan(backend="file", key_dir=tmp_path / "keys"))
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


def root_pem(ca: CertificateAuthority, folder: Path) -> Path:
    from cryptography.hazmat.primitives.serialization import Encoding

    path = folder / "root.pem"
    path.write_bytes(ca.authority_certificate("root").public_bytes(Encoding.PEM))
    return path


@pytest.fixture()
def audit_home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    """A fresh home from the real `tessera init` (CA keys on its SoftHSM2 token)."""
    port = free_port()
    home = Home(tmp_path_factory.mktemp("audit-home"), f"http://127.0.0.1:{port}", port)
    made = home.cli("init")
    assert b"created the audit trail signer" in made.stdout + made.stderr  # `tessera init` prepares it
    return home


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=60)
