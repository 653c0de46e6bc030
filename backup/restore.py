"""Restoring a backup into an empty home (and an empty database).

Nothing is overwritten: the home must be absent or empty, and so must the database (no SQLite file;
a PostgreSQL database without tables) and every folder a part goes to. The archive is read and
checked in full into a staging folder beside the home before anything is put in place; if putting
in place fails midway, what was put is taken away again. The configuration files that name
folders (SoftHSM2's, slapd's) are pointed at the new ones.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO

from backup import parts
from backup.archive import KeySource
from backup.create import Progress, _quiet, read_archive
from backup.errors import ArchiveDamaged, RestoreRefused
from backup.manifest import Manifest

#: where the backed-up deployment's TESSERA_* configuration is put, in the restored home
ENVIRONMENT_FILE = "backup-environment.json"


def check_target(target: parts.DeploymentFiles) -> None:
    """Refuse (:class:`RestoreRefused`) unless the home, the database and every folder are empty."""
    if target.home.exists() and (not target.home.is_dir() or any(target.home.iterdir())):
        raise RestoreRefused(f"{target.home} is not empty: restore only into an empty or absent home")
    for name, folder in [*target.folders().items(), ("directory", target.ldap_dir)]:
        if folder is not None and folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            raise RestoreRefused(f"the {name} folder {folder} is not empty: restore only into empty folders")
    if not parts.database_is_empty(target):
        raise RestoreRefused("the database is not empty (TESSERA_DATABASE_URL): restore only into an empty one")


def restore_backup(path: Path, key: KeySource, target: parts.DeploymentFiles,
                   progress: Progress = _quiet) -> Manifest:
    """Check the archive at ``path`` and put what it holds into ``target``; returns its manifest.
    The caller then compares the restored database with the witness (backup.reconcile)."""
    check_target(target)
    target.home.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tessera-restore-", dir=target.home.parent))
    made: list[Path] = []
    try:
        progress(f"reading and checking {path}")
        manifest = read_archive(path, key, _into(staging))
        for folder in manifest.folders:
            pure = PurePosixPath(folder)
            if pure.is_absolute() or ".." in pure.parts:
                raise ArchiveDamaged(f"the archive names a folder outside its own: {folder!r}")
            parts.make_folders(staging, pure)
        progress(f"the backup of {manifest.created} is whole: {len(manifest.files)} files")
        if not target.home.exists():
            target.home.mkdir(mode=0o700)
            made.append(target.home)
        os.chmod(target.home, 0o700)
        try:
            _place(manifest, staging, target, made, progress)
        except BaseException:
            for placed in reversed(made):
                shutil.rmtree(placed, ignore_errors=True) if placed.is_dir() else placed.unlink(missing_ok=True)
            raise
        return manifest
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _place(manifest: Manifest, staging: Path, target: parts.DeploymentFiles, made: list[Path],
           progress: Progress) -> None:
    moves = {manifest.sources[name]: str(folder) for name, folder in
             [*target.folders().items(), ("directory", target.ldap_dir)]
             if folder is not None and name in manifest.sources}
    database = staging / "database" / ("tessera.db" if manifest.database == "sqlite" else "tessera.pgdump")
    progress("restoring the database" + ("" if manifest.database == "sqlite" else " (pg_restore)"))
    parts.restore_database(target, database)
    if target.sqlite_file is not None:
        made.append(target.sqlite_file)
    for name, folder in target.folders().items():
        copy = staging / name
        if not copy.exists():
            continue
        progress(f"restoring {name} into {folder}")
        parts.place_folder(copy, folder)
        made.append(folder)
    conf_files = []
    if target.softhsm_dir is not None:
        conf_files.append(target.softhsm_dir / "softhsm2.conf")
    if target.card_dir is not None:
        conf_files += sorted((target.card_dir / "shards").glob("*/softhsm2.conf"))
    for conf in conf_files:
        if conf.is_file():
            parts.rewrite_paths(conf, moves)
    if (staging / "directory").exists():
        if target.ldap_dir is None:
            progress("the backup holds an embedded directory, but this deployment uses an external one: not restored")
        else:
            progress(f"restoring the directory into {target.ldap_dir} (slapadd)")
            made.append(target.ldap_dir)
            count = parts.restore_directory(staging / "directory", target.ldap_dir, moves)
            progress(f"  {count} entries")
    environment = staging / "config" / "environment.json"
    if environment.exists():
        shutil.move(environment, target.home / ENVIRONMENT_FILE)


def _into(staging: Path) -> Callable[[str], contextlib.AbstractContextManager[IO[bytes] | None]]:
    """Where read_archive writes each member: under ``staging``, names checked to stay there."""

    @contextlib.contextmanager
    def store(name: str) -> Iterator[IO[bytes] | None]:
        pure = PurePosixPath(name)
        if pure.is_absolute() or ".." in pure.parts or not pure.parts:
            raise ArchiveDamaged(f"the archive names a file outside its folder: {name!r}")
        path = parts.make_folders(staging, pure.parent) / pure.name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            yield fh

    return store
