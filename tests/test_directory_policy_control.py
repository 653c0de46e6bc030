"""The ppolicy response control decoder (draft-behera-ldap-password-policy-11 section 6.2), judged
by pyasn1's BER encoder of this test's own ASN.1 definition; any octets a server sends give a
decoded value or PolicyControlError, nothing else (Hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyasn1.codec.ber import encoder
from pyasn1.type import namedtype, namedval, tag, univ

from directory.ppolicy import ERRORS, PolicyControlError, PolicyResponse, decode_policy_response



class _Warning(univ.Choice):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("timeBeforeExpiration", univ.Integer().subtype(
            implicitTag=tag.Tag(tag.tagClassContext, tag.tagFormatSimple, 0))),
        namedtype.NamedType("graceAuthNsRemaining", univ.Integer().subtype(
            implicitTag=tag.Tag(tag.tagClassContext, tag.tagFormatSimple, 1))),
    )


class _Error(univ.Enumerated):
    namedValues = namedval.NamedValues(*[(name, i) for i, name in enumerate(ERRORS)])


class _Response(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.OptionalNamedType("warning", _Warning().subtype(
            explicitTag=tag.Tag(tag.tagClassContext, tag.tagFormatConstructed, 0))),
        namedtype.OptionalNamedType("error", _Error().subtype(
            implicitTag=tag.Tag(tag.tagClassContext, tag.tagFormatSimple, 1))),
    )


def _encode(error: int | None = None, expiration: int | None = None, grace: int | None = None) -> bytes:
    value = _Response()
    if expiration is not None or grace is not None:
        warning = value.setComponentByName("warning").getComponentByName("warning")
        if expiration is not None:
            warning.setComponentByName("timeBeforeExpiration", expiration)
        else:
            warning.setComponentByName("graceAuthNsRemaining", grace)
    if error is not None:
        value.setComponentByName("error", error)
    return encoder.encode(value)


@pytest.mark.parametrize("code", range(len(ERRORS)))
def test_every_error(code: int) -> None:
    decoded = decode_policy_response(_encode(error=code))
    assert decoded.error == ERRORS[code]
    assert decoded.time_before_expiration is None and decoded.grace_logins_remaining is None
    assert decoded.locked == (code == 1) and decoded.expired == (code == 0) and decoded.must_change == (code == 2)


def test_warnings() -> None:
    assert decode_policy_response(_encode(expiration=86400)).time_before_expiration == 86400
    assert decode_policy_response(_encode(expiration=1_000_000_000)).time_before_expiration == 1_000_000_000
    assert decode_policy_response(_encode(grace=2)).grace_logins_remaining == 2
    both = decode_policy_response(_encode(error=2, expiration=300))
    assert both.must_change and both.time_before_expiration == 300


def test_empty_sequence_means_nothing_to_report() -> None:
    decoded = decode_policy_response(_encode())
    assert decoded.error is None and not decoded.locked


@pytest.mark.parametrize("value", [
    b"", b"\x30", b"\x30\x05\x81\x01\x01", b"\x31\x03\x81\x01\x01", b"\x30\x03\x81\x01\x09",
    b"\x30\x03\x82\x01\x01", b"\x30\x80\x81\x01\x01\x00\x00", b"\x30\x03\x81\x01\x01\x00",
    b"\x30\x05\xa0\x03\x82\x01\x01", b"\x30\x02\x81\x00", b"\x30\x03\x81\x01\xff",
])
def test_malformed_values_are_refused(value: bytes) -> None:
    with pytest.raises(PolicyControlError):
        decode_policy_response(value)


@settings(max_examples=100, deadline=None)
@given(st.one_of(st.none(), st.integers(0, len(ERRORS) - 1)), st.one_of(st.none(), st.integers(0, 2**31 - 1)),
       st.integers(0, 2**31 - 1))
def test_every_valid_value_decodes(error: int | None, expiration: int | None, grace: int) -> None:
    expected = PolicyResponse(error=None if error is None else ERRORS[error], time_before_expiration=expiration)
    assert decode_policy_response(_encode(error=error, expiration=expiration)) == expected
    assert decode_policy_response(_encode(grace=grace)).grace_logins_remaining == grace


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=24), st.binary(max_size=20).map(lambda b: b"\x30" + bytes([len(b)]) + b)))
def test_any_octets_decode_or_are_refused(value: bytes) -> None:
    try:
        decoded = decode_policy_response(value)
    except PolicyControlError:
        return
    assert decoded.error in (None, *ERRORS)
