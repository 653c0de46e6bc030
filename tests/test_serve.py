"""`tessera serve` on each production HTTP server (TESSERA_HTTP_SERVER): a staff login through the
authorization endpoint, the OCSP responder, a clean stop on SIGTERM; an unknown server name refused."""

from __future__ import annotations

import dataclasses
import signal
import subprocess

import pytest
import requests

from tests.fixtures_web import *  # the idp fixture and its slapd
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
    result = subprocess.run([TESSERA, "serve", "--port", str(free_port())], check=False, env={**idp.env, "TESSERA_HTTP_SERVER": "bjoern"},
                            capture_output=True, timeout=60)
    assert result.returncode != 0 and b"TESSERA_HTTP_SERVER must be one of granian, gunicorn" in result.stderr
    assert b"Traceback" not in result.stderr


def test_a_home_behind_the_code_is_refused_until_tessera_init(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import sqlite3

    from tests.servers import run_tessera, tessera_env

    env = tessera_env(tmp_path / "home", "http://127.0.0.1:9")
    run_tessera(env, "init")
    from alembic import command
    from sqlalchemy import create_engine

    from store.schema import alembic_config

    url = f"sqlite:///{tmp_path / 'home' / 'tessera.db'}"
    with sqlite3.connect(tmp_path / "home" / "tessera.db") as db:
        (head,) = db.execute("SELECT version_num FROM alembic_version").fetchone()
    engine = create_engine(url)
    config = alembic_config(url)
    with engine.begin() as connection:  # as the Tessera one migration older left it
        config.attributes["connection"] = connection
        command.downgrade(config, "-1")
    engine.dispose()
    result = run_tessera(env, "serve", "--port", str(free_port()), check=False)
    err = result.stderr.decode()
    assert result.returncode == 1 and f"lacks migrations {head}" in err and "tessera init" in err, err
    assert "Traceback" not in err
    run_tessera(env, "init")  # brings it up to date
    with sqlite3.connect(tmp_path / "home" / "tessera.db") as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchone() == (head,)


def test_the_server_is_restarted_with_backoff_until_a_signal_stops_it() -> None:
    """idp.server.supervise: a server that stops on its own is started again (1 s, 2 s, 4 s ...);
    one stopped by SIGTERM/SIGINT is not; a stop signal during the pause ends it too."""
    from idp.server import supervise

    runs = iter([False, False, False, True])
    pauses: list[float] = []
    assert supervise(lambda: next(runs), sleep=lambda s: pauses.append(s) or False) == 3
    assert pauses == [1.0, 2.0, 4.0]
    pauses.clear()
    assert supervise(lambda: False, sleep=lambda s: pauses.append(s) or len(pauses) == 2) == 2
    assert pauses == [1.0, 2.0]


@pytest.mark.parametrize("value", ["0", "61", "ten"])
def test_a_read_timeout_out_of_range_is_one_line(idp: IdpServer, value: str) -> None:
    result = subprocess.run([TESSERA, "serve", "--port", str(free_port())], check=False, capture_output=True, timeout=60,
                            env={**idp.env, "TESSERA_HTTP_READ_TIMEOUT": value})
    assert result.returncode == 1 and b"TESSERA_HTTP_READ_TIMEOUT" in result.stderr, result.stderr
    assert b"Traceback" not in result.stderr
