"""Operators of the command line: who is acting ``--as`` a staff member, proven.

``tessera admin login --as UID`` checks the person's two factors exactly as the login page does
(the directory bind of :meth:`directory.client.Directory.authenticate`, RFC 4513 section 5.1.3, then
a fresh TOTP code or a recovery code through :meth:`idp.second_factor.SecondFactor.verify`,
RFC 6238 section 5.2), counting failures in the login throttle (:mod:`idp.throttle`), and issues an
operator token: 256 random bits (RFC 4086 section 3: from the operating system's generator), of
which only the SHA-256 is stored (table ``gov_operator_token``). The token names one staff member
and ends after ``Settings.operator_token_seconds`` (15 minutes by default) or at ``tessera admin
logout``. Every command acting ``--as UID`` presents it (:meth:`Operators.prove`): missing, unknown,
expired, revoked or another person's token is refused and audited.

The token travels in ``TESSERA_OPERATOR_TOKEN`` or in a 0600 file in the operator's own
configuration folder (:func:`token_file`), one per Tessera home; never on the command line.
"""

from __future__ import annotations

import datetime
import getpass
import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select, update

from idp import events
from directory.errors import DirectoryError, DirectoryUnavailable
from idp.governance_models import OperatorToken
from idp.roles import GovernanceError, login_refusal

if TYPE_CHECKING:
    from idp.deployment import Deployment
    from directory.client import StaffMember

#: the environment variable a script may hand the token in (instead of the token file)
TOKEN_VARIABLE = "TESSERA_OPERATOR_TOKEN"
#: the longest lifetime a token may be given, whatever the setting says
MAX_TOKEN_SECONDS = 12 * 3600
_TOKEN_BYTES = 32  # 256 bits
_PREFIX = "tso_"  # recognisable in a leaked log or file (as GitHub's ghp_): never a real secret's shape


class NotAuthenticated(GovernanceError):
    """The operator has not proven to be the staff member they act as."""

    kind = "not-authenticated"
    status = 401


@dataclass(frozen=True)
class ProvenOperator:
    """A staff member who proved both factors, and the token that says so."""

    uid: str
    token_id: int
    expires_at: datetime.datetime


def operating_system_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's arbitrary uid)
        return str(os.getuid())


def channel() -> str:
    """How audit entries name the command line: ``cli:<operating system user>``."""
    return f"cli:{operating_system_user()}"


def token_file(home: Path, env: dict[str, str] | None = None) -> Path:
    """Where ``tessera admin login`` keeps the token for the Tessera home ``home``:
    ``$XDG_CONFIG_HOME/tessera/operator-tokens/<first 16 hex of SHA-256 of the home's path>``
    (``~/.config`` without XDG_CONFIG_HOME; XDG Base Directory Specification)."""
    env = dict(os.environ if env is None else env)
    base = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    key = hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:16]
    return base / "tessera" / "operator-tokens" / key


def save_token(path: Path, token: str) -> None:
    """Write the token to ``path``, created 0600 in 0700 folders (never readable by others)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, token.encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)


def presented_token(home: Path, env: dict[str, str] | None = None) -> str | None:
    """The token this command presents: ``TESSERA_OPERATOR_TOKEN``, else the token file, else None."""
    env = dict(os.environ if env is None else env)
    given = env.get(TOKEN_VARIABLE, "").strip()
    if given:
        return given
    try:
        return token_file(home, env).read_text().strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


class Operators:
    """Operator login (both factors), tokens and their checks, for one deployment."""

    def __init__(self, deployment: Deployment) -> None:
        self.d = deployment
        self.sessions = deployment.sessions

    @property
    def lifetime(self) -> datetime.timedelta:
        seconds = min(max(int(self.d.settings.operator_token_seconds), 60), MAX_TOKEN_SECONDS)
        return datetime.timedelta(seconds=seconds)

    # -- login ------------------------------------------------------------------------------------
    def authenticate(self, username: str, password: str, code: str) -> StaffMember:
        """Both factors, as the login page checks them; every failure counted and audited.

        Raises :class:`NotAuthenticated` with one message for a wrong password, an unknown name or
        a wrong code alike (the throttle, too, says nothing more), and
        :class:`directory.errors.DirectoryUnavailable` when the directory cannot be reached.
        """
        where = channel()
        wrong = NotAuthenticated("The user name, password or authenticator code is incorrect.")
        if self.d.throttle.blocked(username, where):
            events.record("login.password", where, f"staff:{username[:64]}", "failure", reason="throttled", via="cli")
            raise wrong
        try:
            member = self.d.directory.authenticate(username, password)
        except DirectoryUnavailable:
            raise
        except DirectoryError as exc:
            if exc.kind != "password-must-change":  # the right password (a one-time one): no guess to count
                self.d.throttle.failure(username, where)
            events.record("login.password", where, f"staff:{username[:64]}", "failure", reason=exc.kind, via="cli")
            raise NotAuthenticated(exc.message if exc.kind in ("password-must-change", "password-expired")
                                   else wrong.args[0]) from None
        refusal = login_refusal(member.groups)
        if refusal:
            events.record("login.password", where, f"staff:{member.uid}", "refused", reason="conflicting-roles",
                          via="cli")
            raise NotAuthenticated(refusal)
        from idp.staff import claims_of

        if not self.d.second_factor.remember(member.uid, claims_of(member)):
            events.record("login.otp", where, f"staff:{member.uid}", "failure", reason="not-enrolled", via="cli")
            raise NotAuthenticated("no authenticator is set up for this account yet: log in once on the web page "
                                   "first")
        if self.d.throttle.blocked(member.uid, where):
            events.record("login.otp", where, f"staff:{member.uid}", "failure", reason="throttled", via="cli")
            raise wrong
        method = self.d.second_factor.verify(member.uid, code)
        if method is None:
            self.d.throttle.failure(member.uid, where)
            events.record("login.otp", where, f"staff:{member.uid}", "failure", reason="wrong-code", via="cli")
            raise wrong
        self.d.throttle.success(member.uid, where)
        if method == "recovery":
            events.record("totp.recovery_code_used", f"staff:{member.uid}", f"staff:{member.uid}", "success",
                          left=self.d.second_factor.recovery_codes_left(member.uid), via="cli")
        return member

    def login(self, username: str, password: str, code: str) -> tuple[str, ProvenOperator]:
        """Both factors, then a new token: (the token, shown once; what it proves)."""
        member = self.authenticate(username, password, code)
        token = _PREFIX + secrets.token_urlsafe(_TOKEN_BYTES)
        now = self.d.now()
        with self.sessions.begin() as session:
            row = OperatorToken(token_hash=_digest(token), uid=member.uid, issued_at=now,
                                expires_at=now + self.lifetime, revoked_at=None, channel=channel()[:128])
            session.add(row)
            session.flush()
            proven = ProvenOperator(member.uid, row.id, row.expires_at)
        events.record("login", f"staff:{member.uid}", f"staff:{member.uid}", "success", factors=["pwd", "otp"],
                      via="cli", operator_token=proven.token_id, expires_at=proven.expires_at.isoformat())
        return token, proven

    # -- checks -----------------------------------------------------------------------------------
    def prove(self, token: str | None, uid: str) -> ProvenOperator:
        """The live token ``token`` of the staff member ``uid``, or :class:`NotAuthenticated` (audited)."""
        reason, row = self._check(token, uid)
        if reason is not None:
            events.record("operator.token", channel(), f"staff:{str(uid)[:64]}", "refused", reason=reason,
                          **({"operator_token": row.id} if row is not None else {}))
            raise NotAuthenticated(_MESSAGES[reason].format(uid=uid))
        assert row is not None
        return ProvenOperator(row.uid, row.id, row.expires_at)

    def _check(self, token: str | None, uid: str) -> tuple[str | None, OperatorToken | None]:
        if not token:
            return "no-token", None
        if len(token) > 200:
            return "unknown-token", None
        with self.sessions() as session:
            row = session.scalar(select(OperatorToken).where(OperatorToken.token_hash == _digest(token)))
            if row is None:
                return "unknown-token", None
            session.expunge(row)
        if row.uid != uid:  # user names are not secret: a plain comparison (any characters)
            return "other-person", row
        if row.revoked_at is not None:
            return "revoked", row
        if row.expires_at <= self.d.now():
            return "expired", row
        return None, row

    def revoke(self, token: str | None) -> ProvenOperator | None:
        """End the token now (``tessera admin logout``); what it proved, or None if it was no live token."""
        if not token:
            return None
        now = self.d.now()
        with self.sessions.begin() as session:
            row = session.scalar(select(OperatorToken).where(OperatorToken.token_hash == _digest(token)))
            if row is None or row.revoked_at is not None or row.expires_at <= now:
                return None
            session.execute(update(OperatorToken).where(OperatorToken.id == row.id).values(revoked_at=now))
            proven = ProvenOperator(row.uid, row.id, row.expires_at)
        events.record("logout", f"staff:{proven.uid}", f"staff:{proven.uid}", "success", via="cli",
                      operator_token=proven.token_id)
        return proven


_MESSAGES = {
    "no-token": "not logged in: run `tessera admin login --as {uid}` first",
    "unknown-token": "the operator token is not valid: run `tessera admin login --as {uid}` again",
    "other-person": "the operator token is not {uid}'s: run `tessera admin login --as {uid}` to act as {uid}",
    "revoked": "the operator token was ended by logout: run `tessera admin login --as {uid}` again",
    "expired": "the operator token has expired: run `tessera admin login --as {uid}` again",
}
