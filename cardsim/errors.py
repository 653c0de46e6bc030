"""Typed errors of the card layer; the CLI prints them as one line, the web layer maps them to HTTP."""

from __future__ import annotations


class CardError(Exception):
    """Base of every error the card layer raises on purpose."""

    kind: str = "card-error"


class CardConfigurationError(CardError):
    """The card folder or a TESSERA_CARD_* setting is missing or wrong."""

    kind = "card-configuration"


class InvalidApplication(CardError):
    """A citizen's application (identity, tax, insurance data) is incomplete or malformed."""

    kind = "invalid-application"


class CardNotFound(CardError):
    """No card with that number in the registry or on the card reader."""

    kind = "card-not-found"


class InvalidCardState(CardError):
    """The operation does not apply to the card's state (reporting a lost card twice, ...)."""

    kind = "invalid-card-state"


class WrongPin(CardError):
    """The PIN (or PUK) was wrong; ``remaining`` tries are left."""

    kind = "wrong-pin"

    def __init__(self, message: str, remaining: int) -> None:
        super().__init__(message)
        self.remaining = remaining


class PinBlocked(CardError):
    """Three wrong PINs: only the PUK can unblock the card."""

    kind = "pin-blocked"


class CardBlocked(CardError):
    """Ten wrong PUKs: the card is blocked for good."""

    kind = "card-blocked"


class InvalidPin(CardError):
    """A new PIN or PUK does not have the required form (6 to 8 digits; PUK 8 digits)."""

    kind = "invalid-pin"


class CardWriteFailed(CardError):
    """The card (token) refused an operation; nothing of the operation was kept."""

    kind = "card-write-failed"
