"""`tessera serve` supervises its embedded slapd (issue 16 item 4): a slapd that dies is started
again, and a `tessera serve` killed with SIGKILL leaves no slapd behind (the kernel's parent-death
signal), so the next start does not find an orphan holding the directory."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import requests

from tests.servers import TESSERA, free_port, run_tessera, start_server, stop_server, tessera_env, wait_healthy


def _slapd_pid(home: Path) -> int | None:
    try:
        pid = int((home / "ldap" / "slapd.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        alive = b"slapd" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return pid if alive else None


def _until(what: str, check, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    pytest.fail(f"not within {timeout:.0f} s: {what}")


def test_a_dead_slapd_is_restarted_and_a_killed_serve_takes_slapd_along(tmp_path: Path) -> None:
    port = free_port()
    home = tmp_path / "home"
    env = tessera_env(home, f"http://127.0.0.1:{port}")
    run_tessera(env, "init")
    log = tmp_path / "server.log"
    proc = start_server([TESSERA, "serve", "--port", str(port), "--workers", "1"], port, log, env=env)
    first = None
    try:
        wait_healthy(f"http://127.0.0.1:{port}/healthz")
        first = _until("slapd running", lambda: _slapd_pid(home))
        os.kill(first, signal.SIGKILL)
        second = _until("slapd started again", lambda: (pid := _slapd_pid(home)) and pid != first and pid)
        # the supervisor says so once the new slapd answers, which may be after its pid file appears
        _until("the restart logged", lambda: "started again (restart 1)" in log.read_text())
        ready = _until("/readyz 200 with the directory back",
                       lambda: requests.get(f"http://127.0.0.1:{port}/readyz", timeout=10).status_code == 200)
        assert ready
        proc.kill()  # no chance to clean up
        proc.wait(10)
        _until("slapd gone with the killed service", lambda: not Path(f"/proc/{second}").exists()
               or b"slapd" not in Path(f"/proc/{second}/cmdline").read_bytes(), timeout=15)
    finally:
        stop_server(proc)
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the workers, if the main process was killed
        except ProcessLookupError:
            pass
        left = _slapd_pid(home)
        if left is not None:
            os.kill(left, signal.SIGKILL)
