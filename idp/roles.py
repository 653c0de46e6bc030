"""The three administrator roles and what each may do (separation of duties), and four eyes.

Roles come from directory groups (docs/directory.md):

=========================  ===================  =================================================
group                      role                 may
=========================  ===================  =================================================
system-administrators      system administrator configuration, OpenID Connect clients, service
                                                accounts; NOT roles, NOT the audit trail
security-administrators    security administr.  issue approved accounts, grant/remove roles, change
                                                of post, leavers, the help desk (reset a password
                                                or a second factor, unlock), revoke certificates,
                                                block cards; NOT configuration, NOT the audit trail
auditors                   auditor              read, export and report on the audit trail only
=========================  ===================  =================================================

No account may hold two of them: :func:`check_grant` refuses granting a second, and
:func:`login_refusal` gives the clear message a login must show when the directory says otherwise
(the admin console refuses such an account on every request as well).

Four eyes (:class:`FourEyes`): adding an administrator, removing one, revoking an issuing CA and
every help-desk act on an administrator's account (:mod:`idp.help_desk`) are asked for by one
security administrator and run only when a second, different security
administrator approves (on the command line both must have logged in: :mod:`idp.operators`). The
last holder of an administrator role is never removed (:func:`check_removal`): without an auditor
nobody reads the trail, without two security administrators nothing needing four eyes can be done.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from idp.governance_models import FourEyesRequest, FourEyesStatus
from translatable import N_, Text

SYSTEM_ADMIN = "system-administrators"
SECURITY_ADMIN = "security-administrators"
AUDITOR = "auditors"
APPROVERS = "approvers"

#: administrator role group -> (short role name used in audit entries, human name: translated where shown)
ADMIN_ROLES: dict[str, tuple[str, Text]] = {
    SYSTEM_ADMIN: ("system-admin", N_("system administrator")),
    SECURITY_ADMIN: ("security-admin", N_("security administrator")),
    AUDITOR: ("auditor", N_("auditor")),
}
#: groups a security administrator may grant (administrator roles only through four eyes)
GRANTABLE = (APPROVERS, *ADMIN_ROLES)

#: what each administrator role may do; anything not listed is refused (and audited)
PERMISSIONS: dict[str, frozenset[str]] = {
    SYSTEM_ADMIN: frozenset({
        "config.read", "config.change", "client.read", "client.add", "client.remove",
    }),
    SECURITY_ADMIN: frozenset({
        "people.read", "account.read", "account.issue", "account.change-post", "account.leaver",
        "account.reset-password", "account.reset-second-factor", "account.unlock", "account.end-sessions",
        "role.grant", "role.remove", "cert.read", "cert.revoke", "card.read", "card.block",
        "four-eyes.request", "four-eyes.approve", "config.read",
    }),
    AUDITOR: frozenset({"audit.read", "audit.export", "audit.report"}),
}
ALL_PERMISSIONS: frozenset[str] = frozenset().union(*PERMISSIONS.values())

#: operations that need a second administrator: operation -> permission both people must hold
FOUR_EYES_OPERATIONS: dict[str, str] = {
    "add-administrator": "role.grant",
    "remove-administrator": "role.remove",
    "revoke-issuing-ca": "cert.revoke",
    # the help desk (idp.help_desk) on an administrator's account
    "reset-password": "account.reset-password",
    "reset-second-factor": "account.reset-second-factor",
    "unlock": "account.unlock",
    "end-sessions": "account.end-sessions",
}


class GovernanceError(Exception):
    """Base of the refusals of this module and of the account lifecycle. ``kind`` is stable.

    The message is made with :func:`translatable.N_`: ``str(exc)`` is English (the command line,
    the audit trail's reasons), :func:`idp.i18n.shown` gives it in the page's language.
    """

    kind = "governance"
    status = 400


class Forbidden(GovernanceError):
    """The actor's role does not allow the action (separation of duties)."""

    kind = "forbidden"
    status = 403


class ConflictingRoles(GovernanceError):
    """An account would hold (or holds) two administrator roles."""

    kind = "conflicting-roles"
    status = 409


class FourEyesViolation(GovernanceError):
    """A four-eyes request approved by its own requester, or not pending any more."""

    kind = "four-eyes"
    status = 409


def admin_roles_of(groups: Iterable[str]) -> list[str]:
    """The administrator role groups among ``groups``, sorted."""
    return sorted(set(groups) & set(ADMIN_ROLES))


def role_name(groups: Iterable[str]) -> str:
    """The short role name for audit entries: ``system-admin``, ``security-admin``, ``auditor``,
    ``approver`` or ``staff`` (``conflicting`` when the directory gives two administrator roles)."""
    groups = set(groups)
    roles = admin_roles_of(groups)
    if len(roles) > 1:
        return "conflicting"
    if roles:
        return ADMIN_ROLES[roles[0]][0]
    return "approver" if APPROVERS in groups else "staff"


def _chained(template: str, names: list[Text]) -> Text:
    """``names`` joined two at a time by ``template`` (``%(first)s and %(second)s``), in words that translate."""
    joined = names[0]
    for name in names[1:]:
        joined = Text(template, first=joined, second=name)
    return joined


def either(names: list[Text]) -> Text:
    """``a or b``: the human names of the roles any of which may do something."""
    return _chained(N_("%(first)s or %(second)s"), names)


def login_refusal(groups: Iterable[str]) -> Text | None:
    """The message a login must show (and refuse) when the directory gives two administrator roles; None if fine.

    The login flow calls this after the password is accepted; the admin console calls it on every request.
    """
    roles = admin_roles_of(groups)
    if len(roles) <= 1:
        return None
    names = _chained(N_("%(first)s and %(second)s"), [ADMIN_ROLES[r][1] for r in roles])
    return N_("This account holds two administrator roles (%(names)s); the rules allow only one. Logging in is "
              "refused until a security administrator removes one of them in the directory.", names=names)


def permissions_of(groups: Iterable[str]) -> frozenset[str]:
    """What an account with these groups may do (nothing at all with conflicting roles)."""
    roles = admin_roles_of(groups)
    if len(roles) != 1:
        return frozenset()
    return PERMISSIONS[roles[0]]


def may(groups: Iterable[str], permission: str) -> bool:
    if permission not in ALL_PERMISSIONS:
        raise ValueError(f"unknown permission {permission!r}")
    return permission in permissions_of(groups)


def require(groups: Iterable[str], permission: str) -> None:
    """Raise :class:`Forbidden` (or :class:`ConflictingRoles`) unless ``groups`` allow ``permission``."""
    groups = list(groups)
    refusal = login_refusal(groups)
    if refusal:
        raise ConflictingRoles(refusal)
    if not may(groups, permission):
        roles = admin_roles_of(groups)
        holder = either([ADMIN_ROLES[g][1] for g, perms in PERMISSIONS.items() if permission in perms])
        if roles:
            raise Forbidden(N_("Refused: the %(role)s may not do this (%(permission)s); it is the %(holder)s's duty.",
                               role=ADMIN_ROLES[roles[0]][1], permission=permission, holder=holder))
        raise Forbidden(N_("Refused: a staff member without an administrator role may not do this (%(permission)s); "
                           "it is the %(holder)s's duty.", permission=permission, holder=holder))


def check_grant(target_groups: Iterable[str], group: str) -> None:
    """Refuse a grant that would give an account a second administrator role."""
    if group not in GRANTABLE:
        raise GovernanceError(N_("%(group)s is not a role Tessera grants (one of %(roles)s)",
                                 group=repr(group), roles=", ".join(GRANTABLE)))
    if group in ADMIN_ROLES:
        others = [g for g in admin_roles_of(target_groups) if g != group]
        if others:
            raise ConflictingRoles(N_("Refused: the account is already a %(role)s; no account may hold two "
                                      "administrator roles. Remove that role first.", role=ADMIN_ROLES[others[0]][1]))


#: the fewest active holders an administrator role keeps: two security administrators, or no
#: four-eyes request (not even adding a security administrator) could ever be approved again
MINIMUM_HOLDERS: dict[str, int] = {SYSTEM_ADMIN: 1, SECURITY_ADMIN: 2, AUDITOR: 1}


def check_removal(group: str, uid: str, holders: Iterable[str]) -> None:
    """Refuse removing ``group`` from ``uid`` when fewer than :data:`MINIMUM_HOLDERS` of ``holders``
    (the active members of the group now) would hold it afterwards."""
    if group not in ADMIN_ROLES:
        return
    others = set(holders) - {uid}
    needed = MINIMUM_HOLDERS[group]
    if len(others) < needed:
        role = ADMIN_ROLES[group][1]
        if others:  # (the English plural adds an s to the role's name)
            raise GovernanceError(N_("Refused: %(uid)s is one of the last %(needed)s %(role)ss; an administrator role "
                                     "always keeps at least %(needed)s holders. Add another one first (four eyes), "
                                     "then remove this one.", uid=uid, needed=needed, role=role))
        if needed > 1:
            raise GovernanceError(N_("Refused: %(uid)s is the last %(role)s; an administrator role always keeps at "
                                     "least %(needed)s holders. Add another one first (four eyes), then remove this "
                                     "one.", uid=uid, needed=needed, role=role))
        raise GovernanceError(N_("Refused: %(uid)s is the last %(role)s; an administrator role always keeps at least "
                                 "%(needed)s holder. Add another one first (four eyes), then remove this one.",
                                 uid=uid, needed=needed, role=role))


# -- four eyes -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FourEyesView:
    id: int
    operation: str
    target: str
    details: dict[str, Any]
    status: str
    requested_by: str
    requested_at: datetime.datetime
    decided_by: str | None
    decided_at: datetime.datetime | None
    outcome: str | None

    @classmethod
    def of(cls, row: FourEyesRequest) -> "FourEyesView":
        return cls(row.id, row.operation, row.target, json.loads(row.details_json or "{}"), row.status,
                   row.requested_by, row.requested_at, row.decided_by, row.decided_at, row.outcome)


class FourEyes:
    """Pending grave operations: requested by one administrator, approved and run by another."""

    def __init__(self, sessions: sessionmaker[Session], clock: Callable[[], datetime.datetime]) -> None:
        self.sessions = sessions
        self.clock = clock

    def request(self, session: Session, operation: str, target: str, requested_by: str,
                details: dict[str, Any] | None = None) -> FourEyesRequest:
        """Record a request inside the caller's transaction (which also appends its audit entry)."""
        if operation not in FOUR_EYES_OPERATIONS:
            raise GovernanceError(N_("%(operation)s is not a four-eyes operation (%(operations)s)",
                                     operation=repr(operation), operations=", ".join(FOUR_EYES_OPERATIONS)))
        duplicate = session.scalar(select(FourEyesRequest).where(
            FourEyesRequest.operation == operation, FourEyesRequest.target == target,
            FourEyesRequest.status == FourEyesStatus.PENDING))
        if duplicate is not None:
            raise FourEyesViolation(N_("request #%(id)s for the same operation is already waiting for approval",
                                       id=duplicate.id))
        row = FourEyesRequest(operation=operation, target=target, details_json=json.dumps(details or {}, sort_keys=True),
                              status=FourEyesStatus.PENDING, requested_by=requested_by, requested_at=self.clock())
        session.add(row)
        session.flush()
        return row

    def pending_row(self, session: Session, request_id: int, decided_by: str) -> FourEyesRequest:
        """The pending request ``request_id``, locked; refuses its own requester (the second pair of eyes)."""
        row = session.scalar(select(FourEyesRequest).where(FourEyesRequest.id == request_id).with_for_update())
        if row is None:
            raise GovernanceError(N_("no four-eyes request #%(id)s", id=request_id))
        if row.status != FourEyesStatus.PENDING:  # the state's word is in the catalogue (the admin console's words)
            raise FourEyesViolation(N_("request #%(id)s is %(status)s, not pending", id=request_id,
                                       status=Text(row.status)))
        if row.requested_by == decided_by:
            raise FourEyesViolation(N_("four eyes: a request must be approved by a second administrator, "
                                       "not by the one who asked for it"))
        return row

    def decide(self, row: FourEyesRequest, decided_by: str, status: FourEyesStatus, outcome: str) -> None:
        row.status = status
        row.decided_by = decided_by
        row.decided_at = self.clock()
        row.outcome = outcome[:500]

    def get(self, request_id: int) -> FourEyesView | None:
        with self.sessions() as session:
            row = session.get(FourEyesRequest, request_id)
            return FourEyesView.of(row) if row else None

    def list(self, status: str | None = None, limit: int = 50, offset: int = 0) -> tuple[list[FourEyesView], int]:
        from sqlalchemy import func

        with self.sessions() as session:
            query = select(FourEyesRequest)
            if status:
                query = query.where(FourEyesRequest.status == status)
            total = int(session.scalar(select(func.count()).select_from(query.subquery())) or 0)
            rows = session.scalars(query.order_by(FourEyesRequest.id.desc()).limit(limit).offset(offset)).all()
            return [FourEyesView.of(r) for r in rows], total
