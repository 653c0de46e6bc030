"""CA signing keys behind one interface, and the key types the CA knows.

Three backends implement :class:`SigningKey`: :mod:`ca.pkcs11_keys` (keys generated on a PKCS#11
token, sensitive and never extractable: the default), :class:`FileKey` (an encrypted PKCS#8
file, e.g. for an offline root) and :mod:`ca.sm2_keys` (SM2 keys in a software keystore sealed
with SM4-GCM, as long as no SM2 hardware is configured). A key reference string says which
backend holds a key: ``pkcs11:<label>``, ``file:<path>`` or ``sm2-soft:<path>``.
"""

from __future__ import annotations

import enum
import os
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)

from ca.errors import KeyPolicyViolation, KeyUnavailable
from ca.sm2 import Sm2PublicKey

#: a public key the CA certifies or signs with: cryptography's kinds, or SM2 (which it cannot hold)
PublicKey = CertificatePublicKeyTypes | Sm2PublicKey


class KeyType(enum.Enum):
    """Key algorithms the CA issues for and signs with."""

    EC_P256 = "ec-p256"
    EC_P384 = "ec-p384"
    RSA_2048 = "rsa-2048"
    RSA_3072 = "rsa-3072"
    RSA_4096 = "rsa-4096"
    #: SM2 on sm2p256v1 (GB/T 32918), signing SM2-with-SM3: the suite of ca.sm2_certificates
    SM2 = "sm2"

    @property
    def is_ec(self) -> bool:
        """ECDSA on a NIST curve (SM2 is not: it signs differently and is not ECDSA)."""
        return self.value.startswith("ec-")

    @property
    def rsa_bits(self) -> int:
        return int(self.value.split("-")[1]) if self.value.startswith("rsa-") else 0

    @property
    def curve(self) -> ec.EllipticCurve:
        return {KeyType.EC_P256: ec.SECP256R1(), KeyType.EC_P384: ec.SECP384R1()}[self]

    def signature_hash(self) -> hashes.HashAlgorithm:
        """Hash paired with this key when the CA signs (SM3 for SM2, SHA-384 for P-384, else SHA-256)."""
        if self is KeyType.SM2:
            return hashes.SM3()
        return hashes.SHA384() if self is KeyType.EC_P384 else hashes.SHA256()

    def generate_in_process(self) -> CertificateIssuerPrivateKeyTypes:
        """A private key in process memory (only for file keys and placeholder signatures)."""
        if self is KeyType.SM2:
            raise KeyPolicyViolation("SM2 keys live in the SM2 keystore (ca.sm2_keys), not in cryptography")
        if self.is_ec:
            return ec.generate_private_key(self.curve)
        return rsa.generate_private_key(public_exponent=65537, key_size=self.rsa_bits)

    @classmethod
    def parse(cls, text: str) -> "KeyType":
        try:
            return cls(text.lower())
        except ValueError:
            allowed = ", ".join(k.value for k in cls)
            raise KeyPolicyViolation(f"unknown key type {text!r}; choose one of {allowed}") from None


def key_type_of(public_key: object) -> KeyType:
    """Classify a public key, refusing anything the CA does not accept.

    RSA keys must use the exponent 65537 and one of the listed sizes; EC keys must be on
    P-256 or P-384 (RFC 5480 named curves), or be SM2 keys (GB/T 32918).
    """
    if isinstance(public_key, Sm2PublicKey):
        return KeyType.SM2
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        name = public_key.curve.name
        if name == "secp256r1":
            return KeyType.EC_P256
        if name == "secp384r1":
            return KeyType.EC_P384
        raise KeyPolicyViolation(f"elliptic curve {name} is not accepted (use P-256 or P-384)")
    if isinstance(public_key, rsa.RSAPublicKey):
        size = public_key.key_size
        if public_key.public_numbers().e != 65537:
            raise KeyPolicyViolation("RSA public exponent must be 65537")
        for kt in (KeyType.RSA_2048, KeyType.RSA_3072, KeyType.RSA_4096):
            if kt.rsa_bits == size:
                return kt
        raise KeyPolicyViolation(f"RSA-{size} is not accepted (use RSA 2048, 3072 or 4096)")
    raise KeyPolicyViolation(f"{type(public_key).__name__} keys are not accepted")


@runtime_checkable
class SigningKey(Protocol):
    """A private key that signs but may never show itself."""

    key_type: KeyType
    reference: str

    def public_key(self) -> PublicKey: ...

    def sign(self, data: bytes, hash_algorithm: hashes.HashAlgorithm) -> bytes:
        """Sign ``data`` (hashed here with ``hash_algorithm``).

        Returns the signature as X.509 carries it: DER ECDSA-Sig-Value (RFC 5480 section 2.2.3),
        RSASSA-PKCS1-v1_5 (RFC 8017 section 8.2) or SM2 (GB/T 35276 section 7: SEQUENCE { r, s },
        with Z of the default identity, hash SM3).
        """
        ...


class FileKey:
    """A key in an encrypted PKCS#8 file (RFC 5958), decrypted into memory only when loaded."""

    def __init__(self, path: Path, passphrase: bytes) -> None:
        try:
            loaded = serialization.load_pem_private_key(path.read_bytes(), password=passphrase)
        except (OSError, ValueError, TypeError) as exc:
            raise KeyUnavailable(f"cannot load key file {path}: {exc}") from None
        if not isinstance(loaded, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
            raise KeyUnavailable(f"key file {path} holds an unsupported key type")
        self._key = loaded
        self.key_type = key_type_of(loaded.public_key())
        self.reference = f"file:{path}"

    @classmethod
    def create(cls, path: Path, key_type: KeyType, passphrase: bytes) -> "FileKey":
        """Generate a key and write it encrypted (PBES2/AES-256) with mode 0600."""
        if len(passphrase) < 12:
            raise KeyPolicyViolation("a key file passphrase needs at least 12 characters")
        key = key_type.generate_in_process()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(passphrase),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "xb", opener=lambda p, f: os.open(p, f, 0o600)) as fh:
            fh.write(pem)
        return cls(path, passphrase)

    def public_key(self) -> CertificatePublicKeyTypes:
        return self._key.public_key()

    def sign(self, data: bytes, hash_algorithm: hashes.HashAlgorithm) -> bytes:
        if isinstance(self._key, ec.EllipticCurvePrivateKey):
            return self._key.sign(data, ec.ECDSA(hash_algorithm))
        return self._key.sign(data, padding.PKCS1v15(), hash_algorithm)
