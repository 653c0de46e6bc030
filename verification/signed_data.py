"""The card reader's opening of a CMS SignedData (RFC 5652 sections 5.1-5.6): a strict DER walk
(:mod:`ca.der`) of a card's records and security object, messageDigest over the content, the
signature over the DER SET OF signed attributes (SM2 with SM3 for an SM2 signer, GB/T 35275-2017).

A hand walk of outside input stays here only because tests/test_signed_record_differential.py
sits beside it: on valid and mutated records it must accept and refuse exactly what asn1crypto's
parse (:mod:`verification.cms`, the audit verifier) accepts and refuses, with the same content and
signer. It is kept for speed (ten times asn1crypto's on the reader's hot path); everything else
opens SignedData through :mod:`verification.cms`. Every function returns a
:class:`~verification.reasons.Check` instead of raising on bad input.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from asn1crypto import core
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes

from ca import der
from ca.sm2 import SM3_OID
from verification.certificates import load_certificate
from verification.reasons import Check
from verification.signatures import digest, public_key_of, verify_signer_info


@dataclass(frozen=True)
class SignedContent:
    """The result of opening a CMS SignedData: content, signer certificate, signing time."""

    content: bytes
    signer: x509.Certificate
    intermediates: tuple[x509.Certificate, ...]
    signing_time: datetime.datetime | None


_OID_SIGNED_DATA = bytes.fromhex("2a864886f70d010702")
_OID_DATA = bytes.fromhex("2a864886f70d010701")
_OID_CONTENT_TYPE = bytes.fromhex("2a864886f70d010903")
_OID_MESSAGE_DIGEST = bytes.fromhex("2a864886f70d010904")
_OID_SIGNING_TIME = bytes.fromhex("2a864886f70d010905")
_DIGESTS = {
    bytes.fromhex("608648016503040201"): hashes.SHA256(),
    bytes.fromhex("608648016503040202"): hashes.SHA384(),
    bytes.fromhex("608648016503040203"): hashes.SHA512(),
    core.ObjectIdentifier(SM3_OID).contents: hashes.SM3(),  # for SM2 signers (GB/T 35275-2017)
}
_CERTIFICATES: dict[bytes, tuple[x509.Certificate, bytes]] = {}
#: the DER of a SignedData's whole certificates field -> its parsed certificates (signers are few)
_CERTIFICATE_SETS: dict[bytes, list[tuple[x509.Certificate, bytes]]] = {}
#: a signer certificate -> its public key
_PUBLIC_KEYS: dict[x509.Certificate, object] = {}


def _public_key(certificate: x509.Certificate) -> object:
    """A signer certificate's public key (an SM2 one too, :func:`verification.signatures.public_key_of`),
    loaded once per process (signers are few)."""
    key = _PUBLIC_KEYS.get(certificate)
    if key is None:
        if len(_PUBLIC_KEYS) > 1000:
            _PUBLIC_KEYS.clear()
        key = _PUBLIC_KEYS[certificate] = public_key_of(certificate)
    return key


def _certificate(raw: bytes) -> tuple[x509.Certificate, bytes]:
    """A parsed certificate (:func:`verification.certificates.load_certificate`: ValueError for
    anything that is not a v1-v3 certificate) and its issuer's DER name, kept per process (signers
    are few)."""
    cached = _CERTIFICATES.get(raw)
    if cached is None:
        if len(_CERTIFICATES) > 1000:
            _CERTIFICATES.clear()
        cert = load_certificate(raw)
        cached = _CERTIFICATES[raw] = (cert, cert.issuer.public_bytes())
    return cached


def _certificate_set(raw: bytes) -> list[tuple[x509.Certificate, bytes]]:
    """The certificates of a SignedData's certificates field (its DER, tag and length included),
    kept per process by those bytes: every record of a department carries the same signer
    certificate and CA."""
    cached = _CERTIFICATE_SETS.get(raw)
    if cached is None:
        if len(_CERTIFICATE_SETS) > 1000:
            _CERTIFICATE_SETS.clear()
        cached = _CERTIFICATE_SETS[raw] = [_certificate(raw[c.start:c.end])
                                           for c in der.children(raw, der.read_tlv(raw))]
    return cached


def utc_time(raw: bytes) -> datetime.datetime:
    """A DER UTCTime ``YYMMDDHHMMSSZ`` (X.690 section 11.8), two-digit years as ``strptime``'s
    ``%y`` reads them (69-99: 19xx)."""
    if len(raw) != 13 or raw[12:] != b"Z" or not raw[:12].isdigit():
        raise ValueError("not a DER UTCTime")
    year = int(raw[0:2])
    return datetime.datetime(year + (1900 if year >= 69 else 2000), int(raw[2:4]), int(raw[4:6]), int(raw[6:8]),
                             int(raw[8:10]), int(raw[10:12]), tzinfo=datetime.timezone.utc)


_INTEGER, _OID, _OCTETS, _SEQUENCE, _SET, _CONTEXT_0, _CONTEXT_1 = 0x02, 0x06, 0x04, 0x30, 0x31, 0xA0, 0xA1


def _shape(*expected: tuple[der.Tlv, int]) -> None:
    """Each element has the tag RFC 5652's ASN.1 gives it (the walk reads by position, so a wrong
    tag would otherwise be read as the field it stands in for)."""
    for element, tag in expected:
        if element[0] != tag:
            raise ValueError(f"tag {element[0]:#x} where {tag:#x} belongs")


def _algorithm(data: bytes, element: der.Tlv) -> der.Tlv:
    """An AlgorithmIdentifier's OID; its parameters absent or NULL, the only forms of the SHA-2
    digests (RFC 5754 section 2), of SM3 and SM2 (GB/T 35275-2017) and of the ECDSA / PKCS#1 v1.5
    signatures accepted here."""
    _shape((element, _SEQUENCE))
    fields = der.children(data, element)
    _shape((fields[0], _OID))
    if len(fields) > 2 or (len(fields) == 2 and data[fields[1][1]:fields[1][3]] != b"\x05\x00"):
        raise ValueError("algorithm parameters other than NULL")
    return fields[0]


def open_signed_data(data: bytes) -> tuple[SignedContent | None, Check]:
    """Parse a ContentInfo/SignedData with encapsulated id-data content and verify its one
    signature (RFC 5652 sections 5.1-5.6): messageDigest over the content, contentType id-data,
    the signature over the DER SET OF signed attributes with the signer's certificate key.

    A strict DER walk (ca.der) rather than asn1crypto: ten times faster, and anything that is not
    the expected shape (every tag, AlgorithmIdentifier parameters absent or NULL) is refused. It
    reads one level at a time, so no nesting can exhaust the stack. Kept honest by a differential
    test against asn1crypto on valid and mutated records
    (tests/test_signed_record_differential.py)."""
    name = "signature"
    try:
        outer = der.read_tlv(data)
        if outer[3] != len(data) or outer[0] != der.SEQUENCE:
            raise ValueError("trailing data")
        oid, explicit = der.children(data, outer)
        _shape((oid, _OID), (explicit, _CONTEXT_0))
        if data[oid[2]:oid[3]] != _OID_SIGNED_DATA:
            return None, Check(name, False, "not-signed-data", "not a CMS SignedData")
        (signed,) = der.children(data, explicit)
        _shape((signed, _SEQUENCE))
        parts = der.children(data, signed)
        optional = parts[3:-1]  # certificates [0], crls [1], each at most once, in that order
        if len(parts) < 4 or [p[0] for p in optional] not in ([], [_CONTEXT_0], [_CONTEXT_1], [_CONTEXT_0, _CONTEXT_1]):
            raise ValueError("not the fields of a SignedData")
        _shape((parts[0], _INTEGER), (parts[1], _SET), (parts[2], _SEQUENCE), (parts[-1], _SET))
        for algorithm in der.children(data, parts[1]):  # digestAlgorithms: SET OF AlgorithmIdentifier
            _algorithm(data, algorithm)
        encap = der.children(data, parts[2])
        _shape((encap[0], _OID))
        if data[encap[0][2]:encap[0][3]] != _OID_DATA or len(encap) != 2:
            return None, Check(name, False, "no-content", "the SignedData encapsulates no id-data content")
        _shape((encap[1], _CONTEXT_0))
        (octets,) = der.children(data, encap[1])
        _shape((octets, _OCTETS))
        content = data[octets[2]:octets[3]]
        certificates: list[tuple[x509.Certificate, bytes]] = []
        signer_infos = parts[-1]
        for part in parts[3:-1]:
            if part[0] == 0xA0:
                certificates = _certificate_set(data[part[1]:part[3]])
        infos = der.children(data, signer_infos)
        if len(infos) != 1:
            return None, Check(name, False, "signer-count", "expected exactly one signer")
        _shape((infos[0], _SEQUENCE))
        fields = der.children(data, infos[0])
        if len(fields) not in (6, 7):
            raise ValueError("not the fields of a SignerInfo")
        _shape((fields[0], _INTEGER), (fields[1], _SEQUENCE), (fields[2], _SEQUENCE), (fields[4], _SEQUENCE),
               (fields[5], _OCTETS), *(((fields[6], _CONTEXT_1),) if len(fields) == 7 else ()))
        sid = der.children(data, fields[1])
        if len(sid) != 2:
            raise ValueError("not an IssuerAndSerialNumber")
        _shape((sid[0], _SEQUENCE), (sid[1], _INTEGER))
        issuer_der = data[sid[0][1]:sid[0][3]]
        serial = int.from_bytes(data[sid[1][2]:sid[1][3]], "big", signed=True)
        signer = next((c for c, issuer in certificates if c.serial_number == serial and issuer == issuer_der), None)
        if signer is None:
            return None, Check(name, False, "signer-missing", "the signer's certificate is not in the SignedData")
        digest_oid = _algorithm(data, fields[2])
        signature_oid = _algorithm(data, fields[4])
        hash_algorithm = _DIGESTS.get(data[digest_oid[2]:digest_oid[3]])
        if hash_algorithm is None:
            return None, Check(name, False, "weak-digest", "the digest algorithm is not accepted")
        attrs = fields[3]
        if attrs[0] != 0xA0:
            return None, Check(name, False, "malformed", "no signed attributes")
        values: dict[bytes, bytes] = {}
        for attribute in der.children(data, attrs):
            _shape((attribute, _SEQUENCE))
            attr_oid, attr_set = der.children(data, attribute)
            _shape((attr_oid, _OID), (attr_set, _SET))
            (value,) = der.children(data, attr_set)
            values[data[attr_oid[2]:attr_oid[3]]] = data[value[2]:value[3]]
        if values.get(_OID_CONTENT_TYPE) != _OID_DATA:
            return None, Check(name, False, "content-type", "contentType attribute is not id-data")
        if values.get(_OID_MESSAGE_DIGEST) != digest(hash_algorithm, content):
            return None, Check(name, False, "digest-mismatch", "the content does not match its signed digest")
        signature_field = fields[5]
        signature = data[signature_field[2]:signature_field[3]]
        # the signature covers the attributes with the SET OF tag, not the [0] IMPLICIT one (section 5.4)
        signed_attributes = b"\x31" + data[attrs[1] + 1:attrs[3]]
        verify_signer_info(_public_key(signer), data[signature_oid[2]:signature_oid[3]], signature, signed_attributes,
                           hash_algorithm)
        signing_time = None
        raw_time = values.get(_OID_SIGNING_TIME)
        if raw_time is not None and len(raw_time) == 13:
            signing_time = utc_time(raw_time)
        intermediates = tuple(c for c, _ in certificates if c is not signer)
        return SignedContent(content, signer, intermediates, signing_time), Check(name, True)
    except InvalidSignature:
        return None, Check(name, False, "bad-signature", "the signature does not verify with the signer's key")
    except (ValueError, TypeError, IndexError) as exc:
        # a key cryptography cannot load is InvalidSignature (public_key_of); the walk itself is
        # flat (ca.der reads one level at a time), so nesting cannot recurse
        return None, Check(name, False, "malformed", f"cannot parse the SignedData: {type(exc).__name__}")
