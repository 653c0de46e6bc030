"""Signing X.509 structures with keys cryptography cannot hold (PKCS#11 keys).

pyca/cryptography's builders sign only with their own key objects. We let a builder sign with a
throwaway in-process key of the same algorithm family, so the to-be-signed bytes carry the right
signatureAlgorithm, then have the real key sign those bytes and splice its signature in place of
the placeholder's (Certificate: RFC 5280 section 4.1; CertificateList: section 5.1;
BasicOCSPResponse: RFC 6960 section 4.2.1). Every result is re-parsed by cryptography, and the
tests have openssl check the signatures.

SM2 keys (GB/T 32918) are beyond cryptography altogether: for an SM2 signer the draft's
signatureAlgorithm becomes SM2-with-SM3 (GM/T 0006; GB/T 20518-2018 section 5.1) and, in a
certificate, the placeholder's SubjectPublicKeyInfo becomes the subject's SM2 key, both set with
asn1crypto on the draft's TBS before the SM2 key signs it.
"""

from __future__ import annotations

import datetime
import functools
import hashlib

from asn1crypto import algos as asn1_algos
from asn1crypto import crl as asn1_crl
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from ca import der
from ca.keys import KeyType, PublicKey, SigningKey
from ca.sm2 import SM2_WITH_SM3_ALGORITHM_DER, Sm2PublicKey


@functools.cache
def _placeholder(family: str) -> CertificateIssuerPrivateKeyTypes:
    # Only the algorithm family and hash reach the TBS bytes, never the key itself.
    if family == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _placeholder_for(key: SigningKey) -> CertificateIssuerPrivateKeyTypes:
    return _placeholder("rsa" if key.key_type.rsa_bits else "ec")


def builder_public_key(public_key: PublicKey) -> CertificatePublicKeyTypes:
    """What a certificate builder is given as the subject's key: the key itself, or for an SM2 key
    a placeholder whose SubjectPublicKeyInfo :func:`sign_certificate` replaces."""
    if isinstance(public_key, Sm2PublicKey):
        return _placeholder("ec").public_key()
    return public_key


def _sm2_tbs(tbs: bytes, spec: type[asn1_x509.TbsCertificate] | type[asn1_crl.TbsCertList],
             subject_key: Sm2PublicKey | None = None) -> bytes:
    """The draft's TBS with signature SM2-with-SM3 (and the subject's SM2 SubjectPublicKeyInfo)."""
    parsed = spec.load(tbs)
    parsed["signature"] = asn1_algos.SignedDigestAlgorithm.load(SM2_WITH_SM3_ALGORITHM_DER)
    if subject_key is not None:
        parsed["subject_public_key_info"] = asn1_keys.PublicKeyInfo.load(subject_key.spki_der())
    return parsed.dump()


def _sm2_signed(tbs: bytes, key: SigningKey) -> bytes:
    """``SEQUENCE { tbs, SM2-with-SM3, BIT STRING signature }`` (GB/T 20518-2018 section 5.1)."""
    signature = key.sign(tbs, KeyType.SM2.signature_hash())
    return der.encode(der.SEQUENCE, tbs + SM2_WITH_SM3_ALGORITHM_DER + der.encode(der.BIT_STRING, b"\x00" + signature))


def _signed(draft_der: bytes, tbs: bytes, key: SigningKey, key_type: KeyType) -> bytes:
    """Rebuild ``SEQUENCE { tbs, signatureAlgorithm, BIT STRING signature }`` with a real signature."""
    outer = der.read_tlv(draft_der)
    parts = der.children(draft_der, outer)
    if len(parts) != 3 or draft_der[parts[0].start : parts[0].end] != tbs:
        raise ValueError("unexpected signed-structure layout")
    algorithm = draft_der[parts[1].start : parts[1].end]
    signature = key.sign(tbs, key_type.signature_hash())
    return der.encode(der.SEQUENCE, tbs + algorithm + der.encode(der.BIT_STRING, b"\x00" + signature))


def sign_certificate(builder: x509.CertificateBuilder, key: SigningKey,
                     subject_key: PublicKey | None = None) -> x509.Certificate:
    """Sign a certificate (RFC 5280 section 4.1.1.3) with ``key``.

    An SM2 CA certifies SM2 keys only: ``subject_key`` is then the subject's
    :class:`ca.sm2.Sm2PublicKey` (the builder holding :func:`builder_public_key`'s placeholder)."""
    if key.key_type is KeyType.SM2:
        if not isinstance(subject_key, Sm2PublicKey):
            raise ValueError("an SM2 CA certifies SM2 keys only")
        draft = builder.sign(_placeholder("ec"), hashes.SHA256())
        tbs = _sm2_tbs(draft.tbs_certificate_bytes, asn1_x509.TbsCertificate, subject_key)
        return x509.load_der_x509_certificate(_sm2_signed(tbs, key))
    if isinstance(subject_key, Sm2PublicKey):
        raise ValueError("SM2 keys are certified by an SM2 CA only")
    draft = builder.sign(_placeholder_for(key), _x509_hash(key))
    final = _signed(draft.public_bytes(Encoding.DER), draft.tbs_certificate_bytes, key, key.key_type)
    return x509.load_der_x509_certificate(final)


def _x509_hash(key: SigningKey) -> hashes.SHA256 | hashes.SHA384:
    """The hash cryptography's builders take for an ECDSA or RSA CA key (SM2 keys never get here)."""
    chosen = key.key_type.signature_hash()
    if not isinstance(chosen, hashes.SHA256 | hashes.SHA384):
        raise ValueError(f"no X.509 signature with {chosen.name} for a {key.key_type.value} key")
    return chosen


def sign_crl(builder: x509.CertificateRevocationListBuilder, key: SigningKey) -> x509.CertificateRevocationList:
    """Sign a CRL (RFC 5280 section 5.1.1.3) with ``key``."""
    if key.key_type is KeyType.SM2:
        draft = builder.sign(_placeholder("ec"), hashes.SHA256())
        return x509.load_der_x509_crl(_sm2_signed(_sm2_tbs(draft.tbs_certlist_bytes, asn1_crl.TbsCertList), key))
    draft = builder.sign(_placeholder_for(key), _x509_hash(key))
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


@functools.lru_cache(maxsize=64)
def _key_hash(certificate: x509.Certificate) -> bytes:
    """SHA-1 of the subjectPublicKey BIT STRING value: ResponderID byKey (RFC 6960 section 4.2.1)."""
    spki = asn1_x509.Certificate.load(certificate.public_bytes(Encoding.DER))["tbs_certificate"]
    return hashlib.sha1(spki["subject_public_key_info"]["public_key"].contents[1:]).digest()  # noqa: S324


def sign_ocsp_response(builder: ocsp.OCSPResponseBuilder, responder: x509.Certificate, key: SigningKey) -> bytes:
    """Sign a BasicOCSPResponse (RFC 6960 section 4.2.1) as ``responder`` with ``key``.

    ``builder`` carries the single response and extensions; this sets ResponderID (byKey) and
    includes the responder's certificate. cryptography insists that the responder certificate
    matches the signing key, so the draft names a placeholder responder whose 20-byte key hash
    is then replaced by the real one before the real key signs. Returns OCSPResponse DER.
    """
    family = "rsa" if key.key_type.rsa_bits else "ec"
    sm2 = key.key_type is KeyType.SM2  # the draft is signed ECDSA; its signatureAlgorithm is replaced below
    draft = (
        builder.responder_id(ocsp.OCSPResponderEncoding.HASH, _placeholder_responder(family))
        .certificates([responder])
        .sign(_placeholder(family), hashes.SHA256() if sm2 else key.key_type.signature_hash())
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
        + (SM2_WITH_SM3_ALGORITHM_DER if sm2 else data[fields[1].start : fields[1].end])
        + der.encode(der.BIT_STRING, b"\x00" + signature)
        + b"".join(data[f.start : f.end] for f in fields[3:]),
    )
    new_rb = der.encode(der.SEQUENCE, data[oid.start : oid.end] + der.encode(der.OCTET_STRING, new_basic))
    return der.encode(der.SEQUENCE, data[status.start : status.end] + der.encode(explicit.tag, new_rb))
