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

from sqlalchemy import Engine, text

from store.held_connection import HeldStatement
from store.types import UtcDateTime

NONCE_BYTES = 32
NONCE_LIFETIME = datetime.timedelta(minutes=5)

_T = UtcDateTime()
_INSERT = text("INSERT INTO citizen_login_nonce (nonce_hash, binding_hash, issued_at, expires_at) "
               "VALUES (:n, :b, :now, :exp)").bindparams()
_PURGE = text("DELETE FROM citizen_login_nonce WHERE expires_at <= :now")


def _h(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class NonceStore:
    """Card-login challenges in SQL: issued, consumed once (an atomic DELETE), expired.

    ``consume`` is on the login's hot path: its DELETE runs on a held driver connection
    (:mod:`store.held_connection`), committed at once, and once more on a fresh one if the driver fails."""

    def __init__(self, engine: Engine, clock: Callable[[], datetime.datetime]) -> None:
        self.engine = engine
        self.clock = clock
        self._consume = HeldStatement(
            engine,
            "DELETE FROM citizen_login_nonce WHERE nonce_hash = ? AND binding_hash = ? AND expires_at > ?",
            "card-login nonces", params=(None, None, _T),
        )

    def issue(self, binding: str) -> str:
        """A new nonce (base64 of 32 random bytes) bound to ``binding``."""
        nonce = base64.b64encode(secrets.token_bytes(NONCE_BYTES)).decode()
        now = self.clock()
        with self.engine.begin() as conn:
            if secrets.randbelow(50) == 0:
                conn.execute(_PURGE, {"now": _T.process_bind_param(now, None)})
            conn.execute(_INSERT, {"n": _h(nonce), "b": _h(binding), "now": _T.process_bind_param(now, None),
                                   "exp": _T.process_bind_param(now + NONCE_LIFETIME, None)})
        return nonce

    def consume(self, nonce: str, binding: str) -> bool:
        """True exactly once for a nonce issued to ``binding`` and not yet expired."""
        return self._consume.run((_h(nonce), _h(binding), self.clock())).rowcount == 1
