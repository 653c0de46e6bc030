"""`tessera directory`: Operate the staff directory (private slapd or an external LDAP)."""

from __future__ import annotations

import json
import os
import time

import click

from cli.admin import _lifecycle, authorised_operator, help_desk_out
from cli.admin import _errors as refusals  # refusals as `tessera admin` answers them (exit 3, 4)
from cli.context import CliContext
from directory.client import Directory, DirectoryError, StaffMember
from directory.config import DirectoryConfig
from idp.settings import ConfigurationError
from directory.slapd import DirectoryFolder, EmbeddedSlapd, generated_staff, slapadd

LOAD_TEST_PASSWORD = "Load-test-password-1"


@click.group(name="directory")
def group() -> None:
    """Operate the staff directory (private slapd or an external LDAP)."""


def _embedded(obj: CliContext) -> EmbeddedSlapd:
    if os.environ.get("TESSERA_LDAP_URLS"):
        raise ConfigurationError("TESSERA_LDAP_URLS points at an external directory: it is not ours to operate")
    folder = DirectoryFolder(obj.settings.home / "ldap")
    if not folder.is_prepared():
        raise ConfigurationError(f"no embedded directory in {folder.path}: run `tessera init`")
    return EmbeddedSlapd(folder)


def _member_dict(member: StaffMember) -> dict[str, object]:
    return {"uid": member.uid, "dn": member.dn, "name": member.name, "given_name": member.given_name,
            "surname": member.surname, "email": member.email, "department": member.department,
            "department_name": member.department_name, "title": member.title, "roles": sorted(member.roles),
            "groups": sorted(member.groups), "is_approver": member.is_approver, "enabled": member.enabled}


@group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def status(obj: CliContext, as_json: bool) -> None:
    """Show where the directory is and whether it answers (exit status 1 if not)."""
    config = DirectoryConfig.from_env(obj.settings.home)
    info: dict[str, object] = {"urls": list(config.urls), "embedded": config.embedded, "read_only": config.read_only,
                               "bind_dn": config.bind_dn, "people_base": config.people_base}
    if config.embedded and config.embedded_dir is not None:
        info["pid"] = EmbeddedSlapd(DirectoryFolder(config.embedded_dir)).pid
    directory = Directory(config)
    started = time.monotonic()
    try:
        info["answering"] = directory.check()
        info["response_ms"] = round((time.monotonic() - started) * 1000, 1)
    except DirectoryError as exc:  # reported, then exit status 1
        info["answering"] = None
        info["error"] = str(exc)
    finally:
        directory.close()
    if as_json:
        click.echo(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            click.echo(f"{key.replace('_', ' '):>12}: {value}")
    if info["answering"] is None:
        raise SystemExit(1)


@group.command("start")
@click.pass_obj
def start(obj: CliContext) -> None:
    """Start the embedded slapd in the background (`tessera serve` also starts it)."""
    slapd = _embedded(obj)
    if slapd.is_running():
        click.echo(f"already running on {slapd.url} (pid {slapd.pid})")
        return
    slapd.start(detach=True)
    click.echo(f"started the staff directory on {slapd.url} (pid {slapd.pid})")


@group.command("stop")
@click.pass_obj
def stop(obj: CliContext) -> None:
    """Stop the embedded slapd (by the PID in its pid file)."""
    slapd = _embedded(obj)
    pid = slapd.pid
    if pid is None:
        click.echo("not running")
        return
    slapd.stop()
    click.echo(f"stopped the staff directory (pid {pid})")


@group.command("show")
@click.argument("username")
@click.option("--as", "as_uid", required=True, metavar="UID",
              help="The staff member asking (logged in with `tessera admin login`; their role must allow it).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def show(obj: CliContext, username: str, as_uid: str, as_json: bool) -> None:
    """Show one staff member as the IdP sees them (department, roles, groups); audited."""
    from cli.admin import authorised_operator

    authorised_operator(obj, as_uid, "people.read", "admin.people.read", f"staff:{username[:64]}")
    directory = Directory(DirectoryConfig.from_env(obj.settings.home))
    try:
        member = directory.find(username)
    finally:
        directory.close()
    if member is None:
        raise click.ClickException(f"no staff member {username!r} in the directory")
    data = _member_dict(member)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for key, value in data.items():
        if isinstance(value, list):
            value = ", ".join(value) or "-"
        click.echo(f"{key.replace('_', ' '):>16}: {value if value is not None else '-'}")


_help_desk_as = click.option("--as", "as_uid", metavar="UID", help="The security administrator acting (logged in "
                             "with `tessera admin login`); audited, four eyes for an administrator's account.")


def _help_desk(obj: CliContext, as_uid: str, act: str, username: str, as_json: bool) -> None:
    """One help-desk act (idp.help_desk) as the proven staff member ``as_uid``: its result, or the
    four-eyes request it became."""
    from idp.help_desk import ACTS, HelpDesk

    who = authorised_operator(obj, as_uid, ACTS[act], f"admin.staff.{act}", f"staff:{username[:64]}")
    help_desk_out(HelpDesk(_lifecycle(obj)).act(who, act, username), as_json)


@group.command("unlock")
@click.argument("username")
@_help_desk_as
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with --as).")
@click.pass_obj
@refusals
def unlock(obj: CliContext, username: str, as_uid: str | None, as_json: bool) -> None:
    """Lift the lockout of a staff member after too many wrong passwords.

    With --as: the help desk's unlock, the directory's lockout and Tessera's login throttle for
    the account both cleared, audited. Without: the system operator lifts the directory's lockout
    only (as the IdP's service account).
    """
    if as_uid:
        _help_desk(obj, as_uid, "unlock", username, as_json)
        return
    directory = Directory(DirectoryConfig.from_env(obj.settings.home))
    try:
        member = directory.unlock(username)
    finally:
        directory.close()
    click.echo(f"unlocked {member.uid} ({member.name})")


@group.command("reset-password")
@click.argument("username")
@click.option("--as", "as_uid", required=True, metavar="UID", help="The security administrator acting.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
@refusals
def reset_password(obj: CliContext, username: str, as_uid: str, as_json: bool) -> None:
    """Give USERNAME a one-time password (printed once) they must change at the next login."""
    _help_desk(obj, as_uid, "reset-password", username, as_json)


@group.command("reset-second-factor")
@click.argument("username")
@click.option("--as", "as_uid", required=True, metavar="UID", help="The security administrator acting.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
@refusals
def reset_second_factor(obj: CliContext, username: str, as_uid: str, as_json: bool) -> None:
    """Void USERNAME's authenticator secret and recovery codes: the next login enrols again."""
    _help_desk(obj, as_uid, "reset-second-factor", username, as_json)


@group.command("generate")
@click.option("--count", required=True, type=click.IntRange(1, 1_000_000), help="How many staff to add.")
@click.option("--start", "first", default=1, show_default=True, type=click.IntRange(1, 9_000_000),
              help="Number of the first one (staffNNNNN); use another range to add more later.")
@click.option("--password", default=LOAD_TEST_PASSWORD, show_default=True,
              help="Password of every generated staff member (stored as argon2id, one salt each).")
@click.pass_obj
def generate(obj: CliContext, count: int, first: int, password: str) -> None:
    """Add COUNT generated staff (staffNNNNN) for load tests, bulk-loaded with slapadd.

    The embedded slapd must be stopped (`tessera directory stop`); it is loaded offline.
    """
    slapd = _embedded(obj)
    if slapd.is_running():
        raise ConfigurationError("the embedded directory is running: stop it first (`tessera directory stop`)")
    folder = slapd.folder
    with click.progressbar(length=count, label="hashing passwords (argon2id)", file=None) as bar:
        def records():  # type: ignore[no-untyped-def]
            for record in generated_staff(folder.suffix, count, password, start=first):
                bar.update(1)
                yield record

        loaded = slapadd(folder, records())
    click.echo(f"added {loaded} staff (staff{first:05d}..staff{first + count - 1:05d}) to {folder.path}")
