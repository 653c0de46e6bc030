"""`tessera sessions`: End a staff member's sessions everywhere.

``tessera sessions end --user UID`` ends every browser session of the person with the OpenID
Connect tokens issued in them (:func:`idp.oidc.session_end.end_sessions_of`), audited
``session.end_all`` in the same transaction; ``offline_access`` grants go on unless ``--offline``.
With ``--as UID`` it is the help desk's act (:mod:`idp.help_desk`): permitted to the security
administrator, audited ``admin.staff.end-sessions``, four eyes on an administrator's account.
"""

from __future__ import annotations

import getpass
import json

import click

from cli.admin import _errors as refusals  # refusals as `tessera admin` answers them (exit 3, 4)
from cli.admin import _lifecycle, authorised_operator, help_desk_out
from cli.context import CliContext
from idp.oidc.session_end import end_sessions_of


@click.group(name="sessions")
def group() -> None:
    """End a staff member's sessions everywhere."""


@group.command("end")
@click.option("--user", "uid", required=True, help="The staff member's user name (directory uid).")
@click.option("--reason", default="operator", show_default=True, help="Why, for the audit trail.")
@click.option("--offline", "offline_too", is_flag=True,
              help="Also revoke the offline_access grants that outlive a session (e.g. a leaver).")
@click.option("--as", "as_uid", metavar="UID", help="The security administrator acting (logged in with `tessera "
              "admin login`): the help desk's act, audited, four eyes for an administrator's account.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
@refusals
def end(obj: CliContext, uid: str, reason: str, offline_too: bool, as_uid: str | None, as_json: bool) -> None:
    """End every session of USER and revoke the tokens issued in them."""
    if not uid.strip() or len(uid) > 128:
        raise click.ClickException("--user: a user name of 1 to 128 characters")
    if as_uid:
        if offline_too:
            raise click.UsageError("--offline is the operator's (a leaver's grants go with `tessera admin leaver`)")
        from idp.help_desk import ACTS, HelpDesk

        who = authorised_operator(obj, as_uid, ACTS["end-sessions"], "admin.staff.end-sessions", f"staff:{uid[:64]}")
        help_desk_out(HelpDesk(_lifecycle(obj)).act(who, "end-sessions", uid), as_json)
        return
    ended = end_sessions_of(obj.deployment, uid, reason, actor=f"cli:{getpass.getuser()}", offline_too=offline_too)
    if as_json:
        click.echo(json.dumps({"uid": ended.uid, "sessions": ended.sessions, "access_tokens": ended.access_tokens}))
        return
    click.echo(f"ended {ended.sessions} session(s) of {uid}; {ended.access_tokens} access token(s) revoked")
