"""`tessera serve` on each production HTTP server (TESSERA_HTTP_SERVER): a staff login through the
authorization endpoint, the OCSP responder, a clean stop on SIGTERM; an unknown server name refused."""

from __future__ import annotations

import dataclasses
import signal
import subprocess

import pytest
import requests

from tests.fixtures_web import *  # noqa: F401,F403
from tests.fixtures_web import IdpServer, StaffAgent
from tests.servers import TESSERA, free_port, start_server, wait_healthy


@pytest.mark.parametrize("server", ["granian", "gunicorn"])
def test_serve_on_each_server(idp: IdpServer, staff_user: tuple[str, str], server: str) -> None:
    here = dataclasses.replace(idp, port=free_port(), log=idp.home.parent / f"serve-{server}.log")
    base, log = here.base, here.log
    proc = start_server([TESSERA, "serve", "--port", str(here.port), "--workers", "2"], here.port, log,
                        env={**here.env, "TESSERA_HTTP_SERVER": server})
    try:
        wait_healthy(base + "/healthz")
        # a whole staff login (first login: TOTP enrolment) with its session cookie and CSRF tokens
        agent = StaffAgent(here, *staff_user)
        agent.login()
        assert agent.get(base + "/account", allow_redirects=False).status_code == 200
        # a request body (a refused OCSP request) and a keep-alive connection
        with requests.Session() as keep:
            for _ in range(3):
                answer = keep.post(base + "/ocsp", data=b"\x30\x00", headers={"Content-Type": "application/ocsp-request"})
                assert answer.status_code in (200, 400) and answer.headers["Content-Type"] == "application/ocsp-response"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, log.read_text()[-2000:]
    assert "Traceback" not in log.read_text()


def test_an_unknown_server_is_refused(idp: IdpServer) -> None:
    result = subprocess.run([TESSERA, "serve", "--port", str(free_port())], env={**idp.env, "TESSERA_HTTP_SERVER": "bjoern"},
                            capture_output=True, timeout=60)
    assert result.returncode != 0 and b"TESSERA_HTTP_SERVER must be one of gunicorn, granian" in result.stderr
    assert b"Traceback" not in result.stderr
