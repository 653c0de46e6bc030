"""`tessera sessions`: End a staff member's sessions everywhere.

``tessera sessions end --user UID`` ends every browser session of the person with the OpenID
Connect tokens issued in them (:func:`idp.oidc.session_end.end_sessions_of`), audited
``session.end_all`` in the same transaction; ``offline_access`` grants go on unless ``--offline``.
"""

from __future__ import annotations

import getpass
import json

import click

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
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def end(obj: CliContext, uid: str, reason: str, offline_too: bool, as_json: bool) -> None:
    """End every session of USER and revoke the tokens issued in them."""
    if not uid.strip() or len(uid) > 128:
        raise click.ClickException("--user: a user name of 1 to 128 characters")
    ended = end_sessions_of(obj.deployment, uid, reason, actor=f"cli:{getpass.getuser()}", offline_too=offline_too)
    if as_json:
        click.echo(json.dumps({"uid": ended.uid, "sessions": ended.sessions, "access_tokens": ended.access_tokens}))
        return
    click.echo(f"ended {ended.sessions} session(s) of {uid}; {ended.access_tokens} access token(s) revoked")
