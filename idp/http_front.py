"""The ASGI front of the WSGI application under granian: a request's body is read in full, within a
deadline and a size ceiling, before a worker thread is given to the request.

Why: granian runs a WSGI application on a few blocking threads per worker and lets the application
read ``wsgi.input`` from the socket with no deadline. Eight clients announcing ``Content-Length:
1000`` and sending 10 bytes held all eight threads of ``tessera serve --workers 2`` and the service
stopped answering. Here granian runs the ASGI interface instead: the body arrives on the worker's
event loop, where a slow client costs a coroutine, not a thread. Only a complete request goes to
the WSGI application, through a2wsgi's thread pool (:class:`a2wsgi.WSGIMiddleware`).

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
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: bytes of request bodies one worker holds at once, all requests together
BUFFER_BUDGET = 64 * 1024 * 1024


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
    worker, behind a2wsgi's pool of :data:`idp.server.THREADS` threads and the body limits."""
    from a2wsgi import WSGIMiddleware

    from idp.app import create_app
    from idp.server import THREADS
    from idp.settings import Settings

    settings = Settings.from_env()
    wsgi = WSGIMiddleware(create_app(settings), workers=THREADS)  # type: ignore[arg-type]
    return BufferedBodies(wsgi, read_timeout=settings.http_read_timeout,  # type: ignore[arg-type]
                          max_body=settings.http_max_body_bytes)
