"""Fixtures that start the real components: a Tessera home with its SoftHSM2 token, the
service under gunicorn, and a private PostgreSQL cluster. Each gets its own folder and port
and is stopped by PID at the end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers import free_port, private_postgres, wait_for_port
from tests.fixtures_cards import *  # noqa: F401,F403  (fixtures of the card tests)
from tests.fixtures_directory import *  # noqa: F401,F403  (slapd, browser and SSO fixtures)

ROOT = Path(__file__).resolve().parent.parent
TESSERA = str(Path(sys.executable).parent / "tessera")


@dataclass
class Home:
    """A Tessera home created by the real `tessera init`, and how to run the CLI on it."""

    path: Path
    public_url: str
    port: int

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TESSERA_", "SOFTHSM2_"))}
        env.update(TESSERA_HOME=str(self.path), TESSERA_PUBLIC_URL=self.public_url)
        return env

    def cli(self, *args: str, check: bool = True, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        result = subprocess.run([TESSERA, *args], env=self.env, capture_output=True, input=input, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"tessera {' '.join(args)} failed: {result.stderr.decode()}")
        return result

    def url(self, path: str) -> str:
        return self.public_url + path


@pytest.fixture(scope="session")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    port = free_port()
    h = Home(tmp_path_factory.mktemp("tessera-home"), f"http://127.0.0.1:{port}", port)
    h.cli("init")
    return h


@pytest.fixture(scope="session")
def server(home: Home) -> Iterator[Home]:
    """`tessera serve` (gunicorn, 2 workers) on a free port, stopped by PID afterwards."""
    log = open(home.path / "server.log", "wb")
    proc = subprocess.Popen([TESSERA, "serve", "--port", str(home.port), "--workers", "2"],
                            env=home.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_port(home.port, proc)
        _wait_healthy(home.url("/healthz"))
        yield home
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def _wait_healthy(url: str, timeout: float = 20.0) -> None:
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


# --- PostgreSQL -------------------------------------------------------------------------
@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A private PostgreSQL 15 cluster on its own port and folder, with database ``tessera``."""
    try:
        with private_postgres() as url:
            yield url
    except RuntimeError as exc:
        pytest.fail(str(exc))
