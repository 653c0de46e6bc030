"""The ASGI front of the WSGI application under granian: a request's body is read in full, within a
deadline and a size ceiling, before a worker thread is given to the request.

Why: granian runs a WSGI application on a few blocking threads per worker and lets the application
read ``wsgi.input`` from the socket with no deadline. Eight clients announcing ``Content-Length:
1000`` and sending 10 bytes held all eight threads of ``tessera serve --workers 2`` and the service
stopped answering. Here granian runs the ASGI interface instead: the body arrives on the worker's
event loop, where a slow client costs a coroutine, not a thread. Only a complete request goes to
the WSGI application (:class:`WholeRequests`): one hand-over to a thread of a fixed pool, which
runs the application with the body in memory and returns the whole answer, sent from the loop in
one piece. (a2wsgi's streaming bridge crossed threads three times per request and cost about 1 ms
of CPU per request more than granian's WSGI; its environ builder is used here.) Tessera streams
no response, so holding each answer whole costs nothing.

Limits (RFC 9110 section 15.5.9 and 15.5.14; answers are RFC 9457 problem details):

* the whole body within ``TESSERA_HTTP_READ_TIMEOUT`` seconds of the headers, else ``408`` and the
  connection is closed;
* at most ``TESSERA_HTTP_MAX_BODY_BYTES`` (announced or received), else ``413``; each endpoint keeps
  its own smaller limit (Flask's ``MAX_CONTENT_LENGTH``);
* at most :data:`BUFFER_BUDGET` bytes of bodies held at once per worker, else ``503`` with
  ``Retry-After``: many large uploads at once cannot exhaust the memory.

The headers' own deadline and size are granian's (``http1_settings`` in :mod:`idp.server`).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: bytes of request bodies one worker holds at once, all requests together
BUFFER_BUDGET = 64 * 1024 * 1024

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
log = logging.getLogger("idp.http_front")


class _Refused(Exception):
    def __init__(self, status: int, title: str, detail: str, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.headers = status, title, detail, headers


class _Gone(Exception):
    """The client disconnected before its body was complete: nobody to answer."""


class BufferedBodies:
    """ASGI middleware: read each HTTP request's body in full, bounded in time and size, then call
    ``app`` with a ``receive`` that replays it as one message and a ``content-length`` header in
    place of any ``transfer-encoding`` (so the WSGI side sees an ordinary, complete request)."""

    def __init__(self, app: ASGIApp, *, read_timeout: float, max_body: int, budget: int = BUFFER_BUDGET) -> None:
        self.app, self.read_timeout, self.max_body, self.budget = app, read_timeout, max_body, budget
        self.held = 0  # bytes held by requests still reading (one event loop per worker: no lock needed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            self._check_announced(scope)
            body = await self._read(receive)
        except _Refused as refused:
            await _problem(send, refused)
            return
        except _Gone:
            return
        headers = [(k, v) for k, v in scope["headers"] if k not in (b"content-length", b"transfer-encoding")]
        if body or scope["method"] not in ("GET", "HEAD", "OPTIONS", "DELETE"):
            headers.append((b"content-length", str(len(body)).encode()))
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: only http.disconnect comes

        await self.app({**scope, "headers": headers}, replay, send)

    def _check_announced(self, scope: Scope) -> None:
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit():
                    raise _Refused(400, "Bad Request", "Content-Length must be a whole number")
                if int(value) > self.max_body:
                    raise _Refused(413, "Content Too Large", f"request bodies are limited to {self.max_body} bytes")

    async def _read(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        taken = 0
        try:
            async with asyncio.timeout(self.read_timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise _Gone
                    chunk = message.get("body", b"")
                    if chunk:
                        if taken + len(chunk) > self.max_body:
                            raise _Refused(413, "Content Too Large",
                                           f"request bodies are limited to {self.max_body} bytes")
                        if self.held + len(chunk) > self.budget:
                            raise _Refused(503, "Service Unavailable", "too many large requests at once; "
                                           "try again shortly", ((b"retry-after", b"2"),))
                        chunks.append(chunk)
                        taken += len(chunk)
                        self.held += len(chunk)
                    if not message.get("more_body", False):
                        return b"".join(chunks)
        except TimeoutError:
            raise _Refused(408, "Request Timeout", f"the request body did not arrive within {self.read_timeout} s",
                           ((b"connection", b"close"),)) from None
        finally:
            self.held -= taken


class WholeRequests:
    """ASGI application running a WSGI application (PEP 3333) on complete requests: the body (all
    of it, as :class:`BufferedBodies` delivers it) becomes ``wsgi.input``, the application runs on
    one of ``threads`` threads, and its status, headers and body are sent back in one piece.

    A status or header the application should never produce (not a 3-digit code, a CR or LF in a
    header) becomes a logged 500 problem detail, never reaches the server (granian panicked on
    such statuses and took the worker down)."""

    def __init__(self, app: WSGIApp, threads: int) -> None:
        self.app = app
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="wsgi")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        from a2wsgi.wsgi import build_environ

        message = await receive()
        environ = dict(build_environ(scope, io.BytesIO(message.get("body", b""))))  # type: ignore[arg-type]
        environ["wsgi.errors"] = _ERRORS
        status, headers, body = await asyncio.get_running_loop().run_in_executor(self.pool, self._run, environ)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    def _run(self, environ: dict[str, Any]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        answer: dict[str, Any] = {}
        written: list[bytes] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            answer["status"], answer["headers"] = status, headers
            return written.append

        iterable = self.app(environ, start_response)
        try:
            written.extend(iterable)
        finally:
            close = getattr(iterable, "close", None)
            if close is not None:
                close()
        try:
            return _checked_status(answer["status"]), _checked_headers(answer["headers"]), b"".join(written)
        except (KeyError, ValueError, TypeError, UnicodeError) as exc:
            log.error("the application answered %s %s with an invalid status or header: %s",
                      environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"), exc)
            body = json.dumps({"type": "about:blank", "title": "Internal Server Error", "status": 500}).encode()
            return 500, [(b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode()),
                         (b"cache-control", b"no-store")], body


def _checked_status(status: str) -> int:
    """The code of a PEP 3333 status line ("200 OK"), 100-599 (RFC 9110 section 15), else ValueError."""
    code = status.split(" ", 1)[0]
    if len(code) != 3 or not code.isdigit() or not 100 <= int(code) <= 599:
        raise ValueError(f"status {status[:40]!r}")
    return int(code)


def _checked_headers(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """Header fields as ASGI wants them; CR, LF or NUL in a name or value is a ValueError (RFC 9110 section 5.5)."""
    out = []
    for name, value in headers:
        raw_name, raw_value = name.strip().encode("latin-1").lower(), value.strip().encode("latin-1")
        if any(c in raw_name + raw_value for c in b"\r\n\0") or not raw_name:
            raise ValueError(f"header {name[:40]!r}")
        out.append((raw_name, raw_value))
    return out


class _Errors(io.TextIOBase):
    """``wsgi.errors``: lines to this module's log (stderr through logging), not stdout."""

    def write(self, text: str) -> int:
        if text.strip():
            log.error("%s", text.rstrip())
        return len(text)


_ERRORS = _Errors()


async def _problem(send: Send, refused: _Refused) -> None:
    """An RFC 9457 problem-details answer; the connection is closed after it."""
    body = json.dumps({"type": "about:blank", "title": refused.title, "status": refused.status,
                       "detail": refused.detail}).encode()
    headers = [(b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode()),
               (b"cache-control", b"no-store")]
    headers += [h for h in refused.headers if h[0] != b"connection"] + [(b"connection", b"close")]
    await send({"type": "http.response.start", "status": refused.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def create_asgi_app() -> ASGIApp:
    """granian's factory (``idp.http_front:create_asgi_app``): the Flask application built in the
    worker, on :data:`idp.server.THREADS` threads, behind the body limits."""
    from idp.app import create_app
    from idp.server import THREADS
    from idp.settings import Settings

    settings = Settings.from_env()
    whole = WholeRequests(create_app(settings), THREADS)
    return BufferedBodies(whole, read_timeout=settings.http_read_timeout, max_body=settings.http_max_body_bytes)
