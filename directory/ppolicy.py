"""The password policy controls (draft-behera-ldap-password-policy-11, section 6).

The request control (section 6.1) has no value. directory.connection hands the response
control's value over as undecoded octets; this module decodes it with pyasn1 (which python-ldap's
controls are built on)::

    PasswordPolicyResponseValue ::= SEQUENCE {
        warning [0] CHOICE {
            timeBeforeExpiration [0] INTEGER (0 .. maxInt),
            graceAuthNsRemaining [1] INTEGER (0 .. maxInt) } OPTIONAL,
        error   [1] ENUMERATED { passwordExpired (0), accountLocked (1), changeAfterReset (2),
                                 passwordModNotAllowed (3), mustSupplyOldPassword (4),
                                 insufficientPasswordQuality (5), passwordTooShort (6),
                                 passwordTooYoung (7), passwordInHistory (8) } OPTIONAL }

The value is read by pyasn1's DER decoder, so with definite lengths only (RFC 4511 section 5.1);
anything malformed, or an error or warning outside the ranges above, raises
:class:`PolicyControlError` instead of guessing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pyasn1.codec.ber import decoder as ber_decoder
from pyasn1.codec.der import decoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import namedtype, namedval, tag, univ

CONTROL_OID = "1.3.6.1.4.1.42.2.27.8.5.1"
#: the request control as directory.connection takes controls: (type, criticality, value)
REQUEST_CONTROL = (CONTROL_OID, False, None)

ERRORS = ("passwordExpired", "accountLocked", "changeAfterReset", "passwordModNotAllowed",
          "mustSupplyOldPassword", "insufficientPasswordQuality", "passwordTooShort",
          "passwordTooYoung", "passwordInHistory")
_MAX_INT = 2**31 - 1  # maxInt (RFC 4511 section 4.1.1)
#: an empty SEQUENCE: what slapd sends with every bind that has nothing to report
_NOTHING_TO_REPORT = b"\x30\x00"


class _Warning(univ.Choice):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("timeBeforeExpiration", univ.Integer().subtype(
            implicitTag=tag.Tag(tag.tagClassContext, tag.tagFormatSimple, 0))),
        namedtype.NamedType("graceAuthNsRemaining", univ.Integer().subtype(
            implicitTag=tag.Tag(tag.tagClassContext, tag.tagFormatSimple, 1))),
    )


class _Error(univ.Enumerated):
    namedValues = namedval.NamedValues(*[(name, code) for code, name in enumerate(ERRORS)])


class _ResponseValue(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.OptionalNamedType("warning", _Warning().subtype(
            explicitTag=tag.Tag(tag.tagClassContext, tag.tagFormatConstructed, 0))),
        namedtype.OptionalNamedType("error", _Error().subtype(
            implicitTag=tag.Tag(tag.tagClassContext, tag.tagFormatSimple, 1))),
    )


class _IntegerDecoder(ber_decoder.IntegerPayloadDecoder):
    """pyasn1's INTEGER decoder, refusing an INTEGER or ENUMERATED without content octets (X.690
    sections 8.3.1 and 8.4), which pyasn1 would read as 0."""

    def valueDecoder(self, substrate: Any, asn1Spec: Any, tagSet: Any = None, length: int | None = None,
                     *args: Any, **options: Any) -> Iterator[Any]:
        if not length:
            raise PyAsn1Error("an INTEGER or ENUMERATED without content octets")
        yield from super().valueDecoder(substrate, asn1Spec, tagSet, length, *args, **options)


class _EnumeratedDecoder(_IntegerDecoder):
    protoComponent = univ.Enumerated(0)


_TYPE_MAP = {**decoder.TYPE_MAP, univ.Integer.typeId: _IntegerDecoder(), univ.Enumerated.typeId: _EnumeratedDecoder()}


class PolicyControlError(ValueError):
    """The control's value is not a valid PasswordPolicyResponseValue."""


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


def _in_range(value: univ.Integer, what: str) -> int:
    number = int(value)
    if not 0 <= number <= _MAX_INT:
        raise PolicyControlError(f"{what} {number} is out of range")
    return number


def decode_policy_response(value: bytes) -> PolicyResponse:
    """Decode the value of the ppolicy response control (section 6.2)."""
    if value == _NOTHING_TO_REPORT:
        return PolicyResponse()
    try:
        decoded, rest = decoder.decode(value, asn1Spec=_ResponseValue(), typeMap=_TYPE_MAP)
    except PyAsn1Error as exc:  # truncated, indefinite length, an unknown tag, ...
        raise PolicyControlError(str(exc)) from exc
    if rest:
        raise PolicyControlError("trailing octets after the control value")
    error = expiration = grace = None
    warning = decoded["warning"]
    if warning.isValue:
        chosen = warning.getName()
        if chosen == "timeBeforeExpiration":
            expiration = _in_range(warning[chosen], "timeBeforeExpiration")
        else:
            grace = _in_range(warning[chosen], "graceAuthNsRemaining")
    if decoded["error"].isValue:
        code = int(decoded["error"])
        if not 0 <= code < len(ERRORS):
            raise PolicyControlError(f"unknown ppolicy error {code}")
        error = ERRORS[code]
    return PolicyResponse(error=error, time_before_expiration=expiration, grace_logins_remaining=grace)
