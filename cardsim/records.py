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

from asn1crypto import algos, cms, core
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ca import der
from ca.cms import signing_certificate_v2
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


_OID_DATA = bytes.fromhex("06092a864886f70d010701")  # id-data (RFC 5652 section 4)
_OID_SIGNED_DATA = bytes.fromhex("06092a864886f70d010702")  # id-signedData (section 5.1)
_V1 = b"\x02\x01\x01"


class Signer:
    """A department's (or the card issuer's) signing identity: certificate, chain, token key.

    Signs CMS SignedData over id-data content (RFC 5652 sections 5.1-5.4) with the same signed
    attributes as ``ca.cms.sign_data`` (contentType, signingTime, messageDigest, ESS
    signingCertificateV2, in DER order). Everything that does not change between signatures (the
    signer identifier, algorithms, certificates, two of the attributes) is encoded once here and
    the rest assembled with :mod:`ca.der`: asn1crypto's re-encoding of the certificates cost ~10 ms
    a record. (``ca.cms.sign_data`` itself cannot encapsulate id-data yet.)
    """

    def __init__(self, name: str, certificate: x509.Certificate, chain: tuple[x509.Certificate, ...],
                 key: SigningKey) -> None:
        self.name = name
        self.certificate = certificate
        self.chain = chain
        self.key = key
        self._hash = key.key_type.signature_hash()
        signer = cms.Certificate.load(certificate.public_bytes(Encoding.DER))
        family = "ecdsa" if key.key_type.is_ec else "rsa"
        self._digest_algorithm = algos.DigestAlgorithm({"algorithm": self._hash.name}).dump()
        self._signature_algorithm = algos.SignedDigestAlgorithm({"algorithm": f"{self._hash.name}_{family}"}).dump()
        self._sid = cms.IssuerAndSerialNumber({"issuer": signer.issuer, "serial_number": signer.serial_number}).dump()
        self._constant_attributes = [
            cms.CMSAttribute({"type": "content_type", "values": [cms.ContentType("data")]}).dump(),
            cms.CMSAttribute({"type": "signing_certificate_v2", "values": [signing_certificate_v2(signer)]}).dump(),
        ]
        self._certificates = b"".join(c.public_bytes(Encoding.DER) for c in (certificate, *chain))

    def sign(self, content: bytes, now: datetime.datetime) -> bytes:
        """A DER ContentInfo holding SignedData over ``content`` (encapsulated)."""
        attributes = self._constant_attributes + [
            cms.CMSAttribute({"type": "signing_time", "values": [cms.Time({"utc_time": now.replace(microsecond=0)})]}).dump(),
            cms.CMSAttribute({"type": "message_digest",
                              "values": [core.OctetString(hashlib.new(self._hash.name, content).digest())]}).dump(),
        ]
        # DER orders a SET OF by the encodings of its elements (X.690 section 11.6)
        attribute_set = b"".join(sorted(attributes))
        # the signature covers the attributes with an explicit SET OF tag (RFC 5652 section 5.4)
        signature = self.key.sign(der.encode(0x31, attribute_set), self._hash)
        signer_info = der.encode(der.SEQUENCE, _V1 + self._sid + self._digest_algorithm + der.encode(0xA0, attribute_set)
                                 + self._signature_algorithm + der.encode(der.OCTET_STRING, signature))
        encapsulated = der.encode(der.SEQUENCE, _OID_DATA + der.encode(0xA0, der.encode(der.OCTET_STRING, content)))
        signed_data = der.encode(der.SEQUENCE, _V1 + der.encode(0x31, self._digest_algorithm) + encapsulated
                                 + der.encode(0xA0, self._certificates) + der.encode(0x31, signer_info))
        return der.encode(der.SEQUENCE, _OID_SIGNED_DATA + der.encode(0xA0, signed_data))


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
