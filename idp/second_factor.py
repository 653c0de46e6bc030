"""The staff member's second factor: TOTP enrolment and verification, recovery codes.

TOTP secrets are sealed at rest (:mod:`idp.secretbox`). A code is accepted once only: the step
of the last accepted code is advanced with a conditional UPDATE, so two workers racing with the
same code cannot both win (RFC 6238 section 5.2). Ten one-time recovery codes are made at
enrolment and stored as argon2 hashes.
"""

from __future__ import annotations

import datetime
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine, bindparam, delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from idp.models import RecoveryCode, StaffAccount
from idp.secretbox import SecretBox
from idp.totp import TotpVerifier, new_secret
from store.driver_read import DriverRead

RECOVERY_CODES = 10
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i
_TOTP_PURPOSE = "totp-secret"
# recovery codes carry ~49 bits of entropy: a cheap argon2 is enough, and they are checked rarely
_RECOVERY_HASHER = PasswordHasher(time_cost=2, memory_cost=8 * 1024, parallelism=1)

# the login path's statements, built once as Core statements (every login runs them; the ORM's unit
# of work would cost more than they do), each its own transaction on a pooled connection; the account's
# read (three per login) runs on the driver (store.driver_read; its gain in docs/platform-notes.md)
_ACCOUNT = select(StaffAccount.claims_json, StaffAccount.totp_secret_sealed, StaffAccount.totp_last_step).where(
    StaffAccount.uid == bindparam("account"))
_SET_CLAIMS = update(StaffAccount).where(StaffAccount.uid == bindparam("account"))
#: RFC 6238 section 5.2: the step moves forward only, so a code is accepted once
_ADVANCE = (update(StaffAccount).where(StaffAccount.uid == bindparam("account"), StaffAccount.totp_last_step < bindparam("step"))
            .values(totp_last_step=bindparam("step")))


class _Account(NamedTuple):
    claims_json: str
    totp_secret_sealed: bytes | None
    totp_last_step: int


@dataclass(frozen=True)
class Enrolment:
    """A TOTP enrolment in progress: the secret to show and its otpauth:// URI."""

    secret: str
    uri: str


class SecondFactor:
    def __init__(self, sessions: sessionmaker[Session], box: SecretBox, clock: Callable[[], datetime.datetime],
                 verifier: TotpVerifier | None = None, issuer: str = "Tessera") -> None:
        self.sessions = sessions
        self.engine: Engine = sessions.kw["bind"]
        self._account = DriverRead(self.engine, _ACCOUNT)
        self.box = box
        self.clock = clock
        self.verifier = verifier or TotpVerifier()
        self.issuer = issuer

    # -- account -------------------------------------------------------------------------
    def remember(self, uid: str, claims: dict[str, object]) -> bool:
        """Create or refresh the account row with the directory's claims; True if TOTP is enrolled."""
        now = self.clock()
        encoded = json.dumps(claims, sort_keys=True)
        row = self._account_row(uid)
        if row is not None:
            if row.claims_json != encoded:
                with self.engine.begin() as conn:
                    conn.execute(_SET_CLAIMS, {"claims_json": encoded, "updated_at": now, "account": uid})
            return row.totp_secret_sealed is not None
        with self.sessions.begin() as session:
            session.add(StaffAccount(uid=uid, claims_json=encoded, totp_last_step=0, updated_at=now))
        return False

    def _account_row(self, uid: str) -> _Account | None:
        row = self._account.first({"account": uid})
        return None if row is None else _Account(*row)

    def claims(self, uid: str) -> dict[str, object] | None:
        row = self._account_row(uid)
        return None if row is None else json.loads(row.claims_json)

    def is_enrolled(self, uid: str) -> bool:
        with self.sessions() as session:
            account = session.get(StaffAccount, uid)
            return account is not None and account.totp_secret_sealed is not None

    # -- enrolment -----------------------------------------------------------------------
    def begin_enrolment(self, uid: str, fresh: bool = False) -> Enrolment:
        """A pending secret (kept sealed until confirmed with a code); the same one on reload, a new
        one when ``fresh`` (a re-enrolment begun again). The secret in force, if any, stays so until
        :meth:`confirm_enrolment`."""
        with self.sessions.begin() as session:
            account = _account(session, uid, self.clock())
            if account.totp_pending_sealed is None or fresh:
                account.totp_pending_sealed = self.box.seal(new_secret().encode(), _TOTP_PURPOSE)
            secret = self.box.open(account.totp_pending_sealed, _TOTP_PURPOSE).decode()
        return Enrolment(secret, self.verifier.provisioning_uri(secret, uid, self.issuer))

    def confirm_enrolment(self, uid: str, code: str) -> list[str] | None:
        """Activate the pending secret if ``code`` matches it; the ten recovery codes, or None."""
        now = self.clock()
        with self.sessions.begin() as session:
            account = _account(session, uid, now)
            if account.totp_pending_sealed is None:
                return None
            secret = self.box.open(account.totp_pending_sealed, _TOTP_PURPOSE).decode()
            step = self.verifier.match(secret, code, now.timestamp())
            if step is None:
                return None
            account.totp_secret_sealed = account.totp_pending_sealed
            account.totp_pending_sealed = None
            account.totp_enrolled_at = now
            account.totp_last_step = step
            return _replace_recovery_codes(session, uid)

    def reset(self, uid: str, session: Session | None = None) -> bool:
        """Forget the TOTP secret, a pending one and every recovery code (the next login enrols
        again), in ``session``'s transaction (the help desk's, with its audit entry) or a new one.
        True if a second factor was enrolled."""
        if session is None:
            with self.sessions.begin() as own:
                return self.reset(uid, own)
        account = session.get(StaffAccount, uid)
        enrolled = account is not None and account.totp_secret_sealed is not None
        if account is not None:
            account.totp_secret_sealed = None
            account.totp_pending_sealed = None
            account.totp_enrolled_at = None
        session.execute(delete(RecoveryCode).where(RecoveryCode.uid == uid))
        return enrolled

    # -- verification --------------------------------------------------------------------
    def verify(self, uid: str, code: str) -> str | None:
        """``"otp"`` if ``code`` is a fresh TOTP code, ``"recovery"`` for an unused recovery code
        (then used up), None otherwise. RFC 8176 names the methods: otp; recovery counts as otp."""
        code = code.strip()
        now = self.clock()
        account = self._account_row(uid)
        if account is None or account.totp_secret_sealed is None:
            return None
        secret = self.box.open(account.totp_secret_sealed, _TOTP_PURPOSE).decode()
        last_step = account.totp_last_step
        digits = code.replace(" ", "")
        if digits.isdigit() and len(digits) == self.verifier.parameters.digits:
            step = self.verifier.match(secret, digits, now.timestamp(), after_step=last_step)
            if step is None:
                return None
            with self.engine.begin() as conn:
                won = conn.execute(_ADVANCE, {"step": step, "account": uid}).rowcount
            return "otp" if won == 1 else None
        return "recovery" if self._use_recovery_code(uid, code) else None

    def _use_recovery_code(self, uid: str, code: str) -> bool:
        normalised = code.lower().replace(" ", "").replace("-", "")
        if len(normalised) != 10:
            return False
        with self.sessions.begin() as session:
            rows = session.scalars(select(RecoveryCode).where(RecoveryCode.uid == uid, RecoveryCode.used_at.is_(None)))
            for row in rows:
                try:
                    _RECOVERY_HASHER.verify(row.code_hash, normalised)
                except (VerificationError, InvalidHashError):
                    continue
                won = session.connection().execute(update(RecoveryCode).where(RecoveryCode.id == row.id, RecoveryCode.used_at.is_(None))
                                      .values(used_at=self.clock())).rowcount
                return bool(won == 1)
        return False

    def recovery_codes_left(self, uid: str) -> int:
        with self.sessions() as session:
            return len(list(session.scalars(select(RecoveryCode.id).where(RecoveryCode.uid == uid,
                                                                          RecoveryCode.used_at.is_(None)))))

    def new_recovery_codes(self, uid: str) -> list[str]:
        """Replace every recovery code with ten new ones (shown once)."""
        with self.sessions.begin() as session:
            return _replace_recovery_codes(session, uid)


def _account(session: Session, uid: str, now: datetime.datetime) -> StaffAccount:
    account = session.get(StaffAccount, uid)
    if account is None:
        account = StaffAccount(uid=uid, claims_json="{}", totp_last_step=0, updated_at=now)
        session.add(account)
        session.flush()
    return account


def _new_recovery_code() -> str:
    raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(10))
    return f"{raw[:5]}-{raw[5:]}"


def _replace_recovery_codes(session: Session, uid: str) -> list[str]:
    session.query(RecoveryCode).filter(RecoveryCode.uid == uid).delete()
    codes = [_new_recovery_code() for _ in range(RECOVERY_CODES)]
    for code in codes:
        session.add(RecoveryCode(uid=uid, code_hash=_RECOVERY_HASHER.hash(code.replace("-", ""))))
    return codes
