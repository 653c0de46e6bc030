"""The password policy response control (draft-behera-ldap-password-policy-11, section 6.2).

ldap3 hands the control's value over as raw BER; this module decodes it::

    PasswordPolicyResponseValue ::= SEQUENCE {
        warning [0] CHOICE {
            timeBeforeExpiration [0] INTEGER (0 .. maxInt),
            graceAuthNsRemaining [1] INTEGER (0 .. maxInt) } OPTIONAL,
        error   [1] ENUMERATED { passwordExpired (0), accountLocked (1), changeAfterReset (2),
                                 passwordModNotAllowed (3), mustSupplyOldPassword (4),
                                 insufficientPasswordQuality (5), passwordTooShort (6),
                                 passwordTooYoung (7), passwordInHistory (8) } OPTIONAL }

Anything malformed raises :class:`PolicyControlError` instead of guessing.
"""

from __future__ import annotations

from dataclasses import dataclass

from ca.der import read_tlv

CONTROL_OID = "1.3.6.1.4.1.42.2.27.8.5.1"

ERRORS = ("passwordExpired", "accountLocked", "changeAfterReset", "passwordModNotAllowed",
          "mustSupplyOldPassword", "insufficientPasswordQuality", "passwordTooShort",
          "passwordTooYoung", "passwordInHistory")


class PolicyControlError(ValueError):
    """The control's value is not valid BER of PasswordPolicyResponseValue."""


@dataclass(frozen=True)
class PolicyResponse:
    """What slapd's ppolicy said about a bind (each part optional)."""

    error: str | None = None
    time_before_expiration: int | None = None  # seconds
    grace_logins_remaining: int | None = None

    @property
    def locked(self) -> bool:
        return self.error == "accountLocked"

    @property
    def expired(self) -> bool:
        return self.error == "passwordExpired"

    @property
    def must_change(self) -> bool:
        return self.error == "changeAfterReset"


def _read_tlv(data: bytes, pos: int) -> tuple[int, bytes, int]:
    """One BER tag-length-value at ``pos`` (X.690 8.1): (tag, value, next position)."""
    try:
        element = read_tlv(data, pos)
    except ValueError as exc:  # truncated, indefinite length (not allowed in LDAP, RFC 4511 5.1), ...
        raise PolicyControlError(str(exc)) from exc
    return element.tag, data[element.content_start:element.end], element.end


def _integer(content: bytes) -> int:
    if not content or len(content) > 8:
        raise PolicyControlError("bad BER integer")
    return int.from_bytes(content, "big", signed=True)


def decode_policy_response(value: bytes) -> PolicyResponse:
    """Decode the control value of the ppolicy response control (section 6.2)."""
    tag, body, end = _read_tlv(value, 0)
    if tag != 0x30 or end != len(value):
        raise PolicyControlError("the control value is not one SEQUENCE")
    error = expiration = grace = None
    pos = 0
    while pos < len(body):
        tag, content, pos = _read_tlv(body, pos)
        if tag == 0xA0:  # warning [0] (constructed: holds the CHOICE)
            inner_tag, inner, inner_end = _read_tlv(content, 0)
            if inner_end != len(content):
                raise PolicyControlError("trailing bytes in the warning")
            if inner_tag == 0x80:
                expiration = _integer(inner)
            elif inner_tag == 0x81:
                grace = _integer(inner)
            else:
                raise PolicyControlError(f"unknown warning tag 0x{inner_tag:02x}")
        elif tag == 0x81:  # error [1] ENUMERATED, implicitly tagged
            code = _integer(content)
            if not 0 <= code < len(ERRORS):
                raise PolicyControlError(f"unknown ppolicy error {code}")
            error = ERRORS[code]
        else:
            raise PolicyControlError(f"unexpected tag 0x{tag:02x} in the control")
    return PolicyResponse(error=error, time_before_expiration=expiration, grace_logins_remaining=grace)
