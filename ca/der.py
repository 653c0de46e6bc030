"""The few DER primitives (ITU-T X.690 section 8.1) needed to splice a signature into a structure."""

from __future__ import annotations

from typing import NamedTuple


class Tlv(NamedTuple):
    tag: int
    start: int  # offset of the tag byte
    content_start: int
    end: int  # one past the last content byte


def read_tlv(data: bytes, offset: int = 0) -> Tlv:
    """Read one DER element (single-byte tags only, definite lengths only)."""
    if offset + 2 > len(data):
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
        if count == 0 or count > 4 or pos + count > len(data):
            raise ValueError("invalid DER length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if pos + length > len(data):
        raise ValueError("DER element runs past the end of its data")
    return Tlv(tag, offset, pos, pos + length)


def children(data: bytes, element: Tlv) -> list[Tlv]:
    """The elements directly inside a constructed element."""
    out: list[Tlv] = []
    pos = element.content_start
    while pos < element.end:
        child = read_tlv(data, pos)
        out.append(child)
        pos = child.end
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
