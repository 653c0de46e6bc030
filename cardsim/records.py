"""Card records and the card security object: canonical encoding and CMS signatures.

A record (identity, tax, insurance) is canonical JSON (RFC 8785-style: UTF-8, keys sorted, no
insignificant whitespace; only strings and integers occur) wrapped in CMS SignedData
(RFC 5652 section 5, content type id-data) signed by the department that owns it, with the
signer's certificate and its issuing CA in the certificates field, so ``openssl cms -verify``
checks it against the root alone. The record names the card number and carries a version and
an issue date.

The card security object (after ICAO 9303 part 10's Document Security Object) is signed by the
card issuer and binds the SHA-256 of every current record's CMS encoding, the card number and
the SHA-256 of both card public keys (SubjectPublicKeyInfo DER): a record moved to another card,
or a card whose keys were swapped, no longer matches it.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from typing import Any

from cryptography import x509

from ca.cms import CmsSigner
from ca.keys import SigningKey

RECORD_FORMAT = "tessera-card-record/1"
SECURITY_OBJECT_FORMAT = "tessera-card-security-object/1"
RECORD_TYPES = ("identity", "tax", "insurance")
SECURITY_OBJECT = "security-object"
#: records that are personal data: private objects on the card, readable only after the PIN
PRIVATE_RECORDS = frozenset({"tax", "insurance"})
#: the card object label of each record
LABELS = {"identity": "record:identity", "tax": "record:tax", "insurance": "record:insurance",
          SECURITY_OBJECT: "security-object"}


def canonical(value: dict[str, Any]) -> bytes:
    """Canonical JSON: sorted keys, compact separators, UTF-8, no floats."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def _time(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Signer:
    """A department's (or the card issuer's) signing identity: certificate, chain, token key.

    Records are CMS SignedData over id-data content (RFC 5652 sections 5.1-5.4), signed by
    :class:`ca.cms.CmsSigner`, built once per signer so only the changing parts are encoded per record.
    """

    def __init__(self, name: str, certificate: x509.Certificate, chain: tuple[x509.Certificate, ...],
                 key: SigningKey) -> None:
        self.name = name
        self.certificate = certificate
        self.chain = chain
        self.key = key
        self._cms = CmsSigner(certificate, key, "data", (certificate, *chain))

    def sign(self, content: bytes, now: datetime.datetime) -> bytes:
        """A DER ContentInfo holding SignedData over ``content`` (encapsulated)."""
        return self._cms.sign(content, now)


def record_content(record_type: str, card_number: str, version: int, department: str,
                   data: dict[str, Any], now: datetime.datetime) -> bytes:
    return canonical({
        "format": RECORD_FORMAT, "type": record_type, "card": card_number, "version": version,
        "issued_at": _time(now), "department": department, "data": data,
    })


def security_object_content(card_number: str, version: int, public_keys: dict[str, bytes],
                            records: dict[str, tuple[int, bytes]], expires_at: datetime.datetime,
                            now: datetime.datetime) -> bytes:
    """``public_keys``: key label -> SPKI DER; ``records``: type -> (version, record CMS DER)."""
    return canonical({
        "format": SECURITY_OBJECT_FORMAT, "card": card_number, "version": version, "issued_at": _time(now),
        "expires_at": _time(expires_at),
        "keys": {label: sha256_hex(spki) for label, spki in sorted(public_keys.items())},
        "records": {kind: {"version": v, "sha256": sha256_hex(der)} for kind, (v, der) in sorted(records.items())},
    })


def parse_content(content: bytes) -> dict[str, Any]:
    value = json.loads(content.decode("utf-8"))
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    if canonical(value) != content:
        raise ValueError("not in canonical form")
    return value
