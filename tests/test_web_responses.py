"""No request value becomes a status line, a header, a crash or a 500 (issue 12, findings 1 and 7).

* idp/response_guard.py: a response with a malformed status or header becomes a 400 problem
  document; through a real ``tessera serve`` on granian the worker survives (judged by an HTTP
  client: every answer well formed, /healthz still 200, no panic in the server's log).
* idp/database_ids.py: row ids in paths are range-checked (404 instead of ``OverflowError``).
* idp/problems.py: a database that cannot be reached is a 503 with a problem document.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import textwrap
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from idp.database_ids import DatabaseIdConverter, install
from idp.response_guard import ResponseGuard, response_fault
from tests.fixtures_web import *  # noqa: F401,F403
from tests.fixtures_web import IdpServer
from tests.servers import TESSERA, free_port, running_server, wait_healthy

PROBLEM_TYPE = "https://tessera.invalid/problems/invalid-response"


# -- the guard, in process ----------------------------------------------------------------------------
def _wsgi(status: str, headers: list[tuple[str, str]], lazy: bool = False) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if lazy:  # a generator that starts the response on its first chunk
            def body() -> Iterable[bytes]:
                start_response(status, headers)
                yield b"the application's body"
            return body()
        start_response(status, headers)
        return [b"the application's body"]
    return app


def _call(app: Any) -> tuple[str, list[tuple[str, str]], bytes]:
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        seen.update(status=status, headers=headers)
        return lambda data: None

    body = b"".join(ResponseGuard(app)({"REQUEST_METHOD": "GET", "PATH_INFO": "/x"}, start_response))
    return seen["status"], seen["headers"], body


BAD = [
    ("0 approved", []),  # what werkzeug makes of the status "approved" (finding 1)
    ("approved", []),
    ("1000 Too Big", []),
    ("099 Low", []),
    ("600 Nope", []),
    ("200 OK\r\nX-Evil: 1", []),
    ("200 OK\n", []),
    ("200 Ok\x00", []),
    ("200 中文", []),
    ("20 Short", []),
    ("200 OK", [("X-Echo", "a\r\nSet-Cookie: evil=1")]),
    ("200 OK", [("X-Echo", "a\nb")]),
    ("200 OK", [("X-Echo", "a\x00b")]),
    ("200 OK", [("X-Echo", "a\x7fb")]),
    ("200 OK", [("X-Echo", "名字")]),
    ("200 OK", [("X Echo", "1")]),
    ("200 OK", [("X-Echo:", "1")]),
    ("200 OK", [("", "1")]),
    ("302 Found", [("Location", "/\r\n/evil.example")]),
]


@pytest.mark.parametrize(("status", "headers"), BAD)
@pytest.mark.parametrize("lazy", [False, True])
def test_a_malformed_response_becomes_a_400_problem(status: str, headers: list[tuple[str, str]], lazy: bool,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    got_status, got_headers, body = _call(_wsgi(status, headers, lazy))
    assert got_status == "400 Bad Request"
    assert response_fault(got_status, got_headers) is None
    fields = dict(got_headers)
    assert fields["Content-Type"] == "application/problem+json" and int(fields["Content-Length"]) == len(body)
    problem = json.loads(body)
    assert problem["type"] == PROBLEM_TYPE and problem["status"] == 400
    assert problem["title"] == "The request could not be answered"
    assert b"application's body" not in body
    logged = [r for r in caplog.records if r.name == "tessera.response_guard"]
    assert len(logged) == 1 and logged[0].levelname == "ERROR" and "/x" in logged[0].getMessage()


@pytest.mark.parametrize(("status", "headers"), [
    ("200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Set-Cookie", "a=b; Path=/; HttpOnly")]),
    ("204", []),
    ("503 Service Unavailable", [("Retry-After", "30"), ("X-Tab", "a\tb"), ("X-Latin", "caf\xe9")]),
    ("101 Switching Protocols", []),
    ("599 Whatever you like", []),
])
def test_a_well_formed_response_goes_through_unchanged(status: str, headers: list[tuple[str, str]]) -> None:
    assert _call(_wsgi(status, headers)) == (status, headers, b"the application's body")


# -- row ids in paths -----------------------------------------------------------------------------------
def _id_app() -> Flask:
    app = Flask(__name__)
    install(app)
    app.add_url_rule("/row/<dbid:row_id>", "row", lambda row_id: f"row {row_id}")
    app.add_url_rule("/entry/<dbid(bits=64):seq>", "entry", lambda seq: f"entry {seq}")
    return app


@pytest.mark.parametrize(("path", "expected"), [
    ("/row/1", "row 1"), (f"/row/{2**31 - 1}", f"row {2**31 - 1}"), (f"/entry/{2**63 - 1}", f"entry {2**63 - 1}"),
])
def test_row_ids_in_range_are_matched(path: str, expected: str) -> None:
    response = _id_app().test_client().get(path)
    assert response.status_code == 200 and response.get_data(as_text=True) == expected


@pytest.mark.parametrize("path", [
    "/row/0", "/row/-1", "/row/007", f"/row/{2**31}", "/row/99999999999999999999999", "/row/" + "9" * 5000,
    f"/entry/{2**63}", "/entry/99999999999999999999999", "/row/%D9%A3", "/row/1e3", "/row/+1", "/row/%201",
])
def test_row_ids_out_of_range_are_404(path: str) -> None:
    assert _id_app().test_client().get(path).status_code == 404


def test_the_converter_refuses_an_unknown_width() -> None:
    with pytest.raises(ValueError):
        DatabaseIdConverter(_id_app().url_map, bits=16)


# -- a real server keeps serving ------------------------------------------------------------------------
#: loaded by every Python process of the server through PYTHONPATH: adds two views that turn a request
#: value into a status line or a header, as finding 1's console filter did, to the real application
FAULTY_VIEWS = textwrap.dedent('''
    import idp.app
    from flask import Response, request

    _create_app = idp.app.create_app


    class _EchoHeader(Response):
        def get_wsgi_response(self, environ):
            body, status, headers = super().get_wsgi_response(environ)
            return body, status, [*headers, ("X-Echo", request.args.get("v", ""))]


    def create_app(settings=None):
        app = _create_app(settings)
        app.add_url_rule("/faulty/status", "faulty_status", lambda: ("body", request.args["status"]))
        app.add_url_rule("/faulty/header", "faulty_header", lambda: _EchoHeader("body"))
        return app


    idp.app.create_app = create_app
''')

FAULTY_REQUESTS = [
    "/faulty/status?status=approved", "/faulty/status?status=issued", "/faulty/status?status=0",
    "/faulty/status?status=1000", "/faulty/status?status=200%20OK%0D%0AX-Evil:%201",
    "/faulty/header?v=a%0D%0ASet-Cookie:%20evil=1", "/faulty/header?v=%00", "/faulty/header?v=%E5%90%8D",
    "/faulty/header?v=a%0Ab", "/faulty/status?status=999%20Nope",
]


def _get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    """One request on its own connection, read by the standard library's HTTP/1.1 client."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def test_granian_keeps_serving_after_malformed_responses(idp: IdpServer, tmp_path: Path) -> None:
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(FAULTY_VIEWS)
    here = dataclasses.replace(idp, port=free_port(), log=tmp_path / "serve.log")
    env = {**here.env, "TESSERA_HTTP_SERVER": "granian", "PYTHONPATH": str(hook)}
    with running_server([TESSERA, "serve", "--port", str(here.port), "--workers", "2"], here.port, here.log, env=env):
        wait_healthy(here.url("/healthz"))
        for i in range(20):
            path = FAULTY_REQUESTS[i % len(FAULTY_REQUESTS)]
            status, headers, body = _get(here.port, path)
            assert status == 400, (path, status, body[:200])
            assert headers["content-type"] == "application/problem+json"
            assert "set-cookie" not in headers and "x-evil" not in headers and "x-echo" not in headers
            assert json.loads(body)["type"] == PROBLEM_TYPE
        status, _, body = _get(here.port, "/healthz")
        assert (status, body) == (200, b"ok\n")
        # the same connection, kept alive: the server still speaks HTTP/1.1 correctly after a replaced answer
        keep = http.client.HTTPConnection("127.0.0.1", here.port, timeout=15)
        try:
            for path in ("/faulty/status?status=approved", "/healthz", "/faulty/header?v=a%0D%0Ab", "/healthz"):
                keep.request("GET", path)
                answer = keep.getresponse()
                answer.read()
                assert answer.status == (200 if path == "/healthz" else 400)
        finally:
            keep.close()
    log = here.log.read_text(errors="replace")
    assert "panic" not in log.lower() and "crash" not in log.lower() and "Traceback" not in log, log[-3000:]
    assert log.count("response replaced by a 400") == 22, log[-3000:]
    # the path only: the request value that caused it is not in the log
    assert "approved" not in log and "evil" not in log


# -- database outage ------------------------------------------------------------------------------------
def test_an_unreachable_database_is_a_503(idp: IdpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from idp.app import create_app
    from idp.settings import Settings

    for name, value in idp.directory.env.items():
        monkeypatch.setenv(name, value)
    dead = f"postgresql+psycopg://tessera@127.0.0.1:{free_port()}/tessera?connect_timeout=2"
    app = create_app(Settings.from_env(idp.home, {**idp.env, "TESSERA_DATABASE_URL": dead}))
    try:
        client = app.test_client()
        # without a cookie "/" reads the database in its view; with one, loading the session does already
        for path, accept, cookie in (("/", "application/json", False), ("/", "text/html", False),
                                     ("/", "text/html", True), ("/admin/", "application/json", True)):
            if cookie:
                client.set_cookie("tessera_session", "a-session-id", domain="localhost")
            else:
                client.delete_cookie("tessera_session", domain="localhost")
            language = "en" if cookie else "zh-CN"  # the page follows the language asked for
            response = client.get(path, headers={"Accept": accept, "Accept-Language": language})
            assert response.status_code == 503, (path, response.status_code, response.get_data(as_text=True)[:500])
            assert response.headers["Retry-After"] == "30"
            text = response.get_data(as_text=True)
            assert "Traceback" not in text and "psycopg" not in text and "127.0.0.1" not in text
            if accept == "application/json":
                assert response.mimetype == "application/problem+json"
                assert json.loads(text)["type"].endswith("/database-unavailable")
            else:
                assert response.mimetype == "text/html"
                assert ("database" in text.lower()) if language == "en" else ("数据库" in text), text[:500]
        client.delete_cookie("tessera_session", domain="localhost")
        assert client.get("/healthz").status_code == 200  # no database needed: the process is alive
    finally:
        app.extensions["tessera"].close()
