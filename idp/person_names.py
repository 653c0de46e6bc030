"""A person's name as people write it, from the family name and the given name a directory keeps
(LDAP ``sn`` and ``givenName``, RFC 4519 sections 2.32 and 2.12).

A name in Chinese characters is written family name first without a space (张伟, GB/T 28039-2011
section 5 on writing Chinese names, which puts the family name first); a name in Latin script
given name first with a space ("Kadri Tamm"), as the directory's other entries are.
"""

from __future__ import annotations

import unicodedata


def is_han(text: str) -> bool:
    """Whether ``text`` holds a Chinese character (a CJK unified or compatibility ideograph)."""
    return any(unicodedata.name(c, "").startswith(("CJK UNIFIED IDEOGRAPH", "CJK COMPATIBILITY IDEOGRAPH"))
               for c in text)


def written_name(given: str, family: str) -> str:
    """张伟 from ("伟", "张"); "Kadri Tamm" from ("Kadri", "Tamm"); whichever part is given alone."""
    given, family = given.strip(), family.strip()
    if is_han(given) or is_han(family):
        return family + given
    return f"{given} {family}".strip()
