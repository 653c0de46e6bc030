"""RFC 9457 problem details for every error the web layer returns."""

from __future__ import annotations

from flask import Flask, Response, json
from werkzeug.exceptions import HTTPException

from ca.errors import CaError, InvalidStateTransition, KeyUnavailable, NotFound, NotInitialised

PROBLEM_BASE = "https://tessera.invalid/problems/"

_STATUS: list[tuple[type[CaError], int]] = [
    (NotFound, 404),
    (InvalidStateTransition, 409),
    (NotInitialised, 503),
    (KeyUnavailable, 503),
    (CaError, 400),
]


def problem(status: int, title: str, detail: str | None = None, kind: str | None = None) -> Response:
    """A JSON problem document (RFC 9457 section 3) with its media type."""
    body: dict[str, object] = {
        "type": PROBLEM_BASE + kind if kind else "about:blank",
        "title": title,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    return Response(json.dumps(body), status=status, mimetype="application/problem+json")


def install(app: Flask) -> None:
    """Map domain errors and HTTP errors to problem details; never leak a traceback."""

    @app.errorhandler(CaError)
    def _ca_error(exc: CaError) -> Response:
        status = next(code for cls, code in _STATUS if isinstance(exc, cls))
        return problem(status, type(exc).__name__, str(exc), exc.kind)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        code = exc.code or 500
        return problem(code, exc.name, exc.description, None)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        app.logger.exception("unhandled error")
        return problem(500, "Internal Server Error", "the server failed; the error was logged", None)
