"""Starting real servers on private ports and folders: shared by the test fixtures and bench/.

Each server gets its own port and folder and is stopped by PID; nothing touches a system instance.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

PG_BIN = Path("/usr/lib/postgresql/15/bin")
#: the `tessera` command of this virtual environment
TESSERA = str(Path(sys.executable).parent / "tessera")


def tessera_env(home: Path, public_url: str | None = None, **extra: str) -> dict[str, str]:
    """This process's environment for `tessera` on ``home``: no TESSERA_*/SOFTHSM2_* of ours leaks in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TESSERA_", "SOFTHSM2_"))}
    env.update(TESSERA_HOME=str(home), **extra)
    if public_url is not None:
        env["TESSERA_PUBLIC_URL"] = public_url
    return env


def run_tessera(env: dict[str, str], *args: str, check: bool = True,
                input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run the `tessera` CLI in a process of its own (forked by :class:`_ForkServer` when it can, else
    a subprocess); with ``check``, a non-zero exit fails the test with its stderr."""
    result = _fork_server.run(env, args, input, timeout=120)
    if result is None:
        result = subprocess.run([TESSERA, *args], env=env, capture_output=True, input=input, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"tessera {' '.join(args)} failed: {result.stderr.decode()}")
    return result


class _ForkServer:
    """This test process's `tessera` fork server (tests/forkserver.py): each call is a forked child of
    a process that imported the command once, so it skips the second of interpreter start and imports
    a subprocess costs. Started on first use; ``TESSERA_TEST_FORKSERVER=0`` turns it off (every call a
    subprocess). Calls whose environment changes what the interpreter reads at start-up (``PYTHON*``,
    ``LC_*``, ``LANG``) run as subprocesses."""

    SCRIPT = Path(__file__).resolve().parent / "forkserver.py"

    def __init__(self) -> None:
        self.guard = threading.Lock()
        self.pid = -1
        self.socket: str | None = None
        self.startup: dict[str, str] = {}
        self.process: subprocess.Popen[bytes] | None = None

    def _started(self) -> str | None:
        with self.guard:
            if self.pid != os.getpid():  # first use, or a forked child of the process that started it
                self.pid, self.socket = os.getpid(), None
                if os.environ.get("TESSERA_TEST_FORKSERVER", "1") != "0":
                    self._start()
            return self.socket

    def _start(self) -> None:
        folder = Path(tempfile.mkdtemp(prefix="tessera-fork-"))
        path = str(folder / "socket")
        env = tessera_env(folder)
        del env["TESSERA_HOME"]
        self.startup = {k: v for k, v in env.items() if k.startswith(_STARTUP_VARIABLES)}
        self.process = subprocess.Popen([sys.executable, str(self.SCRIPT), path], env=env, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=open(folder / "forkserver.log", "ab"),
                                        cwd=folder)
        assert self.process.stdout is not None
        if self.process.stdout.readline() == b"ready\n":
            self.socket = path
        atexit.register(self._stop, self.process, folder)

    @staticmethod
    def _stop(process: subprocess.Popen[bytes], folder: Path) -> None:
        stop_server(process, timeout=5)
        shutil.rmtree(folder, ignore_errors=True)

    def launch(self, env: dict[str, str], args: list[str], stdio: tuple[int, int, int], cwd: Path | None = None,
               new_session: bool = False) -> ForkedProcess | None:
        """`tessera ARGS` forked with ``env``, standard input/output/error on the three descriptors
        (None when the fork server cannot run this call: the caller runs a subprocess)."""
        path = self._started()
        if path is None or {k: v for k, v in env.items() if k.startswith(_STARTUP_VARIABLES)} != self.startup:
            return None
        umask = os.umask(0o077)
        os.umask(umask)
        request = json.dumps({"program": TESSERA, "args": args, "env": env, "cwd": str(cwd or os.getcwd()),
                              "umask": umask, "session": new_session})
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            conn.connect(path)
            socket.send_fds(conn, [request.encode()], list(stdio))
            pid = json.loads(conn.recv(4096))["pid"]
        except (OSError, ValueError, KeyError):  # the server is gone: a subprocess then
            conn.close()
            return None
        return ForkedProcess([TESSERA, *args], pid, conn)

    def run(self, env: dict[str, str], args: tuple[str, ...], input: bytes | None,
            timeout: float) -> subprocess.CompletedProcess[bytes] | None:
        """:meth:`launch` and wait, output captured, as :func:`subprocess.run` does."""
        with contextlib.ExitStack() as files:
            stdin = files.enter_context(tempfile.TemporaryFile() if input is not None else open(os.devnull, "rb"))
            if input is not None:
                stdin.write(input)
                stdin.seek(0)
            stdout, stderr = (files.enter_context(tempfile.TemporaryFile()) for _ in range(2))
            child = self.launch(env, list(args), (stdin.fileno(), stdout.fileno(), stderr.fileno()))
            if child is None:
                return None
            try:
                code = child.wait(timeout)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
                raise
            stdout.seek(0)
            stderr.seek(0)
            return subprocess.CompletedProcess(child.args, code, stdout.read(), stderr.read())


class ForkedProcess:
    """A `tessera` process forked by the fork server, with what the tests use of :class:`subprocess.Popen`:
    ``pid``, ``returncode``, ``poll``, ``wait``, ``send_signal``, ``terminate``, ``kill``. Its exit status
    comes over the connection from the fork server's runner, which waits for it."""

    def __init__(self, args: list[str], pid: int, conn: socket.socket) -> None:
        self.args = args
        self.pid = pid
        self.returncode: int | None = None
        self._conn = conn

    def _collect(self, timeout: float | None) -> int | None:
        if self.returncode is None:
            self._conn.settimeout(timeout)
            try:
                message = self._conn.recv(4096)
            except (TimeoutError, BlockingIOError):
                return None
            self.returncode = os.waitstatus_to_exitcode(json.loads(message)["status"]) if message else -signal.SIGKILL
            self._conn.close()
        return self.returncode

    def poll(self) -> int | None:
        return self._collect(0)

    def wait(self, timeout: float | None = None) -> int:
        code = self._collect(timeout)
        if code is None:
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return code

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


_STARTUP_VARIABLES = ("PYTHON", "LC_", "LANG")
_fork_server = _ForkServer()
#: a started `tessera` (forked) or other program
Process = subprocess.Popen[bytes] | ForkedProcess


class _PortReservations:
    """This process's ports: one byte-range lock per port (fcntl record locks) in one shared file,
    held by the test process that reserved the port and released by the kernel when that process
    ends, however it ends."""

    FILE = Path(tempfile.gettempdir()) / "tessera-test-ports.lock"

    def __init__(self) -> None:
        self.guard = threading.Lock()
        self.pid = -1
        self.fd = -1
        self.ports: set[int] = set()

    def reserve(self, port: int) -> bool:
        with self.guard:
            if self.pid != os.getpid():  # a forked child holds none of its parent's locks
                self.pid, self.ports = os.getpid(), set()
                self.fd = os.open(self.FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            if port in self.ports:
                return False
            try:
                fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, port, os.SEEK_SET)
            except OSError:
                return False  # another test process reserved it
            try:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            except OSError:  # in use by something that takes no part in reservations
                fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, port, os.SEEK_SET)
                return False
            self.ports.add(port)
            return True


_reservations = _PortReservations()


def _candidate_ports() -> range:
    """Ports outside the kernel's ephemeral range, which port-0 binds and outgoing connections draw
    from: a port there can be taken by anyone between our choice and the server's bind."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    if low - 1024 >= 4096:
        return range(max(1024, low - 12000), low)
    if 65535 - high >= 4096:
        return range(high + 1, 65536)
    return range(1024, 65536)


def reserve_port(port: int) -> bool:
    """Reserve ``port`` for this process: False when another test process holds it or something
    listens on it. A reservation lasts as long as the process, so two suites that run at the same
    time never start servers on the same port."""
    return _reservations.reserve(port)


def free_port() -> int:
    """A port on 127.0.0.1 that is free now and stays this process's own (see :func:`reserve_port`)."""
    ports = _candidate_ports()
    start = random.randrange(len(ports))
    for i in range(len(ports)):
        port = ports[(start + i) % len(ports)]
        if reserve_port(port):
            return port
    raise RuntimeError(f"no free port left in {ports.start}-{ports.stop - 1}")


def wait_for_port(port: int, proc: Process | None = None, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited early with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port} after {timeout}s")


def wait_healthy(url: str, timeout: float = 30.0) -> None:
    """Wait until ``url`` answers 200 (a service's /healthz)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def start_server(cmd: list[str], port: int, log: Path, env: dict[str, str] | None = None, cwd: Path | None = None,
                 timeout: float = 30.0) -> Process:
    """Start a server in its own session, output to ``log``, and wait for its port; stopped again
    when it does not come up."""
    with open(log, "ab") as out, open(os.devnull, "rb") as nothing:
        proc: Process | None = None
        if cmd[0] == TESSERA:
            proc = _fork_server.launch(dict(os.environ if env is None else env), cmd[1:],
                                       (nothing.fileno(), out.fileno(), out.fileno()), cwd, new_session=True)
        if proc is None:
            proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
    try:
        wait_for_port(port, proc, timeout=timeout)
    except BaseException:
        stop_server(proc)
        raise
    return proc


def stop_server(proc: Process, timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL to its whole session when it does not stop in ``timeout`` seconds."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextlib.contextmanager
def running_server(cmd: list[str], port: int, log: Path, env: dict[str, str] | None = None, cwd: Path | None = None,
                   timeout: float = 30.0) -> Iterator[Process]:
    """:func:`start_server` for the length of a ``with`` block."""
    proc = start_server(cmd, port, log, env, cwd, timeout)
    try:
        yield proc
    finally:
        stop_server(proc)


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@contextlib.contextmanager
def private_postgres(database: str = "tessera") -> Iterator[str]:
    """A private PostgreSQL 15 cluster (initdb + pg_ctl) on a free port; yields its SQLAlchemy URL."""
    if not (PG_BIN / "initdb").exists():
        raise RuntimeError("PostgreSQL 15 is not installed (scripts/bootstrap.sh --test installs it)")
    # not under a 0700 folder of root's: the postgres user must be able to enter it
    base = Path(tempfile.mkdtemp(prefix="tessera-pg-"))
    data = base / "data"
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
        os.chmod(base, 0o700)
    port = free_port()
    pg_ctl = str(PG_BIN / "pg_ctl")
    try:
        subprocess.run(_as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                                     "--no-sync", "-E", "UTF8"]), check=True, capture_output=True)
        subprocess.run(_as_postgres([pg_ctl, "-D", str(data), "-w", "-l", str(base / "pg.log"), "-o",
                                     f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off", "start"]),
                       check=True, capture_output=True)
        subprocess.run(_as_postgres([str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                                     database]), check=True, capture_output=True)
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/{database}"
    finally:
        subprocess.run(_as_postgres([pg_ctl, "-D", str(data), "-m", "fast", "stop"]), capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
