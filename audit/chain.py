"""The canonical encoding of an entry and the SHA-256 hash chain (stable: changing it breaks every trail).

An entry's hash is ``SHA-256(prev_hash_bytes || canonical)`` where ``prev_hash_bytes`` are the 32
raw bytes of the previous entry's hash (:data:`GENESIS` for entry 1) and ``canonical`` is the
UTF-8 of a JSON array without whitespace (RFC 8259; non-ASCII kept as UTF-8)::

    ["tessera-audit-v1", seq, "YYYY-MM-DDTHH:MM:SS.ffffffZ", event_type, subject, subject_role,
     object, result, source_address, request_id, details]

``seq`` is a JSON number, absent optional fields are ``null`` and ``details`` is the stored
canonical JSON text of the details object (sorted keys, ``(",", ":")`` separators), embedded as
a string. Because ``seq`` is hashed, a deleted, inserted or moved entry breaks the chain even if
the rows around it are renumbered. A checkpoint statement (:func:`checkpoint_statement`) is
``tessera-audit-checkpoint-v1`` followed by seq, entry hash, time and the previous checkpoint's seq,
one per line.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from typing import Any

VERSION = "tessera-audit-v1"
#: prev_hash of entry 1: SHA-256 of the text "tessera audit trail genesis"
GENESIS = hashlib.sha256(b"tessera audit trail genesis").hexdigest()
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
#: eContentType of a signed checkpoint statement: the name of its format, the same in every deployment
#: (not under TESSERA_POLICY_ARC: changing it would make the checkpoints already signed unverifiable)
CHECKPOINT_CONTENT_TYPE = "2.999.1863.3.1"

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_sha256 = hashlib.sha256


def canonical_time(at: datetime.datetime) -> str:
    """UTC with microseconds, e.g. ``2026-11-25T09:10:00.000123Z`` (naive means UTC)."""
    if at.tzinfo is not None:
        at = at.astimezone(datetime.timezone.utc)
    return at.strftime(_TIME_FORMAT)


def canonical_details(details: dict[str, Any]) -> str:
    """The details object as stored and hashed: sorted keys, no whitespace."""
    return json.dumps(details, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def canonical_bytes(seq: int, at: str, event_type: str, subject: str, subject_role: str | None,
                    object_: str | None, result: str, source_address: str | None, request_id: str | None,
                    details: str) -> bytes:
    """The bytes that are hashed for one entry (``at`` already canonical, ``details`` the stored text)."""
    return _dumps([VERSION, seq, at, event_type, subject, subject_role, object_, result, source_address,
                   request_id, details]).encode()


def entry_hash(prev_hash: str, canonical: bytes) -> str:
    """Hex SHA-256 over the previous hash's raw bytes followed by the canonical encoding."""
    return _sha256(bytes.fromhex(prev_hash) + canonical).hexdigest()


def checkpoint_statement(seq: int, head_hash: str, at: datetime.datetime, previous_seq: int) -> bytes:
    """What the audit key signs for a checkpoint (``previous_seq``: the checkpoint before it, 0 if none)."""
    return (f"tessera-audit-checkpoint-v1\nseq={seq}\nentry_hash={head_hash}\ntime={canonical_time(at)}\n"
            f"previous={previous_seq}\n").encode()
