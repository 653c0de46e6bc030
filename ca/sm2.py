"""The SM2/SM3 primitives of the Chinese commercial cryptography suite, through GmSSL (gmssl-pyx).

SM2 signatures (GB/T 32918.2-2016) over SM3 (GB/T 32905-2016), with the signer identity's hash Z
(GB/T 32918.2 section 5.5; GB/T 35276-2017 section 10: default identity ``1234567812345678``)
computed by GmSSL; keys and signatures encoded as GB/T 35276 and GB/T 20518-2018 write them:
public keys as id-ecPublicKey on curve sm2p256v1, signatures as DER ``SEQUENCE { r, s }``. No
curve or hash arithmetic is done here: GmSSL does it all.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import gmssl_pyx
from asn1crypto import keys as asn1_keys

#: sm2p256v1, the SM2 curve of GB/T 32918.5-2017 (GM/T 0006-2012 section 2)
SM2_CURVE_OID = "1.2.156.10197.1.301"
#: SM2-with-SM3, the signature algorithm of GB/T 20518 certificates, CRLs and OCSP (GM/T 0006 section 4)
SM2_WITH_SM3_OID = "1.2.156.10197.1.501"
#: SM3 as a digest algorithm (GM/T 0006 section 3)
SM3_OID = "1.2.156.10197.1.401"
#: id-ecPublicKey (RFC 5480 section 2.1.1), the key algorithm GB/T 35276 section 6 uses for SM2 keys
EC_PUBLIC_KEY_OID = "1.2.840.10045.2.1"
#: the default signer identity of GB/T 35276-2017 section 10 (GmSSL's default; OpenSSL 3.0 must be told it)
DEFAULT_SIGNER_ID = gmssl_pyx.SM2_DEFAULT_SIGNER_ID

asn1_keys.NamedCurve.register("sm2p256v1", SM2_CURVE_OID, 32)

#: the curve's a, b and base point G (GB/T 32918.5-2017 section 3): the inputs of Z besides the key
_CURVE_A = bytes.fromhex("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC")
_CURVE_B = bytes.fromhex("28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93")
_CURVE_G = bytes.fromhex("32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7"
                         "BC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0")

#: AlgorithmIdentifier { SM2-with-SM3 } with parameters absent, as OpenSSL writes it
SM2_WITH_SM3_ALGORITHM_DER = bytes.fromhex("300a06082a811ccf55018375")


class Sm2Error(ValueError):
    """An SM2 key, point or signature that GmSSL refuses."""


def sm3(data: bytes) -> bytes:
    """SM3 (GB/T 32905-2016) of ``data``: 32 bytes."""
    return gmssl_pyx.sm3_hash(data)


@dataclass(frozen=True)
class Sm2PublicKey:
    """An SM2 public key: the point (x, y) as 64 bytes (GB/T 32918.1 section 4.2.9, without 04)."""

    point: bytes

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "point", gmssl_pyx.normalize_sm2_public_key(self.point))
        except gmssl_pyx.InvalidValueError:
            raise Sm2Error("not a point of the SM2 curve") from None

    @classmethod
    def from_spki(cls, der: bytes) -> "Sm2PublicKey":
        """Read a SubjectPublicKeyInfo of id-ecPublicKey on sm2p256v1 (GB/T 35276 section 6)."""
        try:
            info = asn1_keys.PublicKeyInfo.load(der)
            algorithm = info["algorithm"]
            if (algorithm["algorithm"].dotted != EC_PUBLIC_KEY_OID
                    or algorithm["parameters"].chosen.dotted != SM2_CURVE_OID):
                raise Sm2Error("not an SM2 public key (id-ecPublicKey on sm2p256v1)")
            point = info["public_key"].contents[1:]  # BIT STRING value: 04 || x || y
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise Sm2Error(f"not an SM2 SubjectPublicKeyInfo: {exc}") from None
        return cls(point)

    @property
    def uncompressed(self) -> bytes:
        """04 || x || y: the ECPoint of the subjectPublicKey BIT STRING (RFC 5480 section 2.2)."""
        return b"\x04" + self.point

    def spki_der(self) -> bytes:
        """SubjectPublicKeyInfo: id-ecPublicKey with namedCurve sm2p256v1 (GB/T 35276 section 6)."""
        return asn1_keys.PublicKeyInfo({
            "algorithm": {"algorithm": "ec", "parameters": ("named", "sm2p256v1")},
            "public_key": self.uncompressed,
        }).dump()

    def key_identifier(self) -> bytes:
        """A key identifier: the leftmost 160 bits of SM3 over the subjectPublicKey BIT STRING value
        (RFC 7093 section 2 method 1 with SM3, as GB/T 20518 lets the key identifier use SM3)."""
        return sm3(self.uncompressed)[:20]

    def sha1_key_hash(self) -> bytes:
        """SHA-1 of the subjectPublicKey BIT STRING value: an OCSP CertID's issuerKeyHash and a
        ResponderID byKey (RFC 6960 section 4.1.1 and 4.2.1), which fix the hash themselves."""
        return hashlib.sha1(self.uncompressed).digest()  # noqa: S324  (fixed by RFC 6960)

    def z(self, signer_id: bytes = DEFAULT_SIGNER_ID) -> bytes:
        """Z = SM3(ENTL || ID || a || b || xG || yG || xA || yA) (GB/T 32918.2 section 5.5): hashing
        only, so that an empty identity (ENTL 0, which GmSSL's API cannot express) is possible."""
        if len(signer_id) >= 8192:
            raise Sm2Error("a signer identity has fewer than 8192 bytes")
        return sm3((len(signer_id) * 8).to_bytes(2, "big") + signer_id + _CURVE_A + _CURVE_B + _CURVE_G + self.point)

    def verify(self, data: bytes, signature: bytes, signer_id: bytes = DEFAULT_SIGNER_ID) -> bool:
        """Whether ``signature`` (DER r, s) is the SM2 signature of ``data`` with Z of ``signer_id``
        (GB/T 32918.2 section 7; e = SM3(Z || M))."""
        try:
            return bool(gmssl_pyx.sm2_verify_sm3_digest(self.point, sm3(self.z(signer_id) + data), signature))
        except gmssl_pyx.GmsslInnerError:
            return False

    def verify_digest(self, digest: bytes, signature: bytes) -> bool:
        """Whether ``signature`` (DER r, s) is the SM2 signature of the given 32-byte e = SM3(Z || M)
        (GB/T 32918.2 section 7.1 from step B3): for a caller that hashed Z and the message itself."""
        try:
            return len(digest) == 32 and bool(gmssl_pyx.sm2_verify_sm3_digest(self.point, digest, signature))
        except gmssl_pyx.GmsslInnerError:
            return False


def sign(private_key: bytes, public_key: Sm2PublicKey, data: bytes, signer_id: bytes = DEFAULT_SIGNER_ID) -> bytes:
    """The SM2 signature (DER r, s) of ``data`` with Z of ``signer_id`` (GB/T 32918.2 section 6):
    GmSSL signs e = SM3(Z || M), Z hashed by :meth:`Sm2PublicKey.z` so the empty identity works too."""
    return sign_digest(private_key, sm3(public_key.z(signer_id) + data))


def sign_digest(private_key: bytes, digest: bytes) -> bytes:
    """The SM2 signature (DER r, s) of a given 32-byte e (GB/T 32918.2 section 6.1, steps A3 on),
    with no Z hashed in: as OpenSSL 3.0's PKCS#7 code signs and verifies SM2 (EVP_VerifyFinal)."""
    try:
        return gmssl_pyx.sm2_sign_sm3_digest(private_key, digest)
    except gmssl_pyx.GmsslInnerError as exc:
        raise Sm2Error(f"GmSSL cannot sign: {exc}") from None


def generate() -> tuple[bytes, Sm2PublicKey]:
    """A fresh SM2 key pair from GmSSL's random generator: (32-byte private key, public key)."""
    public, private = gmssl_pyx.sm2_key_generate()
    return private, Sm2PublicKey(public)
