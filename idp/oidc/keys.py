"""id_token signing keys and the JWKS (RFC 7517 section 5, algorithms RFC 7518 section 3).

ES256 is the default, RS256 is offered for relying parties that only do RSA. Private keys are
software keys sealed at rest with the deployment's data key (:mod:`idp.secretbox`). Rotation
publishes a new key at once and signs with it after ``PROPAGATION`` (so no relying party sees a
kid the JWKS it fetched does not have, whichever worker answered); the old key then retires but
stays in the JWKS for ``RETIRED_PUBLISHED`` so tokens signed before the rotation still verify.
"""

from __future__ import annotations

import datetime
import json
import threading
import time
from collections.abc import Callable

from joserfc.jwk import ECKey, KeySet, RSAKey
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from idp.models import SigningKey
from idp.secretbox import SecretBox

ALGORITHMS = ("ES256", "RS256")
DEFAULT_ALGORITHM = "ES256"
RETIRED_PUBLISHED = datetime.timedelta(days=2)
_CACHE_SECONDS = 5.0
#: a new key is published this long before it signs, so every worker's JWKS shows it first
PROPAGATION = datetime.timedelta(seconds=3 * _CACHE_SECONDS)
_PURPOSE = "oidc-signing-key"

SigningKeyObject = ECKey | RSAKey


def _generate(alg: str) -> SigningKeyObject:
    if alg == "ES256":
        return ECKey.generate_key("P-256", private=True)
    if alg == "RS256":
        return RSAKey.generate_key(2048, private=True)
    raise ValueError(f"unsupported signing algorithm {alg}")


class SigningKeys:
    """The signing keys of this IdP, cached per process for a few seconds (rotation by the CLI
    in another process is picked up; the retired key still verifies meanwhile)."""

    def __init__(self, sessions: sessionmaker[Session], box: SecretBox, clock: Callable[[], datetime.datetime]) -> None:
        self.sessions = sessions
        self.box = box
        self.clock = clock
        self._lock = threading.Lock()
        self._loaded_at = 0.0
        self._active: dict[str, tuple[str, SigningKeyObject]] = {}
        self._jwks: dict[str, list[dict[str, object]]] = {"keys": []}
        self._opened: dict[str, SigningKeyObject] = {}  # kid -> key: unsealed once per process

    def ensure(self) -> list[str]:
        """Create a signing key for every algorithm that has none; the kids created."""
        created = []
        with self.sessions.begin() as session:
            for alg in ALGORITHMS:
                exists = session.scalar(select(SigningKey.kid).where(SigningKey.alg == alg, SigningKey.retired_at.is_(None)))
                if exists is None:  # the first key of an algorithm signs at once
                    created.append(self._add(session, alg, self.clock() - PROPAGATION))
        self._loaded_at = 0.0
        return created

    def rotate(self, alg: str = DEFAULT_ALGORITHM) -> str:
        """A new signing key for ``alg``; the previous one is retired but stays published."""
        if alg not in ALGORITHMS:
            raise ValueError(f"unsupported signing algorithm {alg}")
        now = self.clock()
        with self.sessions.begin() as session:
            for row in session.scalars(select(SigningKey).where(SigningKey.alg == alg, SigningKey.retired_at.is_(None))):
                row.retired_at = now + PROPAGATION  # signs until the new key takes over
            kid = self._add(session, alg, now)
        self._loaded_at = 0.0
        return kid

    def _add(self, session: Session, alg: str, created_at: datetime.datetime) -> str:
        key = _generate(alg)
        kid = key.thumbprint()
        public = {**key.as_dict(private=False), "kid": kid, "alg": alg, "use": "sig"}
        session.add(SigningKey(kid=kid, alg=alg, private_sealed=self.box.seal(key.as_pem(private=True), _PURPOSE),
                               public_jwk_json=json.dumps(public), created_at=created_at))
        return kid

    def _refresh(self) -> None:
        if time.monotonic() - self._loaded_at < _CACHE_SECONDS:
            return
        with self._lock:
            if time.monotonic() - self._loaded_at < _CACHE_SECONDS:
                return
            now = self.clock()
            active: dict[str, tuple[str, SigningKeyObject]] = {}
            published = []
            with self.sessions() as session:
                rows = list(session.scalars(select(SigningKey).order_by(SigningKey.created_at.desc())))
            for row in rows:  # newest first
                in_service = row.retired_at is None or row.retired_at > now
                if in_service and row.alg not in active and row.created_at <= now - PROPAGATION:
                    if row.kid not in self._opened:
                        cls = ECKey if row.alg == "ES256" else RSAKey
                        self._opened[row.kid] = cls.import_key(self.box.open(row.private_sealed, _PURPOSE),
                                                               {"kid": row.kid, "alg": row.alg, "use": "sig"})
                    active[row.alg] = (row.kid, self._opened[row.kid])
                if in_service or now - row.retired_at < RETIRED_PUBLISHED:  # type: ignore[operator]
                    published.append(json.loads(row.public_jwk_json))
            self._active, self._jwks = active, {"keys": published}
            self._loaded_at = time.monotonic()

    def signing_key(self, alg: str) -> tuple[str, SigningKeyObject]:
        """(kid, private key) that signs with ``alg`` now."""
        self._refresh()
        if alg not in self._active:
            self.ensure()
            self._refresh()
        return self._active[alg]

    def signing_key_set(self) -> KeySet:
        """The private keys that sign now, one per algorithm, each with its ``kid`` and ``alg``:
        joserfc signs a JWS with the one of the header's ``alg`` and names it in ``kid`` (RFC 7515
        section 4.1.4), so a relying party finds its public half in the JWKS."""
        return KeySet([self.signing_key(alg)[1] for alg in ALGORITHMS])

    def jwks(self) -> dict[str, list[dict[str, object]]]:
        """The public JWK Set: active keys and recently retired ones (RFC 7517 section 5)."""
        self._refresh()
        return self._jwks

    def key_set(self) -> KeySet:
        return KeySet.import_key_set(self.jwks())  # type: ignore[arg-type]
