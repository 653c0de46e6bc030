"""Card numbers: 11 digits, the last a Luhn check digit (ISO/IEC 7812-1 annex B).

The number is the token label (PKCS#11 labels hold 32 characters) and the registry key. The
check digit catches every single-digit typo and most swapped neighbours when an operator types
a number; uniqueness is the registry's (unique constraint) and the card folder's (label index).

Layout: ``9`` (this issuer), three digits naming the card's shard (the SoftHSM2 folder its token
lives in, docs/cards.md "Where cards live"), six random digits, the check digit. Every process
finds a card's shard from its number alone, with no registry and no scan.
"""

from __future__ import annotations

import secrets

from cardsim.errors import CardNotFound

PREFIX = "9"  # reserved for this issuer
LENGTH = 11
SHARD_DIGITS = 3
#: shard codes 000-999 (the three digits after the prefix)
SHARDS = 10**SHARD_DIGITS


def luhn_digit(payload: str) -> str:
    """The Luhn check digit of ``payload`` (doubling every second digit from the right)."""
    total = 0
    for i, char in enumerate(reversed(payload)):
        digit = int(char)
        if i % 2 == 0:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return str((10 - total % 10) % 10)


def new_card_number(shard: int) -> str:
    """A fresh number for a card whose token goes into ``shard``."""
    if not 0 <= shard < SHARDS:
        raise ValueError(f"a shard is 0 to {SHARDS - 1}")
    random_digits = LENGTH - 2 - SHARD_DIGITS
    payload = PREFIX + f"{shard:0{SHARD_DIGITS}d}" + "".join(secrets.choice("0123456789") for _ in range(random_digits))
    return payload + luhn_digit(payload)


def shard_of(number: str) -> int:
    """The shard of a (well-formed) card number: the digits after the prefix."""
    return int(number[len(PREFIX):len(PREFIX) + SHARD_DIGITS])


def is_card_number(text: str) -> bool:
    return len(text) == LENGTH and text.isdigit() and text.isascii() and luhn_digit(text[:-1]) == text[-1]


def parse_card_number(text: str) -> str:
    """Accept a card number with spaces or dashes; refuse a wrong length or check digit."""
    cleaned = text.replace(" ", "").replace("-", "")
    if not is_card_number(cleaned):
        raise CardNotFound(f"{text!r} is not a card number (11 digits with a valid check digit)")
    return cleaned
