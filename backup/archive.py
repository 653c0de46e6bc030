"""The sealed archive: a stream encrypted and authenticated with AES-256-GCM, a chunk at a time.

Layout (all lengths big-endian)::

    "TESSERA-BACKUP" 0x00 0x01          magic and format version (16 bytes)
    u32 n, n bytes of JSON              the header: cipher, chunk size, nonce prefix, key derivation,
                                        key check
    chunk 0, chunk 1, ... chunk k       each AES-256-GCM(plaintext of `chunk` bytes, the last one
                                        shorter or empty) with its 16-byte tag

Chunk ``i`` is sealed with the nonce ``prefix (7 random bytes) || i (4 bytes) || last (1 byte)``
and the whole header as associated data: the STREAM construction (Hoang, Reyhanitabar, Rogaway,
Vizár, "Online Authenticated-Encryption and its Nonce-Reuse Misuse-Resistance", CRYPTO 2015), as
in Tink's streaming AEAD and age. So a flipped byte anywhere, chunks reordered, dropped or the
stream cut after a chunk, and a changed header all fail authentication; and an archive of any
size is written and read in constant memory.

The key is derived from a passphrase with scrypt (RFC 7914; N = 2^17, r = 8, p = 1: 128 MiB and
about half a second, OWASP's recommendation) or read from a key file of 32 random bytes (base64,
:func:`new_key_file`). HKDF-SHA256 (RFC 5869) turns it into the encryption key and a 16-byte key
check kept in the header, so a wrong passphrase is told apart from a damaged archive.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
import secrets
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from backup.errors import ArchiveDamaged, BackupError, WrongKey

MAGIC = b"TESSERA-BACKUP\x00\x01"
CHUNK = 1024 * 1024
TAG = 16
#: scrypt cost (RFC 7914 section 2): N, r, p
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**17, 8, 1
_MAX_HEADER = 4096


@dataclass(frozen=True)
class KeySource:
    """Where the archive key comes from: a passphrase (scrypt) or a key file (32 bytes, base64)."""

    passphrase: str | None = None
    key_file: Path | None = None

    def __post_init__(self) -> None:
        if (self.passphrase is None) == (self.key_file is None):
            raise BackupError("give a passphrase or a key file, not both or neither")

    @property
    def kind(self) -> str:
        return "scrypt" if self.passphrase is not None else "key-file"

    def master(self, kdf: dict[str, object]) -> bytes:
        """The 32-byte key before HKDF, for the header's ``kdf``."""
        if kdf.get("name") != self.kind:
            raise WrongKey("this archive was sealed with " + ("a passphrase" if kdf.get("name") == "scrypt"
                                                               else "a key file") + f", not {self._what()}")
        if self.passphrase is not None:
            try:
                salt = base64.b64decode(str(kdf["salt"]), validate=True)
                n, r, p = (int(kdf[k]) for k in ("n", "r", "p"))  # type: ignore[call-overload]
            except (KeyError, ValueError, TypeError, binascii.Error):
                raise ArchiveDamaged("the archive's header is damaged (key derivation)") from None
            if not (2**14 <= n <= 2**20 and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16 and len(salt) >= 16):
                raise ArchiveDamaged("the archive's header asks for scrypt parameters out of range")
            return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(self.passphrase.encode())
        return read_key_file(self.key_file)  # type: ignore[arg-type]

    def _what(self) -> str:
        return "a passphrase" if self.passphrase is not None else "a key file"


def new_key_file(path: Path) -> None:
    """Write a new key file (32 random bytes, base64, mode 0600); refuses to overwrite one."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")


def read_key_file(path: Path) -> bytes:
    try:
        key = base64.b64decode(path.read_text().strip(), validate=True)
    except (OSError, UnicodeDecodeError) as exc:
        raise BackupError(f"the key file {path} cannot be read: {getattr(exc, 'strerror', None) or exc}") from None
    except binascii.Error:
        key = b""
    if len(key) != 32:
        raise BackupError(f"the key file {path} does not hold 32 bytes in base64 (`tessera backup new-key` makes one)")
    return key


def _keys(master: bytes) -> tuple[bytes, bytes]:
    """(encryption key, key check) from the master key (HKDF-SHA256, RFC 5869)."""
    okm = HKDF(hashes.SHA256(), 48, salt=None, info=b"tessera-backup-v1").derive(master)
    return okm[:32], okm[32:]


class SealedWriter:
    """A binary stream that seals what is written to ``out`` (a file the caller closes)."""

    def __init__(self, out: BinaryIO, key: KeySource) -> None:
        kdf: dict[str, object] = {"name": key.kind}
        if key.passphrase is not None:
            kdf |= {"salt": base64.b64encode(secrets.token_bytes(16)).decode(), "n": SCRYPT_N, "r": SCRYPT_R,
                    "p": SCRYPT_P}
        encryption, check = _keys(key.master(kdf))
        self._prefix = secrets.token_bytes(7)
        header = json.dumps({"cipher": "AES-256-GCM", "chunk": CHUNK, "kdf": kdf,
                             "nonce_prefix": base64.b64encode(self._prefix).decode(),
                             "key_check": base64.b64encode(check).decode()}, sort_keys=True).encode()
        self._aad = MAGIC + struct.pack(">I", len(header)) + header
        self._aead = AESGCM(encryption)
        self._out = out
        self._buffer = bytearray()
        self._counter = 0
        self._closed = False
        out.write(self._aad)

    def write(self, data: bytes) -> int:
        if self._closed:
            raise ValueError("the sealed stream is closed")
        view = memoryview(data)
        while len(self._buffer) + len(view) > CHUNK:  # a byte at least stays: the last chunk is sealed on close
            take = CHUNK - len(self._buffer)
            self._buffer += view[:take]
            self._seal(bytes(self._buffer), last=False)
            self._buffer.clear()
            view = view[take:]
        self._buffer += view
        return len(data)

    def _seal(self, plaintext: bytes, last: bool) -> None:
        nonce = self._prefix + struct.pack(">IB", self._counter, 1 if last else 0)
        self._out.write(self._aead.encrypt(nonce, plaintext, self._aad))
        self._counter += 1

    def close(self) -> None:
        """Seal the last chunk (the stream is incomplete without it)."""
        if not self._closed:
            self._seal(bytes(self._buffer), last=True)
            self._buffer.clear()
            self._closed = True

    def flush(self) -> None:
        self._out.flush()


class SealedReader:
    """A binary stream of what ``source`` holds sealed: every chunk is authenticated before a byte
    of it is returned; :class:`ArchiveDamaged` names the chunk that is not."""

    def __init__(self, source: BinaryIO, key: KeySource) -> None:
        magic = source.read(len(MAGIC))
        if magic != MAGIC:
            raise ArchiveDamaged("not a Tessera backup (or its first bytes are damaged)")
        (length,) = struct.unpack(">I", _exactly(source, 4))
        if length > _MAX_HEADER:
            raise ArchiveDamaged("the archive's header is damaged (length)")
        raw = _exactly(source, length)
        try:
            header = json.loads(raw)
            prefix = base64.b64decode(header["nonce_prefix"], validate=True)
            check = base64.b64decode(header["key_check"], validate=True)
            chunk = int(header["chunk"])
            kdf = dict(header["kdf"])
            cipher = header["cipher"]
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise ArchiveDamaged("the archive's header is damaged") from None
        if cipher != "AES-256-GCM" or len(prefix) != 7 or not 1 <= chunk <= 64 * CHUNK:
            raise ArchiveDamaged("the archive's header names an unknown cipher or chunk size")
        encryption, expected = _keys(key.master(kdf))
        if not hmac.compare_digest(check, expected):
            raise WrongKey("wrong passphrase or key file for this archive")
        self._aad = MAGIC + struct.pack(">I", length) + raw
        self._aead = AESGCM(encryption)
        self._prefix, self._chunk, self._source = prefix, chunk, source
        self._counter = 0
        self._pending = source.read(chunk + TAG)
        self._plain, self._at = b"", 0
        self._done = False

    def _next(self) -> None:
        sealed = self._pending
        self._pending = self._source.read(self._chunk + TAG)
        last = not self._pending
        if len(sealed) < TAG or (not last and len(sealed) != self._chunk + TAG):
            raise ArchiveDamaged(f"the archive is cut short (chunk {self._counter})")
        nonce = self._prefix + struct.pack(">IB", self._counter, 1 if last else 0)
        try:
            self._plain, self._at = self._aead.decrypt(nonce, sealed, self._aad), 0
        except InvalidTag:
            where = "its last chunk" if last else f"the chunk at byte {self._counter * (self._chunk + TAG)} of its body"
            raise ArchiveDamaged(f"the archive is damaged or cut short: {where} (chunk {self._counter}) does not "
                                 "authenticate") from None
        self._counter += 1
        self._done = last

    def read(self, size: int = -1) -> bytes:
        out = bytearray()
        while size < 0 or len(out) < size:
            left = len(self._plain) - self._at
            if not left:
                if self._done:
                    break
                self._next()
                continue
            take = left if size < 0 else min(size - len(out), left)
            out += self._plain[self._at:self._at + take]
            self._at += take
        return bytes(out)

    def readable(self) -> bool:
        return True


def _exactly(source: BinaryIO, n: int) -> bytes:
    data = source.read(n)
    if len(data) != n:
        raise ArchiveDamaged("the archive is cut short (header)")
    return data
