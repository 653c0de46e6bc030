"""Search filters built as structures (RFC 4511 section 4.5.1.7), written as RFC 4515 text for libldap.

A :class:`Filter` is only made by the functions below: an attribute name must be an
AttributeDescription (RFC 4512 section 2.5) and every value is escaped, so whatever a value holds
(``*)(uid=*``, NUL, a backslash, spaces) it stays one assertion value and cannot change the
filter's meaning. libldap (through python-ldap) parses the text back into a filter structure
before encoding it; the tests hold ldap3's reading of the same text, an independent parser, against
the intended structure, value for value.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from ldap.filter import escape_filter_chars

__all__ = ["Filter", "all_of", "any_of", "contains", "equals", "is_attribute_description", "present"]

# AttributeDescription (RFC 4512 section 2.5): a descriptor or a numeric OID, with options
_ATTRIBUTE = re.compile(r"(?:[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)+)(?:;[A-Za-z0-9-]+)*")
# white space as str.strip() sees it (Unicode white space), which a filter parser may take for layout
_SPACE = re.compile(r"\s")


class Filter(NamedTuple):
    """A search filter as RFC 4515 text, made by :func:`equals`, :func:`all_of` and the others."""

    text: str


def is_attribute_description(name: object) -> bool:
    """Whether ``name`` is an AttributeDescription (RFC 4512 section 2.5): ``cn``, ``2.5.4.3``,
    ``userCertificate;binary``."""
    return isinstance(name, str) and _ATTRIBUTE.fullmatch(name) is not None


def _description(name: str) -> str:
    """An AttributeDescription; anything else is a programming or configuration error."""
    if not is_attribute_description(name):
        raise ValueError(f"not an attribute description: {name!r}")
    return name


def _value(value: str) -> str:
    """``value`` as an RFC 4515 assertion value: ``* ( ) \\ NUL`` escaped (python-ldap's
    escape_filter_chars), and white space too, which a filter parser could otherwise strip (ldap3's
    does)."""
    value.encode()  # a string that is not Unicode text (a lone surrogate) is refused here, as UnicodeEncodeError
    return _SPACE.sub(lambda space: "".join(f"\\{octet:02x}" for octet in space.group().encode()),
                      escape_filter_chars(value))


def equals(attribute: str, value: str) -> Filter:
    """equalityMatch: ``attribute`` equals ``value`` (the value is data, never filter syntax)."""
    return Filter(f"({_description(attribute)}={_value(value)})")


def contains(attribute: str, value: str) -> Filter:
    """substrings with one ``any`` part: ``attribute`` contains ``value`` (at least one character)."""
    if not value:
        raise ValueError("a substring filter needs a value")
    return Filter(f"({_description(attribute)}=*{_value(value)}*)")


def present(attribute: str) -> Filter:
    """present: the entry has ``attribute``."""
    return Filter(f"({_description(attribute)}=*)")


def all_of(*filters: Filter) -> Filter:
    """and: every one of ``filters`` (at least one)."""
    if not filters:
        raise ValueError("an 'and' filter needs at least one member")
    return Filter("(&" + "".join(f.text for f in filters) + ")")


def any_of(*filters: Filter) -> Filter:
    """or: at least one of ``filters`` (at least one)."""
    if not filters:
        raise ValueError("an 'or' filter needs at least one member")
    return Filter("(|" + "".join(f.text for f in filters) + ")")
