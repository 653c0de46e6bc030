"""The deployment's data key: 32 random bytes, ``TESSERA_DATA_KEY`` (base64, RFC 4648 section 4) or
the embedded home's ``secrets/idp-data.key`` written by `tessera init`. It seals secrets at rest
(AES-256-GCM) and is the source of derived keys (the CSRF token key, the citizen pseudonym key).

Read here, below every package that derives a key from it, so none of them reaches up to the web
service's settings for it."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

KEY_BYTES = 32


class DataKeyError(ValueError):
    """The data key is missing or is not base64 of 32 bytes."""


def data_key_file(home: Path) -> Path:
    """Where an embedded home keeps its data key."""
    return home / "secrets" / "idp-data.key"


def load_data_key(encoded: str | None, path: Path) -> bytes:
    """``encoded`` (base64 of 32 bytes) if given, else the base64 text of the file at ``path``."""
    if encoded is None:
        try:
            encoded = path.read_text().strip()
        except OSError:
            raise DataKeyError(f"no data key: set TESSERA_DATA_KEY or run `tessera init` ({path} missing)") from None
    try:
        key = base64.b64decode(encoded)
    except binascii.Error:
        key = b""
    if len(key) != KEY_BYTES:
        raise DataKeyError("the data key must be 32 bytes (base64)")
    return key
