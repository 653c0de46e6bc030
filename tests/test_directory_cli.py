"""`tessera directory ...` and `tessera serve` with the embedded slapd, on a home of their own
created by the real `tessera init` (so starting and stopping it disturbs no other test)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from directory.client import Directory
from directory.config import DirectoryConfig
from tests.conftest import TESSERA, Home, free_port
from tests.fixtures_operators import enrol, token_of
from tests.servers import run_tessera, wait_healthy


@pytest.fixture(scope="module")
def own_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Home]:
    port = free_port()
    h = Home(tmp_path_factory.mktemp("tessera-dir-home"), f"http://127.0.0.1:{port}", port)
    h.cli("init")
    yield h
    h.cli("directory", "stop", check=False)


def _ldap_port(home: Home) -> int:
    return int((home.path / "ldap" / "port").read_text())


def _answers(port: int) -> bool:
    import socket
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3):
            return True
    except OSError:
        return False


def _pid(home: Home) -> int | None:
    try:
        return int((home.path / "ldap" / "slapd.pid").read_text())
    except (OSError, ValueError):
        return None


def test_init_created_the_directory_with_secrets_private(own_home: Home) -> None:
    for name in ("ldap-admin.password", "ldap-idp.password", "ldap-demo.password"):
        assert (own_home.path / "secrets" / name).stat().st_mode & 0o077 == 0
    assert (own_home.path / "ldap" / "slapd.conf").stat().st_mode & 0o077 == 0
    again = own_home.cli("init")
    assert b"staff directory" not in again.stdout  # idempotent


def test_start_status_show_stop(own_home: Home) -> None:
    stopped = own_home.cli("directory", "status", check=False)
    assert stopped.returncode == 1 and b"unavailable" in stopped.stdout
    started = own_home.cli("directory", "start")
    assert b"started the staff directory" in started.stdout and _answers(_ldap_port(own_home))
    try:
        status = json.loads(own_home.cli("directory", "status", "--json").stdout)
        assert status["embedded"] is True and status["answering"] == f"ldap://127.0.0.1:{_ldap_port(own_home)}"
        # the seed's security administrator proves both factors; the show is theirs to ask for
        demo_password = (own_home.path / "secrets" / "ldap-demo.password").read_text().strip()
        env = own_home.env | {"TESSERA_OPERATOR_TOKEN": token_of(own_home.env, enrol(own_home.env, "luochao",
                                                                                     demo_password))}
        unproven = own_home.cli("directory", "show", "wuxiuying", "--as", "luochao", check=False)
        assert unproven.returncode == 4 and b"not logged in" in unproven.stderr
        shown = json.loads(run_tessera(env, "directory", "show", "wuxiuying", "--as", "luochao", "--json").stdout)
        assert shown["department"] == "public-security" and shown["is_approver"] is True
        assert shown["department_name"] == "湘西土家族苗族自治州公安局"
        missing = run_tessera(env, "directory", "show", "*)(uid=*", "--as", "luochao", check=False)
        assert missing.returncode == 1 and b"no staff member" in missing.stderr and b"Traceback" not in missing.stderr
        # removing one of the seed's two auditors is a four-eyes request (and nobody else can approve
        # it here); its one security administrator is never removed
        asked = run_tessera(env, "admin", "remove-role", "zhangmin", "auditors", "--as", "luochao")
        assert b"four-eyes request #" in asked.stdout
        kept = run_tessera(env, "admin", "remove-role", "luochao", "security-administrators", "--as", "luochao",
                           check=False)
        assert kept.returncode == 1 and b"luochao is the last security administrator" in kept.stderr, kept.stderr
        for uid, group in [("zhangmin", "auditors"), ("luochao", "security-administrators")]:
            assert group in json.loads(run_tessera(env, "directory", "show", uid, "--as", "luochao", "--json").stdout)[
                "groups"]
        unknown = own_home.cli("directory", "unlock", "nobody", check=False)
        assert unknown.returncode == 1 and b"No staff member" in unknown.stderr and b"Traceback" not in unknown.stderr
        assert b"unlocked liqiang" in own_home.cli("directory", "unlock", "liqiang").stdout
        # bulk loading needs the server stopped: a one-line refusal, not a corrupted database
        refused = own_home.cli("directory", "generate", "--count", "5", check=False)
        assert refused.returncode == 1 and b"stop it first" in refused.stderr
    finally:
        stopped_now = own_home.cli("directory", "stop")
    assert b"stopped" in stopped_now.stdout and not _answers(_ldap_port(own_home)) and _pid(own_home) is None


def test_generate_loads_staff_that_can_log_in(own_home: Home) -> None:
    result = own_home.cli("directory", "generate", "--count", "40", "--start", "1")
    assert b"added 40 staff" in result.stdout
    assert b"added 10 staff" in own_home.cli("directory", "generate", "--count", "10", "--start", "61").stdout
    # 51..60 are new, 61 exists: slapadd stops at the duplicate and the ten before it are rolled back
    overlap = own_home.cli("directory", "generate", "--count", "15", "--start", "51", check=False)
    assert overlap.returncode == 1 and b"nothing was loaded" in overlap.stderr and b"Traceback" not in overlap.stderr
    own_home.cli("directory", "start")
    try:
        config = DirectoryConfig.from_env(own_home.path, {})
        with Directory(config) as directory:
            member = directory.authenticate("staff00040", "Load-test-password-1")
            assert member.department and "湘西土家族苗族自治州" in member.department_name  # the name, not the key
            assert directory.find("staff00041") is None and directory.find("staff00051") is None
            assert directory.find("staff00061") is not None
            assert directory.authenticate("heguiying", (own_home.path / "secrets" / "ldap-demo.password")
                                          .read_text().strip()).uid == "heguiying"  # the seed is still there
    finally:
        own_home.cli("directory", "stop")


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGINT])
def test_serve_starts_the_embedded_slapd_and_stops_it(own_home: Home, how: signal.Signals) -> None:
    ldap_port = _ldap_port(own_home)
    assert not _answers(ldap_port)
    log = open(own_home.path / f"serve-{how.name}.log", "wb")
    port = free_port()
    proc = subprocess.Popen([TESSERA, "serve", "--port", str(port), "--workers", "1"], env=own_home.env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while not _answers(ldap_port):
            assert proc.poll() is None and time.monotonic() < deadline, "slapd did not come up with tessera serve"
            time.sleep(0.05)
        slapd_pid = _pid(own_home)
        assert slapd_pid is not None
        wait_healthy(f"http://127.0.0.1:{port}/healthz")  # the worker has forked: its leaving must not stop slapd
        config = DirectoryConfig.from_env(own_home.path, {})
        with Directory(config) as directory:
            assert directory.find("heguiying") is not None
        proc.send_signal(how)
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
    assert not Path(f"/proc/{slapd_pid}").exists() and not _answers(ldap_port)


def test_serve_refuses_when_the_directory_port_is_taken(own_home: Home) -> None:
    import socket
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the port may be in TIME_WAIT
    squatter.bind(("127.0.0.1", _ldap_port(own_home)))
    squatter.listen()
    try:
        result = subprocess.run([TESSERA, "serve", "--port", str(free_port())], env=own_home.env,
                                capture_output=True, timeout=60)
    finally:
        squatter.close()
    assert result.returncode == 1 and b"is taken by another program" in result.stderr
    assert b"Traceback" not in result.stderr and _pid(own_home) is None
