"""Bounded JSON for request bodies from outside (RFC 8259), parsed by the standard library.

``json.loads`` recurses once per nesting level, so a body of a few thousand ``[`` raises
``RecursionError`` (not ``ValueError``) deep inside the parser. :func:`parse_json` measures the
nesting depth first with a flat scan (strings removed by one regular expression, then matching
brackets removed a level at a time) and refuses anything deeper than :data:`MAX_DEPTH` before ``json.loads`` runs.

Also refused, each as :class:`JsonInputError` (a ``ValueError``; the web layer answers 400):
bytes that are not UTF-8 (RFC 8259 section 8.1), a byte order mark, ``NaN``/``Infinity`` (not
JSON, section 6), duplicate names in one object (section 4 leaves their meaning open; refusing them
rules out two parsers reading one body differently) and integers longer than Python's
``int_max_str_digits``. The body's size is bounded before this by Flask's ``MAX_CONTENT_LENGTH``.
"""

from __future__ import annotations

import json
import re
from typing import Any

#: deepest nesting of arrays and objects accepted (a verification request needs 3)
MAX_DEPTH = 32

#: a JSON string (section 7), escapes included: removed before counting brackets
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_AS_PARENTHESES = bytes.maketrans(b"[{]}", b"(())")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


class JsonInputError(ValueError):
    """A request body that is not acceptable JSON; the message says why in plain words."""


def too_deep(data: bytes, max_depth: int = MAX_DEPTH) -> bool:
    """Whether ``data`` nests arrays/objects more than ``max_depth`` levels deep outside strings,
    or has unbalanced brackets (not JSON either way).

    Brackets are reduced to ``(`` and ``)`` (depth needs no types: the parser checks those), then
    the innermost pairs are removed a level per pass with ``bytes.replace``, at most
    ``max_depth`` passes: no Python loop per byte."""
    brackets = _STRING.sub(b"", data).translate(_AS_PARENTHESES, _NOT_BRACKETS)
    opened = brackets.count(b"(")
    if opened * 2 != len(brackets):
        return True
    if opened <= max_depth:
        return False
    for _ in range(max_depth):
        brackets = brackets.replace(b"()", b"")
        if not brackets:
            return False
    return True


def _unique_names(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        duplicate = next(name for name, _ in pairs if name in seen or seen.add(name))  # type: ignore[func-returns-value]
        raise JsonInputError(f"the name {duplicate[:60]!r} appears twice in one object")
    return obj


def _no_constant(name: str) -> Any:
    raise JsonInputError(f"{name} is not a JSON number")


def parse_json(data: bytes, max_depth: int = MAX_DEPTH) -> Any:
    """``data`` (UTF-8 JSON text, RFC 8259) as Python values; :class:`JsonInputError` when it
    is not JSON, not UTF-8, nested deeper than ``max_depth``, or has a duplicate name."""
    if too_deep(data, max_depth):
        raise JsonInputError(f"the JSON is nested more than {max_depth} levels deep, or its brackets do not pair up")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise JsonInputError("the body is not UTF-8 text") from None
    try:
        return json.loads(text, object_pairs_hook=_unique_names, parse_constant=_no_constant)
    except JsonInputError:
        raise
    except (ValueError, RecursionError) as exc:  # RecursionError: cannot happen after the depth check; kept closed
        raise JsonInputError(f"the body is not valid JSON: {str(exc)[:120]}") from None
