"""The one signature check: ECDSA (FIPS 186-5; DER per RFC 3279 section 2.2.3 or the raw r||s of
PKCS#11 and JWS, RFC 7518 section 3.4), RSASSA-PKCS1-v1_5 and RSASSA-PSS (RFC 8017 section 8), and
SM2 with SM3 (GB/T 32918.2 section 7, through :mod:`verification.sm2_signatures`: GmSSL), over data
or over its hash (``prehashed``); and the signature of a CMS SignerInfo (RFC 5652 section 5.6,
GB/T 35275-2017 for SM2). Everything that goes wrong is
:class:`cryptography.exceptions.InvalidSignature`, so a caller has one exception to handle."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from asn1crypto import core
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

from ca.sm2 import EC_PUBLIC_KEY_OID, SM2_WITH_SM3_OID, Sm2PublicKey, sm3
from verification.sm2_signatures import is_sm2_signed, sm2_issued_by, sm2_public_key, verify_sm2

#: the signatureAlgorithm values of an SM2 SignerInfo, as OID content octets (X.690 section 8.19):
#: SM2-with-SM3 (GM/T 0006), sm2-1 (the SM2 signature, 1.2.156.10197.1.301.1, as GB/T 35275-2017
#: and GM/T 0010 name it) and id-ecPublicKey (RFC 5753 section 2.1.1's older form, the key's algorithm)
SM2_SIGNER_INFO_ALGORITHMS = frozenset(core.ObjectIdentifier(oid).contents
                                       for oid in (SM2_WITH_SM3_OID, "1.2.156.10197.1.301.1", EC_PUBLIC_KEY_OID))


def digest(algorithm: hashes.HashAlgorithm, data: bytes) -> bytes:
    """``data`` hashed with ``algorithm``: SM3 (GB/T 32905) by GmSSL, the SHA-2 family by hashlib."""
    return sm3(data) if isinstance(algorithm, hashes.SM3) else hashlib.new(algorithm.name, data).digest()


def raw_to_der(signature: bytes) -> bytes:
    """ECDSA or SM2 r||s (each half the curve's size) as the DER ``SEQUENCE { r, s }`` (RFC 3279
    section 2.2.3; GB/T 35276-2017 section 7)."""
    if not signature or len(signature) % 2:
        raise InvalidSignature("an r||s signature has two halves of equal size")
    half = len(signature) // 2
    return encode_dss_signature(int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big"))


def public_key_of(certificate: x509.Certificate) -> Any:
    """The certificate's subject public key: a :class:`ca.sm2.Sm2PublicKey` for an SM2 key (which
    cryptography cannot load), else cryptography's key. InvalidSignature when neither reads it."""
    key = sm2_public_key(certificate)
    if key is not None:
        return key
    try:
        return certificate.public_key()
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise InvalidSignature(f"the certificate's key cannot be read: {type(exc).__name__}") from None


def _verify_sm2(public_key: Sm2PublicKey, signature: bytes, data: bytes, algorithm: hashes.HashAlgorithm,
                prehashed: bool, raw: bool | None) -> None:
    """SM2 with SM3 (GB/T 32918.2 section 7.1): over ``data`` with Z of a Tessera signer identity
    (:data:`verification.sm2_signatures.SIGNER_IDS`), or, ``prehashed``, over the given
    e = SM3(Z || M) (the signer hashed Z and the message)."""
    if not isinstance(algorithm, hashes.SM3):
        raise InvalidSignature("an SM2 signature is over SM3")
    if raw or (raw is None and len(signature) == 64 and signature[:1] != b"\x30"):
        signature = raw_to_der(signature)
    good = public_key.verify_digest(data, signature) if prehashed else verify_sm2(public_key, data, signature)
    if not good:
        raise InvalidSignature("the SM2 signature does not verify")


def verify_signature(public_key: Any, signature: bytes, data: bytes, algorithm: hashes.HashAlgorithm | None, *,
                     prehashed: bool = False, pss: bool = False, raw_ecdsa: bool | None = False) -> None:
    """Check ``signature`` over ``data`` (or over the digest ``data`` when ``prehashed``) with
    ``public_key``; ``raw_ecdsa`` True takes r||s, None accepts either form (DER starts with 0x30
    and r||s has exactly twice the curve's size). Raises InvalidSignature on any failure."""
    if algorithm is None:
        raise InvalidSignature("no hash algorithm")
    if isinstance(public_key, Sm2PublicKey):
        _verify_sm2(public_key, signature, data, algorithm, prehashed, raw_ecdsa)
        return
    if isinstance(algorithm, hashes.SM3):
        raise InvalidSignature("SM3 is the hash of SM2 signatures only")
    chosen: Any = Prehashed(algorithm) if prehashed else algorithm
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            size = (public_key.curve.key_size + 7) // 8
            if raw_ecdsa or (raw_ecdsa is None and len(signature) == 2 * size and signature[:1] != b"\x30"):
                signature = raw_to_der(signature)
            public_key.verify(signature, data, ec.ECDSA(chosen))
        elif isinstance(public_key, rsa.RSAPublicKey):
            scheme: padding.AsymmetricPadding = padding.PKCS1v15()
            if pss:
                scheme = padding.PSS(mgf=padding.MGF1(algorithm), salt_length=algorithm.digest_size)
            public_key.verify(signature, data, scheme, chosen)
        else:
            raise InvalidSignature("the key is neither EC, RSA nor SM2")
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise InvalidSignature(f"the signature cannot be checked: {type(exc).__name__}") from None


def verify_signer_info(public_key: Any, signature_algorithm: bytes, signature: bytes, signed_attributes: bytes,
                       algorithm: hashes.HashAlgorithm) -> None:
    """Check a SignerInfo's ``signature`` over its DER SET OF ``signed_attributes`` (RFC 5652
    section 5.4) with the signer certificate's ``public_key`` and the SignerInfo's digest
    ``algorithm``. For an SM2 key (GB/T 35275-2017) the digest must be SM3 and the
    signatureAlgorithm (``signature_algorithm``, its OID's content octets) one of
    :data:`SM2_SIGNER_INFO_ALGORITHMS`; the signature is SM2 with Z of a signer identity (GB/T
    32918.2 section 6.1, :func:`verification.sm2_signatures.verify_sm2`). Raises InvalidSignature."""
    if isinstance(public_key, Sm2PublicKey) and signature_algorithm not in SM2_SIGNER_INFO_ALGORITHMS:
        raise InvalidSignature("the signatureAlgorithm of an SM2 signer is not SM2's")
    verify_signature(public_key, signature, signed_attributes, algorithm)


def verify_signed_by(signer: x509.Certificate, signature: bytes, data: bytes, algorithm: x509.ObjectIdentifier,
                     declared_hash: Callable[[], hashes.HashAlgorithm | None]) -> None:
    """Check the signature of a signed structure (an OCSP response, RFC 6960 section 4.2.1; a CRL)
    whose signatureAlgorithm is ``algorithm`` with ``signer``'s key: SM2-with-SM3 (GM/T 0006) with
    an SM2 key, else the hash ``declared_hash`` reads from the structure with an ECDSA or RSA key
    (an SM2 key signs nothing else). Raises InvalidSignature on any failure."""
    if is_sm2_signed(algorithm) or sm2_public_key(signer) is not None:
        key = sm2_public_key(signer)
        if key is None or not is_sm2_signed(algorithm):
            raise InvalidSignature("SM2-with-SM3 is signed by an SM2 key, and an SM2 key signs nothing else")
        _verify_sm2(key, signature, data, hashes.SM3(), False, False)
        return
    try:
        chosen = declared_hash()
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise InvalidSignature(f"unknown signature algorithm: {type(exc).__name__}") from None
    verify_signature(public_key_of(signer), signature, data, chosen)


def directly_issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether ``certificate`` names ``issuer`` as its issuer and carries its signature (RFC 5280
    section 6.1.3 (a)(1), (a)(4)): SM2-with-SM3 through GmSSL, anything else through cryptography."""
    if is_sm2_signed(certificate.signature_algorithm_oid) or sm2_public_key(issuer) is not None:
        return sm2_issued_by(certificate, issuer)
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True

