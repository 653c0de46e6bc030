"""The help desk: what a security administrator does for a staff member who cannot log in.

Four acts, each permitted by :mod:`idp.roles` (``account.reset-password``,
``account.reset-second-factor``, ``account.unlock``, ``account.end-sessions``: the security
administrator's duty), each audited as ``admin.staff.<act>`` inside its own transaction (the entry
is appended before the directory is written, so an entry that cannot be written stops the act):

- ``reset-password``: a one-time password made here (:func:`directory.administration.initial_password`,
  about 119 bits), shown once to the administrator, set in the directory marked must-change
  (ppolicy ``pwdReset``, draft-behera-ldap-password-policy-11 section 5.3.7): the next login goes to
  the password change page first. slapd drops a lockout with the old password; the login throttle
  of the account is cleared with it;
- ``reset-second-factor``: the TOTP secret (RFC 6238) and every recovery code are voided; the next
  login enrols an authenticator again (:mod:`idp.second_factor`);
- ``unlock``: the ppolicy lockout (``pwdAccountLockedTime``, section 5.3.3) and Tessera's own
  login throttle for the account (:meth:`idp.throttle.LoginThrottle.clear`) are both cleared;
- ``end-sessions``: every browser session of the person ends, with the access and refresh tokens
  issued in them (offline grants excepted, as at logout), and once committed every application the
  sessions touched is told (OpenID Connect Back-Channel Logout 1.0, :mod:`idp.oidc.session_end`).

A disabled account (a leaver) is not a help-desk matter: resetting its password would lift its
permanent lock, so it is refused (resetting its authenticator or ending its sessions reopens
nothing). Nobody uses the help desk on their own account (the account page is for that). Any act on an administrator's account is grave: it becomes a four-eyes request
(:class:`idp.roles.FourEyes`, the same table and pages as adding an administrator), carried out
only when a second security administrator, who is not the account's owner, approves it
(:meth:`HelpDesk.decide`); the one-time password is then shown to that second administrator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from directory.administration import initial_password
from directory.client import AccountState
from directory.errors import DirectoryError
from idp.account_lifecycle import Actor, InvalidState
from idp.governance_models import FourEyesStatus
from idp.oidc.session_end import tell_applications
from idp.roles import FOUR_EYES_OPERATIONS, Forbidden, FourEyesView, GovernanceError, admin_roles_of
from idp.sessions import EndedSession
from translatable import N_

if TYPE_CHECKING:
    from directory.client import StaffMember
    from idp.account_lifecycle import Lifecycle

#: the help desk's acts -> the permission each needs (:data:`idp.roles.PERMISSIONS`); each is also a
#: four-eyes operation for an administrator's account, so the permission is the one
#: :data:`idp.roles.FOUR_EYES_OPERATIONS` names for it
ACTS: dict[str, str] = {act: FOUR_EYES_OPERATIONS[act]
                        for act in ("reset-password", "reset-second-factor", "unlock", "end-sessions")}
#: the acts that also apply to a disabled account (nothing of it is reopened)
_ON_DISABLED = ("reset-second-factor", "end-sessions")


@dataclass(frozen=True)
class HelpDeskResult:
    """An act carried out: on whom, what, and what it cleared (``details``, as audited)."""

    uid: str
    act: str
    #: reset-password: the one-time password, to be shown once and never stored
    one_time_password: str | None = field(default=None, repr=False)
    details: dict[str, Any] = field(default_factory=dict)
    #: end-sessions: the sessions ended, whose applications are told once the act is committed
    ended: tuple[EndedSession, ...] = field(default=(), repr=False)


class HelpDesk:
    """The help-desk acts of one deployment, on its :class:`idp.account_lifecycle.Lifecycle`."""

    def __init__(self, lifecycle: "Lifecycle") -> None:
        self.lc = lifecycle
        self.d = lifecycle.d

    def act(self, actor: Actor, act: str, uid: str) -> HelpDeskResult | FourEyesView:
        """Carry out ``act`` on ``uid``; on an administrator's account, the four-eyes request made instead."""
        permission = ACTS.get(act)
        if permission is None:
            raise GovernanceError(N_("%(act)s is not a help-desk act (%(acts)s)", act=repr(act[:32]),
                                     acts=", ".join(ACTS)))
        event_type, target = f"admin.staff.{act}", f"staff:{uid[:64]}"
        self.lc.authorise(actor, permission, event_type, target)
        member = self.lc.member(uid, actor, event_type)
        self._check(actor, act, member, event_type)
        if admin_roles_of(member.groups):
            return self._request(actor, act, member)
        try:
            with self.lc.sessions.begin() as session:
                result = self._run(session, actor, act, member)
        except (DirectoryError, GovernanceError) as exc:
            self.lc.refused(actor, event_type, target, str(exc), kind=getattr(exc, "kind", "error"))
            raise
        self._committed(result)
        return result

    def _committed(self, result: HelpDeskResult) -> None:
        """After the act's transaction: the applications of the sessions it ended are told
        (OpenID Connect Back-Channel Logout 1.0)."""
        if result.ended:
            tell_applications(self.d, list(result.ended))

    def _check(self, actor: Actor, act: str, member: "StaffMember", event_type: str) -> None:
        """Refuse (audited) acting on oneself, and resetting or unlocking a disabled account."""
        error: GovernanceError | None = None
        if member.uid == actor.uid:
            error = Forbidden(N_("The help desk acts for others: change your own password or authenticator on "
                                 "your account page."))
        elif not member.enabled and act not in _ON_DISABLED:
            error = InvalidState(N_("%(uid)s is disabled (a leaver), not locked out: the help desk does not "
                                    "reopen a disabled account.", uid=member.uid))
        if error is not None:
            self.lc.refused(actor, event_type, f"staff:{member.uid}", str(error), kind=error.kind)
            raise error

    def _run(self, session: Session, actor: Actor, act: str, member: "StaffMember") -> HelpDeskResult:
        """The act in ``session``'s transaction: state cleared in SQL, the audit entry, then the directory."""
        uid, d = member.uid, self.d
        event = f"admin.staff.{act}"
        if act == "reset-second-factor":
            details: dict[str, Any] = {"was_enrolled": d.second_factor.reset(uid, session)}
            self.lc.trail.append(session, self.lc.event(actor, event, "success", f"staff:{uid}", **details))
            return HelpDeskResult(uid, act, details=details)
        if act == "end-sessions":  # every browser session, with the tokens issued in them (idp.sessions)
            ended, access_tokens = d.web_sessions.end_all_in(session.connection(), uid)
            details = {"sessions_ended": len(ended), "access_tokens_revoked": access_tokens}
            self.lc.trail.append(session, self.lc.event(actor, event, "success", f"staff:{uid}", **details))
            return HelpDeskResult(uid, act, details=details, ended=tuple(ended))
        state: AccountState = d.directory.account_state(member)
        details = {"throttle_cleared": d.throttle.clear(session, uid), "was_locked": bool(state.locked)}
        self.lc.trail.append(session, self.lc.event(actor, event, "success", f"staff:{uid}", **details))
        if act == "reset-password":
            password = initial_password()
            self.lc.writer.reset_password(uid, password)
            return HelpDeskResult(uid, act, one_time_password=password, details=details)
        if state.locked:
            d.directory.unlock(uid)
        return HelpDeskResult(uid, act, details=details)

    # -- four eyes -------------------------------------------------------------------------------
    def _request(self, actor: Actor, act: str, member: "StaffMember") -> FourEyesView:
        """The four-eyes request for ``act`` on an administrator's account, audited in its transaction."""
        event_type, target = "admin.four-eyes.request", f"staff:{member.uid}"
        self.lc.authorise(actor, "four-eyes.request", event_type, target)
        details = {"roles": ", ".join(admin_roles_of(member.groups))}
        try:
            with self.lc.sessions.begin() as session:
                row = self.lc.four_eyes.request(session, act, target, actor.uid, details)
                self.lc.trail.append(session, self.lc.event(actor, event_type, "success", target, request=row.id,
                                                            operation=act, **details))
                return FourEyesView.of(row)
        except GovernanceError as exc:
            self.lc.refused(actor, event_type, target, str(exc), kind=exc.kind)
            raise

    def decide(self, actor: Actor, request_id: int, approve: bool) -> tuple[FourEyesView, HelpDeskResult | None]:
        """Approve (and so carry out) or reject a pending request. A help-desk request is decided
        here; any other goes to :meth:`idp.account_lifecycle.Lifecycle.decide_four_eyes`."""
        pending = self.lc.four_eyes.get(request_id)
        if pending is None or pending.operation not in ACTS:
            return self.lc.decide_four_eyes(actor, request_id, approve), None
        event_type = "admin.four-eyes.approve" if approve else "admin.four-eyes.reject"
        target = f"four-eyes:{request_id}"
        self.lc.authorise(actor, "four-eyes.approve", event_type, target)
        self.lc.authorise(actor, ACTS[pending.operation], event_type, target)
        uid = pending.target.removeprefix("staff:")
        try:
            if uid == actor.uid:
                raise Forbidden(N_("four eyes: the owner of the account does not approve a help-desk act on it"))
            member = self.lc.member(uid)
            with self.lc.sessions.begin() as session:
                row = self.lc.four_eyes.pending_row(session, request_id, actor.uid)
                self.lc.trail.append(session, self.lc.event(actor, event_type, "success", row.target, request=row.id,
                                                            operation=row.operation, requested_by=row.requested_by))
                if not approve:
                    self.lc.four_eyes.decide(row, actor.uid, FourEyesStatus.REJECTED,
                                             "rejected by the second administrator")
                    return FourEyesView.of(row), None
                if not member.enabled and row.operation not in _ON_DISABLED:  # disabled since the request
                    raise InvalidState(N_("%(uid)s is disabled (a leaver), not locked out: the help desk does not "
                                          "reopen a disabled account.", uid=uid))
                result = self._run(session, actor, row.operation, member)
                self.lc.four_eyes.decide(row, actor.uid, FourEyesStatus.EXECUTED, f"{row.operation} of {uid} done")
                view = FourEyesView.of(row)
        except (GovernanceError, DirectoryError) as exc:
            self.lc.refused(actor, event_type, target, str(exc), kind=getattr(exc, "kind", "error"))
            raise
        self._committed(result)
        return view, result
