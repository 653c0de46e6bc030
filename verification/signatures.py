"""The one EC/RSA signature check: ECDSA (FIPS 186-5; DER per RFC 3279 section 2.2.3 or the raw
r||s of PKCS#11 and JWS, RFC 7518 section 3.4), RSASSA-PKCS1-v1_5 and RSASSA-PSS (RFC 8017 section
8), over data or over its hash (``prehashed``). Everything that goes wrong is
:class:`cryptography.exceptions.InvalidSignature`, so a caller has one exception to handle."""

from __future__ import annotations

from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature


def raw_to_der(signature: bytes) -> bytes:
    """ECDSA r||s (each half the curve's size) as the DER ``Ecdsa-Sig-Value`` (RFC 3279 section 2.2.3)."""
    if not signature or len(signature) % 2:
        raise InvalidSignature("an r||s signature has two halves of equal size")
    half = len(signature) // 2
    return encode_dss_signature(int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big"))


def verify_signature(public_key: Any, signature: bytes, data: bytes, algorithm: hashes.HashAlgorithm | None, *,
                     prehashed: bool = False, pss: bool = False, raw_ecdsa: bool | None = False) -> None:
    """Check ``signature`` over ``data`` (or over the digest ``data`` when ``prehashed``) with
    ``public_key``; ``raw_ecdsa`` True takes r||s, None accepts either form (DER starts with 0x30
    and r||s has exactly twice the curve's size). Raises InvalidSignature on any failure."""
    if algorithm is None:
        raise InvalidSignature("no hash algorithm")
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
            raise InvalidSignature("the key is neither EC nor RSA")
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise InvalidSignature(f"the signature cannot be checked: {type(exc).__name__}") from None
