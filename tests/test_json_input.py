"""idp.json_input: the bounded JSON parser of request bodies, judged by the standard library's
``json`` (the same values on everything shallow enough) and by a recursive depth count."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from idp.json_input import MAX_DEPTH, JsonInputError, parse_json, too_deep

BOUNDED = settings(max_examples=300, deadline=None, database=None)


def depth_of(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    return 0


documents = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=60)


@BOUNDED
@given(documents, st.integers(1, 40))
def test_same_values_as_json_and_depth_is_exact(value: Any, limit: int) -> None:
    text = json.dumps(value).encode()
    assert too_deep(text, limit) == (depth_of(value) > limit)
    if depth_of(value) <= limit:
        assert parse_json(text, limit) == json.loads(text)
    else:
        with pytest.raises(JsonInputError, match="nested more than"):
            parse_json(text, limit)


@BOUNDED
@given(st.binary(max_size=300) | st.text(alphabet='[]{}":,\\1a ', max_size=300).map(str.encode))
def test_any_bytes_are_a_value_or_json_input_error(data: bytes) -> None:
    try:
        parse_json(data)
    except JsonInputError:
        pass


def test_limits() -> None:
    for depth in (MAX_DEPTH + 1, 1000, 200_000):
        with pytest.raises(JsonInputError, match="nested more than"):
            parse_json(b"[" * depth + b"]" * depth)
    assert parse_json(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) is not None
    assert parse_json(b'["[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\"{{{{{{{{"]') == \
        ["[" * 47 + '"' + "{" * 8]
    for bad, why in ((b'{"a": 1, "a": 2}', "appears twice"), (b"\xff", "not UTF-8"), (b"NaN", "not a JSON number"),
                     (b"[Infinity]", "not a JSON number"), (b"1" * 5000, "not valid JSON"), (b"", "not valid JSON")):
        with pytest.raises(JsonInputError, match=why):
            parse_json(bad)
