"""RFC 9457 problem details for every error the web layer returns."""

from __future__ import annotations

from flask import Flask, Response, json, render_template, request
from markupsafe import escape
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException

from ca.errors import CaError, InvalidStateTransition, KeyUnavailable, NotFound, NotInitialised
from ca.held_connection import StatementFailed

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
            # e.g. the session could not be loaded (database down): the page without the site's frame
            page = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
                    f'</head><body><h1>{escape(title)}</h1><p>{escape(detail or title)}</p></body></html>')
            return Response(page, status=status, mimetype="text/html")
    return problem(status, title, detail, kind)


def database_outage(exc: BaseException | None) -> bool:
    """Whether ``exc`` says the database cannot be reached or used just now (server down, connection
    lost, pool exhausted, SQLite locked or unopenable, a held statement of ``ca.held_connection``
    failing on two connections), as opposed to a bug in a statement (``IntegrityError``,
    ``ProgrammingError``, ``DataError``), which stays a logged 500. The answer is 503 (RFC 9110
    section 15.6.4)."""
    if isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError,
                        sa_exc.DisconnectionError, StatementFailed)):
        return True
    return isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated


def _database_unavailable() -> Response:
    """503 with Retry-After (RFC 9110 section 15.6.4): the request may be repeated unchanged later."""
    response = _respond(503, "Database unavailable", "the database cannot be reached just now, so nothing was "
                        "done; try again in a minute", "database-unavailable")
    response.headers["Retry-After"] = "30"
    return response


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

    @app.errorhandler(sa_exc.SQLAlchemyError)
    def _database_error(exc: sa_exc.SQLAlchemyError) -> Response:
        if database_outage(exc):
            cause = getattr(exc, "orig", None) or exc  # the driver's message: no statement, no parameters
            app.logger.error("database unavailable: %s: %s", type(cause).__name__, str(cause)[:200])
            return _database_unavailable()
        return _unexpected(exc)

    @app.errorhandler(StatementFailed)
    def _statement_failed(exc: StatementFailed) -> Response:
        app.logger.error("database unavailable: %s", exc)
        return _database_unavailable()

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        code = exc.code or 500
        if code == 500 and database_outage(getattr(exc, "original_exception", None)):
            # raised outside a view (loading or saving the session): Flask wraps it in a 500
            app.logger.error("database unavailable (outside a view)")
            return _database_unavailable()
        response = _respond(code, exc.name, exc.description, None)
        valid = getattr(exc, "valid_methods", None)
        if code == 405 and valid:
            response.headers["Allow"] = ", ".join(valid)
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        app.logger.exception("unhandled error")
        return _respond(500, "Internal Server Error", "the server failed; the error was logged", None)
