"""The directory's GeneralizedTime values (RFC 4517 section 3.3.13: pwdChangedTime,
pwdAccountLockedTime) as the client reads them: asn1crypto's reading, in UTC; a value that is not
one, has no time zone or names year 0 is no time (None), never an exception (Hypothesis)."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from directory.client import _generalized_time

UTC = datetime.timezone.utc


def _text(moment: datetime.datetime, fraction: bool) -> str:
    """``moment`` written as GeneralizedTime, with its own offset (``Z`` for UTC)."""
    offset = moment.utcoffset() or datetime.timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    zone = "Z" if minutes == 0 else f"{'+' if minutes > 0 else '-'}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
    m = moment
    body = f"{m.year:04d}{m.month:02d}{m.day:02d}{m.hour:02d}{m.minute:02d}{m.second:02d}"
    return body + (f".{moment.microsecond:06d}" if fraction else "") + zone


@given(st.datetimes(min_value=datetime.datetime(2, 1, 1), max_value=datetime.datetime(9998, 12, 31),
                    timezones=st.builds(lambda m: datetime.timezone(datetime.timedelta(minutes=m)),
                                        st.integers(-23 * 60 - 59, 23 * 60 + 59))),
       st.booleans())
def test_any_written_time_reads_back_as_the_same_instant(moment: datetime.datetime, fraction: bool) -> None:
    expected = moment if fraction else moment.replace(microsecond=0)
    read = _generalized_time([_text(moment, fraction)])
    assert read == expected and read is not None and read.utcoffset() == datetime.timedelta(0)


@pytest.mark.parametrize(("value", "expected"), [
    ("20261203120000Z", datetime.datetime(2026, 12, 3, 12, 0, tzinfo=UTC)),
    ("20261203200000+0800", datetime.datetime(2026, 12, 3, 12, 0, tzinfo=UTC)),  # Beijing time
    ("2026120312.5Z", datetime.datetime(2026, 12, 3, 12, 30, tzinfo=UTC)),  # a fraction of the hour
    ("202612031230,5Z", datetime.datetime(2026, 12, 3, 12, 30, 30, tzinfo=UTC)),  # of the minute, comma
    ("000001010000Z", None),  # OpenLDAP's permanent lock: no time
    ("20261203120000", None),  # no time zone
    ("20261303120000Z", None),
    ("", None),
    ("２０２６１２０３１２００００Z", None),  # digits, but not ASCII ones
])
def test_known_values(value: str, expected: datetime.datetime | None) -> None:
    assert _generalized_time([value]) == expected


def test_no_value_is_no_time() -> None:
    assert _generalized_time([]) is None


@given(st.text(max_size=40))
def test_any_text_is_a_time_or_none(value: str) -> None:
    read = _generalized_time([value])
    assert read is None or read.utcoffset() == datetime.timedelta(0)
