"""Card-login challenges (nonces): issued bound to a browser session, consumed once, expired.

A nonce is 32 random bytes (base64), valid five minutes; the store keeps only SHA-256 hashes of
the nonce and of the session's binding value (idp/citizen_login.py describes the login).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import secrets
from collections.abc import Callable

from sqlalchemy import Engine, bindparam, delete, insert

from idp.citizen_models import CitizenLoginNonce

NONCE_BYTES = 32
NONCE_LIFETIME = datetime.timedelta(minutes=5)

_INSERT = insert(CitizenLoginNonce)
_PURGE = delete(CitizenLoginNonce).where(CitizenLoginNonce.expires_at <= bindparam("now"))
#: consumed once: the row goes, and only the first DELETE of it counts one row
_CONSUME = delete(CitizenLoginNonce).where(CitizenLoginNonce.nonce_hash == bindparam("nonce"),
                                           CitizenLoginNonce.binding_hash == bindparam("binding"),
                                           CitizenLoginNonce.expires_at > bindparam("now"))


def _h(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class NonceStore:
    """Card-login challenges in SQL: issued, consumed once (an atomic DELETE), expired.

    ``consume`` is on the login's hot path: one DELETE, committed at once."""

    def __init__(self, engine: Engine, clock: Callable[[], datetime.datetime]) -> None:
        self.engine = engine
        self.clock = clock

    def issue(self, binding: str) -> str:
        """A new nonce (base64 of 32 random bytes) bound to ``binding``."""
        nonce = base64.b64encode(secrets.token_bytes(NONCE_BYTES)).decode()
        now = self.clock()
        with self.engine.begin() as conn:
            if secrets.randbelow(50) == 0:
                conn.execute(_PURGE, {"now": now})
            conn.execute(_INSERT, {"nonce_hash": _h(nonce), "binding_hash": _h(binding), "issued_at": now,
                                   "expires_at": now + NONCE_LIFETIME})
        return nonce

    def consume(self, nonce: str, binding: str) -> bool:
        """True exactly once for a nonce issued to ``binding`` and not yet expired."""
        with self.engine.begin() as conn:
            return conn.execute(_CONSUME, {"nonce": _h(nonce), "binding": _h(binding), "now": self.clock()}).rowcount == 1
