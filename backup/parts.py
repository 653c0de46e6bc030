"""The parts of a deployment a backup holds, each copied consistently while the service runs, and
put back into an empty home.

- **database**: SQLite through its online backup API (``sqlite3.Connection.backup``: one read
  transaction, so the copy is a consistent snapshot that includes what is still in the WAL), or
  ``pg_dump --format=custom`` for PostgreSQL (one repeatable-read snapshot), restored with
  ``pg_restore`` into an empty database;
- **folders** (the CA's SoftHSM2 token folder, the card folder, secrets, file keys): copied, then
  compared file by file with the original, and copied again until the two agree, so that no copy
  holds a token half-written (the card folder with every shard's lock held shared, which keeps
  card tokens from being created or deleted meanwhile: cardsim.config.CardShard.locked);
- **directory**: the embedded slapd's data as LDIF through ``slapcat`` (safe while slapd runs on
  back-mdb), with its configuration; put back with ``slapadd`` (directory.slapd.slapadd).

The database is copied first: whatever is made meanwhile (a card token, a key) is then in the
folders without a row, never a row without its token.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sqlite3
import stat
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from sqlalchemy import make_url
from sqlalchemy.engine import URL

from backup.errors import BackupError, RestoreRefused
from cardsim.config import CardShard
from directory.slapd import DirectoryFolder, slapadd

SLAPCAT = "/usr/sbin/slapcat"
PG_DUMP, PG_RESTORE = "pg_dump", "pg_restore"
#: copies of a folder made at most before giving up on one that keeps changing
COPY_ATTEMPTS = 5
#: files of the slapd folder that belong to a running slapd, not to its configuration
_SLAPD_RUNTIME = ("slapd.pid", "slapd.args", "slapd.log", "ldapi")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class DeploymentFiles:
    """Where one deployment keeps what a backup holds (the command line builds it from the settings).

    ``key_dir`` holds the CA's file keys (None: there are none); ``softhsm_dir`` is the folder of the
    CA token and its ``softhsm2.conf`` (None: the keys are in an external HSM, which has its own
    backup); ``card_dir`` the card folder; ``ldap_dir`` the embedded slapd's folder (None: an
    external directory); ``environment`` the ``TESSERA_*`` configuration."""

    home: Path
    database_url: str
    secrets_dir: Path
    key_dir: Path | None = None
    softhsm_dir: Path | None = None
    card_dir: Path | None = None
    ldap_dir: Path | None = None
    environment: dict[str, str] = field(default_factory=dict)

    @property
    def database(self) -> URL:
        return make_url(self.database_url)

    @property
    def sqlite_file(self) -> Path | None:
        url = self.database
        return Path(url.database) if url.get_backend_name() == "sqlite" and url.database else None

    def folders(self) -> dict[str, Path]:
        """The folder parts by their name in the archive."""
        out = {"secrets": self.secrets_dir}
        if self.key_dir is not None:
            out["keys"] = self.key_dir
        if self.softhsm_dir is not None:
            out["softhsm"] = self.softhsm_dir
        if self.card_dir is not None:
            out["cards"] = self.card_dir
        return out


# -- database ------------------------------------------------------------------------------
def copy_database(files: DeploymentFiles, folder: Path) -> Path:
    """A consistent copy of the database in ``folder``: ``tessera.db`` or ``tessera.pgdump``."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    source = files.sqlite_file
    if source is not None:
        if not source.is_file():
            raise BackupError(f"no database at {source}")
        target = folder / "tessera.db"
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))  # owner only, whatever the umask
        with contextlib.closing(sqlite3.connect(source, timeout=30)) as src, \
                contextlib.closing(sqlite3.connect(target)) as dst:
            src.backup(dst)  # all pages in one step: one read transaction, WAL included
        return target
    if files.database.get_backend_name() != "postgresql":
        raise BackupError(f"backups know SQLite and PostgreSQL, not {files.database.get_backend_name()}")
    target = folder / "tessera.pgdump"
    _run([PG_DUMP, "--format=custom", "--no-password", f"--file={target}"], _pg_env(files.database), "pg_dump")
    return target


def restore_database(files: DeploymentFiles, copy: Path) -> None:
    """Put the database copy in place: a SQLite file where there is none, or ``pg_restore`` into an
    empty PostgreSQL database (:func:`check_empty` first)."""
    target = files.sqlite_file
    if copy.name == "tessera.db":
        if target is None:
            raise RestoreRefused("the backup holds a SQLite database: TESSERA_DATABASE_URL must name a SQLite file")
        if not target.parent.is_dir():
            make_folders(Path(target.anchor), PurePosixPath(*target.parent.parts[1:]))
        shutil.move(copy, target)
        return
    if files.database.get_backend_name() != "postgresql":
        raise RestoreRefused("the backup holds a PostgreSQL dump: set TESSERA_DATABASE_URL to an empty PostgreSQL "
                             "database")
    _run([PG_RESTORE, "--no-owner", "--exit-on-error", "--single-transaction", "--no-password",
          f"--dbname={files.database.database}", str(copy)], _pg_env(files.database), "pg_restore")


def database_is_empty(files: DeploymentFiles) -> bool:
    """No SQLite file, or a PostgreSQL database without tables in its schema."""
    target = files.sqlite_file
    if target is not None:
        return not target.exists()
    from store.engine import make_engine
    from sqlalchemy import inspect

    engine = make_engine(files.database_url)
    try:
        return not inspect(engine).get_table_names()
    finally:
        engine.dispose()


def _pg_env(url: URL) -> dict[str, str]:
    """libpq's environment for ``url`` (the password never on a command line)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    for name, value in (("PGHOST", url.host), ("PGPORT", url.port), ("PGUSER", url.username),
                        ("PGPASSWORD", url.password), ("PGDATABASE", url.database)):
        if value is not None:
            env[name] = str(value)
    for key, option in url.query.items():
        if key in ("sslmode", "sslrootcert", "sslcert", "sslkey", "host") and isinstance(option, str):
            env["PG" + key.upper()] = option  # host: a Unix socket folder
    return env


def _run(command: list[str], env: dict[str, str] | None, what: str, stdout: int | None = None) -> None:
    try:
        result = subprocess.run(command, env=env, stdout=stdout if stdout is not None else subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    except FileNotFoundError:
        raise BackupError(f"{what} not found: install it (Debian: postgresql-client, ldap-utils)") from None
    if result.returncode != 0:
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        raise BackupError(f"{what} failed: {lines[-1] if lines else f'exit status {result.returncode}'}")


# -- folders -------------------------------------------------------------------------------
def _digests(folder: Path) -> dict[str, str]:
    """SHA-256 of every regular file under ``folder``, by relative path (sockets and the like skipped)."""
    out = {}
    for path in sorted(_files(folder)):
        out[path.relative_to(folder).as_posix()] = file_sha256(path)
    return out


def _files(folder: Path) -> Iterator[Path]:
    for root, _dirs, names in os.walk(folder):
        for name in names:
            path = Path(root) / name
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISREG(path.lstat().st_mode):
                    yield path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def make_folders(root: Path, relative: PurePosixPath) -> Path:
    """``root / relative`` and every folder between them, each 0700 (``mkdir(parents=True)`` would
    make the intermediate ones with the process's umask)."""
    here = root
    for part in relative.parts:
        here = here / part
        if not here.is_dir():
            here.mkdir(mode=0o700)
    return here


def _copy_tree(source: Path, target: Path) -> None:
    """Folders and regular files of ``source`` (a file that vanishes meanwhile is left out: the
    comparison that follows notices)."""
    target.mkdir(mode=0o700)
    for root, dirs, names in os.walk(source):
        here = make_folders(target, PurePosixPath(Path(root).relative_to(source).as_posix()))
        for name in names:
            path = Path(root) / name
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISREG(path.lstat().st_mode):
                    shutil.copyfile(path, here / name)
                    os.chmod(here / name, 0o600)
        dirs[:] = [d for d in dirs if not (Path(root) / d).is_symlink()]


def copy_folder(source: Path, target: Path) -> int:
    """Copy ``source`` to ``target`` until a copy agrees with the original file by file (a write
    meanwhile means another copy). Returns the number of files."""
    if not source.is_dir():
        raise BackupError(f"no folder at {source}")
    for _ in range(COPY_ATTEMPTS):
        shutil.rmtree(target, ignore_errors=True)
        _copy_tree(source, target)
        copied = _digests(target)
        if copied == _digests(source):
            return len(copied)
    raise BackupError(f"{source} kept changing while it was copied ({COPY_ATTEMPTS} attempts): try again later")


@contextlib.contextmanager
def card_shards_held(card_dir: Path) -> Iterator[None]:
    """Every card shard's lock held shared (no card token is created or deleted meanwhile)."""
    shards = card_dir / "shards"
    with contextlib.ExitStack() as stack:
        if shards.is_dir():
            for folder in sorted(p for p in shards.iterdir() if p.is_dir() and p.name.isdigit()):
                stack.enter_context(CardShard(int(folder.name), folder).locked(exclusive=False))
        yield


def copy_part(name: str, source: Path, target: Path) -> int:
    """Copy the folder part ``name`` consistently (the card folder under its shards' locks)."""
    if name == "cards":
        with card_shards_held(source):
            return copy_folder(source, target)
    return copy_folder(source, target)


def place_folder(copy: Path, target: Path) -> None:
    """Move a restored folder part into place; ``target`` must be absent or empty."""
    if target.exists() and any(target.iterdir()):
        raise RestoreRefused(f"{target} is not empty: restore only into an empty home")
    if not target.parent.is_dir():
        make_folders(Path(target.anchor), PurePosixPath(*target.parent.parts[1:]))
    if target.exists():
        target.rmdir()
    shutil.move(copy, target)


def rewrite_paths(path: Path, moves: dict[str, str]) -> None:
    """Point a configuration file (softhsm2.conf, slapd.conf) at the restored folders: each source
    folder (longest first) becomes its target."""
    text = path.read_text()
    for old in sorted(moves, key=len, reverse=True):
        text = text.replace(old.rstrip("/") + "/", moves[old].rstrip("/") + "/")
    path.write_text(text)


# -- directory -----------------------------------------------------------------------------
def copy_directory(ldap_dir: Path, target: Path) -> int:
    """The embedded directory as ``directory.ldif`` (slapcat) and its configuration files. Returns
    the number of entries."""
    folder = DirectoryFolder(ldap_dir)
    if not folder.conf.is_file():
        raise BackupError(f"no slapd configuration at {folder.conf}")
    target.mkdir(mode=0o700, parents=True, exist_ok=True)
    for path in ldap_dir.iterdir():
        if path.is_file() and not path.is_symlink() and path.name not in _SLAPD_RUNTIME \
                and not path.name.startswith("load-"):
            shutil.copyfile(path, target / path.name)
    ldif = target / "directory.ldif"
    _run([SLAPCAT, "-f", str(folder.conf), "-l", str(ldif)], None, "slapcat")
    return sum(1 for line in ldif.open("rb") if line.startswith(b"dn:"))


def restore_directory(copy: Path, ldap_dir: Path, moves: dict[str, str]) -> int:
    """Configure the embedded slapd in ``ldap_dir`` (absent or empty) from ``copy`` and load its
    entries with slapadd (directory.slapd.slapadd). Returns the number of entries."""
    place_folder(copy, ldap_dir)
    ldif = ldap_dir / "directory.ldif"
    rewrite_paths(ldap_dir / "slapd.conf", moves)
    (ldap_dir / "data").mkdir(mode=0o700, exist_ok=True)
    try:
        return slapadd(DirectoryFolder(ldap_dir), _ldif_records(ldif))
    finally:
        ldif.unlink(missing_ok=True)


def _ldif_records(ldif: Path) -> Iterator[str]:
    """The records of an LDIF file (RFC 2849: separated by empty lines)."""
    record: list[str] = []
    with open(ldif, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                record.append(line.rstrip("\n"))
            elif record:
                yield "\n".join(record)
                record = []
    if record:
        yield "\n".join(record)
