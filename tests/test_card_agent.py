"""The card agent (`tessera card agent`) serves connections concurrently: an idle or half-sent
connection does not block the next client and is closed after the idle timeout; signatures made
at the same time through PKCS#11 (one lock) are all valid (checked with `cryptography`); methods
other than GET/POST/OPTIONS get a JSON 405 with Allow (issue 12, finding 8). 127.0.0.1 only."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from tests.fixtures_cards import IssuedCard
from tests.servers import TESSERA, free_port, start_server, stop_server

ORIGIN = "https://login.tessera.example"
IDLE = 2.0  # --idle-timeout of this agent, seconds


@pytest.fixture(scope="module")
def agent(home: Any, card: IssuedCard) -> Iterator[str]:
    port = free_port()
    log = home.path.parent / f"agent-{os.getpid()}-{port}.log"
    proc = start_server([TESSERA, "card", "agent", "--port", str(port), "--card", card.number,
                         "--origin", ORIGIN, "--idle-timeout", str(IDLE)], port, log, env=home.env, timeout=30)
    try:
        yield f"http://127.0.0.1:{port}"
        assert proc.poll() is None, log.read_text()[-2000:]
    finally:
        stop_server(proc)


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def test_an_idle_connection_does_not_block_another_client_and_is_closed(agent: str) -> None:
    idle = socket.create_connection(("127.0.0.1", _port(agent)), timeout=IDLE + 5)
    half = socket.create_connection(("127.0.0.1", _port(agent)), timeout=IDLE + 5)
    half.sendall(b"POST /authenticate HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: " + ORIGIN.encode()
                 + b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"nonce\"")
    opened = time.monotonic()
    try:
        started = time.monotonic()
        answer = requests.get(agent + "/card", headers={"Origin": ORIGIN}, timeout=IDLE)
        assert answer.status_code == 200 and time.monotonic() - started < 1.0
        assert answer.json()["card"]
        for sock in (idle, half):  # the agent closes both after its idle timeout
            assert sock.recv(1024) == b""
            assert time.monotonic() - opened <= IDLE + 1.5
    finally:
        idle.close()
        half.close()


def test_signatures_made_at_the_same_time_are_all_valid(agent: str, card: IssuedCard) -> None:
    certificate = base64.b64decode(requests.get(agent + "/card", headers={"Origin": ORIGIN}, timeout=10).json()["certificate"])
    key = x509.load_der_x509_certificate(certificate).public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    nonces = [base64.b64encode(secrets.token_bytes(32)).decode() for _ in range(6)]

    def sign(nonce: str) -> requests.Response:
        return requests.post(agent + "/authenticate", json={"nonce": nonce, "pin": card.pin},
                             headers={"Origin": ORIGIN}, timeout=30)

    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(sign, nonces))
    for nonce, answer in zip(nonces, answers, strict=True):
        assert answer.status_code == 200, answer.text
        token = answer.json()
        raw = base64.b64decode(token["signature"])
        half = len(raw) // 2
        der = encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))
        signed = hashlib.sha256(ORIGIN.encode()).digest() + hashlib.sha256(nonce.encode()).digest()
        assert token["algorithm"] == "ES256"
        key.verify(der, signed, ec.ECDSA(hashes.SHA256()))  # raises InvalidSignature if not


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "HEAD", "TRACE"])
def test_other_methods_get_a_json_405(agent: str, method: str) -> None:
    answer = requests.request(method, agent + "/card", headers={"Origin": ORIGIN}, timeout=5)
    assert answer.status_code == 405
    assert {m.strip() for m in answer.headers["Allow"].split(",")} == {"GET", "POST", "OPTIONS"}
    if method != "HEAD":
        assert answer.headers["Content-Type"] == "application/problem+json"
        body = answer.json()
        assert body["status"] == 405 and body["title"] == "Method Not Allowed"
