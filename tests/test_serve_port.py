"""`tessera serve` on a port already in use (issue 16, item 4): one line and a non-zero exit, both
when another program holds the port and when another deployment serves on it (no silent
SO_REUSEPORT sharing: the running deployment keeps answering every request alone)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from idp.server import claim_address, release_address
from tests.conftest import Home
from tests.servers import TESSERA, free_port, run_tessera, tessera_env


@pytest.fixture(scope="module")
def second_home() -> Iterator[dict[str, str]]:
    base = Path(tempfile.mkdtemp(prefix="tessera-port-"))
    env = tessera_env(base / "home")
    try:
        run_tessera(env, "init")
        yield env
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _serve(env: dict[str, str], port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TESSERA, "serve", "--port", str(port), "--workers", "2"], env=env, capture_output=True,
                          text=True, timeout=60)


def _one_line_refusal(result: subprocess.CompletedProcess[str], port: int) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()  # the start's own warnings (example policy arc) may come first
    assert [line for line in lines if line.startswith("Error")] == lines[-1:], result.stderr
    assert f"127.0.0.1:{port} is already in use" in lines[-1] and "Traceback" not in result.stdout + result.stderr
    # refused before anything started: no directory started, never "serving"
    assert "serving" not in result.stdout and "started the staff directory" not in result.stdout, result.stdout


def test_a_port_another_program_holds_is_one_line(second_home: dict[str, str]) -> None:
    port = free_port()
    with socket.socket() as other:
        other.bind(("127.0.0.1", port))
        other.listen()
        _one_line_refusal(_serve(second_home, port), port)


def test_a_port_another_deployment_serves_is_one_line(server: Home, second_home: dict[str, str]) -> None:
    root = requests.get(server.url("/ca/root.crt"), timeout=10).content
    _one_line_refusal(_serve(second_home, server.port), server.port)
    for _ in range(10):  # new connections: the running deployment alone answers
        assert requests.get(server.url("/ca/root.crt"), timeout=10).content == root


def test_two_claims_of_one_address_cannot_both_pass() -> None:
    port = free_port()
    guard = claim_address("127.0.0.1", port)
    try:
        assert claim_address("127.0.0.1", port) is guard  # this process's own claim
        other = subprocess.run([sys.executable, "-c", f"from idp.server import claim_address; "
                                f"claim_address('127.0.0.1', {port})"], capture_output=True, text=True, timeout=60)
        # nothing listens yet, but another tessera serve is starting there
        assert other.returncode != 0 and "already in use" in other.stderr
    finally:
        release_address("127.0.0.1", port)
    claim_address("127.0.0.1", port)  # released: free again
    release_address("127.0.0.1", port)
