"""A new deployment's directory seed names one security administrator, and four eyes needs two:
the host's system operator adds the second with `tessera admin add-second-security-admin`, once,
audited; from then on administrators are added under four eyes only."""

from __future__ import annotations

import getpass
import os
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import free_port, run_tessera, tessera_env


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A fresh home with its embedded directory (the seed organisation) running."""
    env = tessera_env(tmp_path_factory.mktemp("second-admin") / "home", f"http://127.0.0.1:{free_port()}")
    run_tessera(env, "init")
    run_tessera(env, "directory", "start")
    try:
        yield env
    finally:
        stopped = run_tessera(env, "directory", "stop", check=False)
        pid_file = Path(env["TESSERA_HOME"]) / "ldap" / "slapd.pid"
        if stopped.returncode != 0 and pid_file.exists():  # stopped by PID whatever happened
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)


def test_the_second_security_administrator_is_added_once(seeded: dict[str, str]) -> None:
    # no account holds two administrator roles: a system administrator is refused
    both = run_tessera(seeded, "admin", "add-second-security-admin", "heguiying", check=False)
    assert both.returncode == 3 and b"two administrator roles" in both.stderr, both.stderr
    done = run_tessera(seeded, "admin", "add-second-security-admin", "liqiang")
    assert b"liqiang is now a security administrator (2 hold the role)" in done.stdout
    # two hold it now, as the directory says: the next one goes through four eyes
    third = run_tessera(seeded, "admin", "add-second-security-admin", "yanglei", check=False)
    assert third.returncode == 3 and b"under four eyes" in third.stderr, third.stderr
    with sqlite3.connect(Path(seeded["TESSERA_HOME"]) / "tessera.db") as db:
        rows = db.execute("SELECT subject, result, object FROM audit_entry WHERE event_type = 'admin.role.grant' "
                          "ORDER BY seq").fetchall()
    operator = f"cli:{getpass.getuser()}"
    assert rows == [(operator, "refused", "staff:heguiying"), (operator, "success", "staff:liqiang"),
                    (operator, "refused", "staff:yanglei")]
