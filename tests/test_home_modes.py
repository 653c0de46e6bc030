"""The home holds keys, PINs and personal data: `tessera init` makes it and everything in it 0700
(folders) / 0600 (files) whatever was there before, and what the running service creates later
(SQLite's WAL and shared memory, slapd's files) is born so (issue 12, finding 8). Judged by find(1)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path

from tests.servers import (
    TESSERA,
    free_port,
    run_tessera,
    running_server,
    tessera_env,
    wait_healthy,
)


def _too_open(home: Path) -> list[str]:
    """find(1): the home, folders not 0700 and regular files not 0600 (symbolic links and sockets aside)."""
    result = subprocess.run(["find", str(home), "(", "-type", "d", "!", "-perm", "700", ")", "-o",
                             "(", "-type", "f", "!", "-perm", "600", ")", "-printf", "%m %p\n"],
                            capture_output=True, text=True, check=True)
    return result.stdout.splitlines()


def test_init_makes_an_existing_open_home_private_and_the_service_keeps_it_so(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    os.chmod(home, 0o755)  # as `mkdir` with the usual umask left it
    (home / "notes").mkdir(mode=0o755)
    (home / "notes" / "readme.txt").write_text("left by the operator\n")
    os.chmod(home / "notes" / "readme.txt", 0o644)
    port = free_port()
    env = tessera_env(home, f"http://127.0.0.1:{port}")
    out = run_tessera(env, "init").stdout.decode()
    assert "private to its owner" in out
    assert _too_open(home) == []
    # an older Tessera (or a copy) left the database and its WAL world-readable: init repairs it
    with sqlite3.connect(home / "tessera.db") as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE IF NOT EXISTS scratch (x)")
    for name in ("tessera.db", "tessera.db-wal", "tessera.db-shm"):
        if (home / name).exists():
            os.chmod(home / name, 0o644)
    os.chmod(home, 0o755)
    assert _too_open(home)
    run_tessera(env, "init")
    assert _too_open(home) == []
    # the running service (and the slapd it starts) creates its files owner-only
    for name in ("tessera.db-wal", "tessera.db-shm"):
        (home / name).unlink(missing_ok=True)
    with running_server([TESSERA, "serve", "--port", str(port), "--workers", "1"], port,
                        tmp_path / "serve.log", env=env):
        wait_healthy(f"http://127.0.0.1:{port}/healthz")
        created = {p.name for p in home.rglob("*")}
        assert "slapd.pid" in created and "slapd.args" in created  # written by slapd under serve's umask
        assert "tessera.db-wal" in created or "tessera.db-shm" in created
        assert _too_open(home) == [], (tmp_path / "serve.log").read_text()[-2000:]
    assert _too_open(home) == []
