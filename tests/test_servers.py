"""Ports of the test servers (tests.servers): a port one test process picked is never handed to
another one running at the same time, nor taken by the kernel for someone's port-0 bind."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from tests.servers import free_port, reserve_port

REPO = Path(__file__).resolve().parent.parent


def test_a_port_reserved_by_another_test_process_is_not_handed_out_until_it_ends() -> None:
    other = subprocess.Popen(
        [sys.executable, "-c", "import json, sys\nfrom tests.servers import free_port\n"
         "print(json.dumps([free_port() for _ in range(20)]), flush=True)\nsys.stdin.read()"],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert other.stdout is not None
        theirs = json.loads(other.stdout.readline())
        assert len(set(theirs)) == 20
        assert not any(reserve_port(port) for port in theirs)
        ours = {free_port() for _ in range(200)}
        assert len(ours) == 200 and not ours & set(theirs)
    finally:
        other.communicate(b"", timeout=10)  # the process ends: its reservations go with it
    assert sum(reserve_port(port) for port in theirs) >= 18  # (a port may be in use by someone else by now)


def test_ports_lie_outside_the_ephemeral_range_and_are_free() -> None:
    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    for _ in range(20):
        port = free_port()
        assert not low <= port <= high
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
    assert not reserve_port(port)  # already ours


def test_a_port_in_use_is_not_reserved() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert not reserve_port(s.getsockname()[1])
