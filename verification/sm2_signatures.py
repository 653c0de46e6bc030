"""SM2-with-SM3 signatures of certificates and CRLs (GB/T 32918.2, GB/T 20518-2018), checked through
:mod:`ca.sm2` (GmSSL): cryptography cannot load a key on the SM2 curve (1.2.156.10197.1.301), so an
SM2 certificate's key is read from its SubjectPublicKeyInfo with asn1crypto, never with
``public_key()``."""

from __future__ import annotations

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ca.sm2 import DEFAULT_SIGNER_ID, SM2_WITH_SM3_OID, Sm2Error, Sm2PublicKey

#: the signer identities a Tessera SM2 CA signs with (docs/sm2.md, ``TESSERA_SM2_SIGNER_ID``): the
#: default of GB/T 35276-2017 section 10, or the empty one OpenSSL 3.0 verifies with
SIGNER_IDS = (DEFAULT_SIGNER_ID, b"")

#: certificate DER -> its SM2 key, or None when it has none (CAs are few)
_KEYS: dict[bytes, Sm2PublicKey | None] = {}


def is_sm2_signed(algorithm: x509.ObjectIdentifier) -> bool:
    """Whether a signatureAlgorithm is SM2-with-SM3 (GM/T 0006 section 4)."""
    return algorithm.dotted_string == SM2_WITH_SM3_OID


def sm2_public_key(certificate: x509.Certificate) -> Sm2PublicKey | None:
    """The certificate's SM2 public key (id-ecPublicKey on sm2p256v1, GB/T 35276 section 6), or None."""
    der = certificate.public_bytes(Encoding.DER)
    if der not in _KEYS:
        try:
            spki = asn1_x509.Certificate.load(der)["tbs_certificate"]["subject_public_key_info"].dump()
            key: Sm2PublicKey | None = Sm2PublicKey.from_spki(spki)
        except (Sm2Error, ValueError, TypeError, KeyError):
            key = None
        if len(_KEYS) > 256:
            _KEYS.clear()
        _KEYS[der] = key
    return _KEYS[der]


def verify_sm2(key: Sm2PublicKey, data: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is ``key``'s SM2 signature over ``data`` (e = SM3(Z || M), GB/T 32918.2
    section 7) with Z of one of the :data:`SIGNER_IDS`."""
    return any(key.verify(data, signature, signer_id) for signer_id in SIGNER_IDS)


def sm2_issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether ``certificate`` names ``issuer``'s subject as its issuer and carries ``issuer``'s
    SM2-with-SM3 signature, the same algorithm in its signatureAlgorithm and TBS signature fields
    (RFC 5280 section 4.1.1.2 and 6.1.3 (a)(1), (a)(4))."""
    key = sm2_public_key(issuer)
    if key is None or not is_sm2_signed(certificate.signature_algorithm_oid) or certificate.issuer != issuer.subject:
        return False
    try:
        loaded = asn1_x509.Certificate.load(certificate.public_bytes(Encoding.DER))
        same = loaded["signature_algorithm"].dump() == loaded["tbs_certificate"]["signature"].dump()
    except (ValueError, TypeError, KeyError):
        return False
    return same and verify_sm2(key, certificate.tbs_certificate_bytes, certificate.signature)
