"""OCSP over HTTP (RFC 6960 appendix A; RFC 5019 sections 5 and 6) as a bare WSGI application.

OCSP is the hottest path of the service, so it bypasses Flask's routing and request objects:
the dispatcher in :mod:`idp.app` sends ``/ocsp`` and ``/ocsp/...`` here, everything else to
Flask. Errors still come back as RFC 9457 problem details.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import functools
import json
import logging
from collections.abc import Callable, Iterable
from email.utils import formatdate
from typing import Any
from urllib.parse import unquote

from cryptography.x509.ocsp import OCSPResponseStatus
from sqlalchemy.exc import DBAPIError

from ca.errors import KeyUnavailable
from ca.ocsp import MAX_REQUEST_BYTES, OcspReply, OcspResponder, unsuccessful
from idp import metrics

StartResponse = Callable[..., Any]
#: How long HTTP caches may keep a nonce-less answer. RFC 5019 section 6.2 allows up to its
#: nextUpdate, but a cache would then hide a revocation, so by default caches must revalidate.
HTTP_CACHE_SECONDS = 0
_SECURITY_HEADERS = [("X-Content-Type-Options", "nosniff")]
_log = logging.getLogger(__name__)


def _problem(start_response: StartResponse, status: int, reason: str, title: str, detail: str) -> list[bytes]:
    body = json.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail}).encode()
    start_response(f"{status} {reason}", [("Content-Type", "application/problem+json"),
                                          ("Content-Length", str(len(body))), *_SECURITY_HEADERS])
    return [body]


@functools.lru_cache(maxsize=256)
def _http_date(epoch_seconds: int) -> str:
    """An IMF-fixdate (RFC 9110 section 5.6.7); answers share a handful of distinct seconds."""
    return formatdate(epoch_seconds, usegmt=True)


def decode_get_path(encoded: str) -> bytes:
    """The base64 (possibly URL-escaped) DER request of a GET (RFC 6960 appendix A.1)."""
    try:
        return base64.b64decode(unquote(encoded), validate=True)
    except (binascii.Error, ValueError):
        return b""


class OcspHttpApp:
    """WSGI application answering OCSP GET and POST requests."""

    def __init__(self, responder: Callable[[], OcspResponder], clock: Callable[[], datetime.datetime]) -> None:
        self._responder = responder
        self._clock = clock

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "")
        if method == "POST":
            if environ.get("CONTENT_TYPE", "").split(";")[0].strip() != "application/ocsp-request":
                return _problem(start_response, 415, "Unsupported Media Type", "Unsupported Media Type",
                                "send an application/ocsp-request body")
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = -1
            if length < 0 or length > MAX_REQUEST_BYTES:
                return _problem(start_response, 413, "Content Too Large", "Content Too Large",
                                f"an OCSP request may have at most {MAX_REQUEST_BYTES} bytes")
            request_der = environ["wsgi.input"].read(length) if length else b""
        elif method in ("GET", "HEAD"):
            # /ocsp/<ca>/<base64>: the encoded request may itself contain '/'
            parts = path.split("/", 3)
            if len(parts) < 4 or not parts[3]:
                return _problem(start_response, 404, "Not Found", "Not Found",
                                "GET /ocsp/<ca>/<base64 DER request>, or POST the DER request to /ocsp/<ca>")
            request_der = decode_get_path(parts[3])
        else:
            start_response("405 Method Not Allowed", [("Allow", "GET, POST"), ("Content-Length", "0")])
            return [b""]

        reply = self._answer(request_der)
        metrics.ocsp_answered(reply)
        headers = [("Content-Type", "application/ocsp-response"), ("Content-Length", str(len(reply.der))),
                   *_SECURITY_HEADERS]
        if reply.next_update is not None and reply.this_update is not None:
            now = int(self._clock().timestamp())
            seconds = max(0, min(HTTP_CACHE_SECONDS, int(reply.next_update.timestamp()) - now))
            headers += [
                ("Cache-Control", f"max-age={seconds}, public, no-transform, must-revalidate"),
                ("Last-Modified", _http_date(int(reply.this_update.timestamp()))),
                ("Expires", _http_date(now + seconds)),
            ]
        else:
            headers.append(("Cache-Control", "no-store"))
        start_response("200 OK", headers)
        return [b"" if method == "HEAD" else reply.der]


    def _answer(self, request_der: bytes) -> OcspReply:
        """The responder's answer; when it cannot answer, still an OCSP response (RFC 6960
        section 2.3), never an HTTP 500 with an empty body: ``tryLater`` while the store or the
        signing key is unavailable, ``internalError`` (logged) for a fault of ours. Bad requests
        are the responder's own ``malformedRequest``."""
        try:
            return self._responder().respond(request_der)
        except (DBAPIError, KeyUnavailable) as exc:
            _log.warning("OCSP: tryLater (%s)", type(exc).__name__)
            return unsuccessful(OCSPResponseStatus.TRY_LATER)
        except Exception:  # noqa: BLE001  (outside Flask: nothing else would turn it into an answer)
            _log.exception("OCSP: internalError")
            return unsuccessful(OCSPResponseStatus.INTERNAL_ERROR)


class PathDispatcher:
    """Send ``/ocsp`` requests to the bare OCSP app and the rest to Flask."""

    def __init__(self, flask_app: Callable[..., Iterable[bytes]], ocsp_app: OcspHttpApp) -> None:
        self._flask = flask_app
        self._ocsp = ocsp_app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/ocsp" or path.startswith("/ocsp/"):
            return self._ocsp(environ, start_response)
        return self._flask(environ, start_response)
