"""Resolve key references (``pkcs11:<label>``, ``file:<path>``, ``sm2-soft:<path>``) to signing keys.

SM2 keys sign with the signer identity recorded when they were made (ca.sm2_keys); the keyring is
given the deployment's ``TESSERA_SM2_SIGNER_ID`` and refuses an SM2 key recorded with another, so a
changed setting never goes unnoticed and one hierarchy never mixes identities (docs/sm2.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ca.errors import KeyUnavailable
from ca.keys import FileKey, KeyType, SigningKey
from ca.pkcs11_keys import Pkcs11Key, Pkcs11Token, TokenConfig
from ca.sm2 import DEFAULT_SIGNER_ID
from ca.sm2_keys import SCHEME as SM2_SOFT, Sm2SoftKey


class Keyring:
    """Keeps one token session per process and loaded keys by reference."""

    def __init__(
        self,
        token: TokenConfig | None,
        file_passphrase: Callable[[Path], bytes] | None = None,
        sm2_signer_id: bytes = DEFAULT_SIGNER_ID,
    ) -> None:
        """``sm2_signer_id``: the identity new SM2 keys sign with (GB/T 32918.2 section 5.5; the
        standard's by default, empty for relying parties that verify with OpenSSL 3.0's default)."""
        self._token = Pkcs11Token(token) if token is not None else None
        self._file_passphrase = file_passphrase
        self.sm2_signer_id = sm2_signer_id
        self._cache: dict[str, SigningKey] = {}

    @property
    def token(self) -> Pkcs11Token:
        if self._token is None:
            raise KeyUnavailable("no PKCS#11 token is configured")
        return self._token

    def get(self, reference: str) -> SigningKey:
        key = self._cache.get(reference)
        if key is not None:
            return key
        scheme, _, rest = reference.partition(":")
        if scheme == "pkcs11":
            key = Pkcs11Key(self.token, rest)
        elif scheme in ("file", SM2_SOFT):
            if self._file_passphrase is None:
                raise KeyUnavailable(f"key {reference} is a file key and no passphrase source is set")
            path = Path(rest)
            if scheme == "file":
                key = FileKey(path, self._file_passphrase(path))
            else:
                key = self._checked(Sm2SoftKey(path, self._file_passphrase(path)))
        else:
            raise KeyUnavailable(f"unknown key reference {reference!r}")
        self._cache[reference] = key
        return key

    def generate(self, backend: str, name: str, key_type: KeyType, file_dir: Path | None = None) -> SigningKey:
        """Create a new key named ``name`` in ``backend`` (``pkcs11`` or ``file``).

        SM2 keys go to the sealed SM2 keystore in ``file_dir`` whatever the backend: no PKCS#11
        token configured here offers SM2 (ca.sm2_keys says what an SM2 device backend would be)."""
        if key_type is KeyType.SM2:
            if file_dir is None or self._file_passphrase is None:
                raise KeyUnavailable("SM2 keys need a keystore folder and a passphrase")
            path = file_dir / f"{name}.sm2key.json"
            key: SigningKey = Sm2SoftKey.create(path, self._file_passphrase(path), self.sm2_signer_id)
        elif backend == "pkcs11":
            key = self.token.generate_key_pair(name, key_type)
        elif backend == "file":
            if file_dir is None or self._file_passphrase is None:
                raise KeyUnavailable("file keys need a folder and a passphrase")
            path = file_dir / f"{name}.key.pem"
            key = FileKey.create(path, key_type, self._file_passphrase(path))
        else:
            raise KeyUnavailable(f"unknown key backend {backend!r} (use pkcs11 or file)")
        self._cache[key.reference] = key
        return key

    def _checked(self, key: Sm2SoftKey) -> Sm2SoftKey:
        """``key`` if it signs with the configured identity; else refuse, saying why."""
        if key.signer_id != self.sm2_signer_id:
            raise KeyUnavailable(
                f"SM2 key {key.reference} signs with the signer identity {key.signer_id.decode(errors='replace')!r} "
                f"it was created with, but TESSERA_SM2_SIGNER_ID is {self.sm2_signer_id.decode(errors='replace')!r}: "
                "an SM2 hierarchy keeps one identity for life (relying parties verify its certificates, CRLs and "
                "OCSP responses with it); restore the setting, or create a new SM2 hierarchy in a new home")
        return key

    def close(self) -> None:
        if self._token is not None:
            self._token.close()
        self._cache.clear()
