"""RFC 9457 problem details for every error the web layer returns.

Titles and details are in the language of the page (docs/i18n.md); a JSON problem is localized only
when the client asks for a language (``Accept-Language``, RFC 9457 section 3.1.3: by proactive
negotiation), else English. The ``type`` codes never change.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask, Response, json, render_template, request
from flask_babel import force_locale, lazy_gettext
from markupsafe import escape
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException

from ca.errors import CaError, InvalidStateTransition, KeyUnavailable, NotFound, NotInitialised
from idp.i18n import html_lang
from idp.i18n import shown

PROBLEM_BASE = "https://tessera.invalid/problems/"

_STATUS: list[tuple[type[CaError], int]] = [
    (NotFound, 404),
    (InvalidStateTransition, 409),
    (NotInitialised, 503),
    (KeyUnavailable, 503),
    (CaError, 400),
]
#: the titles of the certificate authority's errors, by class (the most specific first)
_CA_TITLES: list[tuple[type[CaError], object]] = [
    (NotFound, lazy_gettext("Not found")),
    (InvalidStateTransition, lazy_gettext("Not possible in this state")),
    (NotInitialised, lazy_gettext("Not set up yet")),
    (KeyUnavailable, lazy_gettext("Signing key unavailable")),
    (CaError, lazy_gettext("Request refused")),
]
#: the titles of HTTP errors (werkzeug's names in English), by status
_HTTP_TITLES: dict[int, object] = {
    400: lazy_gettext("Bad Request"), 401: lazy_gettext("Unauthorized"), 403: lazy_gettext("Forbidden"),
    404: lazy_gettext("Not Found"), 405: lazy_gettext("Method Not Allowed"), 408: lazy_gettext("Request Timeout"),
    409: lazy_gettext("Conflict"), 413: lazy_gettext("Request Entity Too Large"),
    415: lazy_gettext("Unsupported Media Type"), 429: lazy_gettext("Too Many Requests"),
    500: lazy_gettext("Internal Server Error"), 503: lazy_gettext("Service Unavailable"),
}
#: what a person is told for an HTTP error werkzeug describes in its own words, by status
_HTTP_DETAILS: dict[int, object] = {
    400: lazy_gettext("The request could not be understood. Go back and try again."),
    401: lazy_gettext("Log in first."),
    403: lazy_gettext("You may not open this page."),
    404: lazy_gettext("There is no such page. Check the address, or start again from the home page."),
    405: lazy_gettext("This page cannot be used that way."),
    413: lazy_gettext("What was sent is too large."),
    429: lazy_gettext("Too many requests. Wait a minute and try again."),
}


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


@contextmanager
def _problem_language() -> Iterator[None]:
    """The language of an error's words: the page's for a browser and for a client that names a
    language; English for a client that names none (an API client, whatever the deployment's default)."""
    if wants_html() or request.headers.get("Accept-Language"):
        yield
    else:
        with force_locale("en"):
            yield


def _respond(status: int, title: object, detail: object | None, kind: str | None) -> Response:
    """The error as a page or a problem document; ``title`` and ``detail`` may be lazy translations or
    English text made to be translated (translatable)."""
    with _problem_language():
        title, detail = shown(title), shown(detail) if detail is not None else None
    if wants_html():
        try:
            return Response(render_template("error.html", title=title, detail=detail or title), status=status,
                            mimetype="text/html")
        except Exception:  # noqa: BLE001  (a broken template must not hide the error itself)
            # e.g. the session could not be loaded (database down): the page without the site's frame
            page = (f'<!doctype html><html lang="{html_lang()}"><head><meta charset="utf-8">'
                    f'<title>{escape(title)}</title></head><body><h1>{escape(title)}</h1>'
                    f'<p>{escape(detail or title)}</p></body></html>')
            return Response(page, status=status, mimetype="text/html")
    return problem(status, title, detail, kind)


def database_outage(exc: BaseException | None) -> bool:
    """Whether ``exc`` says the database cannot be reached or used just now (server down, connection
    lost, pool exhausted, SQLite locked or unopenable), as opposed to a bug in a statement
    (``IntegrityError``, ``ProgrammingError``, ``DataError``), which stays a logged 500. The answer
    is 503 (RFC 9110 section 15.6.4)."""
    if isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError,
                        sa_exc.DisconnectionError)):
        return True
    return isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated


def _database_unavailable() -> Response:
    """503 with Retry-After (RFC 9110 section 15.6.4): the request may be repeated unchanged later."""
    response = _respond(503, lazy_gettext("Database unavailable"),
                        lazy_gettext("the database cannot be reached just now, so nothing was done; try again in a "
                                     "minute"), "database-unavailable")
    response.headers["Retry-After"] = "30"
    return response


def install(app: Flask) -> None:
    """Map domain errors and HTTP errors to problem details; never leak a traceback."""

    @app.errorhandler(CaError)
    def _ca_error(exc: CaError) -> Response:
        status = next(code for cls, code in _STATUS if isinstance(exc, cls))
        title = next(words for cls, words in _CA_TITLES if isinstance(exc, cls))
        return _respond(status, title, str(exc), exc.kind)

    from directory.errors import DirectoryError, DirectoryUnavailable

    @app.errorhandler(DirectoryError)
    def _directory_error(exc: DirectoryError) -> Response:
        status = 503 if isinstance(exc, DirectoryUnavailable) else 400
        title = lazy_gettext("Directory unavailable") if status == 503 else lazy_gettext("Directory error")
        return _respond(status, title, exc.message, exc.kind)

    from audit import AuditUnavailable

    @app.errorhandler(AuditUnavailable)
    def _audit_unavailable(exc: AuditUnavailable) -> Response:
        # the action was not carried out: an unaudited action must not happen
        return _respond(503, lazy_gettext("Audit trail unavailable"),
                        lazy_gettext("the audit trail cannot be written, so nothing was done; try again later"),
                        "audit-unavailable")

    @app.errorhandler(sa_exc.SQLAlchemyError)
    def _database_error(exc: sa_exc.SQLAlchemyError) -> Response:
        if database_outage(exc):
            cause = getattr(exc, "orig", None) or exc  # the driver's message: no statement, no parameters
            app.logger.error("database unavailable: %s: %s", type(cause).__name__, str(cause)[:200])
            return _database_unavailable()
        return _unexpected(exc)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        code = exc.code or 500
        if code == 500 and database_outage(getattr(exc, "original_exception", None)):
            # raised outside a view (loading or saving the session): Flask wraps it in a 500
            app.logger.error("database unavailable (outside a view)")
            return _database_unavailable()
        # werkzeug's own words are replaced by ours (translated); a description given with the error stays
        default = exc.description == type(exc).description
        detail = _HTTP_DETAILS.get(code, exc.description) if default else exc.description
        response = _respond(code, _HTTP_TITLES.get(code, exc.name), detail, None)
        valid = getattr(exc, "valid_methods", None)
        if code == 405 and valid:
            response.headers["Allow"] = ", ".join(valid)
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        app.logger.exception("unhandled error")
        return _respond(500, lazy_gettext("Internal Server Error"),
                        lazy_gettext("the server failed; the error was logged"), None)
