"""The admin console: a home page per role, searchable paged tables (people, applications,
certificates, cards, clients, audit), detail pages, and actions that ask for confirmation.

Every request re-reads the acting staff member from the directory (a removed role or a leaver
takes effect at once) and refuses an account with two administrator roles. Every action is
checked against :mod:`idp.roles`; a forbidden one answers 403 (a page for a browser, an RFC 9457
problem otherwise) and is audited as ``refused``. Forms carry the CSRF token (idp/csrf.py); the
pages use no script at all, charts are inline SVG.

The password change page (``/password/change``) lives in :mod:`idp.password_change`.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import io
import json
import math
import uuid
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from babel.dates import get_timezone_name

from flask import Blueprint, Flask, Response, current_app, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext, lazy_gettext
from flask_login import current_user
from markupsafe import Markup, escape
from sqlalchemy import func, or_, select

from ca.errors import CaError
from ca.models import CertificateStatus
from cardsim.errors import CardError
from idp import problems
from idp.account_lifecycle import ADMINISTRATORS_DO_NOT_APPLY, Actor, IssuedAccount
from idp.deployment import current_deployment
from directory.administration import DirectoryWriter
from directory.errors import DirectoryError
from idp.governance_models import ApplicationStatus, FourEyesStatus
from idp.help_desk import HelpDesk, HelpDeskResult
from idp.roles import (ADMIN_ROLES, APPROVERS, GRANTABLE, SECURITY_ADMIN, ConflictingRoles, Forbidden, FourEyesView,
                       GovernanceError, admin_roles_of, login_refusal, permissions_of, role_name)
from idp.runtime_settings import InvalidSetting, RuntimeSettings, SettingView
from idp.runtime_settings import may_change as may_change_config
from idp.runtime_settings import may_read as may_read_config
from idp.runtime_settings import require as require_config
from idp.i18n import locale_name, shown
from translatable import N_

bp = Blueprint("admin_console", __name__, url_prefix="/admin")
PAGE_SIZE = 25
#: the query parameters the tables filter by (carried over by the pager's links)
TABLE_FILTERS = frozenset({"q", "status", "department", "since", "until", "type", "subject"})
#: the words shown for the codes the console's tables and pages show (states, kinds of application,
#: roles, four-eyes operations, audit results); the code itself is the English word, and stays the
#: value of forms, filters and element data (``word`` in the templates)
WORDS: dict[str, Any] = {
    "applied": lazy_gettext("applied"), "approved": lazy_gettext("approved"), "rejected": lazy_gettext("rejected"),
    "issued": lazy_gettext("issued"), "cancelled": lazy_gettext("cancelled"),
    "new-account": lazy_gettext("new-account"), "change-of-post": lazy_gettext("change-of-post"),
    "pending": lazy_gettext("pending"), "executed": lazy_gettext("executed"), "failed": lazy_gettext("failed"),
    "add-administrator": lazy_gettext("add-administrator"),
    "remove-administrator": lazy_gettext("remove-administrator"),
    "revoke-issuing-ca": lazy_gettext("revoke-issuing-ca"),
    "reset-password": lazy_gettext("reset-password"), "reset-second-factor": lazy_gettext("reset-second-factor"),
    "unlock": lazy_gettext("unlock"), "end-sessions": lazy_gettext("end-sessions"),
    "valid": lazy_gettext("valid"), "revoked": lazy_gettext("revoked"), "on-hold": lazy_gettext("on-hold"),
    "active": lazy_gettext("active"), "lost": lazy_gettext("lost"), "renewed": lazy_gettext("renewed"),
    "expired": lazy_gettext("expired"), "blocked": lazy_gettext("blocked"),
    "system-admin": lazy_gettext("system-admin"), "security-admin": lazy_gettext("security-admin"),
    "auditor": lazy_gettext("auditor"), "approver": lazy_gettext("approver"), "staff": lazy_gettext("staff"),
    "conflicting": lazy_gettext("conflicting"),
    "approvers": lazy_gettext("approvers"), "system-administrators": lazy_gettext("system-administrators"),
    "security-administrators": lazy_gettext("security-administrators"), "auditors": lazy_gettext("auditors"),
    "success": lazy_gettext("success"), "failure": lazy_gettext("failure"), "refused": lazy_gettext("refused"),
}
#: the titles of a refusal page, by HTTP status
REFUSAL_TITLES: dict[int, Any] = {400: lazy_gettext("Not understood"), 403: lazy_gettext("Not allowed"),
                                  404: lazy_gettext("Not found"), 409: lazy_gettext("Refused")}
F = TypeVar("F", bound=Callable[..., Any])


@bp.app_template_filter("word")
def word(code: object) -> str:
    """The words of a code the console shows (:data:`WORDS`) in the page's language; an unknown code as
    it is. The templates' ``word`` filter."""
    found = WORDS.get(str(code))
    return str(found) if found is not None else str(code)


def _request_id() -> str:
    rid = request.headers.get("X-Request-Id") or ""
    if not rid or len(rid) > 64 or not rid.replace("-", "").isalnum():
        rid = uuid.uuid4().hex
    return rid


class NotLoggedIn(Exception):
    pass


def actor() -> Actor:
    """The logged-in staff member, as the directory describes them now (read once per request and
    kept on ``flask.g``)."""
    cached: Actor | None = g.get("console_actor")
    if cached is not None:
        return cached
    if not current_user.is_authenticated:
        raise NotLoggedIn()
    member = current_deployment.directory.find(current_user.uid)
    if member is None or not member.enabled:
        raise Forbidden(gettext("This account is no longer active."))
    who = Actor.of(member, request.remote_addr, _request_id())
    refusal = login_refusal(member.groups)
    if refusal:
        current_deployment.lifecycle.refused(who, "admin.console", None, refusal, kind="conflicting-roles")
        raise ConflictingRoles(refusal)
    g.console_actor = who
    return who


def guarded(permission: str | None, event_type: str) -> Callable[[F], F]:
    """Require a login and (when given) ``permission``; a refusal is audited and answered 403."""
    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            who = actor()
            if permission is not None:
                obj = next(iter(kwargs.values()), None)
                kind = {"people": "staff", "account": "application", "four-eyes": "four-eyes"}.get(
                    event_type.split(".")[-2], event_type.split(".")[-2])
                current_deployment.lifecycle.authorise(who, permission, event_type, f"{kind}:{obj}" if obj else None)
            return fn(*args, **kwargs)
        return inner  # type: ignore[return-value]
    return wrap


def may_apply(who: Actor | None) -> bool:
    """Whether ``who`` may apply for accounts: a department's officer (staff or approver), never an
    administrator (``Lifecycle.apply`` refuses them; the console does not offer them the form)."""
    return who is not None and not admin_roles_of(who.groups)


def _page(template: str, /, *, http_status: HTTPStatus = HTTPStatus.OK, **context: Any) -> Response:
    """A console page. The HTTP status is an :class:`HTTPStatus` under a name no template uses, so a
    template variable (``status``: a filter, a state) can never become the response's status."""
    who: Actor | None = g.get("console_actor")
    html = render_template(template, me=who, role=role_name(who.groups) if who else None,
                           perms=permissions_of(who.groups) if who else frozenset(),
                           is_approver=bool(who and APPROVERS in who.groups), may_apply=may_apply(who),
                           sees_config=bool(who and may_read_config(who.groups)), **context)
    return Response(html, status=HTTPStatus(http_status).value, mimetype="text/html")


def _refusal(status: int, title: str, detail: str, kind: str) -> Response:
    if problems.wants_html():
        return _page("admin_error.html", http_status=HTTPStatus(status), title=title, detail=detail)
    return problems.problem(status, title, detail, kind)


def _state_filter(states: tuple[str, ...]) -> str | None:
    """The ``status`` filter of a table: one of ``states``, or None for all; anything else is refused (400)."""
    value = request.args.get("status") or None
    if value is not None and value not in states:
        raise GovernanceError(gettext("Unknown status %(value)s: choose one of %(states)s, or none for all.",
                                      value=repr(value[:32]), states=", ".join(word(s) for s in states)))
    return value


@bp.errorhandler(NotLoggedIn)
def _login_first(_exc: NotLoggedIn) -> Any:
    return redirect(url_for("login.login", next=request.full_path.rstrip("?")))


@bp.errorhandler(GovernanceError)
def _governance_error(exc: GovernanceError) -> Response:
    return _refusal(exc.status, str(REFUSAL_TITLES.get(exc.status, REFUSAL_TITLES[409])), shown(exc), exc.kind)


@bp.errorhandler(CaError)
def _ca_error(exc: CaError) -> Response:
    status = 404 if exc.kind == "not-found" else 409 if "state" in exc.kind else 400
    return _refusal(status, gettext("Refused"), str(exc), exc.kind)


@bp.errorhandler(CardError)
def _card_error(exc: CardError) -> Response:
    status = {"card-not-found": 404, "invalid-card-state": 409}.get(exc.kind, 400)
    return _refusal(status, gettext("Refused"), str(exc), exc.kind)


@bp.errorhandler(DirectoryError)
def _directory_error(exc: DirectoryError) -> Response:
    status = 503 if exc.kind == "directory-unavailable" else 409
    return _refusal(status, gettext("Directory"), shown(exc.message), exc.kind)


def _paging(total: int) -> dict[str, Any]:
    try:
        page = max(1, int(request.args.get("page") or 1))
    except ValueError:
        page = 1
    pages = max(1, math.ceil(total / PAGE_SIZE))
    page = min(page, pages)
    # only the tables' own filters go into the pager's links: any other name (``_external``,
    # ``_scheme``, ``endpoint``) would be an argument of url_for, not a query value
    args = {k: v for k, v in request.args.items() if k in TABLE_FILTERS}
    return {"page": page, "pages": pages, "total": total, "offset": (page - 1) * PAGE_SIZE, "args": args}


def _q() -> str:
    return (request.args.get("q") or "").strip()[:64]


def _confirm(title: str, detail: str, danger: bool = True) -> Any | None:
    """None when the form says it was confirmed; otherwise the confirmation page for this very post."""
    if request.form.get("confirmed") == "yes":
        return None
    fields = {k: v for k, v in request.form.items() if k not in ("csrf_token", "confirmed")}
    return _page("admin_confirm.html", title=title, detail=detail, action=request.path, fields=fields, danger=danger)


# -- home -------------------------------------------------------------------------------------------
@bp.get("/")
@guarded(None, "admin.home")
def home() -> Any:
    who = actor()
    lc = current_deployment.lifecycle
    context: dict[str, Any] = {}
    perms = permissions_of(who.groups)
    if "account.issue" in perms:
        context["to_issue"], _ = lc.applications(status=ApplicationStatus.APPROVED, limit=10)
        context["four_eyes"], _ = lc.four_eyes.list(status=FourEyesStatus.PENDING, limit=10)
    if "client.read" in perms:
        context["clients"] = current_deployment.clients.list()[:10]
    if may_read_config(who.groups):
        context["changed_settings"] = [v for v in settings_shown() if v.changed_by]
    if "audit.read" in perms:
        from audit.reports import report

        context["by_type"] = report(current_deployment.sessions, "type", limit=10)
    if not admin_roles_of_actor(who):
        context["department_applications"], _ = lc.applications(department=who.department, limit=10)
    return _page("admin_home.html", **context)


def admin_roles_of_actor(who: Actor) -> list[str]:
    return sorted(set(who.groups) & set(ADMIN_ROLES))


# -- people -----------------------------------------------------------------------------------------
def departments() -> dict[str, str]:
    """The directory's departments (its organisation): id -> name, for the console's department pickers."""
    return current_deployment.directory.departments()


@bp.get("/people")
@guarded("people.read", "admin.people.read")
def people() -> Any:
    known = departments()
    department = request.args.get("department") or None
    if department is not None:
        try:
            current_deployment.lifecycle.known_department(department)
        except GovernanceError as exc:  # the search form stays, saying why
            return _page("admin_people.html", http_status=HTTPStatus(exc.status), rows=[], q=_q(), paging=_paging(0),
                         endpoint="admin_console.people", departments=known, department=None, error=shown(exc))
    found = DirectoryWriter(current_deployment.directory.config).search_people(_q(), department)
    paging = _paging(len(found))
    rows = found[paging["offset"]:paging["offset"] + PAGE_SIZE]
    directory = current_deployment.directory
    for row in rows:  # a recorded lockout may have ended by itself: the policy says (a few rows at most)
        member = directory.find(row["uid"]) if row["enabled"] and row["lock_recorded"] else None
        row["locked"] = bool(member and directory.account_state(member).locked)
    return _page("admin_people.html", rows=rows, q=_q(), paging=paging, endpoint="admin_console.people",
                 departments=known, department=department)


@bp.get("/people/<uid>")
@guarded("people.read", "admin.people.read")
def person(uid: str) -> Any:
    member = current_deployment.lifecycle.member(uid)
    from idp.staff_certificates import StaffCertificates

    d = current_deployment
    certs = StaffCertificates(d.ca, d.sessions).list_for(member.uid)
    sessions_open = len(d.web_sessions.list_for(member.uid))
    apps, _ = current_deployment.lifecycle.applications(text=member.uid, limit=20)
    return _page("admin_person.html", member=member, certificates=certs, sessions_open=sessions_open,
                 applications=[a for a in apps if a.uid == member.uid], grantable=GRANTABLE,
                 state=d.directory.account_state(member), enrolled=d.second_factor.is_enrolled(member.uid),
                 recovery_left=d.second_factor.recovery_codes_left(member.uid),
                 is_administrator=bool(admin_roles_of(member.groups)), departments=departments())


@bp.post("/people/<uid>/grant")
@guarded("role.grant", "admin.role.grant")
def grant(uid: str) -> Any:
    group = request.form.get("group") or ""
    page = _confirm(gettext("Grant a role"), gettext("Grant %(role)s to %(uid)s? An administrator role needs a second "
                                                     "security administrator's approval (four eyes).",
                                                     role=word(group), uid=uid), danger=False)
    if page is not None:
        return page
    return _after_role_change(uid, current_deployment.lifecycle.grant_role(actor(), uid, group))


def _after_role_change(uid: str, request_made: FourEyesView | None) -> Any:
    """Where a grant or a removal of a role, or a help-desk act, goes on to: the four-eyes request it
    became (an administrator role or account), told to wait for a second administrator; else the
    person's page."""
    if request_made is not None:
        flash(gettext("A second security administrator must approve this before it is carried out."))
        return redirect(url_for("admin_console.four_eyes_detail", request_id=request_made.id))
    return redirect(url_for("admin_console.person", uid=uid))


@bp.post("/people/<uid>/remove-role")
@guarded("role.remove", "admin.role.revoke")
def remove_role(uid: str) -> Any:
    group = request.form.get("group") or ""
    page = _confirm(gettext("Remove a role"), gettext("Remove %(role)s from %(uid)s? An administrator role needs a "
                                                      "second security administrator's approval (four eyes).",
                                                      role=word(group), uid=uid))
    if page is not None:
        return page
    return _after_role_change(uid, current_deployment.lifecycle.remove_role(actor(), uid, group))


@bp.post("/people/<uid>/change-post")
@guarded("account.change-post", "admin.account.change-post")
def change_post(uid: str) -> Any:
    post, department = request.form.get("post") or "", request.form.get("department") or None
    lc = current_deployment.lifecycle
    if department is not None:  # refused before the confirmation: a department the directory has not
        try:
            lc.known_department(department)
        except GovernanceError as exc:
            lc.refused(actor(), "admin.account.change-post", f"staff:{uid[:64]}", str(exc), kind=exc.kind)
            raise
    page = _confirm(gettext("Change of post"), gettext("Record that %(uid)s moves to the post %(post)s? Their present "
                                                       "role groups are removed now; the new post's groups need the "
                                                       "department's approval.", uid=uid, post=repr(post)))
    if page is not None:
        return page
    view = lc.change_post(actor(), uid, post, department, request.form.getlist("groups"))
    return redirect(url_for("admin_console.application", application_id=view.id))


@bp.post("/people/<uid>/leaver")
@guarded("account.leaver", "admin.account.leaver")
def leaver(uid: str) -> Any:
    page = _confirm(gettext("Leaver"), gettext("Process %(uid)s as a leaver? Their account is disabled, every session "
                                               "and token ended and every certificate revoked, at once.", uid=uid))
    if page is not None:
        return page
    report = current_deployment.lifecycle.leaver(actor(), uid)
    none = gettext("none")
    return _page("admin_done.html", title=gettext("Leaver processed"),
                 lines=[gettext("%(uid)s is disabled in the directory.", uid=report.uid),
                        gettext("Sessions ended: %(sessions)s; tokens revoked: %(tokens)s.",
                                sessions=report.sessions_ended, tokens=report.tokens_revoked),
                        gettext("Certificates revoked: %(serials)s.",
                                serials=", ".join(report.certificates_revoked) or none),
                        gettext("Groups removed: %(groups)s.", groups=", ".join(report.groups_removed) or none)],
                 back=url_for("admin_console.person", uid=uid))


# -- help desk (idp/help_desk.py) ---------------------------------------------------------------------
def _help_desk(uid: str, act: str, title: str, detail: str) -> Any:
    """The confirmation page of a help-desk act, then the act: its result page, or (an administrator's
    account) the four-eyes request it became."""
    member = current_deployment.lifecycle.member(uid)
    if admin_roles_of(member.groups):
        detail += " " + gettext("%(uid)s is an administrator: a second security administrator must approve this "
                                "(four eyes) before it is carried out.", uid=member.uid)
    page = _confirm(title, detail)
    if page is not None:
        return page
    done = HelpDesk(current_deployment.lifecycle).act(actor(), act, member.uid)
    if isinstance(done, FourEyesView):
        return _after_role_change(uid, done)
    return _help_desk_done(done)


def _help_desk_done(done: HelpDeskResult) -> Response:
    """What a help-desk act did; a one-time password is on this page only (never cached)."""
    uid, lines = done.uid, []
    if done.act == "reset-password":
        title = gettext("Password reset")
        lines.append(gettext("Hand the one-time password to %(uid)s through a separate channel. It is shown only "
                             "now; the next login must replace it.", uid=uid))
    elif done.act == "reset-second-factor":
        title = gettext("Authenticator reset")
        lines.append(gettext("The authenticator and the recovery codes of %(uid)s no longer work; the next login "
                             "sets up a new authenticator.", uid=uid))
    elif done.act == "end-sessions":
        title = gettext("Sessions ended")
        lines.append(gettext("Sessions ended: %(sessions)s; tokens revoked: %(tokens)s. The applications "
                             "they were used in are told.", sessions=done.details["sessions_ended"],
                             tokens=done.details["access_tokens_revoked"]))
    else:
        title = gettext("Account unlocked")
        lines.append(gettext("%(uid)s may log in again.", uid=uid))
    if "was_locked" in done.details:
        lines.append(gettext("Directory lockout lifted: %(answer)s; login throttle counters cleared: %(count)s.",
                             answer=gettext("yes") if done.details["was_locked"] else gettext("no (not locked)"),
                             count=done.details["throttle_cleared"]))
    response = _page("admin_help_desk_done.html", title=title, lines=lines, uid=uid,
                     one_time_password=done.one_time_password, change_url=url_for("password.change", username=uid,
                                                                                  _external=True))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/people/<uid>/reset-password")
@guarded("account.reset-password", "admin.staff.reset-password")
def reset_password(uid: str) -> Any:
    return _help_desk(uid, "reset-password", gettext("Reset the password"),
                      gettext("Reset the password of %(uid)s? Their present password stops working at once. A "
                              "one-time password is shown to you once; they must replace it at the next login.",
                              uid=uid))


@bp.post("/people/<uid>/reset-second-factor")
@guarded("account.reset-second-factor", "admin.staff.reset-second-factor")
def reset_second_factor(uid: str) -> Any:
    return _help_desk(uid, "reset-second-factor", gettext("Reset the authenticator"),
                      gettext("Reset the authenticator of %(uid)s? Their authenticator app and recovery codes stop "
                              "working at once; the next login sets up a new authenticator.", uid=uid))


@bp.post("/people/<uid>/unlock")
@guarded("account.unlock", "admin.staff.unlock")
def unlock(uid: str) -> Any:
    return _help_desk(uid, "unlock", gettext("Unlock"),
                      gettext("Unlock %(uid)s? The directory's lockout after wrong passwords and this service's login "
                              "throttle for the account are both cleared.", uid=uid))


@bp.post("/people/<uid>/end-sessions")
@guarded("account.end-sessions", "admin.staff.end-sessions")
def end_sessions(uid: str) -> Any:
    return _help_desk(uid, "end-sessions", gettext("End all sessions"),
                      gettext("End every session of %(uid)s? They are logged out in every browser at once, the "
                              "tokens their applications were given in those sessions stop working, and the "
                              "applications are told.", uid=uid))


# -- applications -------------------------------------------------------------------------------------
def _applications_scope(who: Actor) -> str | None:
    """Security administrators see every department; a department's staff see their own; other
    administrators none (refused, audited)."""
    perms = permissions_of(who.groups)
    if "account.read" in perms:
        return None
    if admin_roles_of_actor(who):
        current_deployment.lifecycle.authorise(who, "account.read", "admin.account.read")
    return who.department


@bp.get("/applications")
@guarded(None, "admin.account.read")
def applications() -> Any:
    who = actor()
    department = _applications_scope(who)
    status = _state_filter(tuple(ApplicationStatus))
    total = current_deployment.lifecycle.applications(status, _q(), department, limit=1)[1]
    paging = _paging(total)
    rows, _ = current_deployment.lifecycle.applications(status, _q(), department, limit=PAGE_SIZE, offset=paging["offset"])
    return _page("admin_applications.html", rows=rows, q=_q(), status=status, states=tuple(ApplicationStatus),
                 paging=paging, endpoint="admin_console.applications")


@bp.route("/applications/new", methods=["GET", "POST"])
@guarded(None, "admin.account.apply")
def apply() -> Any:
    who = actor()
    if not may_apply(who):
        # the audit trail in English, the person in their language
        current_deployment.lifecycle.refused(who, "admin.account.apply", None, ADMINISTRATORS_DO_NOT_APPLY, kind=Forbidden.kind)
        raise Forbidden(ADMINISTRATORS_DO_NOT_APPLY)
    # the departments the officer may apply for: their own, as the directory's organisation names it
    own = {key: name for key, name in departments().items() if key == who.department}
    if request.method == "GET":
        return _page("admin_apply.html", form={}, departments=own)
    form = request.form
    page = _confirm(gettext("Apply for an account"),
                    gettext("Apply for an account %(uid)s for %(given_name)s %(surname)s, post %(post)s?",
                            uid=repr(form.get("uid")), given_name=form.get("given_name"), surname=form.get("surname"),
                            post=repr(form.get("post"))), danger=False)
    if page is not None:
        return page
    try:
        view = current_deployment.lifecycle.apply(who, form.get("uid") or "", form.get("given_name") or "", form.get("surname") or "",
                                 form.get("department") or who.department, form.get("post") or "",
                                 form.getlist("groups"))
    except GovernanceError as exc:
        if exc.status == 403:
            raise
        return _page("admin_apply.html", http_status=HTTPStatus(exc.status), form=form, error=shown(exc),
                     departments=own)
    return redirect(url_for("admin_console.application", application_id=view.id))


@bp.get("/applications/<dbid:application_id>")
@guarded(None, "admin.account.read")
def application(application_id: int) -> Any:
    who = actor()
    department = _applications_scope(who)
    view = current_deployment.lifecycle.application(application_id)
    if department is not None and view.department != department:
        current_deployment.lifecycle.refused(who, "admin.account.read", f"application:{application_id}", "another department")
        raise Forbidden(gettext("This application belongs to another department."))
    return _page("admin_application.html", app=view)


@bp.post("/applications/<dbid:application_id>/approve")
@guarded(None, "admin.account.approve")
def approve(application_id: int) -> Any:
    page = _confirm(gettext("Approve"), gettext("Approve application #%(id)s?", id=application_id), danger=False)
    if page is not None:
        return page
    current_deployment.lifecycle.decide(actor(), application_id, True)
    return redirect(url_for("admin_console.application", application_id=application_id))


@bp.post("/applications/<dbid:application_id>/reject")
@guarded(None, "admin.account.reject")
def reject(application_id: int) -> Any:
    page = _confirm(gettext("Reject"), gettext("Reject application #%(id)s?", id=application_id))
    if page is not None:
        return page
    current_deployment.lifecycle.decide(actor(), application_id, False, request.form.get("note"))
    return redirect(url_for("admin_console.application", application_id=application_id))


@bp.post("/applications/<dbid:application_id>/issue")
@guarded("account.issue", "admin.account.issue")
def issue(application_id: int) -> Any:
    page = _confirm(gettext("Issue"), gettext("Issue application #%(id)s? A new account gets a one-time initial "
                                              "password.", id=application_id), danger=False)
    if page is not None:
        return page
    result = current_deployment.lifecycle.issue(actor(), application_id)
    if isinstance(result, IssuedAccount):
        return _page("admin_issued.html", issued=result, change_url=url_for("password.change", _external=True))
    return redirect(url_for("admin_console.application", application_id=application_id))


# -- certificates -------------------------------------------------------------------------------------
@bp.get("/certificates")
@guarded("cert.read", "admin.cert.read")
def certificates() -> Any:
    from ca.models import Certificate

    q, status = _q(), _state_filter(tuple(CertificateStatus))
    with current_deployment.sessions() as s:
        query = select(Certificate)
        if q:
            like = f"%{q}%"
            query = query.where(or_(Certificate.subject.ilike(like), Certificate.serial_hex.ilike(like.lower()),
                                    Certificate.requester.ilike(like), Certificate.profile.ilike(like)))
        if status:
            query = query.where(Certificate.status == status)
        paging = _paging(int(s.scalar(select(func.count()).select_from(query.subquery())) or 0))
        rows = s.scalars(query.order_by(Certificate.id.desc()).limit(PAGE_SIZE).offset(paging["offset"])).all()
    return _page("admin_certificates.html", rows=rows, q=q, status=status, states=tuple(CertificateStatus),
                 paging=paging, endpoint="admin_console.certificates")


@bp.get("/certificates/<serial>")
@guarded("cert.read", "admin.cert.read")
def certificate(serial: str) -> Any:
    from ca.revocation import REASONS

    return _page("admin_certificate.html", cert=current_deployment.ca.get(serial), reasons=list(REASONS))


@bp.post("/certificates/<serial>/revoke")
@guarded("cert.revoke", "cert.revoke")
def revoke(serial: str) -> Any:
    reason = request.form.get("reason") or "unspecified"
    page = _confirm(gettext("Revoke certificate"), gettext("Revoke certificate %(serial)s (%(reason)s)? This cannot be "
                                                           "undone (an issuing CA's certificate needs a second security "
                                                           "administrator).", serial=serial, reason=reason))
    if page is not None:
        return page
    result = current_deployment.lifecycle.revoke_certificate(actor(), serial, reason)
    if hasattr(result, "operation"):
        return redirect(url_for("admin_console.four_eyes_detail", request_id=result.id))
    return redirect(url_for("admin_console.certificate", serial=serial))


# -- cards ------------------------------------------------------------------------------------------
@bp.get("/cards")
@guarded("card.read", "admin.card.read")
def cards() -> Any:
    from cardsim.models import Card

    q = _q()
    with current_deployment.sessions() as s:
        query = select(Card)
        if q:
            like = f"%{q}%"
            query = query.where(or_(Card.number.ilike(like), Card.holder.ilike(like), Card.status.ilike(like)))
        paging = _paging(int(s.scalar(select(func.count()).select_from(query.subquery())) or 0))
        rows = s.scalars(query.order_by(Card.id.desc()).limit(PAGE_SIZE).offset(paging["offset"])).all()
    return _page("admin_cards.html", rows=rows, q=q, paging=paging, endpoint="admin_console.cards")


@bp.get("/cards/<number>")
@guarded("card.read", "admin.card.read")
def card(number: str) -> Any:
    from cardsim.models import Card

    with current_deployment.sessions() as s:
        row = s.scalar(select(Card).where(Card.number == number[:32]))
    if row is None:
        from idp.account_lifecycle import NotFoundError

        raise NotFoundError(gettext("no card %(number)s", number=repr(number[:32])))
    return _page("admin_card.html", card=row)


@bp.post("/cards/<number>/block")
@guarded("card.block", "admin.card.block")
def block_card(number: str) -> Any:
    page = _confirm(gettext("Block card"), gettext("Block card %(number)s? Its certificates are revoked "
                                                   "(keyCompromise).", number=number))
    if page is not None:
        return page
    current_deployment.lifecycle.block_card(actor(), number)
    return redirect(url_for("admin_console.card", number=number))


# -- clients and configuration -------------------------------------------------------------------------
@bp.get("/clients")
@guarded("client.read", "admin.client.read")
def clients() -> Any:
    q = _q().lower()
    found = [c for c in current_deployment.clients.list() if not q or q in c.client_id.lower() or q in c.name.lower()]
    paging = _paging(len(found))
    return _page("admin_clients.html", rows=found[paging["offset"]:paging["offset"] + PAGE_SIZE], q=_q(),
                 paging=paging, endpoint="admin_console.clients")


@bp.post("/clients/new")
@guarded("client.add", "admin.client.add")
def add_client() -> Any:
    name, redirect_uri = request.form.get("name") or "", request.form.get("redirect_uri") or ""
    page = _confirm(gettext("Register a client"), gettext("Register the client %(name)s with the redirect URI "
                                                          "%(uri)s?", name=repr(name), uri=redirect_uri), danger=False)
    if page is not None:
        return page
    new = current_deployment.lifecycle.add_client(actor(), name, redirect_uri, trusted=request.form.get("trusted") == "yes")
    return _page("admin_done.html", title=gettext("Client registered"),
                 lines=[f"client_id: {new.client_id}",
                        gettext("client_secret (shown once): %(secret)s", secret=new.client_secret)],
                 back=url_for("admin_console.client", client_id=new.client_id))


@bp.get("/clients/<client_id>")
@guarded("client.read", "admin.client.read")
def client(client_id: str) -> Any:
    found = current_deployment.clients.get(client_id)
    if found is None:
        from idp.account_lifecycle import NotFoundError

        raise NotFoundError(gettext("no client %(client_id)s", client_id=repr(client_id)))
    return _page("admin_client.html", client=found, metadata=json.dumps(found.client_metadata, indent=2, sort_keys=True))


@bp.post("/clients/<client_id>/remove")
@guarded("client.remove", "admin.client.remove")
def remove_client(client_id: str) -> Any:
    page = _confirm(gettext("Remove client"), gettext("Remove the client %(client_id)s? Its codes, tokens and consents "
                                                      "go with it.", client_id=client_id))
    if page is not None:
        return page
    current_deployment.lifecycle.remove_client(actor(), client_id)
    return redirect(url_for("admin_console.clients"))


def runtime_settings() -> RuntimeSettings:
    """This worker's cached accessor of the runtime settings (idp/runtime_settings.py)."""
    return current_deployment.runtime


def settings_shown() -> list[SettingView]:
    """The runtime settings, their labels and units in the page's language."""
    return [dataclasses.replace(v, label=shown(v.label), unit=shown(v.unit)) for v in runtime_settings().show()]


def _config_access(change: bool, event_type: str, object_: str | None = None) -> Actor:
    """The actor, when they may read (``change``: change) the configuration; else refused, audited."""
    who = actor()
    try:
        require_config(who.groups, change)
    except Forbidden as exc:
        current_deployment.lifecycle.refused(who, event_type, object_, str(exc), kind=exc.kind)
        raise
    return who


@bp.get("/config")
@guarded(None, "admin.config.read")
def config() -> Any:
    who = _config_access(False, "admin.config.read")
    s = current_deployment.settings
    cfg = current_deployment.directory.config
    fixed = {gettext("public URL"): s.public_url, gettext("home"): str(s.home),
             gettext("database"): s.database_url.split("@")[-1], gettext("PKCS#11 module"): s.pkcs11_module,
             gettext("CA token label"): s.token_label, gettext("directory"): ", ".join(cfg.urls),
             gettext("directory read-only"): gettext("yes") if cfg.read_only else gettext("no"),
             gettext("role groups"): ", ".join(sorted(cfg.role_groups)),
             gettext("common-password and user-name checks"): gettext("always on (not a setting)")}
    return _page("admin_config.html", fixed=fixed, runtime=settings_shown(),
                 can_change=may_change_config(who.groups))


@bp.post("/config/<name>")
@guarded(None, "admin.config.set")
def set_config(name: str) -> Any:
    who = _config_access(True, "admin.config.set", f"config:{name[:64]}")
    value = (request.form.get("value") or "").strip()
    page = _confirm(gettext("Change a setting"), gettext("Set %(name)s to %(value)s? Every worker uses the new value "
                                                         "within a few seconds; the change is recorded in the audit "
                                                         "trail.", name=name, value=repr(value)), danger=False)
    if page is not None:
        return page
    try:
        done = runtime_settings().set(name, value, current_deployment.lifecycle.trail,
                                      functools.partial(current_deployment.lifecycle.event, who, "admin.config.set", "success",
                                                        f"config:{name}"), who.subject)
    except InvalidSetting as exc:
        current_deployment.lifecycle.refused(who, "admin.config.set", f"config:{name[:64]}", str(exc), kind=exc.kind)
        raise
    return _page("admin_done.html", title=gettext("Setting changed") if done.changed else gettext("Setting unchanged"),
                 lines=[f"{done.name}: {done.old} -> {done.new}" if done.changed
                        else gettext("%(name)s is %(value)s already.", name=done.name, value=done.new)],
                 back=url_for("admin_console.config"))


# -- four eyes ----------------------------------------------------------------------------------------
def issuing_cas() -> list[tuple[str, str]]:
    """The deployment's issuing CAs whose certificate is not revoked, (name, subject) by name: what
    the four-eyes page offers to revoke (the root never; ``Lifecycle`` checks the name again)."""
    from ca.models import Authority, Certificate

    with current_deployment.sessions() as s:
        rows = s.execute(select(Authority.name, Authority.subject).join(
            Certificate, Certificate.serial_hex == Authority.serial_hex, isouter=True).where(
            Authority.parent_id.is_not(None),
            or_(Certificate.status.is_(None), Certificate.status != CertificateStatus.REVOKED)).order_by(Authority.name))
        return [(name, subject) for name, subject in rows]


@bp.get("/four-eyes")
@guarded("four-eyes.request", "admin.four-eyes.read")
def four_eyes() -> Any:
    """The requests waiting for a decision first, then the forms that ask for one, then them all."""
    four = current_deployment.lifecycle.four_eyes
    status = _state_filter(tuple(FourEyesStatus))
    pending, pending_total = four.list(FourEyesStatus.PENDING, limit=PAGE_SIZE)
    total = four.list(status, limit=1)[1]
    paging = _paging(total)
    rows, _ = four.list(status, limit=PAGE_SIZE, offset=paging["offset"])
    return _page("admin_four_eyes.html", rows=rows, status=status, states=tuple(FourEyesStatus), paging=paging,
                 endpoint="admin_console.four_eyes", pending=pending, pending_total=pending_total,
                 issuing_cas=issuing_cas(), admin_roles=tuple(ADMIN_ROLES),
                 security_administrators=sum(m.enabled for m in current_deployment.directory.members_of(SECURITY_ADMIN)))


@bp.post("/four-eyes/add-administrator")
@guarded("role.grant", "admin.role.grant")
def request_add_administrator() -> Any:
    """Ask for a staff member to become a system administrator, a security administrator or an
    auditor: a four-eyes request (``Lifecycle.grant_role``), as ``tessera admin four-eyes request
    add-administrator`` makes it."""
    uid, group = (request.form.get("uid") or "").strip(), request.form.get("group") or ""
    lc, who = current_deployment.lifecycle, actor()
    if group not in ADMIN_ROLES:
        error = GovernanceError(N_("%(group)s is not an administrator role (%(roles)s)", group=repr(group[:80]),
                                   roles=", ".join(ADMIN_ROLES)))
        lc.refused(who, "admin.role.grant", f"staff:{uid[:64]}", str(error), kind=error.kind)
        raise error
    member = lc.member(uid, who, "admin.role.grant")  # an unknown user name: refused before the confirmation
    page = _confirm(gettext("Add an administrator"),
                    gettext("Ask for %(name)s (%(uid)s) to become %(role)s? A second security administrator must "
                            "approve it (four eyes) before it is carried out.", name=member.name, uid=member.uid,
                            role=word(group)), danger=False)
    if page is not None:
        return page
    return _after_role_change(member.uid, lc.grant_role(who, member.uid, group))


@bp.get("/four-eyes/<dbid:request_id>")
@guarded("four-eyes.request", "admin.four-eyes.read")
def four_eyes_detail(request_id: int) -> Any:
    view = current_deployment.lifecycle.four_eyes.get(request_id)
    if view is None:
        from idp.account_lifecycle import NotFoundError

        raise NotFoundError(gettext("no four-eyes request #%(id)s", id=request_id))
    return _page("admin_four_eyes_detail.html", item=view)


@bp.post("/four-eyes/revoke-issuing-ca")
@guarded("four-eyes.request", "admin.four-eyes.request")
def request_ca_revocation() -> Any:
    name = request.form.get("ca") or ""
    page = _confirm(gettext("Revoke an issuing CA"), gettext("Ask for the revocation of the issuing CA %(name)s? A "
                                                             "second security administrator must approve it.",
                                                             name=repr(name)))
    if page is not None:
        return page
    view = current_deployment.lifecycle.request_four_eyes(actor(), "revoke-issuing-ca", f"ca:{name}",
                                         {"reason": request.form.get("reason") or "cACompromise"})
    return redirect(url_for("admin_console.four_eyes_detail", request_id=view.id))


@bp.post("/four-eyes/<dbid:request_id>/approve")
@guarded("four-eyes.approve", "admin.four-eyes.approve")
def four_eyes_approve(request_id: int) -> Any:
    page = _confirm(gettext("Approve (four eyes)"), gettext("Approve and carry out request #%(id)s?", id=request_id))
    if page is not None:
        return page
    _, done = HelpDesk(current_deployment.lifecycle).decide(actor(), request_id, True)
    if done is not None:  # a help-desk act: its result (a one-time password) is for this administrator
        return _help_desk_done(done)
    return redirect(url_for("admin_console.four_eyes_detail", request_id=request_id))


@bp.post("/four-eyes/<dbid:request_id>/reject")
@guarded("four-eyes.approve", "admin.four-eyes.reject")
def four_eyes_reject(request_id: int) -> Any:
    page = _confirm(gettext("Reject (four eyes)"), gettext("Reject request #%(id)s?", id=request_id))
    if page is not None:
        return page
    HelpDesk(current_deployment.lifecycle).decide(actor(), request_id, False)
    return redirect(url_for("admin_console.four_eyes_detail", request_id=request_id))


# -- audit --------------------------------------------------------------------------------------------
#: the audit filters' dates, by field: (label, whether the whole day named is included as the end)
DATE_FIELDS: dict[str, tuple[Any, bool]] = {"since": (lazy_gettext("Since"), False),
                                            "until": (lazy_gettext("Until"), True)}


def local_zone() -> ZoneInfo:
    """The zone the console shows times in (``TESSERA_TIMEZONE``, Asia/Shanghai unless configured)."""
    return ZoneInfo(current_app.config["TESSERA_TIMEZONE"])


def zone_words() -> str:
    """The console's time zone in words of the page's language and by its IANA name, e.g.
    ``China Standard Time (Asia/Shanghai)``: what the date fields say of their dates."""
    zone = local_zone()
    return f"{get_timezone_name(datetime.datetime.now(zone), width='long', locale=locale_name())} ({zone.key})"


def _local_instant(name: str, value: str) -> datetime.datetime:
    """The instant an audit filter's date or time means: a day (ISO 8601 ``YYYY-MM-DD``, what an
    ``<input type="date">`` sends) starts at local midnight, and as the end of a period (``until``)
    it is included whole; a date and time without an offset is local time. Raises ValueError."""
    zone, (_, whole_day) = local_zone(), DATE_FIELDS[name]
    if len(value) == 10:  # a calendar date (ISO 8601 section 5.2.1.1); fromisoformat reads other forms too
        day = datetime.date.fromisoformat(value)
        start = datetime.datetime.combine(day + datetime.timedelta(days=1) if whole_day else day, datetime.time(),
                                          tzinfo=zone)
    else:
        start = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        start = start.replace(tzinfo=zone) if start.tzinfo is None else start
    try:
        return start.astimezone(datetime.timezone.utc)
    except OverflowError:  # the first or last representable day, shifted past the calendar's end
        raise ValueError(value) from None


def _audit_filter() -> tuple[Any, dict[str, str]]:
    """The audit trail's filter from the request, and the errors of its dates by field (each in
    words naming the field and the form expected); a date in error filters nothing."""
    from audit.export import EntryFilter

    errors: dict[str, str] = {}
    when: dict[str, datetime.datetime | None] = {}
    for name, (label, _) in DATE_FIELDS.items():
        value = (request.values.get(name) or "").strip()
        when[name] = None
        if value:
            try:
                when[name] = _local_instant(name, value)
            except (ValueError, OverflowError):
                errors[name] = gettext("%(field)s: %(value)s is not a date. Use year-month-day, e.g. 2026-11-25 "
                                       "(local time: %(zone)s).", field=label, value=repr(value[:32]),
                                       zone=zone_words())
    since, until = when["since"], when["until"]
    if since is not None and until is not None and until <= since:
        errors["until"] = gettext("%(until)s: the period ends before it begins; choose a day on or after %(since)s.",
                                  until=DATE_FIELDS["until"][0], since=DATE_FIELDS["since"][0])
        until = None
    return EntryFilter(since=since, until=until, event_type=(request.values.get("type") or "").strip()[:64] or None,
                       subject=(request.values.get("subject") or "").strip()[:255] or None), errors


def _date_errors_page(template: str, where: Any, errors: dict[str, str], **context: Any) -> Response:
    """The audit page or the reports page with its filter form as sent and the date errors next
    to the fields (400): nothing read, nothing recorded."""
    return _page(template, http_status=HTTPStatus.BAD_REQUEST, where=where, errors=errors, zone=zone_words(),
                 **context)


@bp.get("/audit")
@guarded("audit.read", "audit.read")
def audit() -> Any:
    from audit.export import count_entries, iter_entries

    where, errors = _audit_filter()
    if errors:
        return _date_errors_page("admin_audit.html", where, errors, rows=[], paging=_paging(0),
                                 endpoint="admin_console.audit")
    sessions = current_deployment.sessions
    paging = _paging(count_entries(sessions, where))
    rows = list(iter_entries(sessions, where, limit=PAGE_SIZE, offset=paging["offset"], newest_first=True))
    # reading the trail is itself on the trail (who looked at what)
    current_deployment.lifecycle.trail.record(current_deployment.lifecycle.event(actor(), "audit.read", "success", "audit:trail", filter=where.as_dict(),
                                               page=paging["page"]))
    return _page("admin_audit.html", rows=rows, where=where, paging=paging, endpoint="admin_console.audit",
                 errors={}, zone=zone_words())


@bp.get("/audit/<dbid(bits=64):seq>")
@guarded("audit.read", "audit.read")
def audit_entry(seq: int) -> Any:
    from audit.export import iter_entries
    from audit.models import AuditEntry

    with current_deployment.sessions() as s:
        exists = s.get(AuditEntry, seq) is not None
    if not exists:
        from idp.account_lifecycle import NotFoundError

        raise NotFoundError(gettext("no audit entry #%(seq)s", seq=seq))
    from audit.export import EntryFilter

    entry = next(e for e in iter_entries(current_deployment.sessions, EntryFilter(), limit=1, offset=seq - 1))
    current_deployment.lifecycle.trail.record(current_deployment.lifecycle.event(actor(), "audit.read", "success", f"audit:{seq}"))
    return _page("admin_audit_entry.html", entry=entry, details=json.dumps(entry["details"], indent=2, sort_keys=True))


@bp.post("/audit/export")
@guarded("audit.export", "audit.export")
def audit_export() -> Any:
    from audit.export import FORMATS, export

    fmt = request.form.get("format") or "jsonl"
    if fmt not in FORMATS:
        raise GovernanceError(gettext("unknown format %(format)s: jsonl or csv", format=repr(fmt)))
    where, errors = _audit_filter()
    if errors:
        return _date_errors_page("admin_audit.html", where, errors, rows=[], paging=_paging(0),
                                 endpoint="admin_console.audit")
    who = actor()
    # the export is recorded first: an export whose entry cannot be written does not happen
    current_deployment.lifecycle.trail.record(current_deployment.lifecycle.event(who, "audit.export", "success", "audit:trail", format=fmt,
                                                       filter=where.as_dict()))
    out = io.StringIO()
    export(current_deployment.sessions, fmt, out, where)
    mimetype = "application/jsonl" if fmt == "jsonl" else "text/csv"
    return Response(out.getvalue(), mimetype=mimetype,
                    headers={"Content-Disposition": f'attachment; filename="tessera-audit.{fmt}"'})


def bar_chart(rows: list[Any], title: str, width: int = 640) -> Markup:
    """A horizontal bar chart (success / failure / refused stacked) as inline SVG, no script."""
    bar, gap, label_w = 18, 6, 200
    height = max(1, len(rows)) * (bar + gap) + 30
    peak = max([r.total for r in rows] or [1]) or 1
    scale = (width - label_w - 60) / peak
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-labelledby="t{abs(hash(title))}" '
             f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" class="chart">',
             f'<title id="t{abs(hash(title))}">{escape(title)}</title>']
    for i, r in enumerate(rows):
        y = i * (bar + gap) + 4
        x = label_w
        parts.append(f'<text x="{label_w - 6}" y="{y + bar - 5}" text-anchor="end" font-size="12">{escape(r.key[:32])}</text>')
        for count, cls, result in ((r.success, "ok", "success"), (r.failure, "fail", "failure"),
                                   (r.refused, "refused", "refused")):
            w = count * scale
            if w > 0:
                parts.append(f'<rect class="{cls}" x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar}"><title>{escape(r.key)}: '
                             f'{count} {escape(word(result))}</title></rect>')
                x += w
        parts.append(f'<text x="{x + 4:.1f}" y="{y + bar - 5}" font-size="12">{r.total}</text>')
    legend = escape(gettext("green: success, red: failure, amber: refused"))
    parts.append(f'<text x="{label_w}" y="{height - 6}" font-size="11" class="legend">{legend}</text></svg>')
    return Markup("".join(parts))


@bp.get("/audit/reports")
@guarded("audit.report", "audit.report")
def audit_reports() -> Any:
    from audit.reports import report

    where, errors = _audit_filter()
    if errors:
        return _date_errors_page("admin_reports.html", where, errors, charts=[])
    sessions = current_deployment.sessions
    by_type = report(sessions, "type", where, limit=20)
    by_person = report(sessions, "person", where, limit=20)
    by_day = report(sessions, "day", where, limit=60)
    current_deployment.lifecycle.trail.record(current_deployment.lifecycle.event(actor(), "audit.report", "success", "audit:trail",
                                               filter=where.as_dict()))
    return _page("admin_reports.html", where=where, errors={}, zone=zone_words(),
                 charts=[(gettext("By event type"), bar_chart(by_type, gettext("Audit entries by event type")),
                          by_type),
                         (gettext("By person"), bar_chart(by_person, gettext("Audit entries by person")), by_person),
                         (gettext("By day (UTC)"), bar_chart(by_day, gettext("Audit entries by day")), by_day)])


def register(app: Flask) -> None:
    """Called by idp.admin_blueprints.register: the console."""
    app.register_blueprint(bp)
