"""ca.der, the strict DER reader the CA's signature splicing and the card reader's CMS walk share
(X.690 section 8.1): elements read as encoded, a child never allowed past its parent's end."""

from __future__ import annotations

import pytest
from asn1crypto import core

from ca import der


def test_elements_read_as_an_independent_encoder_wrote_them() -> None:
    value = core.Sequence(contents=core.OctetString(b"x" * 300).dump() + core.Integer(5).dump()).dump()
    outer = der.read_tlv(value)
    assert (outer.tag, outer.start, outer.end) == (der.SEQUENCE, 0, len(value))
    octets, integer = der.children(value, outer)
    assert octets.tag == der.OCTET_STRING and value[octets.content_start:octets.end] == b"x" * 300
    assert integer.tag == 0x02 and value[integer.content_start:integer.end] == b"\x05"


def test_a_child_that_runs_past_its_parent_is_refused() -> None:
    # SEQUENCE of length 3 holding an OCTET STRING that claims 4 bytes: inside the data, not inside its parent
    value = bytes([0x30, 0x03, 0x04, 0x04, 0x61, 0x62, 0x63, 0x64])
    outer = der.read_tlv(value, 0, 5)
    with pytest.raises(ValueError, match="past the end"):
        der.children(value, outer)


@pytest.mark.parametrize("value", [b"\x30", b"\x1f\x01\x00", b"\x04\x85\x00\x00\x00\x00\x01\x00", b"\x04\x80", b"\x04\x05ab"])
def test_malformed_elements_are_refused(value: bytes) -> None:
    with pytest.raises(ValueError):
        der.read_tlv(value)
