"""The few DER primitives (ITU-T X.690 section 8.1) needed to splice a signature into a structure."""

from __future__ import annotations

from typing import NamedTuple


class Tlv(NamedTuple):
    tag: int
    start: int  # offset of the tag byte
    content_start: int
    end: int  # one past the last content byte


#: builds a Tlv without NamedTuple's keyword-handling __new__ (a third of read_tlv's cost)
_new_tlv = tuple.__new__


def read_tlv(data: bytes, offset: int = 0, limit: int | None = None) -> Tlv:
    """Read one DER element (single-byte tags only, definite lengths only), which must end by
    ``limit`` (the end of its parent; by default the end of ``data``)."""
    limit = len(data) if limit is None else limit
    if offset + 2 > limit:
        raise ValueError("truncated DER element")
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        raise ValueError("multi-byte DER tags are not supported")
    first = data[offset + 1]
    pos = offset + 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or pos + count > limit:
            raise ValueError("invalid DER length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if pos + length > limit:
        raise ValueError("DER element runs past the end of its data")
    return _new_tlv(Tlv, (tag, offset, pos, pos + length))


def children(data: bytes, element: Tlv) -> list[Tlv]:
    """The elements directly inside a constructed element (each must end inside it)."""
    out: list[Tlv] = []
    pos, end = element[2], element[3]  # by index: a CMS walk reads some 40 elements (verification.signed_data)
    while pos < end:
        child = read_tlv(data, pos, end)
        out.append(child)
        pos = child[3]
    return out


def encode(tag: int, content: bytes) -> bytes:
    """Encode one element with a definite DER length."""
    n = len(content)
    if n < 0x80:
        return bytes((tag, n)) + content
    length = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(length))) + length + content


SEQUENCE = 0x30
BIT_STRING = 0x03
OCTET_STRING = 0x04
