"""Backups in process (issue 16, item 1): the sealed archive's format, the manifest, restoring into
an empty home only, and retention. The disaster-recovery drill with the real service is
tests/test_disaster_recovery.py."""

from __future__ import annotations

import datetime
import io
import json
import sqlite3
import struct
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from backup import archive, parts
from backup.archive import KeySource, SealedReader, SealedWriter, new_key_file
from backup.create import create_backup, verify_backup
from backup.errors import ArchiveDamaged, BackupError, RestoreRefused, WrongKey
from backup.restore import ENVIRONMENT_FILE, restore_backup
from backup.retention import backup_name, backups, prune
from store import schema


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of 1000 bytes (many chunks from little data) and a cheap scrypt (the format keeps its cost)."""
    monkeypatch.setattr(archive, "CHUNK", 1000)
    monkeypatch.setattr(archive, "SCRYPT_N", 2**14)


PASSPHRASE = KeySource(passphrase="correct horse battery staple")


def sealed(data: bytes, key: KeySource = PASSPHRASE) -> bytes:
    out = io.BytesIO()
    writer = SealedWriter(out, key)
    for start in range(0, len(data), 777):
        writer.write(data[start:start + 777])
    writer.close()
    return out.getvalue()


def unsealed(blob: bytes, key: KeySource = PASSPHRASE) -> bytes:
    reader = SealedReader(io.BytesIO(blob), key)
    out = b""
    while block := reader.read(333):
        out += block
    return out


def body_start(blob: bytes) -> int:
    (length,) = struct.unpack(">I", blob[16:20])
    return 20 + length


@pytest.mark.parametrize("size", [0, 1, 999, 1000, 1001, 5000])
def test_what_is_sealed_comes_back(size: int) -> None:
    data = bytes(range(256)) * (size // 256 + 1)
    assert unsealed(sealed(data[:size])) == data[:size]


def test_every_change_is_caught() -> None:
    data = b"x" * 4500  # five chunks: four full, one short
    blob = sealed(data)
    start, step = body_start(blob), 1000 + archive.TAG
    for where in (start + 10, start + step + 500, len(blob) - 1):  # a byte of the first, a middle and the last chunk
        flipped = bytearray(blob)
        flipped[where] ^= 0x01
        with pytest.raises(ArchiveDamaged, match="does not authenticate"):
            unsealed(bytes(flipped))
    with pytest.raises(ArchiveDamaged):  # cut after a whole chunk: that chunk was not sealed as the last
        unsealed(blob[:start + 2 * step])
    swapped = blob[:start] + blob[start + step:start + 2 * step] + blob[start:start + step] + blob[start + 2 * step:]
    with pytest.raises(ArchiveDamaged):
        unsealed(swapped)
    header = bytearray(blob)
    header[body_start(blob) - 3] ^= 0x01  # inside the header's JSON: it is every chunk's associated data
    with pytest.raises((ArchiveDamaged, WrongKey)):
        unsealed(bytes(header))
    with pytest.raises(ArchiveDamaged, match="not a Tessera backup"):
        unsealed(b"PK\x03\x04" + blob[4:])


def test_the_wrong_key_is_named_as_such(tmp_path: Path) -> None:
    blob = sealed(b"secret")
    with pytest.raises(WrongKey, match="wrong passphrase"):
        unsealed(blob, KeySource(passphrase="another passphrase"))
    new_key_file(tmp_path / "key")
    with pytest.raises(WrongKey, match="sealed with a passphrase, not a key file"):
        unsealed(blob, KeySource(key_file=tmp_path / "key"))
    assert (tmp_path / "key").stat().st_mode & 0o077 == 0
    with pytest.raises(FileExistsError):
        new_key_file(tmp_path / "key")
    assert unsealed(sealed(b"by key", KeySource(key_file=tmp_path / "key")), KeySource(key_file=tmp_path / "key")) \
        == b"by key"


def test_the_header_says_how_the_key_was_made_and_nothing_secret() -> None:
    blob = sealed(b"data")
    header = json.loads(blob[20:body_start(blob)])
    assert header["cipher"] == "AES-256-GCM" and header["kdf"]["name"] == "scrypt"
    assert (header["kdf"]["n"], header["kdf"]["r"], header["kdf"]["p"]) == (2**14, 8, 1)
    assert b"correct horse" not in blob


# -- a deployment's files, backed up and restored ----------------------------------------------
def deployment(root: Path) -> parts.DeploymentFiles:
    home = root / "home"
    (home / "secrets").mkdir(parents=True)
    (home / "secrets" / "ca-token.pin").write_text("1234\n")
    token = home / "softhsm" / "tokens" / "abc"
    token.mkdir(parents=True)
    (token / "token.object").write_bytes(b"\x00\x01token")
    (home / "softhsm" / "softhsm2.conf").write_text(f"directories.tokendir = {home}/softhsm/tokens\n")
    shard = home / "cards" / "shards" / "000"
    (shard / "tokens").mkdir(parents=True)
    (shard / "softhsm2.conf").write_text(f"directories.tokendir = {shard}/tokens\n")
    files = parts.DeploymentFiles(home=home, database_url=f"sqlite:///{home / 'tessera.db'}",
                                  secrets_dir=home / "secrets", softhsm_dir=home / "softhsm", card_dir=home / "cards",
                                  environment={"TESSERA_PUBLIC_URL": "https://id.example"})
    engine = create_engine(files.database_url)
    schema.upgrade(engine)
    engine.dispose()
    return files


def moved(files: parts.DeploymentFiles, home: Path) -> parts.DeploymentFiles:
    return parts.DeploymentFiles(home=home, database_url=f"sqlite:///{home / 'tessera.db'}",
                                 secrets_dir=home / "secrets", softhsm_dir=home / "softhsm", card_dir=home / "cards")


def test_a_backup_holds_the_wal_and_comes_back_into_an_empty_home_only(tmp_path: Path) -> None:
    files = deployment(tmp_path)
    assert files.sqlite_file is not None
    writer = sqlite3.connect(files.sqlite_file)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")  # what follows stays in the WAL, as while serving
    writer.execute("UPDATE ca_authority SET crl_number = 0")
    writer.execute("CREATE TABLE in_the_wal (n INTEGER)")
    writer.execute("INSERT INTO in_the_wal VALUES (42)")
    writer.commit()
    assert Path(str(files.sqlite_file) + "-wal").stat().st_size > 0
    out = tmp_path / "backups" / backup_name(datetime.datetime(2026, 12, 3, 8, tzinfo=datetime.timezone.utc))
    manifest = create_backup(files, out, PASSPHRASE)
    writer.close()
    assert {name.split("/")[0] for name in manifest.files} == {"database", "secrets", "softhsm", "cards", "config"}
    assert manifest.state["audit_head"] == 0 and verify_backup(out, PASSPHRASE).files == manifest.files
    with pytest.raises(BackupError, match="never overwrites"):
        create_backup(files, out, PASSPHRASE)
    # refused: a home that is not empty
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "something").write_text("mine")
    with pytest.raises(RestoreRefused, match="not empty"):
        restore_backup(out, PASSPHRASE, moved(files, busy))
    assert [p.name for p in busy.iterdir()] == ["something"]
    target = moved(files, tmp_path / "restored")
    restore_backup(out, PASSPHRASE, target)
    assert target.sqlite_file is not None
    with sqlite3.connect(target.sqlite_file) as copy:
        assert copy.execute("SELECT n FROM in_the_wal").fetchall() == [(42,)]
    assert (target.home / "secrets" / "ca-token.pin").read_text() == "1234\n"
    assert (target.home / "softhsm" / "softhsm2.conf").read_text() == \
        f"directories.tokendir = {target.home}/softhsm/tokens\n"
    assert str(target.home) in (target.home / "cards" / "shards" / "000" / "softhsm2.conf").read_text()
    assert (target.home / "cards" / "shards" / "000" / "tokens").is_dir()  # empty folders too
    assert json.loads((target.home / ENVIRONMENT_FILE).read_text()) == {"TESSERA_PUBLIC_URL": "https://id.example"}
    assert all(p.stat().st_mode & 0o077 == 0 for p in target.home.rglob("*"))


def test_a_damaged_backup_restores_nothing(tmp_path: Path) -> None:
    files = deployment(tmp_path)
    out = tmp_path / "b.tbk"
    create_backup(files, out, PASSPHRASE)
    data = bytearray(out.read_bytes())
    data[len(data) // 2] ^= 0x80
    out.write_bytes(bytes(data))
    with pytest.raises(ArchiveDamaged):
        restore_backup(out, PASSPHRASE, moved(files, tmp_path / "restored"))
    assert not (tmp_path / "restored").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tessera")] == []


# -- retention -----------------------------------------------------------------------------
def test_prune_keeps_the_newest(tmp_path: Path) -> None:
    start = datetime.datetime(2026, 12, 1, tzinfo=datetime.timezone.utc)
    for day in range(6):
        (tmp_path / backup_name(start + datetime.timedelta(days=day))).write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("not a backup")
    now = start + datetime.timedelta(days=6)
    assert [b.path.name for b in prune(tmp_path, keep=4, dry_run=True, now=now)] == \
        [backup_name(start + datetime.timedelta(days=d)) for d in (1, 0)]
    assert len(backups(tmp_path)) == 6
    gone = prune(tmp_path, keep=4, max_age=datetime.timedelta(days=3, hours=1), now=now)
    assert len(gone) == 3 and [b.made.day for b in backups(tmp_path)] == [6, 5, 4]
    assert (tmp_path / "notes.txt").exists()
    later = now + datetime.timedelta(days=30)
    assert [b.made.day for b in prune(tmp_path, keep=1, max_age=datetime.timedelta(days=1), now=later)] == [5, 4]


def test_postgresql_through_pg_dump_into_an_empty_database_only(postgres_url: str, tmp_path: Path) -> None:
    from sqlalchemy import inspect, make_url
    from sqlalchemy import text as sql

    engine = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        conn.execute(sql("DROP DATABASE IF EXISTS restored"))
        conn.execute(sql("CREATE DATABASE restored"))
    engine.dispose()
    source = create_engine(postgres_url)
    schema.upgrade(source)
    with source.begin() as conn:
        conn.execute(sql("INSERT INTO audit_checkpoint_schedule (id, due_at, holder) VALUES (2, now(), 'backup test')"))
    source.dispose()
    home = tmp_path / "home"
    (home / "secrets").mkdir(parents=True)
    files = parts.DeploymentFiles(home=home, database_url=postgres_url, secrets_dir=home / "secrets")
    out = tmp_path / "pg.tbk"
    manifest = create_backup(files, out, PASSPHRASE)
    assert manifest.database == "postgresql" and "database/tessera.pgdump" in manifest.files
    restored_url = make_url(postgres_url).set(database="restored").render_as_string(hide_password=False)
    target = parts.DeploymentFiles(home=tmp_path / "restored-home", database_url=restored_url,
                                   secrets_dir=tmp_path / "restored-home" / "secrets")
    restore_backup(out, PASSPHRASE, target)
    copy = create_engine(restored_url)
    try:
        assert "audit_entry" in inspect(copy).get_table_names()
        with copy.connect() as conn:
            assert conn.execute(sql("SELECT holder FROM audit_checkpoint_schedule WHERE id = 2")).scalar() == \
                "backup test"
    finally:
        copy.dispose()
    with pytest.raises(RestoreRefused, match="database is not empty"):
        restore_backup(out, PASSPHRASE, parts.DeploymentFiles(home=tmp_path / "third", database_url=restored_url,
                                                             secrets_dir=tmp_path / "third" / "secrets"))
