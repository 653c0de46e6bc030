"""`tessera admin`: administrator roles, account applications and the staff account lifecycle.

Every command acts as a named staff member (``--as UID``): their role is read from the directory
and checked exactly as in the admin console, and the act is audited with that person as subject
and the operating system user as channel. The CLI runs on the service's host with access to its
home folder; it trusts the operator to name themselves, as ``sudo`` trusts the local account.
"""

from __future__ import annotations

import functools
import getpass
import json
from collections.abc import Callable
from typing import Any, TypeVar

import click

from idp.commands.context import CliContext

F = TypeVar("F", bound=Callable[..., Any])


@click.group(name="admin")
def group() -> None:
    """Administrator roles, account applications and the staff account lifecycle."""


def _errors(fn: F) -> F:
    """Refusals as one line (stderr) and exit status 1; a forbidden act exits 3."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from audit.errors import AuditError
        from idp.password_policy import WeakPassword
        from idp.roles import GovernanceError

        try:
            return fn(*args, **kwargs)
        except GovernanceError as exc:
            if exc.status == 403 or exc.kind == "conflicting-roles":
                click.echo(f"Error: refused: {exc}", err=True)
                raise SystemExit(3) from None
            raise click.ClickException(str(exc)) from None
        except (AuditError, WeakPassword) as exc:
            raise click.ClickException(str(exc)) from None
    return wrapper  # type: ignore[return-value]


_as = click.option("--as", "as_uid", required=True, metavar="UID",
                   help="The staff member (directory user name) acting; their role is checked.")
_json = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _lifecycle(obj: CliContext) -> Any:
    import idp.governance_models  # noqa: F401
    from idp.account_lifecycle import Lifecycle

    return Lifecycle(obj.deployment)


def _actor(obj: CliContext, uid: str) -> Any:
    from idp.account_lifecycle import Actor
    from idp.roles import Forbidden

    member = obj.deployment.directory.find(uid)
    if member is None or not member.enabled:
        raise Forbidden(f"{uid!r} is not an active staff member in the directory")
    return Actor.of(member, "local", channel=f"cli:{getpass.getuser()}")


def _out(data: Any, as_json: bool, text: str) -> None:
    click.echo(json.dumps(data, indent=2, default=str) if as_json else text)


@group.command("applications")
@_as
@click.option("--status", type=click.Choice(["applied", "approved", "rejected", "issued"]), default=None,
              help="Only applications in this state.")
@click.option("--search", "text", default="", help="User name, name or post contains this.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000), help="At most this many.")
@click.option("--offset", default=0, type=click.IntRange(0), help="Skip this many (paging).")
@_json
@click.pass_obj
@_errors
def applications(obj: CliContext, as_uid: str, status: str | None, text: str, limit: int, offset: int,
                 as_json: bool) -> None:
    """List account applications (security administrators: all; staff: their department's)."""
    from idp.roles import ADMIN_ROLES, permissions_of

    lc, who = _lifecycle(obj), _actor(obj, as_uid)
    department = None
    if "account.read" not in permissions_of(who.groups):
        if set(who.groups) & set(ADMIN_ROLES):
            lc.authorise(who, "account.read", "admin.account.read")
        department = who.department
    rows, total = lc.applications(status, text, department, limit, offset)
    if as_json:
        _out({"total": total, "applications": [r.__dict__ for r in rows]}, True, "")
        return
    click.echo(f"{'#':>5} {'KIND':<15} {'UID':<16} {'DEPARTMENT':<12} {'STATUS':<9} POST")
    for r in rows:
        click.echo(f"{r.id:>5} {r.kind:<15} {r.uid:<16} {r.department:<12} {r.status:<9} {r.post}")
    click.echo(f"({total} in all)", err=True)


@group.command("apply")
@_as
@click.option("--uid", required=True, help="User name of the new account.")
@click.option("--given-name", required=True, help="Given name.")
@click.option("--surname", required=True, help="Surname.")
@click.option("--post", required=True, help="The post (job title).")
@click.option("--department", default=None, help="Department id (default: the applicant's own).")
@click.option("--approver-post", is_flag=True, help="The post approves its department's requests (group approvers).")
@_json
@click.pass_obj
@_errors
def apply(obj: CliContext, as_uid: str, uid: str, given_name: str, surname: str, post: str, department: str | None,
          approver_post: bool, as_json: bool) -> None:
    """A department officer applies for a new staff account."""
    lc, who = _lifecycle(obj), _actor(obj, as_uid)
    view = lc.apply(who, uid, given_name, surname, department or who.department, post,
                    ["approvers"] if approver_post else [])
    _out(view.__dict__, as_json, f"application #{view.id} for {view.uid}: {view.status}")


@group.command("approve")
@_as
@click.argument("application_id", type=int)
@click.option("--reject", is_flag=True, help="Reject instead of approving.")
@click.option("--note", default=None, help="A note for the record.")
@_json
@click.pass_obj
@_errors
def approve(obj: CliContext, as_uid: str, application_id: int, reject: bool, note: str | None, as_json: bool) -> None:
    """The department's approver approves (or rejects) an application."""
    lc, who = _lifecycle(obj), _actor(obj, as_uid)
    view = lc.decide(who, application_id, not reject, note)
    _out(view.__dict__, as_json, f"application #{view.id}: {view.status}")


@group.command("issue")
@_as
@click.argument("application_id", type=int)
@_json
@click.pass_obj
@_errors
def issue(obj: CliContext, as_uid: str, application_id: int, as_json: bool) -> None:
    """The security administrator issues an approved application (prints the one-time initial password)."""
    from idp.account_lifecycle import IssuedAccount

    lc, who = _lifecycle(obj), _actor(obj, as_uid)
    result = lc.issue(who, application_id)
    if isinstance(result, IssuedAccount):
        _out({"uid": result.uid, "dn": result.dn, "initial_password": result.initial_password}, as_json,
             f"issued {result.uid}\ninitial password (shown once, must be changed at first login): "
             f"{result.initial_password}")
    else:
        _out(result.__dict__, as_json, f"application #{result.id}: {result.status} (new post's groups granted)")


@group.command("change-post")
@_as
@click.argument("uid")
@click.option("--post", required=True, help="The new post.")
@click.option("--department", default=None, help="The new department (default: unchanged).")
@click.option("--approver-post", is_flag=True, help="The new post approves its department's requests.")
@_json
@click.pass_obj
@_errors
def change_post(obj: CliContext, as_uid: str, uid: str, post: str, department: str | None, approver_post: bool,
                as_json: bool) -> None:
    """Record a change of post: the old post's groups go now, the new ones need approval and issue."""
    lc, who = _lifecycle(obj), _actor(obj, as_uid)
    view = lc.change_post(who, uid, post, department, ["approvers"] if approver_post else [])
    _out(view.__dict__, as_json, f"application #{view.id} (change of post of {uid}): waiting for approval")


@group.command("leaver")
@_as
@click.argument("uid")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_json
@click.pass_obj
@_errors
def leaver(obj: CliContext, as_uid: str, uid: str, yes: bool, as_json: bool) -> None:
    """A leaver in one operation: disabled, every session and token ended, every certificate revoked."""
    if not yes:
        click.confirm(f"Process {uid} as a leaver?", abort=True)
    lc, who = _lifecycle(obj), _actor(obj, as_uid)
    report = lc.leaver(who, uid)
    _out(report.__dict__, as_json,
         f"{uid}: disabled; {report.sessions_ended} sessions ended, {report.tokens_revoked} tokens revoked, "
         f"{len(report.certificates_revoked)} certificates revoked, groups removed: "
         f"{', '.join(report.groups_removed) or 'none'}")


@group.command("grant")
@_as
@click.argument("uid")
@click.argument("role_group")
@_json
@click.pass_obj
@_errors
def grant(obj: CliContext, as_uid: str, uid: str, role_group: str, as_json: bool) -> None:
    """Grant a role group; an administrator role becomes a four-eyes request."""
    lc, who = _lifecycle(obj), _actor(obj, as_uid)
    request_made = lc.grant_role(who, uid, role_group)
    if request_made is None:
        _out({"uid": uid, "granted": role_group}, as_json, f"{uid} is now in {role_group}")
    else:
        _out(request_made.__dict__, as_json, f"four-eyes request #{request_made.id}: a second security "
             "administrator must approve it (tessera admin four-eyes approve)")


@group.command("remove-role")
@_as
@click.argument("uid")
@click.argument("role_group")
@click.pass_obj
@_errors
def remove_role(obj: CliContext, as_uid: str, uid: str, role_group: str) -> None:
    """Remove a role group from a staff member."""
    lc, who = _lifecycle(obj), _actor(obj, as_uid)
    lc.remove_role(who, uid, role_group)
    click.echo(f"{uid} is no longer in {role_group}")


@group.group("four-eyes")
def four_eyes() -> None:
    """Grave operations that need a second administrator: request, approve, reject, list."""


@four_eyes.command("request")
@_as
@click.argument("operation", type=click.Choice(["add-administrator", "revoke-issuing-ca"]))
@click.argument("target")
@click.option("--group", "role_group", default=None, help="add-administrator: the role group to add.")
@click.option("--reason", default="cACompromise", show_default=True, help="revoke-issuing-ca: RFC 5280 reason.")
@_json
@click.pass_obj
@_errors
def four_eyes_request(obj: CliContext, as_uid: str, operation: str, target: str, role_group: str | None, reason: str,
                      as_json: bool) -> None:
    """Ask for OPERATION on TARGET (a user name, or an issuing CA's name such as 'staff')."""
    lc, who = _lifecycle(obj), _actor(obj, as_uid)
    if operation == "add-administrator":
        if not role_group:
            raise click.UsageError("add-administrator needs --group")
        view = lc.grant_role(who, target, role_group)
    else:
        view = lc.request_four_eyes(who, operation, f"ca:{target}", {"reason": reason})
    _out(view.__dict__, as_json, f"four-eyes request #{view.id}: pending")


@four_eyes.command("approve")
@_as
@click.argument("request_id", type=int)
@click.option("--reject", is_flag=True, help="Reject instead of approving.")
@_json
@click.pass_obj
@_errors
def four_eyes_approve(obj: CliContext, as_uid: str, request_id: int, reject: bool, as_json: bool) -> None:
    """A second security administrator approves (and so carries out) or rejects a request."""
    lc, who = _lifecycle(obj), _actor(obj, as_uid)
    view = lc.decide_four_eyes(who, request_id, not reject)
    _out(view.__dict__, as_json, f"four-eyes request #{view.id}: {view.status}"
         + (f" ({view.outcome})" if view.outcome else ""))


@four_eyes.command("list")
@click.option("--status", type=click.Choice(["pending", "executed", "rejected"]), default=None, help="Only this state.")
@_json
@click.pass_obj
@_errors
def four_eyes_list(obj: CliContext, status: str | None, as_json: bool) -> None:
    """List four-eyes requests."""
    rows, total = _lifecycle(obj).four_eyes.list(status, limit=200)
    if as_json:
        _out([r.__dict__ for r in rows], True, "")
        return
    for r in rows:
        click.echo(f"#{r.id:<4} {r.operation:<18} {r.target:<24} {r.status:<9} by {r.requested_by}"
                   + (f", decided by {r.decided_by}" if r.decided_by else ""))
