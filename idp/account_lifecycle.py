"""The staff account lifecycle and every administrative act, with separation of duties and audit.

Lifecycle (the classified-system rules: accounts applied for by a department, approved by its
leader, issued centrally, applied for again on a change of post):

1. ``apply``  - a department officer (a staff member of that department, no administrator role)
   applies for an account: name, department, post, and the post's non-administrative groups;
2. ``approve`` - the department's approver (group ``approvers``, same department, not the
   applicant) approves or rejects it;
3. ``issue``  - a security administrator issues it: the directory entry is created with a one-time
   initial password marked must-change (ppolicy ``pwdReset``); the first login changes it
   (``/password/change``, idp/password_change.py: current password first, then the policy) and enrols TOTP
   (the login flow enrols every account without a second factor);
4. ``change_post`` - a security administrator records a change of post: the old post's groups
   are removed at once and a new application (kind ``change-of-post``) must be approved by the
   new department's approver and issued before the new post's groups are granted;
5. ``leaver`` - one operation: sessions and refresh tokens ended, every certificate revoked, the
   directory entry disabled and its groups removed (see :meth:`Lifecycle.leaver` for how far it
   is all-or-nothing).

Every act is checked against :mod:`idp.roles` and audited: allowed acts inside their business
transaction (the audit entry is appended before any directory write, so if the trail cannot be
written nothing happens), refused acts as ``refused`` entries.
"""

from __future__ import annotations

import datetime
import json
import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cryptography import x509
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from ca import revocation
from ca.errors import CaError
from ca.events import CaEvent
from ca.models import Authority, Certificate, CertificateStatus
from directory.administration import DirectoryWriter, initial_password
from directory.errors import DirectoryError
from idp.governance_models import AccountApplication, ApplicationStatus, FourEyesStatus
from idp.oidc.session_end import end_sessions_of
from idp.roles import (ADMIN_ROLES, APPROVERS, FOUR_EYES_OPERATIONS, MINIMUM_HOLDERS, SECURITY_ADMIN, Forbidden,
                       FourEyes, FourEyesView, GovernanceError, admin_roles_of, check_grant, check_removal, require,
                       role_name)
from translatable import N_, Text

if TYPE_CHECKING:
    from audit.trail import AuditEvent, AuditTrail
    from idp.deployment import Deployment
    from directory.client import StaffMember

log = logging.getLogger("tessera.governance")

MAX_NAME = 128
#: the refusal of an administrator's application (the console refuses before showing the form too)
ADMINISTRATORS_DO_NOT_APPLY = N_("Administrators do not apply for accounts: a department officer does.")


class NotFoundError(GovernanceError):
    kind = "not-found"
    status = 404


class InvalidState(GovernanceError):
    kind = "invalid-state"
    status = 409


@dataclass(frozen=True)
class Actor:
    """Who acts: a staff member as the directory describes them now, and where the request came from."""

    uid: str
    groups: frozenset[str]
    department: str
    source_address: str | None = None
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    channel: str = "web"  # "web" or "cli:<operator>"

    @classmethod
    def of(cls, member: "StaffMember", source_address: str | None = None, request_id: str | None = None,
           channel: str = "web") -> "Actor":
        return cls(member.uid, frozenset(member.groups), member.department, source_address,
                   request_id or uuid.uuid4().hex, channel)

    @property
    def subject(self) -> str:
        return f"staff:{self.uid}"

    @property
    def role(self) -> str:
        return role_name(self.groups)


@dataclass(frozen=True)
class IssuedAccount:
    uid: str
    dn: str
    initial_password: str  # shown once to the issuing administrator, never stored or logged


@dataclass(frozen=True)
class LeaverReport:
    uid: str
    sessions_ended: int
    tokens_revoked: int
    certificates_revoked: list[str]
    groups_removed: list[str]


@dataclass(frozen=True)
class ApplicationView:
    id: int
    kind: str
    uid: str
    given_name: str
    surname: str
    department: str
    post: str
    groups: list[str]
    previous_post: str | None
    status: str
    applied_by: str
    applied_at: datetime.datetime
    decided_by: str | None
    decided_at: datetime.datetime | None
    issued_by: str | None
    issued_at: datetime.datetime | None
    note: str | None

    @classmethod
    def of(cls, row: AccountApplication) -> "ApplicationView":
        return cls(row.id, row.kind, row.uid, row.given_name, row.surname, row.department, row.post,
                   json.loads(row.groups_json or "[]"), row.previous_post, row.status, row.applied_by, row.applied_at,
                   row.decided_by, row.decided_at, row.issued_by, row.issued_at, row.note)


def _text(value: object, what: Text, limit: int = MAX_NAME) -> str:
    """``value`` stripped, when it is text of 1 to ``limit`` printable characters; ``what`` names it in a refusal."""
    if not isinstance(value, str) or not value.strip():
        raise GovernanceError(N_("%(what)s is required", what=what))
    value = value.strip()
    if len(value) > limit or any(ord(c) < 32 for c in value):
        raise GovernanceError(N_("%(what)s must be at most %(limit)s printable characters", what=what, limit=limit))
    return value


class Lifecycle:
    """The administrative acts of one deployment (one per process or per command)."""

    def __init__(self, deployment: "Deployment", trail: "AuditTrail | None" = None,
                 writer: DirectoryWriter | None = None) -> None:
        self.d = deployment
        self.sessions = deployment.sessions
        self.clock: Callable[[], datetime.datetime] = deployment.now
        self._trail = trail
        self._writer = writer
        self.four_eyes = FourEyes(self.sessions, self.clock)

    @property
    def trail(self) -> "AuditTrail":
        if self._trail is None:
            self._trail = self.d.audit
        return self._trail

    @property
    def writer(self) -> DirectoryWriter:
        if self._writer is None:
            self._writer = DirectoryWriter(self.d.directory.config)
        return self._writer

    # -- audit and authorisation -------------------------------------------------------------------
    def event(self, actor: Actor, event_type: str, result: str, object_: str | None = None,
              **details: Any) -> "AuditEvent":
        from audit.trail import AuditEvent

        if actor.channel != "web":
            details["channel"] = actor.channel
        if object_ is not None and len(object_) > 255:  # a name from the request: the column's width
            details["object_clipped"] = True
            object_ = object_[:255]
        return AuditEvent(event_type, actor.subject, result, subject_role=actor.role, object=object_,
                          source_address=actor.source_address, request_id=actor.request_id[:64], details=details)

    def refused(self, actor: Actor, event_type: str, object_: str | None, reason: str, **details: Any) -> None:
        """Record a refused act (its own transaction: there is no business transaction to join)."""
        self.trail.record(self.event(actor, event_type, "refused", object_, reason=reason[:500], **details))

    def authorise(self, actor: Actor, permission: str, event_type: str, object_: str | None = None) -> None:
        """Refuse (audited) unless the actor's role allows ``permission``."""
        try:
            require(actor.groups, permission)
        except GovernanceError as exc:
            self.refused(actor, event_type, object_, str(exc), permission=permission, kind=exc.kind)
            raise

    def _refuse(self, actor: Actor, event_type: str, object_: str | None, error: GovernanceError) -> GovernanceError:
        self.refused(actor, event_type, object_, str(error), kind=error.kind)
        return error

    def member(self, uid: str, actor: Actor | None = None, event_type: str | None = None) -> "StaffMember":
        """The staff member ``uid``; with ``actor`` and ``event_type``, a missing one is a refusal on the trail."""
        member = self.d.directory.find(uid)
        if member is None:
            error = NotFoundError(N_("no staff member %(uid)s in the directory", uid=repr(uid)))
            if actor is not None and event_type is not None:
                raise self._refuse(actor, event_type, f"staff:{str(uid)[:64]}", error)
            raise error
        return member

    # -- applications ------------------------------------------------------------------------------
    def apply(self, actor: Actor, uid: str, given_name: str, surname: str, department: str, post: str,
              groups: Iterable[str] = ()) -> ApplicationView:
        """A department officer applies for a new account in their own department."""
        event_type = "admin.account.apply"
        try:
            uid = _text(uid, N_("the user name"), 64)
            from directory.client import valid_username

            if not valid_username(uid):
                raise GovernanceError(N_("the user name may hold letters, digits and . _ @ - only"))
            given_name, surname = _text(given_name, N_("the given name")), _text(surname, N_("the surname"))
            department, post = _text(department, N_("the department"), 64), _text(post, N_("the post"))
            wanted = sorted(set(groups))
            for group in wanted:
                if group != APPROVERS:
                    raise GovernanceError(N_("an application may ask for the group %(group)s only; administrator roles "
                                             "are granted by a security administrator with four eyes",
                                             group=repr(APPROVERS)))
        except GovernanceError as exc:
            raise self._refuse(actor, event_type, f"staff:{str(uid)[:64]}", exc) from exc
        self._officer_of(actor, department, event_type, f"staff:{uid}")
        try:
            self.known_department(department)
        except GovernanceError as exc:
            raise self._refuse(actor, event_type, f"staff:{uid}", exc) from exc
        if self.d.directory.find(uid) is not None:
            raise self._refuse(actor, event_type, f"staff:{uid}", InvalidState(N_("the directory already has %(uid)s",
                                                                                             uid=repr(uid))))
        with self.sessions() as session:
            open_one = session.scalar(select(AccountApplication.id).where(
                AccountApplication.uid == uid,
                AccountApplication.status.in_((ApplicationStatus.APPLIED, ApplicationStatus.APPROVED))))
        if open_one is not None:
            raise self._refuse(actor, event_type, f"staff:{uid}",
                               InvalidState(N_("application #%(id)s for %(uid)s is already open", id=open_one,
                                               uid=repr(uid))))
        with self.sessions.begin() as session:
            row = AccountApplication(kind="new-account", uid=uid, given_name=given_name, surname=surname,
                                     department=department, post=post, groups_json=json.dumps(wanted),
                                     status=ApplicationStatus.APPLIED, applied_by=actor.uid, applied_at=self.clock())
            session.add(row)
            session.flush()
            self.trail.append(session, self.event(actor, event_type, "success", f"staff:{uid}", application=row.id,
                                                  department=department, post=post, groups=wanted))
            return ApplicationView.of(row)

    def known_department(self, department: str) -> str:
        """``department`` when it is one of the directory's departments (its organisation under
        ``TESSERA_LDAP_DEPARTMENTS_BASE``); otherwise refused, naming them: an application for a
        department nobody approves for would wait for ever."""
        departments = self.d.directory.departments()
        if department not in departments:
            raise GovernanceError(N_("%(department)s is not a department of the directory's organisation; choose one "
                                     "of: %(departments)s", department=repr(department[:64]),
                                     departments=", ".join(sorted(departments)) or N_("none")))
        return department

    def _officer_of(self, actor: Actor, department: str, event_type: str, object_: str) -> None:
        if admin_roles_of(actor.groups):
            raise self._refuse(actor, event_type, object_, Forbidden(ADMINISTRATORS_DO_NOT_APPLY))
        if actor.department != department:
            raise self._refuse(actor, event_type, object_, Forbidden(N_(
                "Only an officer of the department %(department)s may apply for its accounts.",
                department=repr(department))))

    def _application(self, session: Session, application_id: int) -> AccountApplication:
        row = session.scalar(select(AccountApplication).where(AccountApplication.id == application_id).with_for_update())
        if row is None:
            raise NotFoundError(N_("no application #%(id)s", id=application_id))
        return row

    def decide(self, actor: Actor, application_id: int, approve: bool, note: str | None = None) -> ApplicationView:
        """The department's approver approves or rejects an application."""
        event_type = "admin.account.approve" if approve else "admin.account.reject"
        target = f"application:{application_id}"
        with self.sessions() as session:
            row = session.get(AccountApplication, application_id)
            if row is None:
                raise self._refuse(actor, event_type, target, NotFoundError(N_("no application #%(id)s",
                                                                                  id=application_id)))
            department, applicant = row.department, row.applied_by
        if admin_roles_of(actor.groups) or APPROVERS not in actor.groups or actor.department != department:
            raise self._refuse(actor, event_type, target, Forbidden(N_(
                "Only an approver of the department %(department)s (without an administrator role) may decide.",
                department=repr(department))))
        if actor.uid == applicant:
            raise self._refuse(actor, event_type, target,
                               Forbidden(N_("An approver may not approve their own application.")))
        try:
            with self.sessions.begin() as session:
                row = self._application(session, application_id)
                if row.status != ApplicationStatus.APPLIED:
                    # the state's word is in the catalogue (the admin console's words)
                    raise InvalidState(N_("application #%(id)s is %(status)s, not waiting for approval",
                                          id=application_id, status=Text(row.status)))
                row.status = ApplicationStatus.APPROVED if approve else ApplicationStatus.REJECTED
                row.decided_by, row.decided_at = actor.uid, self.clock()
                row.note = (note or "")[:500] or None
                self.trail.append(session, self.event(actor, event_type, "success", f"staff:{row.uid}",
                                                      application=row.id, kind=row.kind))
                return ApplicationView.of(row)
        except InvalidState as exc:
            raise self._refuse(actor, event_type, target, exc) from exc

    def issue(self, actor: Actor, application_id: int) -> IssuedAccount | ApplicationView:
        """The security administrator issues an approved application: a new directory entry with a
        must-change initial password (new account), or the new post's groups (change of post)."""
        event_type = "admin.account.issue"
        target = f"application:{application_id}"
        self.authorise(actor, "account.issue", event_type, target)
        password = initial_password()
        created: str | None = None
        try:
            with self.sessions.begin() as session:
                row = self._application(session, application_id)
                if row.status != ApplicationStatus.APPROVED:
                    raise InvalidState(N_("application #%(id)s is %(status)s: only an approved one is issued",
                                          id=application_id, status=Text(row.status)))
                groups = json.loads(row.groups_json or "[]")
                row.status, row.issued_by, row.issued_at = ApplicationStatus.ISSUED, actor.uid, self.clock()
                # the audit entry first: if it cannot be written, the directory is never touched
                self.trail.append(session, self.event(actor, event_type, "success", f"staff:{row.uid}",
                                                      application=row.id, kind=row.kind, groups=groups))
                uid, kind = row.uid, row.kind
                if kind == "new-account":
                    dn = self.writer.create_person(uid, row.given_name, row.surname, row.department, row.post, password)
                    created = uid
                else:
                    dn = self.member(uid).dn
                    self.writer.set_post(uid, row.post, row.department)
                for group in groups:
                    self.writer.add_to_group(uid, group)
        except (DirectoryError, GovernanceError) as exc:
            if created:
                self.writer.delete_person(created)  # undo the entry: the application stays approved
            if isinstance(exc, GovernanceError):
                raise self._refuse(actor, event_type, target, exc) from exc
            self.refused(actor, event_type, target, exc.message, kind=exc.kind)
            raise
        if kind == "new-account":
            return IssuedAccount(uid, dn, password)
        return self.application(application_id)

    def change_post(self, actor: Actor, uid: str, post: str, department: str | None = None,
                    groups: Iterable[str] = ()) -> ApplicationView:
        """A change of post: the old post's groups go now; the new ones need a new approval and issue."""
        event_type = "admin.account.change-post"
        self.authorise(actor, "account.change-post", event_type, f"staff:{uid}")
        member = self.member(uid, actor, event_type)
        try:
            post = _text(post, N_("the new post"))
        except GovernanceError as exc:
            raise self._refuse(actor, event_type, f"staff:{uid}", exc) from exc
        try:  # a department chosen must be the directory's (the same one stays as the directory has it)
            department = self.known_department(department) if department else member.department
        except GovernanceError as exc:
            raise self._refuse(actor, event_type, f"staff:{uid}", exc) from exc
        wanted = sorted(set(groups))
        if any(g != APPROVERS for g in wanted):
            raise self._refuse(actor, event_type, f"staff:{uid}", GovernanceError(
                N_("a post may ask for the group %(group)s only", group=repr(APPROVERS))))
        removed = sorted(g for g in member.groups if g == APPROVERS or g in ADMIN_ROLES)
        with self.sessions.begin() as session:
            row = AccountApplication(kind="change-of-post", uid=uid, given_name=member.given_name or member.name,
                                     surname=member.surname or member.uid, department=department, post=post,
                                     groups_json=json.dumps(wanted), previous_post=member.title,
                                     status=ApplicationStatus.APPLIED, applied_by=actor.uid, applied_at=self.clock())
            session.add(row)
            session.flush()
            self.trail.append(session, self.event(actor, event_type, "success", f"staff:{uid}", application=row.id,
                                                  previous_post=member.title, post=post, groups_removed=removed))
            for group in removed:
                self.writer.remove_from_group(uid, group)
            return ApplicationView.of(row)

    def application(self, application_id: int) -> ApplicationView:
        with self.sessions() as session:
            row = session.get(AccountApplication, application_id)
            if row is None:
                raise NotFoundError(N_("no application #%(id)s", id=application_id))
            return ApplicationView.of(row)

    def applications(self, status: str | None = None, text: str = "", department: str | None = None,
                     limit: int = 25, offset: int = 0) -> tuple[list[ApplicationView], int]:
        if status and status not in tuple(ApplicationStatus):
            raise GovernanceError(N_("unknown status %(status)s", status=repr(status)))
        with self.sessions() as session:
            query = select(AccountApplication)
            if status:
                query = query.where(AccountApplication.status == status)
            if department:
                query = query.where(AccountApplication.department == department)
            if text:
                like = f"%{text.strip()[:64]}%"
                query = query.where(or_(AccountApplication.uid.ilike(like), AccountApplication.surname.ilike(like),
                                        AccountApplication.given_name.ilike(like), AccountApplication.post.ilike(like)))
            total = int(session.scalar(select(func.count()).select_from(query.subquery())) or 0)
            rows = session.scalars(query.order_by(AccountApplication.id.desc()).limit(limit).offset(offset)).all()
            return [ApplicationView.of(r) for r in rows], total

    # -- leavers -----------------------------------------------------------------------------------
    def leaver(self, actor: Actor, uid: str, reason: str = "cessationOfOperation") -> LeaverReport:
        """One operation for a leaver. All-or-nothing as far as the systems allow:

        1. sessions and tokens are ended (harmless on its own, so first: nothing to undo);
        2. one SQL transaction: the audit entry, every valid or on-hold certificate of the person
           revoked with new CRLs; inside it, before the commit, the directory entry is disabled and
           its groups removed. A directory failure rolls the transaction (and so the revocations and
           the audit entry) back; a failed commit re-enables the entry and restores its groups;
        3. sessions and tokens are ended again, for a login that finished between 1 and 2.
        """
        event_type = "admin.account.leaver"
        self.authorise(actor, "account.leaver", event_type, f"staff:{uid}")
        member = self.member(uid, actor, event_type)
        if actor.uid == uid:
            raise self._refuse(actor, event_type, f"staff:{uid}", Forbidden(
                N_("You cannot process yourself as a leaver.")))
        for role in admin_roles_of(member.groups):  # a leaver must not take the last holders of a role away
            try:
                check_removal(role, uid, self._holders(role))
            except GovernanceError as exc:
                raise self._refuse(actor, event_type, f"staff:{uid}", exc) from exc
        flag = revocation.parse_reason(reason)
        first = end_sessions_of(self.d, uid, "leaver", actor=actor.subject, role=actor.role, offline_too=True)
        groups = sorted(member.groups & (set(ADMIN_ROLES) | {APPROVERS} | set(self.d.directory.config.role_groups)))
        directory_changed = False
        try:
            with self.sessions.begin() as session:
                now = self.clock()
                certs = list(session.scalars(select(Certificate).where(
                    Certificate.requester == f"staff:{uid}",
                    Certificate.status.in_((CertificateStatus.VALID, CertificateStatus.ON_HOLD)),
                    Certificate.not_after > now)))
                serials = [c.serial_hex for c in certs]
                self.trail.append(session, self.event(actor, event_type, "success", f"staff:{uid}",
                                                      certificates=serials, groups_removed=groups,
                                                      reason=flag.value))
                self._revoke_in(session, actor, certs, flag, now)
                self.writer.disable(uid)
                directory_changed = True
                for group in groups:
                    self.writer.remove_from_group(uid, group)
        except Exception as exc:
            if directory_changed:
                self._undo_leaver(uid, groups)
            if isinstance(exc, (DirectoryError, GovernanceError, CaError)):
                self.refused(actor, event_type, f"staff:{uid}", str(exc), kind=getattr(exc, "kind", "error"))
            raise
        again = end_sessions_of(self.d, uid, "leaver", actor=actor.subject, role=actor.role, offline_too=True)
        return LeaverReport(uid, first.sessions + again.sessions, first.access_tokens + again.access_tokens, serials,
                            groups)

    def _undo_leaver(self, uid: str, groups: list[str]) -> None:
        try:
            self.writer.enable(uid)
            for group in groups:
                self.writer.add_to_group(uid, group)
        except DirectoryError:
            log.error("leaver of %s failed and the directory could not be restored: re-enable it by hand", uid)

    def _revoke_in(self, session: Session, actor: Actor, certs: list[Certificate], flag: x509.ReasonFlags,
                   now: datetime.datetime) -> None:
        """Revoke ``certs`` through the CA (:meth:`ca.authority.CertificateAuthority.revoke_in`: new
        CRLs, one ``cert.revoke`` per certificate) in the caller's transaction, each event recorded
        as the administrator's (their role, request and channel, like the act's own entry)."""
        def record(inner: Session, event: CaEvent) -> None:
            self.trail.append(inner, self.event(actor, event.type, "success", event.object, **event.details))

        self.d.ca.revoke_in(session, certs, flag, actor.subject, now, events=record)

    # -- roles ---------------------------------------------------------------------------------------
    def grant_role(self, actor: Actor, uid: str, group: str) -> FourEyesView | None:
        """Grant ``group``; an administrator role becomes a four-eyes request (returned)."""
        event_type = "admin.role.grant"
        self.authorise(actor, "role.grant", event_type, f"staff:{uid}")
        member = self.member(uid, actor, event_type)
        try:
            check_grant(member.groups, group)
            if uid == actor.uid:
                raise Forbidden(N_("Nobody grants a role to themselves."))
        except GovernanceError as exc:
            raise self._refuse(actor, event_type, f"staff:{uid}", exc) from exc
        if group in ADMIN_ROLES:
            return self.request_four_eyes(actor, "add-administrator", f"staff:{uid}", {"group": group})
        with self.sessions.begin() as session:
            self.trail.append(session, self.event(actor, event_type, "success", f"staff:{uid}", group=group))
            self.writer.add_to_group(uid, group)
        return None

    def remove_role(self, actor: Actor, uid: str, group: str) -> FourEyesView | None:
        """Remove ``group``; an administrator role becomes a four-eyes request (returned), and the
        last holders of one are never removed (:func:`idp.roles.check_removal`)."""
        event_type = "admin.role.revoke"
        self.authorise(actor, "role.remove", event_type, f"staff:{uid}")
        member = self.member(uid, actor, event_type)
        if group not in member.groups:
            raise self._refuse(actor, event_type, f"staff:{uid}",
                               InvalidState(N_("%(uid)s is not in %(group)s", uid=uid, group=repr(group))))
        if group in ADMIN_ROLES:
            try:
                check_removal(group, uid, self._holders(group))
            except GovernanceError as exc:
                raise self._refuse(actor, event_type, f"staff:{uid}", exc) from exc
            return self.request_four_eyes(actor, "remove-administrator", f"staff:{uid}", {"group": group})
        with self.sessions.begin() as session:
            self.trail.append(session, self.event(actor, event_type, "success", f"staff:{uid}", group=group))
            self.writer.remove_from_group(uid, group)
        return None

    def add_second_security_admin(self, operator: str, uid: str) -> str:
        """The host's system operator (``cli:<os user>``) makes ``uid`` a security administrator
        while fewer than :data:`idp.roles.MINIMUM_HOLDERS` hold the role: until then no four-eyes
        request can be approved, so a new deployment (one security administrator in its seed)
        would need the directory's own tools. Audited as ``admin.role.grant`` (``bootstrap``) in
        the transaction that writes the directory; refused (and audited) once the role has its
        minimum, when a second security administrator approves instead."""
        event_type = "admin.role.grant"
        target = f"staff:{uid}"

        def event(result: str, **details: Any) -> "AuditEvent":
            from audit.trail import AuditEvent

            return AuditEvent(event_type, operator, result, subject_role="operator", object=target,
                              details={"group": SECURITY_ADMIN, "bootstrap": True, "channel": "cli", **details})

        try:
            member = self.d.directory.find(uid)
            if member is None or not member.enabled:
                raise NotFoundError(N_("%(uid)s is not an active staff member in the directory", uid=uid))
            holders = self._holders(SECURITY_ADMIN)
            if len(holders) >= MINIMUM_HOLDERS[SECURITY_ADMIN]:
                raise Forbidden(N_("There are %(count)s security administrators already: a new one is asked for "
                                   "under four eyes (the console's four-eyes page, or tessera admin four-eyes "
                                   "request add-administrator).", count=len(holders)))
            if SECURITY_ADMIN in member.groups:
                raise InvalidState(N_("%(uid)s is a security administrator already", uid=uid))
            check_grant(member.groups, SECURITY_ADMIN)
        except GovernanceError as exc:
            self.trail.record(event("refused", reason=str(exc)[:500]))
            raise
        with self.sessions.begin() as session:
            self.trail.append(session, event("success", holders=holders))
            self.writer.add_to_group(uid, SECURITY_ADMIN)
        return f"{uid} is now a security administrator ({len(holders) + 1} hold the role)"

    def _holders(self, group: str) -> list[str]:
        """The active staff members holding ``group`` now, as the directory says."""
        return [m.uid for m in self.d.directory.members_of(group) if m.enabled]

    def _check_target(self, operation: str, target: str, details: dict[str, Any]) -> None:
        """A four-eyes request names something that exists and may be asked for: a staff member in
        the directory (and an administrator role) or an issuing CA of the store (never the root)."""
        from directory.client import valid_username

        kind, _, name = target.partition(":")
        if operation in ("add-administrator", "remove-administrator"):
            if kind != "staff" or not valid_username(name):
                raise GovernanceError(N_("%(target)s is not a staff member's user name", target=repr(target[:80])))
            group = details.get("group")
            if group not in ADMIN_ROLES:
                raise GovernanceError(N_("%(group)s is not an administrator role (%(roles)s)",
                                         group=repr(str(group)[:80]), roles=", ".join(ADMIN_ROLES)))
            member = self.member(name)
            if operation == "remove-administrator" and group not in member.groups:
                raise InvalidState(N_("%(uid)s is not in %(group)s", uid=name, group=repr(group)))
            return
        if operation == "revoke-issuing-ca":
            with self.sessions() as session:
                authority = session.scalar(select(Authority).where(Authority.name == name)) if kind == "ca" else None
                issuing = [a.name for a in session.scalars(select(Authority).where(Authority.parent_id.is_not(None))
                                                           .order_by(Authority.name))]
            if authority is None or authority.parent_id is None:
                raise GovernanceError(N_("%(name)s is not an issuing certificate authority of this service (one of: "
                                         "%(issuing)s); the root is never revoked this way", name=repr(name[:80]),
                                         issuing=", ".join(issuing) or N_("none")))
            return
        raise GovernanceError(N_("%(operation)s is not a four-eyes operation", operation=repr(operation)))

    # -- four eyes -----------------------------------------------------------------------------------
    def request_four_eyes(self, actor: Actor, operation: str, target: str,
                          details: dict[str, Any] | None = None) -> FourEyesView:
        event_type = "admin.four-eyes.request"
        permission = FOUR_EYES_OPERATIONS.get(operation)
        if permission is None:
            raise self._refuse(actor, event_type, target, GovernanceError(
                N_("%(operation)s is not a four-eyes operation", operation=repr(operation))))
        self.authorise(actor, "four-eyes.request", event_type, target)
        self.authorise(actor, permission, event_type, target)
        try:
            self._check_target(operation, target, details or {})
        except GovernanceError as exc:
            raise self._refuse(actor, event_type, target[:255], exc) from exc
        try:
            with self.sessions.begin() as session:
                row = self.four_eyes.request(session, operation, target, actor.uid, details)
                self.trail.append(session, self.event(actor, event_type, "success", target, request=row.id,
                                                      operation=operation, **(details or {})))
                return FourEyesView.of(row)
        except GovernanceError as exc:
            raise self._refuse(actor, event_type, target, exc) from exc

    def decide_four_eyes(self, actor: Actor, request_id: int, approve: bool) -> FourEyesView:
        """A second administrator approves (and so runs) or rejects a pending request."""
        event_type = "admin.four-eyes.approve" if approve else "admin.four-eyes.reject"
        target = f"four-eyes:{request_id}"
        self.authorise(actor, "four-eyes.approve", event_type, target)
        pending = self.four_eyes.get(request_id)
        if pending is not None:
            self.authorise(actor, FOUR_EYES_OPERATIONS[pending.operation], event_type, target)
        try:
            with self.sessions.begin() as session:
                row = self.four_eyes.pending_row(session, request_id, actor.uid)
                details = json.loads(row.details_json or "{}")
                if not approve:
                    self.four_eyes.decide(row, actor.uid, FourEyesStatus.REJECTED,
                                          "rejected by the second administrator")
                    self.trail.append(session, self.event(actor, event_type, "success", row.target, request=row.id,
                                                          operation=row.operation, requested_by=row.requested_by))
                    return FourEyesView.of(row)
                self.trail.append(session, self.event(actor, event_type, "success", row.target, request=row.id,
                                                      operation=row.operation, requested_by=row.requested_by,
                                                      **details))
                outcome = self._execute(session, actor, row.operation, row.target, details)
                self.four_eyes.decide(row, actor.uid, FourEyesStatus.EXECUTED, outcome)
                return FourEyesView.of(row)
        except (GovernanceError, CaError, DirectoryError) as exc:
            self.refused(actor, event_type, target, str(exc), kind=getattr(exc, "kind", "error"))
            raise

    def _execute(self, session: Session, actor: Actor, operation: str, target: str, details: dict[str, Any]) -> str:
        if operation == "add-administrator":
            uid, group = target.removeprefix("staff:"), str(details.get("group"))
            check_grant(self.member(uid).groups, group)  # again: the directory may have changed since
            self.writer.add_to_group(uid, group)
            return f"{uid} added to {group}"
        if operation == "remove-administrator":
            uid, group = target.removeprefix("staff:"), str(details.get("group"))
            if group not in self.member(uid).groups:
                raise InvalidState(N_("%(uid)s is not in %(group)s any more", uid=uid, group=repr(group)))
            check_removal(group, uid, self._holders(group))  # again: another removal may have run since
            self.writer.remove_from_group(uid, group)
            return f"{uid} removed from {group}"
        if operation == "revoke-issuing-ca":
            name = target.removeprefix("ca:")
            authority = session.scalar(select(Authority).where(Authority.name == name))
            if authority is None or authority.parent_id is None:
                raise GovernanceError(N_("%(name)s is not an issuing certificate authority", name=repr(name)))
            cert = session.scalar(select(Certificate).where(Certificate.serial_hex == authority.serial_hex))
            if cert is None:
                raise NotFoundError(N_("the certificate of %(name)s is not in the store", name=repr(name)))
            self._revoke_in(session, actor, [cert],
                            revocation.parse_reason(str(details.get("reason") or "cACompromise")), self.clock())
            return f"issuing CA {name} ({cert.serial_hex}) revoked"
        raise GovernanceError(N_("unknown operation %(operation)s", operation=repr(operation)))

    # -- certificates, cards, clients ---------------------------------------------------------------
    def revoke_certificate(self, actor: Actor, serial: str, reason: str = "unspecified") -> Certificate | FourEyesView:
        """Revoke a certificate; the certificate of an issuing CA becomes a four-eyes request."""
        event_type = "cert.revoke"
        self.authorise(actor, "cert.revoke", event_type, f"cert:{serial[:64]}")
        try:
            flag = revocation.parse_reason(reason)
            from ca.issuance import find_certificate

            with self.sessions() as session:
                found = find_certificate(session, serial)
                authority = session.scalar(select(Authority).where(Authority.serial_hex == found.serial_hex))
                issuing_ca = found.profile == "issuing-ca" and authority is not None
                name = authority.name if authority is not None else ""
            if issuing_ca:
                return self.request_four_eyes(actor, "revoke-issuing-ca", f"ca:{name}", {"reason": flag.value})
            with self.sessions.begin() as session:  # its one entry is the CA's cert.revoke, as the actor's
                cert = find_certificate(session, serial)
                self._revoke_in(session, actor, [cert], flag, self.clock())
                return cert
        except CaError as exc:
            self.refused(actor, event_type, f"cert:{serial[:64]}", str(exc), kind=exc.kind)
            raise

    def block_card(self, actor: Actor, number: str) -> Any:
        """Block a citizen card (its certificates revoked: keyCompromise), as when reported lost."""
        event_type = "admin.card.block"
        self.authorise(actor, "card.block", event_type, f"card:{number[:32]}")
        from cardsim.config import CardSettings
        from cardsim.errors import CardError
        from cardsim.issuance import CardIssuer

        issuer = CardIssuer(self.d.ca, CardSettings.from_env(self.d.settings.home), actor=actor.subject)
        try:
            summary = issuer.report_lost(number)
        except CardError as exc:
            self.refused(actor, event_type, f"card:{number[:32]}", str(exc))
            raise
        finally:
            issuer.close()
        # report_lost commits its own transaction; the entry follows it (see docs/governance.md)
        self.trail.record(self.event(actor, event_type, "success", f"card:{summary.number}"))
        return summary

    def add_client(self, actor: Actor, name: str, redirect_uri: str, trusted: bool = False) -> Any:
        """Register an OpenID Connect client (its secret is returned once)."""
        from idp.oidc.clients import ClientRegistrationError

        event_type = "admin.client.add"
        self.authorise(actor, "client.add", event_type, None)
        def audited(session: Any, client_id: str) -> None:  # inside the registration's transaction
            self.trail.append(session, self.event(actor, event_type, "success", f"client:{client_id}", trusted=trusted))

        try:
            return self.d.clients.add(_text(name, N_("the client name")),
                                      [_text(redirect_uri, N_("the redirect URI"), 2000)],
                                      trusted=trusted, on_change=audited)
        except GovernanceError as exc:
            raise self._refuse(actor, event_type, None, exc) from exc
        except ClientRegistrationError as exc:
            raise self._refuse(actor, event_type, None, GovernanceError(str(exc))) from exc

    def remove_client(self, actor: Actor, client_id: str) -> bool:
        event_type = "admin.client.remove"
        self.authorise(actor, "client.remove", event_type, f"client:{client_id[:128]}")
        if self.d.clients.get(client_id) is None:
            raise self._refuse(actor, event_type, f"client:{client_id[:128]}",
                               NotFoundError(N_("no client %(client_id)s", client_id=repr(client_id))))
        def audited(session: Any, removed: str) -> None:  # inside the removal's transaction
            self.trail.append(session, self.event(actor, event_type, "success", f"client:{removed}"))

        return self.d.clients.remove(client_id, on_change=audited)
