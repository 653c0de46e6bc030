"""Where a browser may be sent back to after a login: a path of this site, by construction.

A ``next`` value comes from the request, so it is outside input. :func:`local_path` parses it with
:func:`urllib.parse.urlsplit` (RFC 3986 section 3), refuses anything that is not a plain
path-absolute reference (RFC 3986 section 4.2) a browser would resolve on this origin, and
rebuilds the target from the parsed path and query. Refused:

- a scheme or an authority (``https://x``, ``https:x``, ``//x``, ``@x``), anything not starting
  with ``/``;
- a backslash, a control character, white space or a character outside printable ASCII anywhere
  (browsers drop tab and newline and read ``\\`` as ``/`` in http URLs, WHATWG URL Standard
  "basic URL parser", so ``/\\tx`` or ``/\\x`` would become ``//x``);
- an empty, ``.`` or ``..`` path segment (``//x``, ``/.//x``, ``/a/../x``);
- the same in the path once percent-decoded (``/%2F/x``, ``/%5Cx``, ``/%09/x``, ``/%2e%2e/x``).

The fragment is dropped. Anything refused gives ``None``: the caller sends the browser to its
default page instead.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

MAX_TARGET = 2048


def _plain_text(value: str) -> bool:
    """Printable ASCII other than space and backslash only (0x21-0x7E without ``\\``). White space
    other than the space is never printable (str.isprintable), so this also refuses it."""
    return value.isascii() and value.isprintable() and " " not in value and "\\" not in value


def _path_is_plain(path: str) -> bool:
    """``/seg/seg``: starts with one ``/``; no empty, ``.`` or ``..`` segment; no backslash,
    control or white space character."""
    if not path.startswith("/"):
        return False
    if "\\" in path or " " in path or not path.isprintable():  # every other white space is unprintable
        return False
    segments = path[1:].split("/")
    # the root "/" alone is one empty segment; anywhere else an empty segment is a "//"
    if segments == [""]:
        return True
    return not any(segment in ("", ".", "..") for segment in segments[:-1]) and segments[-1] not in (".", "..")


def local_path(value: object) -> str | None:
    """``value`` as a same-origin path (with its query) to redirect to, or ``None`` if it is not
    one. The result is rebuilt from the parsed parts, never the input as given."""
    if not isinstance(value, str) or not value or len(value) > MAX_TARGET:
        return None
    if not _plain_text(value):
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    if parts.scheme or parts.netloc or not _path_is_plain(parts.path) or not value.startswith(parts.path):
        return None  # the last: "///x" parses as an empty authority and the path "/x"
    try:
        decoded = unquote(parts.path, errors="strict")
    except UnicodeDecodeError:  # percent-encoded bytes that are not UTF-8: no path of this site
        return None
    if not _path_is_plain(decoded):
        return None
    return parts.path + (f"?{parts.query}" if parts.query else "")
