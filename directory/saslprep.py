"""The octets a simple bind sends for a password: SASLprep (RFC 4013), as RFC 4513 section
5.1.1 recommends for simple-bind passwords, in UTF-8.

libldap sends a simple bind's password octets as it is given them (RFC 4511 section 4.2), so the
client prepares the password here, with the standard library's stringprep tables, and hands
python-ldap the octets. (ldap3's own ``sasl_prep`` lets through what RFC 3454 section 6 forbids:
``"\\u0627\\u0031"``, RandALCat text must also end with a RandALCat character.)
"""

from __future__ import annotations

import stringprep
import unicodedata

__all__ = ["prepare_password"]

# the prohibited output of SASLprep (RFC 4013 section 2.3); unassigned code points are allowed,
# as in a query (RFC 4013 section 2.5)
_PROHIBITED = (stringprep.in_table_c12, stringprep.in_table_c21_c22, stringprep.in_table_c3,
               stringprep.in_table_c4, stringprep.in_table_c5, stringprep.in_table_c6,
               stringprep.in_table_c7, stringprep.in_table_c8, stringprep.in_table_c9)


def prepare_password(password: str) -> bytes:
    """``password`` after SASLprep, in UTF-8. Raises ValueError for a string SASLprep prohibits
    (such a password cannot be anybody's)."""
    if password.isascii() and password.isprintable():
        return password.encode()  # printable ASCII is its own SASLprep: the common case, kept cheap
    # mapping (section 2.1): non-ASCII spaces to SPACE, "commonly mapped to nothing" removed
    mapped = "".join(" " if stringprep.in_table_c12(c) else c for c in password if not stringprep.in_table_b1(c))
    text = unicodedata.normalize("NFKC", mapped)  # section 2.2
    if not text:
        raise ValueError("the password is empty after SASLprep")
    for c in text:
        if any(prohibited(c) for prohibited in _PROHIBITED):
            raise ValueError("the password holds a character SASLprep prohibits")
    # bidirectional text (section 2.4, RFC 3454 section 6): RandALCat text must start and end
    # with a RandALCat character, and hold no LCat character
    if any(stringprep.in_table_d1(c) for c in text):
        if any(stringprep.in_table_d2(c) for c in text) or not (stringprep.in_table_d1(text[0])
                                                                 and stringprep.in_table_d1(text[-1])):
            raise ValueError("the password's bidirectional text is not allowed by SASLprep")
    return text.encode()
