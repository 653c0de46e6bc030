"""`tessera serve --workers 2` against slow, lying and oversized clients, and with workers killed:
the service keeps answering /healthz within 2 s, slow connections are cut off by the server
within TESSERA_HTTP_READ_TIMEOUT, and granian never gives up on a crashing worker
(issue 12, findings 1 and 2). Raw sockets on 127.0.0.1; bounded in count and time."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.fixtures_web import *  # the idp fixture and its slapd
from tests.fixtures_web import IdpServer
from tests.servers import TESSERA, free_port, start_server, stop_server, wait_healthy

TIMEOUT = 3  # TESSERA_HTTP_READ_TIMEOUT for this server, seconds


@dataclasses.dataclass
class Served:
    idp: IdpServer
    pid: int

    @property
    def port(self) -> int:
        return self.idp.port


@pytest.fixture(scope="module")
def served(idp: IdpServer) -> Iterator[Served]:
    here = dataclasses.replace(idp, port=free_port(), log=idp.home.parent / "serve-slow-clients.log")
    proc = start_server([TESSERA, "serve", "--port", str(here.port), "--workers", "2"], here.port, here.log,
                        env={**here.env, "TESSERA_HTTP_READ_TIMEOUT": str(TIMEOUT)})
    try:
        wait_healthy(here.base + "/healthz")
        yield Served(here, proc.pid)
        assert proc.poll() is None, here.log.read_text()[-3000:]
    finally:
        stop_server(proc)
    assert proc.returncode == 0, here.log.read_text()[-3000:]
    assert "Traceback" not in here.log.read_text()


def _open(port: int, data: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(data)
    return sock


def _until_closed(sock: socket.socket, deadline: float) -> tuple[bytes, float | None]:
    """What the server sent and when it closed the connection (None: still open at the deadline)."""
    received = b""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            return received, time.monotonic()
        if not chunk:
            return received, time.monotonic()
        received += chunk
    return received, None


def _healthz_within(port: int, seconds: float) -> float:
    started = time.monotonic()
    answer = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=seconds)
    assert answer.status_code == 200
    return time.monotonic() - started


def test_slow_and_lying_clients_are_cut_off_and_cannot_starve_the_workers(served: Served) -> None:
    port = served.port
    head = "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {kind}\r\nContent-Length: 1000\r\n\r\n"
    opened = time.monotonic()
    # 8 that never finish their headers, 12 that announce 1000 bytes of body and send 10
    partial = [_open(port, b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty") for _ in range(8)]
    short = [_open(port, head.format(path=path, kind=kind).encode() + b"0123456789")
             for path, kind in [("/ocsp/citizen", "application/ocsp-request"),
                                ("/login", "application/x-www-form-urlencoded")] * 6]
    sockets = partial + short
    try:
        time.sleep(0.5)  # every body-reading request has reached the server
        for _ in range(3):
            assert _healthz_within(port, 2.0) < 2.0
        # each connection is closed by the server within the read timeout (and a second of slack)
        closed = [_until_closed(sock, opened + TIMEOUT + 3) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
    for _data, when in closed:
        assert when is not None, "a slow connection was still open after the read timeout"
        assert when - opened <= TIMEOUT + 1.5, f"closed after {when - opened:.1f} s"
    for data, _ in closed[len(partial):]:  # a body that never came: 408 with a problem detail
        status, _, rest = data.partition(b"\r\n")
        assert status.startswith(b"HTTP/1.1 408"), data[:200]
        body = json.loads(rest.partition(b"\r\n\r\n")[2])
        assert body["status"] == 408 and body["title"] == "Request Timeout"
    assert _healthz_within(port, 2.0) < 2.0


def test_a_client_dribbling_its_body_is_cut_off_at_the_deadline(served: Served) -> None:
    """The deadline is for the whole body, not between bytes."""
    sock = _open(served.port, b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n"
                              b"Content-Type: application/x-www-form-urlencoded\r\n\r\n")
    started = time.monotonic()
    try:
        for _ in range(int(TIMEOUT / 0.25) + 8):  # a byte every 0.25 s: would take 25 s in all
            try:
                sock.sendall(b"a")
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.25)
        data, when = _until_closed(sock, started + TIMEOUT + 4)
    finally:
        sock.close()
    assert when is not None and when - started <= TIMEOUT + 2
    assert data.startswith(b"HTTP/1.1 408"), data[:200]


def test_oversized_bodies_are_refused_before_they_are_read(served: Served) -> None:
    base = f"http://127.0.0.1:{served.port}"
    # announced: refused at once, with nothing sent
    sock = _open(served.port, b"POST /ocsp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/ocsp-request\r\n"
                              b"Content-Length: 9000000\r\n\r\n")
    try:
        data, when = _until_closed(sock, time.monotonic() + 2)
    finally:
        sock.close()
    assert data.startswith(b"HTTP/1.1 413") and b"application/problem+json" in data and when is not None
    # chunked, no length announced: cut off once past the ceiling (8 MiB by default)
    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b"\0" * (1024 * 1024)

    try:
        answer = requests.post(base + "/ocsp", data=chunks(), headers={"Content-Type": "application/ocsp-request"},
                               timeout=10)
        assert answer.status_code == 413 and answer.json()["status"] == 413
    except requests.ConnectionError:
        pass  # the server may close before the client has finished sending: also a refusal
    # a chunked body under the ceiling reaches the application whole (Content-Length set for it)
    answer = requests.post(base + "/ocsp", data=iter([b"\x30", b"\x00"]), headers={"Content-Type": "application/ocsp-request"},
                           timeout=10)
    assert answer.status_code in (200, 400) and answer.headers["Content-Type"] == "application/ocsp-response"
    assert _healthz_within(served.port, 2.0) < 2.0


def test_an_oversized_request_head_is_refused(served: Served) -> None:
    sock = _open(served.port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 200_000 + b"\r\n\r\n")
    try:
        data, when = _until_closed(sock, time.monotonic() + TIMEOUT + 3)
    finally:
        sock.close()
    assert when is not None and data.startswith(b"HTTP/1.1 431"), data[:200]
    assert _healthz_within(served.port, 2.0) < 2.0


def _workers(pid: int) -> list[int]:
    """granian's worker processes: the serve process's children running the worker entry point."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            if b"resource_tracker" not in cmdline:
                found.append(int(child))
    return sorted(found)


def _wait_for_workers(pid: int, count: int, deadline: float) -> list[int]:
    while time.monotonic() < deadline:
        workers = _workers(pid)
        if len(workers) == count:
            return workers
        time.sleep(0.1)
    raise AssertionError(f"no {count} workers by the deadline")


def test_workers_killed_again_and_again_never_take_the_service_down(served: Served) -> None:
    """One worker SIGKILLed six times in a row, each time as soon as it is back (granian alone would
    exit after the second: "crash loop"), while the other answers every request at once; then both
    killed at once, twice: the service is back within seconds. granian (on Linux) listens with
    SO_REUSEPORT in each worker, so with every worker dead a connection is refused meanwhile."""
    base = f"http://127.0.0.1:{served.port}"
    deadline = time.monotonic() + 120
    survivor, victim = _wait_for_workers(served.pid, 2, deadline)
    for kill in range(6):
        os.kill(victim, signal.SIGKILL)
        time.sleep(0.2)  # (a connection the kernel had queued for the killed worker is reset: tcp_migrate_req)
        for _ in range(3):
            try:
                answer = requests.get(base + "/healthz", timeout=2)
            except requests.ConnectionError as exc:
                raise AssertionError(f"after kill {kill + 1}: {exc}\n{served.idp.log.read_text()[-3000:]}") from None
            assert answer.status_code == 200
        while time.monotonic() < deadline:  # the respawned worker
            workers = _workers(served.pid)
            if len(workers) == 2 and victim not in workers:
                assert survivor in workers
                victim = next(w for w in workers if w != survivor)
                break
            time.sleep(0.1)
    for _ in range(2):  # every worker at once
        for worker in _wait_for_workers(served.pid, 2, deadline):
            os.kill(worker, signal.SIGKILL)
        wait_healthy(base + "/healthz", timeout=30)
    assert Path(f"/proc/{served.pid}").exists()
    _wait_for_workers(served.pid, 2, deadline)
    time.sleep(3)  # the respawned workers have built their application (stopping one while it boots takes longer)
    log = served.idp.log.read_text()
    assert "crash loop" not in log and log.count("Unexpected exit from worker") >= 10, log[-3000:]
    assert log.count("stopped unexpectedly; respawning") >= 8  # both at once may share a line


@pytest.mark.parametrize("status, headers", [
    ("approved", [("Content-Type", "text/plain")]),  # a request value that became the status (finding 1)
    ("9999 Nine", [("Content-Type", "text/plain")]),
    ("200 OK", [("Location", "/x\r\nSet-Cookie: a=b")]),
    ("200 OK", [("X-Name", "\u4e2d\u6587")]),  # not Latin-1
])
def test_an_answer_the_server_cannot_send_becomes_a_500_problem(status: str, headers: list[tuple[str, str]]) -> None:
    """idp.http_front.WholeRequests, driven as granian drives an ASGI application."""
    import asyncio

    from idp.http_front import BufferedBodies, WholeRequests

    def application(environ: dict[str, object], start_response: object) -> list[bytes]:
        assert environ["wsgi.input"].read() == b"payload"  # type: ignore[attr-defined]
        start_response(status, headers)  # type: ignore[operator]
        return [b"body"]

    sent: list[dict[str, object]] = []
    incoming = iter([{"type": "http.request", "body": b"pay", "more_body": True},
                     {"type": "http.request", "body": b"load", "more_body": False}])

    async def receive() -> dict[str, object]:
        return next(incoming)

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/x", "raw_path": b"/x", "query_string": b"", "root_path": "",
             "headers": [(b"host", b"127.0.0.1"), (b"transfer-encoding", b"chunked")], "http_version": "1.1",
             "scheme": "http", "client": ("127.0.0.1", 5), "server": ("127.0.0.1", 80)}
    front = BufferedBodies(WholeRequests(application, 1), read_timeout=2, max_body=100)  # type: ignore[arg-type]
    asyncio.run(front(scope, receive, send))
    assert sent[0]["status"] == 500
    assert json.loads(sent[1]["body"]) == {"type": "about:blank", "title": "Internal Server Error", "status": 500}  # type: ignore[arg-type]
