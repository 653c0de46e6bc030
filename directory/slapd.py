"""The embedded directory: a private slapd under the home folder (created by ``tessera init``).

The folder (``$TESSERA_HOME/ldap``, or any folder a test or benchmark picks) holds::

    slapd.conf   rendered from ldap/slapd.conf.template
    data/        the mdb database
    port         the TCP port slapd listens on (127.0.0.1 only)
    ldapi        the Unix socket (local root administers through it with SASL EXTERNAL)
    slapd.pid    while it runs
    slapd.log    slapd's stderr

Secrets (mode 0600, in the secrets folder): ``ldap-admin.password`` (the rootdn),
``ldap-idp.password`` (the IdP's service account) and ``ldap-demo.password`` (every seed person).
Bulk data goes in with ``slapadd -q`` while slapd is stopped (~47,000 entries/s: docs/platform-notes.md);
slapadd bypasses overlays, so the loader writes memberOf and pwdChangedTime itself.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import signal
import socket
import string
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType

from argon2 import PasswordHasher, Type

from directory.config import EMBEDDED_SUFFIX
from directory.errors import DirectorySetupError
from directory.person_names import name_parts


def _template_dir() -> Path:
    """ldap/ of the source tree (editable install), else where setup.cfg's data_files put it."""
    for candidate in (Path(__file__).resolve().parent.parent / "ldap", Path(sys.prefix) / "share" / "tessera" / "ldap"):
        if (candidate / "slapd.conf.template").exists():
            return candidate
    return Path(__file__).resolve().parent.parent / "ldap"


TEMPLATE_DIR = _template_dir()
SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"

# argon2id cost of every stored password (t=3, m=4 MiB is ~5 ms a check: docs/platform-notes.md)
ARGON2_ITERATIONS = 3
ARGON2_MEMORY_KIB = 4096
#: ppolicy pwdMaxFailure: a backstop ABOVE the login throttle's limits (the web service's
#: backstop_max_failure), never the working lockout, or anyone could lock any account with a few
#: wrong passwords from anywhere
DEFAULT_MAX_FAILURE = 100
DEFAULT_LOCKOUT_SECONDS = 900
DEFAULT_MAX_AGE_SECONDS = 180 * 86400
DEPARTMENTS = ("finance", "tax", "public-security", "hrss", "it-centre")

_HASHER = PasswordHasher(time_cost=ARGON2_ITERATIONS, memory_cost=ARGON2_MEMORY_KIB, parallelism=1,
                         hash_len=32, salt_len=16, type=Type.ID)


def hash_password(password: str) -> str:
    """``{ARGON2}`` userPassword value (RFC 9106 argon2id) that slapd's argon2 module verifies."""
    return "{ARGON2}" + _HASHER.hash(password)


def _generalized_time(moment: datetime | None = None) -> str:
    return (moment or datetime.now(timezone.utc)).strftime("%Y%m%d%H%M%SZ")


def _write_secret(path: Path, value: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")


def _read_or_create_secret(path: Path, factory: Callable[[], str]) -> str:
    if path.exists():
        return path.read_text().strip()
    value = factory()
    _write_secret(path, value)
    return value


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class DirectoryFolder:
    """The files of one private slapd (see the module docstring)."""

    path: Path
    suffix: str = EMBEDDED_SUFFIX

    @property
    def conf(self) -> Path:
        return self.path / "slapd.conf"

    @property
    def data_dir(self) -> Path:
        return self.path / "data"

    @property
    def pid_file(self) -> Path:
        return self.path / "slapd.pid"

    @property
    def socket(self) -> Path:
        return self.path / "ldapi"

    @property
    def log_file(self) -> Path:
        return self.path / "slapd.log"

    @property
    def port(self) -> int:
        return int((self.path / "port").read_text().strip())

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def tls_port(self) -> int | None:
        """The ldaps:// port when TLS is configured (StartTLS then works on the ldap:// port too)."""
        try:
            return int((self.path / "tls-port").read_text().strip())
        except (OSError, ValueError):
            return None

    @property
    def ldaps_url(self) -> str | None:
        return f"ldaps://127.0.0.1:{self.tls_port}" if self.tls_port else None

    @property
    def ldapi_url(self) -> str:
        return "ldapi://" + urllib.parse.quote(str(self.socket), safe="")

    @property
    def root_dn(self) -> str:
        return f"cn=admin,{self.suffix}"

    @property
    def service_dn(self) -> str:
        return f"cn=idp,ou=services,{self.suffix}"

    def is_prepared(self) -> bool:
        return self.conf.exists() and (self.data_dir / "data.mdb").exists()


def render_config(folder: DirectoryFolder, root_password: str, *, port: int | None = None,
                  max_failure: int = DEFAULT_MAX_FAILURE, durable: bool = True,
                  tls: tuple[Path, Path] | None = None, service_size_limit: int | None = None) -> None:
    """Write slapd.conf from the template (and the port file). ``durable=False`` adds dbnosync (tests).

    ``tls`` = (certificate chain PEM, unencrypted key PEM): StartTLS on the ldap:// port and an
    ldaps:// port of its own (RFC 4513 section 3). ``service_size_limit`` limits the service
    account's searches as Active Directory's MaxPageSize does: at most that many entries a search
    or a page, any number over the pages of a paged search (RFC 2696); by default it is unlimited.
    """
    folder.path.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.data_dir.mkdir(mode=0o700, exist_ok=True)
    template = string.Template((TEMPLATE_DIR / "slapd.conf.template").read_text(encoding="utf-8"))
    text = template.substitute(
        suffix=folder.suffix, root_dn=folder.root_dn, root_pw_hash=hash_password(root_password),
        service_dn=folder.service_dn, data_dir=folder.data_dir, pid_file=folder.pid_file,
        args_file=folder.path / "slapd.args", max_failure=max_failure,
        default_policy_dn=f"cn=default,ou=policies,{folder.suffix}",
        argon2_memory_kib=ARGON2_MEMORY_KIB, argon2_iterations=ARGON2_ITERATIONS,
        db_sync="" if durable else "dbnosync",
        service_limits="size=unlimited time=unlimited" if service_size_limit is None else
        f"size.soft={service_size_limit} size.hard={service_size_limit} size.pr={service_size_limit} "
        "size.prtotal=unlimited time=unlimited",
        tls="" if tls is None else (f"TLSCertificateFile {tls[0]}\nTLSCertificateKeyFile {tls[1]}\n"
                                    "TLSProtocolMin 3.3\n"),  # TLS 1.2 or later
    )
    fd = os.open(folder.conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # holds the rootpw hash
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    (folder.path / "port").write_text(f"{port or _free_port()}\n")
    if tls is not None:
        (folder.path / "tls-port").write_text(f"{_free_port()}\n")


def _blocks(ldif: str) -> list[list[str]]:
    """LDIF records (RFC 2849) as lists of lines; comments dropped, folded lines not used here."""
    records: list[list[str]] = []
    current: list[str] = []
    for line in ldif.splitlines():
        if line.startswith("#"):
            continue
        if not line.strip():
            if current:
                records.append(current)
                current = []
            continue
        current.append(line)
    if current:
        records.append(current)
    return records


def seed_records(suffix: str, demo_password: str, service_password: str, *,
                 max_failure: int = DEFAULT_MAX_FAILURE) -> list[str]:
    """The demo organisation (ldap/seed-organisation.ldif) ready for slapadd: passwords, memberOf."""
    template = string.Template((TEMPLATE_DIR / "seed-organisation.ldif").read_text(encoding="utf-8"))
    text = template.substitute(suffix=suffix, dc=suffix.split(",")[0].split("=", 1)[1], max_failure=max_failure,
                               lockout_seconds=DEFAULT_LOCKOUT_SECONDS, max_age_seconds=DEFAULT_MAX_AGE_SECONDS)
    records = _blocks(text)
    member_of: dict[str, list[str]] = {}
    for record in records:
        if "objectClass: groupOfNames" in record:
            group_dn = record[0].split(": ", 1)[1]
            for line in record:
                if line.startswith("member: "):
                    member_of.setdefault(line.split(": ", 1)[1].lower(), []).append(group_dn)
    now = _generalized_time()
    out = []
    for record in records:
        dn = record[0].split(": ", 1)[1]
        if "objectClass: inetOrgPerson" in record:
            record = record + [f"userPassword: {hash_password(demo_password)}", f"pwdChangedTime: {now}"]
            record += [f"memberOf: {g}" for g in member_of.get(dn.lower(), [])]
        elif "objectClass: simpleSecurityObject" in record:
            record = record + [f"userPassword: {hash_password(service_password)}", f"pwdChangedTime: {now}"]
        out.append("\n".join(record) + "\n")
    return out


def slapadd(folder: DirectoryFolder, records: Iterable[str]) -> int:
    """Bulk-load LDIF records with ``slapadd -q`` (slapd must be stopped). Returns how many.

    All or nothing: quick mode (-q) leaves a half-loaded database behind on an error (e.g. a
    duplicate entry), so the database file is copied first and put back if slapadd fails.
    """
    if EmbeddedSlapd(folder).is_running():
        raise DirectorySetupError(f"the directory in {folder.path} is running: stop it before a bulk load")
    ldif_path = folder.path / f"load-{os.getpid()}.ldif"
    database = folder.data_dir / "data.mdb"
    backup = folder.data_dir / "data.mdb.before-load"
    count = 0
    fd = os.open(ldif_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # password hashes: not world-readable
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for record in records:
                fh.write(record.rstrip("\n") + "\n\n")
                count += 1
        if database.exists():
            shutil.copy2(database, backup)
        result = subprocess.run([SLAPADD, "-q", "-f", str(folder.conf), "-l", str(ldif_path)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            if backup.exists():
                os.replace(backup, database)
            else:
                database.unlink(missing_ok=True)
            lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
            reason = lines[-1] if lines else f"exit status {result.returncode}"
            raise DirectorySetupError(f"slapadd failed, nothing was loaded: {reason}")
    finally:
        ldif_path.unlink(missing_ok=True)
        backup.unlink(missing_ok=True)
    return count


def build_directory(folder: DirectoryFolder, secrets_dir: Path, *, port: int | None = None,
                    max_failure: int = DEFAULT_MAX_FAILURE, durable: bool = True,
                    tls: tuple[Path, Path] | None = None, service_size_limit: int | None = None) -> list[str]:
    """Create config, secrets and the seeded database in ``folder`` if missing (idempotent)."""
    done: list[str] = []
    if folder.is_prepared():
        return done
    if shutil.which(SLAPD) is None and not Path(SLAPD).exists():
        raise DirectorySetupError("slapd not found: install the Debian packages slapd and ldap-utils (make run does)")
    admin = _read_or_create_secret(secrets_dir / "ldap-admin.password", lambda: secrets.token_urlsafe(24))
    service = _read_or_create_secret(secrets_dir / "ldap-idp.password", lambda: secrets.token_urlsafe(24))
    demo = _read_or_create_secret(secrets_dir / "ldap-demo.password", lambda: DEMO_PASSWORD)
    render_config(folder, admin, port=port, max_failure=max_failure, durable=durable, tls=tls,
                  service_size_limit=service_size_limit)
    for leftover in folder.data_dir.iterdir():  # a half-finished earlier attempt
        if leftover.is_file():
            leftover.unlink()
    count = slapadd(folder, seed_records(folder.suffix, demo, service, max_failure=max_failure))
    done.append(f"created the staff directory in {folder.path} ({count} entries, port {folder.port}); "
                f"demo staff password in {secrets_dir / 'ldap-demo.password'}")
    return done


# The seed is a demo organisation: its people share one published password (docs/directory.md).
DEMO_PASSWORD = "Tessera-demo-2026!"


# --- generated staff for load tests ---------------------------------------------------------
def _staff_record(args: tuple[int, str, str, str]) -> str:
    number, suffix, password, changed = args
    uid = f"staff{number:05d}"
    department = DEPARTMENTS[number % len(DEPARTMENTS)]
    (family, _), (given, _) = name_parts(number)
    # LDIF (RFC 2849): values that are not ASCII are base64 (``attr:: ...``)
    return (f"dn: uid={uid},ou=people,{suffix}\nobjectClass: inetOrgPerson\nuid: {uid}\n"
            f"cn:: {_b64(family + given)}\ndisplayName:: {_b64(family + given)}\ngivenName:: {_b64(given)}\n"
            f"sn:: {_b64(family)}\nmail: {uid}@{department}.tessera.example\n"
            f"departmentNumber: {department}\ntitle: Officer\nemployeeNumber: {100000 + number}\n"
            f"userPassword: {hash_password(password)}\npwdChangedTime: {changed}\n")


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def generated_staff(suffix: str, count: int, password: str, *, start: int = 1, workers: int | None = None,
                    ) -> Iterator[str]:
    """LDIF records of ``count`` staff ``staffNNNNN`` (each its own argon2 salt), hashed on every core."""
    changed = _generalized_time()
    jobs = ((n, suffix, password, changed) for n in range(start, start + count))
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        yield from pool.map(_staff_record, jobs, chunksize=64)


# --- the server process ---------------------------------------------------------------------
#: run slapd so that it gets SIGTERM when the thread that started it dies (util-linux setpriv(1),
#: Essential on Debian); without setpriv, slapd is only stopped by :meth:`EmbeddedSlapd.stop`
_DIE_WITH_PARENT = ["setpriv", "--pdeathsig", "TERM"] if shutil.which("setpriv") else []


class EmbeddedSlapd:
    """Start and stop the private slapd of a folder, always by PID.

    ``start()`` runs ``slapd -d 0`` as this process's child (``tessera serve``, tests), which
    the kernel ends with SIGTERM when the thread that started it dies (``setpriv --pdeathsig``,
    prctl(2) PR_SET_PDEATHSIG), so a ``tessera serve`` killed with SIGKILL leaves no slapd
    behind; :meth:`supervise` restarts a child that died. ``start(detach=True)`` lets slapd
    daemonise (``tessera directory start``), found again by its pid file. Only the process that
    started a child may stop it: gunicorn forks its workers from the process that owns slapd,
    and a worker leaving must not take slapd along.
    """

    def __init__(self, folder: DirectoryFolder | Path) -> None:
        self.folder = folder if isinstance(folder, DirectoryFolder) else DirectoryFolder(Path(folder))
        self._proc: subprocess.Popen[bytes] | None = None
        self._owner: int | None = None

    @property
    def url(self) -> str:
        return self.folder.url

    def _pid_from_file(self) -> int | None:
        try:
            pid = int(self.folder.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        return pid if b"slapd" in cmdline and str(self.folder.conf).encode() in cmdline else None

    @property
    def pid(self) -> int | None:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc.pid
        return self._pid_from_file()

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.folder.port), timeout=0.2):
                return True
        except OSError:
            return False

    def is_running(self) -> bool:
        return self.pid is not None

    def start(self, *, detach: bool = False, timeout: float = 10.0) -> None:
        """Start slapd on its port and ldapi socket and wait until it accepts connections."""
        if self.is_running():
            return
        if not self.folder.conf.exists():
            raise DirectorySetupError(f"no directory in {self.folder.path}: run `tessera init`")
        if self._answers():
            raise DirectorySetupError(f"port {self.folder.port} is taken by another program: free it, or give the "
                                     f"directory another port in {self.folder.path / 'port'}")
        self.folder.socket.unlink(missing_ok=True)
        urls = f"{self.folder.url}/ {self.folder.ldapi_url}"
        if self.folder.ldaps_url:
            urls += f" {self.folder.ldaps_url}/"
        log = open(self.folder.log_file, "ab")
        try:
            if detach:
                result = subprocess.run([SLAPD, "-h", urls, "-f", str(self.folder.conf)], stdout=log, stderr=log)
                if result.returncode != 0:
                    raise DirectorySetupError(f"slapd did not start (see {self.folder.log_file})")
            else:
                self._proc = subprocess.Popen([*_DIE_WITH_PARENT, SLAPD, "-h", urls, "-f", str(self.folder.conf),
                                               "-d", "0"],
                                              stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                              start_new_session=True)  # Ctrl-C reaches us; we stop it in order
                self._owner = os.getpid()
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        # ready = it answers on its port and has written its pid file (done after binding its listeners)
        while not (self._answers() and self._pid_from_file() is not None):
            if self._proc is not None and self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                raise DirectorySetupError(f"slapd exited with status {code} (see {self.folder.log_file})")
            if time.monotonic() > deadline:
                self.stop()
                raise DirectorySetupError(f"slapd did not answer on port {self.folder.port} within {timeout:.0f}s")
            time.sleep(0.01)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop slapd by PID: SIGTERM, wait, SIGKILL if it hangs. A forked child does nothing."""
        if self._proc is not None:
            if os.getpid() != self._owner:
                return
            proc, self._proc = self._proc, None
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            return
        pid = self._pid_from_file()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGKILL)

    def supervise(self, interval: float = 1.0, on_restart: Callable[[int, str], None] | None = None
                  ) -> Callable[[], None]:
        """Watch the child started by :meth:`start` from a thread of this process and start it
        again when it dies (after 1 s; the wait doubles, to 60 s at most, while it dies within a
        minute of each start); ``on_restart`` gets the restart count and why. Returns the function
        that ends the watch (call it before :meth:`stop`). The watching thread starts each new
        slapd, so it lives as long as the watch: a restarted slapd still dies with this process."""
        done = threading.Event()

        def watch() -> None:
            restarts, backoff, started = 0, 1.0, time.monotonic()
            while not done.wait(interval):
                proc = self._proc
                if proc is not None and proc.poll() is None:
                    continue
                # died, or a restart failed last time: start it (again)
                why = (f"slapd (pid {proc.pid}) exited with status {proc.returncode}" if proc is not None
                       else "slapd is not running")
                self._proc = None
                # the first death, or it ran a minute or more: 1 s; dying in a loop: twice the last wait
                backoff = 1.0 if restarts == 0 or time.monotonic() - started >= 60 else min(60.0, backoff * 2)
                if done.wait(backoff):
                    return
                try:
                    self.start()
                except DirectorySetupError as exc:
                    why += f"; restart failed: {exc}"
                started = time.monotonic()
                restarts += 1
                if on_restart is not None:
                    on_restart(restarts, why)

        thread = threading.Thread(target=watch, name="slapd-supervisor", daemon=True)
        thread.start()

        def end() -> None:
            done.set()
            thread.join(timeout=15)

        return end

    def __enter__(self) -> "EmbeddedSlapd":
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
