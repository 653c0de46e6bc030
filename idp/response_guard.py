"""The last check before the HTTP server: every response's status line and headers are well formed.

A WSGI server writes the status line and the header fields it is given. Given a malformed one it
either breaks the protocol (a CR/LF in a header value splits the response: RFC 9112 section 2.2,
response splitting) or fails itself: granian's worker panics on a status it cannot parse
(``InvalidStatusCode``) and, after five such panics, gives up with "Worker crash loop detected"
and takes the whole service down. The application builds no status or header from a request
value without validating it, so in practice only a request value that slipped past validation
can produce such a response. This guard, the outermost WSGI layer of ``idp.app.create_app``
(around ProxyFix, the OCSP dispatcher and Flask), makes sure such a slip costs one request and
never a worker:

* the status must be ``^[1-5]\\d\\d( reason)?$`` (RFC 9110 section 15: three digits, 1xx-5xx;
  RFC 9112 section 4: the reason phrase is HTAB, SP, VCHAR, obs-text), latin-1 encodable;
* every field name must be a token (RFC 9110 section 5.1) and every field value free of CR, LF,
  NUL and the other control characters except HTAB (RFC 9110 section 5.5), latin-1 encodable
  (PEP 3333: header strings are latin-1).

A violation is logged at ERROR with the request path only (no query, no header, no body: those
may carry the very value that caused it, and secrets), and the response is replaced by a
well-formed ``400`` RFC 9457 problem document of type ``invalid-response``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from idp.problems import PROBLEM_BASE

log = logging.getLogger("tessera.response_guard")

StartResponse = Callable[..., Callable[[bytes], object]]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

#: RFC 9110 section 15 (1xx-5xx) and RFC 9112 section 4 (reason-phrase: HTAB / SP / VCHAR / obs-text)
_STATUS = re.compile(r"[1-5][0-9]{2}(?: [\t\x20-\x7e\x80-\xff]*)?")
#: RFC 9110 section 5.6.2: token = 1*tchar
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: RFC 9110 section 5.5: field-value characters (VCHAR, obs-text, SP, HTAB)
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")

_BODY = json.dumps({"type": PROBLEM_BASE + "invalid-response", "title": "The request could not be answered",
                    "status": 400, "detail": "The request led to an answer that cannot be sent; "
                    "check the values in the request."}).encode()
_HEADERS = [("Content-Type", "application/problem+json"), ("Content-Length", str(len(_BODY))),
            ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff")]
_STATUS_400 = "400 Bad Request"


#: the bytes a field name (token) and a field value may hold, for ``bytes.translate``'s delete table:
#: a C loop over all the response's names and values at once, a few microseconds per response
_TCHAR_BYTES = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_VALUE_BYTES = b"\t" + bytes(range(0x20, 0x7f)) + bytes(range(0x80, 0x100))


def response_fault(status: object, headers: object) -> str | None:
    """Why the status line or headers cannot be sent (a short reason without their values); None if fine."""
    if not isinstance(status, str) or not _STATUS.fullmatch(status):
        return "invalid status line"
    if not isinstance(headers, list):
        return "headers are not a list"
    try:
        names = [name for name, _ in headers]
        values = "".join([value for _, value in headers])
        joined = "".join(names)
    except (TypeError, ValueError):
        return "header is not a pair of strings"
    if all(names) and joined.isascii() and not joined.encode().translate(None, _TCHAR_BYTES):
        try:
            if not values.encode("latin-1").translate(None, _VALUE_BYTES):
                return None
        except UnicodeEncodeError:
            pass
    for name, value in headers:  # the slow path, only to say which header
        if not _TOKEN.fullmatch(name):
            return "invalid header name"
        if not _FIELD_VALUE.fullmatch(value):
            return f"invalid value of header {name}"
    return "header is not a pair of strings"


class ResponseGuard:
    """WSGI middleware: a response with a malformed status or header becomes a 400 problem document."""

    def __init__(self, app: WsgiApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        replaced = started = False

        def checked_start_response(status: str, headers: list[tuple[str, str]],
                                   exc_info: Any = None) -> Callable[[bytes], object]:
            nonlocal replaced, started
            started = True
            fault = response_fault(status, headers)
            if fault is None:
                return start_response(status, headers, exc_info)
            # the path only: the query or headers may hold the value that caused it, or a secret
            log.error("response replaced by a 400 (%s) on %s %s", fault, environ.get("REQUEST_METHOD", "?"),
                      _printable(environ.get("PATH_INFO", "")))
            replaced = True
            start_response(_STATUS_400, list(_HEADERS), exc_info)
            return _discard

        body = self.app(environ, checked_start_response)
        if replaced:
            _close(body)
            return [_BODY]
        if started:  # the usual case (Flask, the OCSP app): checked already, the body goes as it is
            return body
        return _Checked(body, lambda: replaced)


def _discard(_data: bytes) -> None:
    """The ``write`` callable of a replaced response: the application's bytes are not sent."""


def _printable(path: str) -> str:
    return path.encode("latin-1", "backslashreplace").decode("ascii", "backslashreplace")[:200]


def _close(body: Iterable[bytes]) -> None:
    close = getattr(body, "close", None)
    if close is not None:
        close()


class _Checked:
    """The application's body, unless ``start_response`` was replaced while it was being iterated
    (an application that starts the response lazily, on its first chunk)."""

    def __init__(self, body: Iterable[bytes], replaced: Callable[[], bool]) -> None:
        self.body = body
        self.replaced = replaced

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.body:
            if self.replaced():
                yield _BODY
                return
            yield chunk

    def close(self) -> None:
        _close(self.body)
