"""RFC 9457 problem details for every error the web layer returns."""

from __future__ import annotations

from flask import Flask, Response, json, render_template, request
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


def wants_html() -> bool:
    """A browser asking for a page (text/html preferred over JSON) gets a readable page."""
    best = request.accept_mimetypes.best_match(["application/problem+json", "application/json", "text/html"])
    return best == "text/html"


def _respond(status: int, title: str, detail: str | None, kind: str | None) -> Response:
    if wants_html():
        try:
            return Response(render_template("error.html", title=title, detail=detail or title), status=status,
                            mimetype="text/html")
        except Exception:  # noqa: BLE001  (a broken template must not hide the error itself)
            pass
    return problem(status, title, detail, kind)


def install(app: Flask) -> None:
    """Map domain errors and HTTP errors to problem details; never leak a traceback."""

    @app.errorhandler(CaError)
    def _ca_error(exc: CaError) -> Response:
        status = next(code for cls, code in _STATUS if isinstance(exc, cls))
        return _respond(status, type(exc).__name__, str(exc), exc.kind)

    from idp.directory_errors import DirectoryError, DirectoryUnavailable

    @app.errorhandler(DirectoryError)
    def _directory_error(exc: DirectoryError) -> Response:
        status = 503 if isinstance(exc, DirectoryUnavailable) else 400
        return _respond(status, "Directory unavailable" if status == 503 else "Directory error", exc.message, exc.kind)

    from audit import AuditUnavailable

    @app.errorhandler(AuditUnavailable)
    def _audit_unavailable(exc: AuditUnavailable) -> Response:
        # the action was not carried out: an unaudited action must not happen
        return _respond(503, "Audit trail unavailable", "the audit trail cannot be written, so nothing was done; "
                        "try again later", "audit-unavailable")

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        code = exc.code or 500
        response = _respond(code, exc.name, exc.description, None)
        valid = getattr(exc, "valid_methods", None)
        if code == 405 and valid:
            response.headers["Allow"] = ", ".join(valid)
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        app.logger.exception("unhandled error")
        return _respond(500, "Internal Server Error", "the server failed; the error was logged", None)
