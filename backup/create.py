"""Making a backup while the service runs, and checking one.

:func:`create_backup` copies every part (backup.parts) into a private staging folder beside the
output, writes the manifest (backup.manifest), and streams manifest and parts as a tar, gzip'd,
through the sealed writer (backup.archive) into ``<out>.partial``, renamed to ``out`` once
complete and synced: a backup file that exists is whole. :func:`verify_backup` reads an archive end
to end without writing anything: every chunk must authenticate and every file match the manifest.
"""

from __future__ import annotations

import contextlib
import datetime
import gzip
import io
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from sqlalchemy import create_engine, func, select

from audit.models import AuditCheckpoint, AuditHead
from backup import parts
from backup.archive import KeySource, SealedReader, SealedWriter
from backup.errors import ArchiveDamaged, BackupError
from backup.manifest import MAX_SIZE, NAME, FileEntry, Manifest
from ca.models import Authority, Certificate
from cardsim.models import Card

Progress = Callable[[str], None]


def _quiet(_line: str) -> None:
    """No progress lines."""


def database_state(url: str) -> dict[str, Any]:
    """What the database holds that a restore is judged by: the audit head and last checkpoint,
    every CA's CRL number, how many certificates and cards."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            head = conn.execute(select(AuditHead.seq).where(AuditHead.id == 1)).scalar()
            checkpoint = conn.execute(select(func.max(AuditCheckpoint.seq))).scalar()
            crls = {name: int(number) for name, number in conn.execute(select(Authority.name, Authority.crl_number))}
            certificates = conn.execute(select(func.count()).select_from(Certificate)).scalar_one()
            cards = conn.execute(select(func.count()).select_from(Card)).scalar_one()
    finally:
        engine.dispose()
    return {"audit_head": head, "last_checkpoint": checkpoint, "crl_numbers": crls,
            "certificates": int(certificates), "cards": int(cards)}


def create_backup(files: parts.DeploymentFiles, out: Path, key: KeySource, progress: Progress = _quiet,
                  now: datetime.datetime | None = None) -> Manifest:
    """Back the deployment up into ``out`` (which must not exist); returns the manifest."""
    if out.exists():
        raise BackupError(f"{out} exists: a backup never overwrites a file (choose another --out)")
    out.parent.mkdir(parents=True, exist_ok=True)
    created = (now or datetime.datetime.now(datetime.timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
    staging = Path(tempfile.mkdtemp(prefix=".tessera-backup-", dir=out.parent))  # 0700, same file system
    partial = out.with_name(out.name + ".partial")
    try:
        manifest = _collect(files, staging, created, progress)
        progress(f"sealing {len(manifest.files)} files ({_size(sum(f.size for f in manifest.files.values()))}) "
                 f"into {out}")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as raw:
            sealed = SealedWriter(raw, key)
            # gzip level 6 (tarfile's stream mode would use 9: a third slower for a few per cent)
            with gzip.GzipFile(fileobj=sealed, mode="wb", compresslevel=6, mtime=0) as packed, \
                    tarfile.open(fileobj=packed, mode="w|") as tar:
                _add(tar, NAME, io.BytesIO(manifest.to_json()), len(manifest.to_json()))
                for name in sorted(manifest.files):
                    with open(staging / name, "rb") as fh:
                        _add(tar, name, fh, manifest.files[name].size)
            sealed.close()
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(partial, out)
        _sync_folder(out.parent)
        return manifest
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        partial.unlink(missing_ok=True)


def _collect(files: parts.DeploymentFiles, staging: Path, created: str, progress: Progress) -> Manifest:
    """Every part copied into ``staging``, and the manifest that lists them."""
    is_sqlite = files.sqlite_file is not None
    manifest = Manifest(created, "sqlite" if is_sqlite else "postgresql", {"home": str(files.home)})
    progress("copying the database" + (" (SQLite online backup)" if is_sqlite else " (pg_dump)"))
    if not is_sqlite:
        manifest.state = database_state(files.database_url)
    copy = parts.copy_database(files, staging / "database")
    if is_sqlite:
        manifest.state = database_state(f"sqlite:///file:{copy}?mode=ro&uri=true")
    for name, folder in files.folders().items():
        progress(f"copying {name} ({folder})")
        count = parts.copy_part(name, folder, staging / name)
        manifest.sources[name] = str(folder)
        progress(f"  {count} files")
    if files.softhsm_dir is None:
        manifest.left_out["softhsm"] = "the CA keys are in an external HSM (TESSERA_PKCS11_MODULE): back it up with " \
                                       "its own tools"
    if files.ldap_dir is not None:
        progress(f"copying the directory (slapcat {files.ldap_dir})")
        entries = parts.copy_directory(files.ldap_dir, staging / "directory")
        manifest.sources["directory"] = str(files.ldap_dir)
        manifest.state["directory_entries"] = entries
    else:
        manifest.left_out["directory"] = "an external directory (TESSERA_LDAP_URLS): back it up with its own tools"
    config = staging / "config"
    config.mkdir(mode=0o700)
    (config / "environment.json").write_text(_json(files.environment))
    for path in sorted(staging.rglob("*")):
        name = path.relative_to(staging).as_posix()
        if path.is_dir():
            manifest.folders.append(name)
        else:
            manifest.files[name] = FileEntry(parts.file_sha256(path), path.stat().st_size)
    return manifest


def _json(values: dict[str, str]) -> str:
    import json

    return json.dumps(values, indent=1, sort_keys=True) + "\n"


def _add(tar: tarfile.TarFile, name: str, data: IO[bytes], size: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o600, 0
    tar.addfile(info, data)


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


# -- reading -------------------------------------------------------------------------------
def read_archive(path: Path, key: KeySource,
                 store: Callable[[str], contextlib.AbstractContextManager[IO[bytes] | None]] | None = None) -> Manifest:
    """Read the archive at ``path`` end to end: every chunk must authenticate (backup.archive) and
    every member be a file of the manifest with its size and SHA-256, none missing. ``store``, if
    given, is asked for a writable file per member (or None to skip it). Returns the manifest;
    raises :class:`ArchiveDamaged` or backup.errors.WrongKey."""
    import hashlib

    with open(path, "rb") as raw:
        reader = SealedReader(raw, key)
        packed = gzip.GzipFile(fileobj=reader, mode="rb")  # type: ignore[call-overload]  # read front to back: no seek
        try:
            tar = tarfile.open(fileobj=packed, mode="r|")
        except (tarfile.TarError, OSError, EOFError):
            raise ArchiveDamaged("the archive's contents are not a backup (not a gzip'd tar stream)") from None
        with tar:
            members = _members(tar)
            first = next(members, None)
            if first is None or first.name != NAME or not first.isfile() or first.size > MAX_SIZE:
                raise ArchiveDamaged("the archive does not begin with its manifest")
            manifest = Manifest.from_json(_read_all(tar, first))
            seen: set[str] = set()
            for member in members:
                entry = manifest.files.get(member.name)
                if entry is None or not member.isfile() or member.name in seen:
                    raise ArchiveDamaged(f"the archive holds {member.name!r}, which its manifest does not list")
                seen.add(member.name)
                digest, size = hashlib.sha256(), 0
                source = tar.extractfile(member)
                assert source is not None
                with store(member.name) if store is not None else contextlib.nullcontext(None) as sink:
                    while block := source.read(1024 * 1024):
                        digest.update(block)
                        size += len(block)
                        if sink is not None:
                            sink.write(block)
                if (digest.hexdigest(), size) != (entry.sha256, entry.size):
                    raise ArchiveDamaged(f"{member.name} does not match the manifest")
            missing = sorted(set(manifest.files) - seen)
            if missing:
                raise ArchiveDamaged(f"the archive lacks {len(missing)} file(s) its manifest lists, e.g. {missing[0]}")
        while reader.read(1024 * 1024):  # the rest of the stream authenticates too (tar's padding)
            pass
    return manifest


def _members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    try:
        yield from tar
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ArchiveDamaged(f"the archive's contents are damaged ({exc})") from None


def _read_all(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    source = tar.extractfile(member)
    assert source is not None
    return source.read()


def verify_backup(path: Path, key: KeySource) -> Manifest:
    """Check the archive at ``path`` without writing anything; returns its manifest."""
    return read_archive(path, key)
