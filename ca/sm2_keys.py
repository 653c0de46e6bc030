"""SM2 signing keys in a software keystore, sealed at rest with SM4-GCM.

The SoftHSM2 of the embedded deployment has no SM2 mechanism, so an SM2 CA key lives in a file:
its 32-byte private key encrypted with SM4 (GB/T 32907-2016) in GCM mode under a key derived with
PBKDF2 (RFC 8018 section 5.2) over HMAC-SM3 from the deployment's key passphrase, the file's
format and public key bound to it as associated data. While the CA signs, the private key is in
the process's memory, as with :class:`ca.keys.FileKey`: this is weaker than a key that never
leaves a device. The production answer is SM2 in hardware: an HSM with a vendor PKCS#11 SM2
mechanism, or a GM/T 0018-2012 SDF device; such a backend implements the same
:class:`ca.keys.SigningKey` protocol (``public_key()`` an :class:`ca.sm2.Sm2PublicKey`,
``sign(data, SM3)`` the DER signature with Z of the key's signer identity) under its own key
reference scheme in :class:`ca.keyring.Keyring`, and nothing else changes.

Each file records the signer identity (GB/T 32918.2 section 5.5) the key was created to sign with,
authenticated with the ciphertext: the standard's ``1234567812345678`` or the empty identity that
OpenSSL 3.0 assumes (docs/sm2.md). A key signs with its recorded identity for life, so one SM2
hierarchy never mixes identities. Files written before the identity was recorded sign with the
standard's.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Protocol, runtime_checkable

import gmssl_pyx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from ca import sm2
from ca.errors import KeyPolicyViolation, KeyUnavailable
from ca.keys import KeyType
from ca.sm2 import Sm2PublicKey

#: the keystore file format (its name is authenticated with the ciphertext)
FORMAT = "tessera-sm2-key-v1"
#: PBKDF2 iterations for new files (each file records its own)
ITERATIONS = 200_000
#: the scheme of SM2 key references: ``sm2-soft:<path>``
SCHEME = "sm2-soft"


def _sealing_key(passphrase: bytes, salt: bytes, iterations: int) -> bytes:
    """The SM4 key (16 bytes): PBKDF2 with HMAC-SM3 (RFC 8018 section 5.2)."""
    return PBKDF2HMAC(hashes.SM3(), gmssl_pyx.SM4_KEY_SIZE, salt, iterations).derive(passphrase)


def _aad(public_key: Sm2PublicKey, signer_id: bytes | None) -> bytes:
    """The associated data: format and public key, and the signer identity when the file records it."""
    recorded = b"" if signer_id is None else b"signer-id:" + signer_id
    return FORMAT.encode() + public_key.point + recorded


@runtime_checkable
class Sm2SigningKey(Protocol):
    """What an SM2 key backend offers beyond :class:`ca.keys.SigningKey` (an SDF device's
    InternalSign_ECC, GM/T 0018-2012 section 6.4, signs a given digest too)."""

    #: the signer identity hashed into Z by ``sign`` (GB/T 32918.2 section 5.5)
    signer_id: bytes

    def sign_digest(self, digest: bytes) -> bytes:
        """The SM2 signature of the given SM3 digest e, no Z hashed in."""
        ...


class Sm2SoftKey:
    """An SM2 key from a sealed keystore file: a :class:`ca.keys.SigningKey` signing SM2-with-SM3."""

    key_type = KeyType.SM2

    def __init__(self, path: Path, passphrase: bytes) -> None:
        try:
            sealed = json.loads(path.read_text())
            if sealed.get("format") != FORMAT:
                raise ValueError(f"not a {FORMAT} file")
            public = Sm2PublicKey(base64.b64decode(sealed["public_key"]))
            recorded = base64.b64decode(sealed["signer_id"]) if "signer_id" in sealed else None
            field = {name: base64.b64decode(sealed[name]) for name in ("salt", "iv", "ciphertext", "tag")}
            key = _sealing_key(passphrase, field["salt"], int(sealed["iterations"]))
            private = gmssl_pyx.sm4_gcm_decrypt(key, field["iv"], _aad(public, recorded), field["ciphertext"],
                                                field["tag"])
        except gmssl_pyx.InvalidValueError:
            raise KeyUnavailable(f"cannot unseal SM2 key {path}: wrong passphrase or altered file") from None
        except (OSError, ValueError, KeyError, TypeError, sm2.Sm2Error) as exc:
            raise KeyUnavailable(f"cannot load SM2 key file {path}: {exc}") from None
        self._private = private
        self._public = public
        #: the signer identity hashed into Z of every signature of this key (recorded in the file)
        self.signer_id = sm2.DEFAULT_SIGNER_ID if recorded is None else recorded
        self.reference = f"{SCHEME}:{path}"

    @classmethod
    def create(cls, path: Path, passphrase: bytes, signer_id: bytes = sm2.DEFAULT_SIGNER_ID) -> "Sm2SoftKey":
        """Generate an SM2 key with GmSSL and write it sealed with the signer identity it will sign
        with, mode 0600, never over an existing file."""
        if len(passphrase) < 12:
            raise KeyPolicyViolation("a key file passphrase needs at least 12 characters")
        if len(signer_id) >= 8192:
            raise KeyPolicyViolation("an SM2 signer identity has fewer than 8192 bytes (GB/T 32918.2 section 5.5)")
        private, public = sm2.generate()
        salt, iv = os.urandom(16), os.urandom(12)
        ciphertext, tag = gmssl_pyx.sm4_gcm_encrypt(_sealing_key(passphrase, salt, ITERATIONS), iv,
                                                    _aad(public, signer_id), private)
        sealed = {"format": FORMAT, "algorithm": "SM4-GCM", "kdf": "PBKDF2-HMAC-SM3", "iterations": ITERATIONS,
                  "public_key": public.point, "signer_id": signer_id, "salt": salt, "iv": iv,
                  "ciphertext": ciphertext, "tag": tag}
        text = json.dumps({k: base64.b64encode(v).decode() if isinstance(v, bytes) else v for k, v in sealed.items()})
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "x", opener=lambda p, f: os.open(p, f, 0o600)) as fh:
            fh.write(text + "\n")
        return cls(path, passphrase)

    def public_key(self) -> Sm2PublicKey:
        return self._public

    def sign(self, data: bytes, hash_algorithm: hashes.HashAlgorithm) -> bytes:
        """SM2 signature of ``data`` with Z of the key's signer identity (GB/T 32918.2 section 6.1)."""
        if not isinstance(hash_algorithm, hashes.SM3):
            raise KeyPolicyViolation(f"an SM2 key signs with SM3, not {hash_algorithm.name}")
        return sm2.sign(self._private, self._public, data, self.signer_id)

    def sign_digest(self, digest: bytes) -> bytes:
        """SM2 signature of the given e, without Z (GB/T 32918.2 section 6.1 from step A3): only
        for the OpenSSL-compatible time-stamps of the empty identity (ca.cms)."""
        return sm2.sign_digest(self._private, digest)
