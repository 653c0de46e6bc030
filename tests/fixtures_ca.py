"""A certificate authority with its keys in files, on a freshly migrated database: the CA of tests
that need real certificates, CRLs and signatures but no PKCS#11 token and no `tessera init`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from ca.authority import CertificateAuthority
from ca.hierarchy import HierarchyPlan
from ca.keyring import Keyring
from ca.urls import PublicUrls
from store import schema
from store.engine import make_session_factory

#: the passphrase of the file keys (a test secret)
PASSPHRASE = b"correct horse battery staple"


def file_key_ca(engine: Engine, key_dir: Path, **options: Any) -> tuple[sessionmaker[Session], CertificateAuthority]:
    """Migrate ``engine``'s database, then a CA (``options`` as :class:`CertificateAuthority` takes
    them) whose root, staff and citizen CAs have file keys in ``key_dir``."""
    schema.upgrade(engine)
    sessions = make_session_factory(engine)
    ca = CertificateAuthority(sessions, Keyring(None, lambda _path: PASSPHRASE), PublicUrls("https://pki.gov.example"),
                              **options)
    ca.initialise(HierarchyPlan(backend="file", key_dir=key_dir))
    return sessions, ca
