"""Fixtures that start the real components: a Tessera home with its SoftHSM2 token, the
service (`tessera serve`), and a private PostgreSQL cluster. Each gets its own folder and port
and is stopped by PID at the end."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def copy_home(template: Path, target: Path) -> Path:
    """``target``: a copy of the home ``template`` that `tessera init` made (modes kept), its own from
    then on: the configuration files that name the home's folders (SoftHSM2's, the card shards',
    slapd's) are rewritten to name the copy's. Same CA keys and secrets as the template; its embedded
    directory, if started, needs a port of its own (``ldap/port``)."""
    shutil.copytree(template, target, symlinks=True, dirs_exist_ok=True)
    for conf in target.rglob("*.conf"):
        text = conf.read_text(encoding="utf-8")
        if str(template) in text:
            conf.write_text(text.replace(str(template), str(target)), encoding="utf-8")
    return target


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


def _event_hooks() -> list[list[Any]]:
    """The process-wide lists of event subscribers each app adds itself to (idp.events and
    cardsim.events; every app build subscribes again, so a later module's app is heard)."""
    from cardsim import events as card_events
    from idp import events

    return [events._subscribers, card_events.SUBSCRIBERS]  # noqa: SLF001


@pytest.fixture(scope="module", autouse=True)
def _module_leaves_no_token_state() -> Iterator[None]:
    """A test module that serves a home in this process leaves neither its environment
    (``TESSERA_*``, ``SOFTHSM2_CONF``) nor a logged-in PKCS#11 session behind: under
    pytest-xdist the next module in this worker would otherwise meet the other home's token,
    or find it already logged in (a wrong PIN then reads as accepted). Nor the event subscribers
    its apps installed (idp.events, cardsim.events; production runs one deployment per process):
    the next module's events would reach that deployment's database."""
    before = {k: v for k, v in os.environ.items() if k.startswith(("TESSERA_", "SOFTHSM2_"))}
    hooks = _event_hooks()
    kept = [list(hook) for hook in hooks]
    yield
    for hook, was in zip(hooks, kept, strict=True):
        hook[:] = was
    for name in [k for k in os.environ if k.startswith(("TESSERA_", "SOFTHSM2_"))]:
        del os.environ[name]
    os.environ.update(before)
    if "ca.pkcs11_keys" in sys.modules:
        from ca.pkcs11_keys import finalize_all
        finalize_all()


# --- PostgreSQL -------------------------------------------------------------------------
@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A private PostgreSQL 15 cluster on its own port and folder, with database ``tessera``."""
    try:
        with private_postgres() as url:
            yield url
    except RuntimeError as exc:
        pytest.fail(str(exc))


# --- markers: unit, integration, browser, postgres (docs/testing.md) ---------------------
#: fixtures that start a real component (their users, through the fixture closure, too)
_COMPONENT_FIXTURES = frozenset({"home", "server", "slapd", "postgres_url", "browser", "page", "idp", "citizen_idp",
                                 "audit_home", "audit_store"})
#: words of a test module that starts components without those fixtures (its own home, slapd, server)
_COMPONENT_WORDS = ("subprocess", "run_tessera", "running_server", "SlapdServer", "TESSERA", "private_postgres",
                    "Home(", "IdpServer(", "sync_playwright", "softhsm2-util", "tessera_env")
_module_starts_components: dict[str, bool] = {}


def _starts_components(path: Path) -> bool:
    key = str(path)
    if key not in _module_starts_components:
        text = path.read_text(encoding="utf-8")
        _module_starts_components[key] = any(word in text for word in _COMPONENT_WORDS)
    return _module_starts_components[key]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test: ``browser`` (headless Chromium), ``postgres`` (the private cluster),
    ``integration`` (any real component: slapd, SoftHSM2 home, server, PostgreSQL, a subprocess),
    else ``unit`` (in process, no component): ``pytest -m unit`` is the fast subset."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & {"browser", "page"}:
            item.add_marker(pytest.mark.browser)
        on_postgres = "postgres_url" in names or "[postgres" in item.name
        if on_postgres:
            item.add_marker(pytest.mark.postgres)
        if on_postgres or names & _COMPONENT_FIXTURES or _starts_components(Path(str(item.fspath))):
            item.add_marker(pytest.mark.integration)
        else:
            item.add_marker(pytest.mark.unit)
