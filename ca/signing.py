"""Signing X.509 structures with keys cryptography cannot hold (PKCS#11 keys).

pyca/cryptography's builders sign only with their own key objects. We let a builder sign with a
throwaway in-process key of the same algorithm family, so the to-be-signed bytes carry the right
signatureAlgorithm, then have the real key sign those bytes and splice its signature in place of
the placeholder's (Certificate: RFC 5280 section 4.1; CertificateList: section 5.1;
BasicOCSPResponse: RFC 6960 section 4.2.1). Every result is re-parsed by cryptography, and the
tests have openssl check the signatures.
"""

from __future__ import annotations

import datetime
import functools

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from ca import der
from ca.keys import KeyType, SigningKey


@functools.cache
def _placeholder(family: str) -> CertificateIssuerPrivateKeyTypes:
    # Only the algorithm family and hash reach the TBS bytes, never the key itself.
    if family == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _placeholder_for(key: SigningKey) -> CertificateIssuerPrivateKeyTypes:
    return _placeholder("ec" if key.key_type.is_ec else "rsa")


def _signed(draft_der: bytes, tbs: bytes, key: SigningKey, key_type: KeyType) -> bytes:
    """Rebuild ``SEQUENCE { tbs, signatureAlgorithm, BIT STRING signature }`` with a real signature."""
    outer = der.read_tlv(draft_der)
    parts = der.children(draft_der, outer)
    if len(parts) != 3 or draft_der[parts[0].start : parts[0].end] != tbs:
        raise ValueError("unexpected signed-structure layout")
    algorithm = draft_der[parts[1].start : parts[1].end]
    signature = key.sign(tbs, key_type.signature_hash())
    return der.encode(der.SEQUENCE, tbs + algorithm + der.encode(der.BIT_STRING, b"\x00" + signature))


def sign_certificate(builder: x509.CertificateBuilder, key: SigningKey) -> x509.Certificate:
    """Sign a certificate (RFC 5280 section 4.1.1.3) with ``key``."""
    draft = builder.sign(_placeholder_for(key), key.key_type.signature_hash())
    final = _signed(draft.public_bytes(Encoding.DER), draft.tbs_certificate_bytes, key, key.key_type)
    return x509.load_der_x509_certificate(final)


def sign_crl(builder: x509.CertificateRevocationListBuilder, key: SigningKey) -> x509.CertificateRevocationList:
    """Sign a CRL (RFC 5280 section 5.1.1.3) with ``key``."""
    draft = builder.sign(_placeholder_for(key), key.key_type.signature_hash())
    final = _signed(draft.public_bytes(Encoding.DER), draft.tbs_certlist_bytes, key, key.key_type)
    return x509.load_der_x509_crl(final)


@functools.cache
def _placeholder_responder(family: str) -> x509.Certificate:
    key = _placeholder(family)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "placeholder")])
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


def _key_hash(certificate: x509.Certificate) -> bytes:
    """SHA-1 of the subjectPublicKey BIT STRING value: ResponderID byKey (RFC 6960 section 4.2.1)."""
    return x509.SubjectKeyIdentifier.from_public_key(certificate.public_key()).digest  # type: ignore[arg-type]


def sign_ocsp_response(builder: ocsp.OCSPResponseBuilder, responder: x509.Certificate, key: SigningKey) -> bytes:
    """Sign a BasicOCSPResponse (RFC 6960 section 4.2.1) as ``responder`` with ``key``.

    ``builder`` carries the single response and extensions; this sets ResponderID (byKey) and
    includes the responder's certificate. cryptography insists that the responder certificate
    matches the signing key, so the draft names a placeholder responder whose 20-byte key hash
    is then replaced by the real one before the real key signs. Returns OCSPResponse DER.
    """
    family = "ec" if key.key_type.is_ec else "rsa"
    draft = (
        builder.responder_id(ocsp.OCSPResponderEncoding.HASH, _placeholder_responder(family))
        .certificates([responder])
        .sign(_placeholder(family), key.key_type.signature_hash())
    )
    data = draft.public_bytes(Encoding.DER)
    # OCSPResponse ::= SEQUENCE { responseStatus, [0] EXPLICIT ResponseBytes }
    outer = der.read_tlv(data)
    status, explicit = der.children(data, outer)
    response_bytes = der.children(data, explicit)[0]
    oid, octets = der.children(data, response_bytes)
    basic = der.read_tlv(data, octets.content_start)
    fields = der.children(data, basic)  # tbsResponseData, signatureAlgorithm, signature, [0] certs
    tbs = data[fields[0].start : fields[0].end]
    if tbs != draft.tbs_response_bytes:
        raise ValueError("unexpected OCSP response layout")
    # ResponderID byKey is [2] EXPLICIT KeyHash (OCTET STRING of 20 bytes)
    placeholder_id = b"\xa2\x16\x04\x14" + _key_hash(_placeholder_responder(family))
    if tbs.count(placeholder_id) != 1:
        raise ValueError("placeholder responder id not found exactly once")
    tbs = tbs.replace(placeholder_id, b"\xa2\x16\x04\x14" + _key_hash(responder))
    signature = key.sign(tbs, key.key_type.signature_hash())
    new_basic = der.encode(
        der.SEQUENCE,
        tbs
        + data[fields[1].start : fields[1].end]
        + der.encode(der.BIT_STRING, b"\x00" + signature)
        + b"".join(data[f.start : f.end] for f in fields[3:]),
    )
    new_rb = der.encode(der.SEQUENCE, data[oid.start : oid.end] + der.encode(der.OCTET_STRING, new_basic))
    return der.encode(der.SEQUENCE, data[status.start : status.end] + der.encode(explicit.tag, new_rb))
