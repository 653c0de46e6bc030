"""The verification API's request bodies, item by item, as its OpenAPI description
(:mod:`idp.verification_api.openapi`) states them; anything else is :class:`BadInput` (a 400 problem,
RFC 9457). The body itself was parsed within bounds by :mod:`idp.json_input`."""

from __future__ import annotations

import base64
import binascii
import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from verification.certificates import load_certificate
from verification.paths import PolicyInputs


#: items in one ``verify-batch`` request
MAX_BATCH = 100
PURPOSES = ("staff-auth", "citizen-auth", "signing", "service")
SOURCES = ("ocsp", "crl", "store")
#: ``sm3`` for an SM2 certificate's signature (GB/T 32918.2, Z of the signer identity hashed in)
HASHES: dict[str, type[hashes.HashAlgorithm]] = {"sha256": hashes.SHA256, "sha384": hashes.SHA384,
                                                  "sha512": hashes.SHA512, "sm3": hashes.SM3}
#: the RFC 5280 section 6.1.1 initial inputs a caller may give: (c) and, as booleans, (e), (f), (g)
POLICY_FLAGS = ("explicit_policy", "policy_mapping_inhibit", "any_policy_inhibit")
POLICY_FIELDS = ("policies", *POLICY_FLAGS)
#: OIDs in one user-initial-policy-set
MAX_POLICIES = 32


class BadInput(Exception):
    """A request body that does not match the OpenAPI description (a 400 problem)."""


def json_object(value: Any, allowed: set[str], required: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadInput("the body (or batch item) must be a JSON object")
    unknown = set(value) - allowed
    if unknown:
        raise BadInput(f"unknown field(s): {', '.join(sorted(unknown))[:200]}")
    missing = required - set(value)
    if missing:
        raise BadInput(f"missing field(s): {', '.join(sorted(missing))}")
    return value


def _text(item: dict[str, Any], name: str, limit: int = 65536) -> str:
    value = item.get(name)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise BadInput(f"{name} must be non-empty text of at most {limit} characters")
    return value


def base64_field(item: dict[str, Any], name: str, limit: int = 65536) -> bytes:
    try:
        return base64.b64decode(_text(item, name, limit), validate=True)
    except (binascii.Error, ValueError):
        raise BadInput(f"{name} must be base64") from None


def certificate_field(value: Any, name: str) -> x509.Certificate:
    if not isinstance(value, str) or not value or len(value) > 65536:
        raise BadInput(f"{name} must be a PEM or base64 DER certificate")
    try:
        return load_certificate(value)
    except ValueError:
        raise BadInput(f"{name} is not a PEM or base64 DER certificate") from None


def chain_field(item: dict[str, Any]) -> list[x509.Certificate]:
    value = item.get("chain", [])
    if not isinstance(value, list) or len(value) > 8:
        raise BadInput("chain must be a list of at most 8 certificates")
    return [certificate_field(c, f"chain[{i}]") for i, c in enumerate(value)]


def time_field(item: dict[str, Any]) -> datetime.datetime | None:
    value = item.get("at")
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 40:
        raise BadInput("at must be an RFC 3339 date-time")
    try:
        moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadInput("at must be an RFC 3339 date-time") from None
    if moment.tzinfo is None:
        raise BadInput("at must carry a time zone (e.g. Z)")
    try:
        return moment.astimezone(datetime.timezone.utc)
    except (OverflowError, ValueError):
        raise BadInput("at is out of range") from None


def choice_field(item: dict[str, Any], name: str, options: tuple[str, ...], default: str | None) -> str:
    value = item.get(name, default)
    if value not in options:
        raise BadInput(f"{name} must be one of {', '.join(options)}")
    return str(value)



def policy_field(item: dict[str, Any]) -> PolicyInputs | None:
    """The caller's initial policy inputs (RFC 5280 section 6.1.1 (c), (e), (f), (g)), or None when
    the item gives none: ``policies`` (user-initial-policy-set, dotted OIDs; anyPolicy's OID or an
    empty list mean any policy) and the booleans ``explicit_policy``, ``policy_mapping_inhibit``
    and ``any_policy_inhibit``."""
    if not any(name in item for name in POLICY_FIELDS):
        return None
    value = item.get("policies", [])
    if not isinstance(value, list) or len(value) > MAX_POLICIES:
        raise BadInput(f"policies must be a list of at most {MAX_POLICIES} OIDs")
    policies = []
    for i, oid in enumerate(value):
        if not isinstance(oid, str) or not 0 < len(oid) <= 128:
            raise BadInput(f"policies[{i}] must be a dotted OID")
        try:
            policies.append(x509.ObjectIdentifier(oid).dotted_string)
        except ValueError:
            raise BadInput(f"policies[{i}] is not a dotted OID") from None
    flags = {name: item.get(name, False) for name in POLICY_FLAGS}
    for name, flag in flags.items():
        if not isinstance(flag, bool):
            raise BadInput(f"{name} must be true or false")
    return PolicyInputs.of(policies, flags["explicit_policy"], flags["policy_mapping_inhibit"],
                           flags["any_policy_inhibit"])
