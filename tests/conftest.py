"""Fixtures that start the real components: a Tessera home with its SoftHSM2 token, the
service (`tessera serve`), and a private PostgreSQL cluster. Each gets its own folder and port
and is stopped by PID at the end."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers import TESSERA, free_port, private_postgres, run_tessera, running_server, tessera_env, wait_healthy
from tests.fixtures_cards import *  # noqa: F401,F403  (fixtures of the card tests)
from tests.fixtures_directory import *  # noqa: F401,F403  (slapd, browser and SSO fixtures)

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Home:
    """A Tessera home created by the real `tessera init`, and how to run the CLI on it."""

    path: Path
    public_url: str
    port: int

    @property
    def env(self) -> dict[str, str]:
        return tessera_env(self.path, self.public_url)

    def cli(self, *args: str, check: bool = True, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return run_tessera(self.env, *args, check=check, input=input)

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
    """`tessera serve` (2 workers) on a free port, stopped by PID afterwards."""
    with running_server([TESSERA, "serve", "--port", str(home.port), "--workers", "2"], home.port,
                        home.path / "server.log", env=home.env):
        wait_healthy(home.url("/healthz"), timeout=20)
        yield home


# --- PostgreSQL -------------------------------------------------------------------------
@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A private PostgreSQL 15 cluster on its own port and folder, with database ``tessera``."""
    try:
        with private_postgres() as url:
            yield url
    except RuntimeError as exc:
        pytest.fail(str(exc))
