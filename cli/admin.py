"""`tessera admin`: operator login, administrator roles, account applications and the staff
account lifecycle.

Every command acts as a named staff member (``--as UID``) who must have proven it first:
``tessera admin login --as UID`` asks for their directory password and authenticator code and
keeps a short-lived operator token (:mod:`idp.operators`); a command whose token is missing,
expired, ended or another person's is refused (exit status 4) and audited. The person's role is
then read from the directory and checked exactly as in the admin console, and the act is audited
with that person as subject and the operating system user as channel.
"""

from __future__ import annotations

import functools
import getpass
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from cli.context import CliContext

F = TypeVar("F", bound=Callable[..., Any])


@click.group(name="admin")
def group() -> None:
    """Administrator roles, account applications and the staff account lifecycle."""


def _errors(fn: F) -> F:
    """Refusals as one line (stderr) and exit status 1; a forbidden act exits 3, an operator who has
    not proven who they are (no live token: ``tessera admin login``) exits 4."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from audit.errors import AuditError
        from directory.errors import DirectoryUnavailable
        from idp.password_policy import WeakPassword
        from idp.roles import GovernanceError

        try:
            return fn(*args, **kwargs)
        except GovernanceError as exc:
            if exc.status == 401:
                click.echo(f"Error: {exc}", err=True)
                raise SystemExit(4) from None
            if exc.status == 403 or exc.kind == "conflicting-roles":
                click.echo(f"Error: refused: {exc}", err=True)
                raise SystemExit(3) from None
            raise click.ClickException(str(exc)) from None
        except (AuditError, WeakPassword) as exc:
            raise click.ClickException(str(exc)) from None
        except DirectoryUnavailable as exc:
            raise click.ClickException(exc.message) from None
    return wrapper  # type: ignore[return-value]


_as = click.option("--as", "as_uid", required=True, metavar="UID",
                   help="The staff member (directory user name) acting; they must have run "
                        "`tessera admin login --as UID`, and their role is checked.")
_json = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _lifecycle(obj: CliContext) -> Any:
    import idp.governance_models  # noqa: F401
    from idp.account_lifecycle import Lifecycle

    return Lifecycle(obj.deployment)


def _actor(obj: CliContext, uid: str) -> Any:
    """The staff member ``uid`` acting, after their operator token proved it (authentication
    before anything else), as the directory describes them now."""
    from idp.account_lifecycle import Actor
    from idp.operators import Operators, channel, presented_token
    from idp.roles import Forbidden

    Operators(obj.deployment).prove(presented_token(obj.settings.home), uid)
    member = obj.deployment.directory.find(uid)
    if member is None or not member.enabled:
        raise Forbidden(f"{uid!r} is not an active staff member in the directory")
    return Actor.of(member, "local", channel=channel())


@_errors
def authorised_operator(obj: CliContext, as_uid: str, permission: str, event_type: str,
                        object_: str | None = None) -> Any:
    """The proven staff member ``as_uid`` if their role allows ``permission``; otherwise one line on
    stderr and exit (no live operator token: status 4; the role may not: status 3), audited. For
    commands that read personal data or the audit trail, called before they read anything."""
    lc, who = _lifecycle(obj), _actor(obj, as_uid)
    lc.authorise(who, permission, event_type, object_)
    return who


def _read_secrets(from_stdin: bool) -> tuple[str, str]:
    """The password and the authenticator code: two lines on standard input, or asked for on the
    terminal without echo. Never from the command line or the environment."""
    if from_stdin:
        stream = sys.stdin  # click 8.3 deprecates get_text_stream; stdin is already text
        password = stream.readline().rstrip("\r\n")
        code = stream.readline().strip()
        if not password or not code:
            raise click.UsageError("--password-stdin: give the password and the authenticator code, one line each")
        return password, code
    password = getpass.getpass("Directory password: ")
    code = click.prompt("Authenticator code", err=True)
    return password, code


@group.command("login")
@click.option("--as", "as_uid", required=True, metavar="UID", help="Your directory user name.")
@click.option("--password-stdin", is_flag=True,
              help="Read the password, then the authenticator code, one line each from standard input (scripts).")
@click.option("--print-token", is_flag=True,
              help="Print the token on standard output (for TESSERA_OPERATOR_TOKEN) instead of saving it.")
@click.pass_obj
@_errors
def login(obj: CliContext, as_uid: str, password_stdin: bool, print_token: bool) -> None:
    """Prove who you are (directory password and authenticator code) for the --as commands."""
    from idp.operators import Operators, save_token, token_file

    password, code = _read_secrets(password_stdin)
    token, proven = Operators(obj.deployment).login(as_uid, password, code)
    if print_token:
        click.echo(token)
    else:
        path = token_file(obj.settings.home)
        save_token(path, token)
        click.echo(f"token saved in {path}", err=True)
    click.echo(f"logged in as {proven.uid} until {proven.expires_at:%Y-%m-%d %H:%M:%S} UTC", err=True)


@group.command("logout")
@click.pass_obj
@_errors
def logout(obj: CliContext) -> None:
    """End your operator token now (and remove its file)."""
    from idp.operators import Operators, presented_token, token_file

    ended = Operators(obj.deployment).revoke(presented_token(obj.settings.home))
    token_file(obj.settings.home).unlink(missing_ok=True)
    click.echo(f"logged out {ended.uid}" if ended else "no live operator token: nothing to end", err=True)


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


@group.command("add-second-security-admin")
@click.argument("uid")
@click.pass_obj
@_errors
def add_second_security_admin(obj: CliContext, uid: str) -> None:
    """The host's system operator makes UID a security administrator, only while fewer than two
    hold that role (a new deployment: no four-eyes request can be approved until a second one
    exists). Audited; refused once two hold it (then a second security administrator approves)."""
    import getpass

    click.echo(_lifecycle(obj).add_second_security_admin(f"cli:{getpass.getuser()}", uid))


@group.command("remove-role")
@_as
@click.argument("uid")
@click.argument("role_group")
@click.pass_obj
@_errors
def remove_role(obj: CliContext, as_uid: str, uid: str, role_group: str) -> None:
    """Remove a role group; an administrator role becomes a four-eyes request (never its last holders)."""
    lc, who = _lifecycle(obj), _actor(obj, as_uid)
    request_made = lc.remove_role(who, uid, role_group)
    if request_made is None:
        click.echo(f"{uid} is no longer in {role_group}")
    else:
        click.echo(f"four-eyes request #{request_made.id}: a second security administrator must approve it "
                   "(tessera admin four-eyes approve)")


@group.group("four-eyes")
def four_eyes() -> None:
    """Grave operations that need a second administrator: request, approve, reject, list."""


@four_eyes.command("request")
@_as
@click.argument("operation", type=click.Choice(["add-administrator", "remove-administrator", "revoke-issuing-ca"]))
@click.argument("target")
@click.option("--group", "role_group", default=None,
              help="add-administrator, remove-administrator: the role group to add or remove.")
@click.option("--reason", default="cACompromise", show_default=True, help="revoke-issuing-ca: RFC 5280 reason.")
@_json
@click.pass_obj
@_errors
def four_eyes_request(obj: CliContext, as_uid: str, operation: str, target: str, role_group: str | None, reason: str,
                      as_json: bool) -> None:
    """Ask for OPERATION on TARGET (a user name, or an issuing CA's name such as 'staff')."""
    lc, who = _lifecycle(obj), _actor(obj, as_uid)
    if operation in ("add-administrator", "remove-administrator"):
        from idp.roles import ADMIN_ROLES

        if role_group not in ADMIN_ROLES:
            raise click.UsageError(f"{operation} needs --group with an administrator role ({', '.join(ADMIN_ROLES)})")
        view = (lc.grant_role if operation == "add-administrator" else lc.remove_role)(who, target, role_group)
        assert view is not None  # an administrator role is always a four-eyes request
    else:
        view = lc.request_four_eyes(who, operation, f"ca:{target}", {"reason": reason})
    _out(view.__dict__, as_json, f"four-eyes request #{view.id}: pending")


def help_desk_out(done: object, as_json: bool) -> None:
    """Print a help-desk act's result (the one-time password once), or the four-eyes request it became."""
    from idp.help_desk import HelpDeskResult

    if not isinstance(done, HelpDeskResult):  # a four-eyes request (idp.roles.FourEyesView)
        view = vars(done)
        click.echo(json.dumps(view, indent=2, default=str) if as_json else
                   f"four-eyes request #{view['id']}: {view['operation']} of {view['target']} waits for a second "
                   "security administrator (tessera admin four-eyes approve)")
        return
    data = {"uid": done.uid, "act": done.act, **done.details}
    if done.one_time_password:
        data["one_time_password"] = done.one_time_password
    if as_json:
        click.echo(json.dumps(data, indent=2))
    elif done.one_time_password:
        click.echo(f"one-time password of {done.uid} (shown once; it must be changed at the next login): "
                   f"{done.one_time_password}")
    else:
        click.echo(f"{done.act} of {done.uid} done" + "".join(f"; {k.replace('_', ' ')}: {v}"
                                                             for k, v in done.details.items()))


@four_eyes.command("approve")
@_as
@click.argument("request_id", type=int)
@click.option("--reject", is_flag=True, help="Reject instead of approving.")
@_json
@click.pass_obj
@_errors
def four_eyes_approve(obj: CliContext, as_uid: str, request_id: int, reject: bool, as_json: bool) -> None:
    """A second security administrator approves (and so carries out) or rejects a request, a
    help-desk act's included (its one-time password is shown to this administrator, once)."""
    from idp.help_desk import HelpDesk

    view, done = HelpDesk(_lifecycle(obj)).decide(_actor(obj, as_uid), request_id, not reject)
    if done is not None:
        help_desk_out(done, as_json)
        return
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
