"""Sealing small secrets at rest (TOTP secrets, OIDC signing keys) with AES-256-GCM.

The key is the deployment's data key (``TESSERA_DATA_KEY`` or ``secrets/idp-data.key`` made by
``tessera init``). Each sealed value is ``version || nonce(12) || ciphertext+tag``; the purpose
string is bound as associated data, so a value sealed for one use cannot be opened for another.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_VERSION = b"\x01"


class SealedValueInvalid(Exception):
    """A sealed value was altered, or sealed under another key or purpose."""


class SecretBox:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("SecretBox needs a 32-byte key")
        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes, purpose: str) -> bytes:
        nonce = os.urandom(12)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, purpose.encode())

    def open(self, sealed: bytes, purpose: str) -> bytes:
        if len(sealed) < 1 + 12 + 16 or sealed[:1] != _VERSION:
            raise SealedValueInvalid("not a sealed value")
        try:
            return self._aead.decrypt(sealed[1:13], sealed[13:], purpose.encode())
        except InvalidTag:
            raise SealedValueInvalid("sealed value does not open with this key") from None
