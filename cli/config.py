"""`tessera config`: the runtime settings (idp/runtime_settings.py), shown and changed from the shell.

As with ``tessera admin``, every command acts as a named staff member (``--as UID``) whose role is
read from the directory: the system administrator shows and sets, the security administrator only
shows, anybody else is refused (exit status 3) and the refusal is audited. A change is audited with
its old and new value in the same transaction, and every worker of a running service uses it within
a few seconds, without a restart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from cli.admin import _actor, _as, _errors, _json, _lifecycle, _out
from cli.context import CliContext

if TYPE_CHECKING:
    from idp.account_lifecycle import Actor
    from idp.runtime_settings import RuntimeSettings


@click.group(name="config")
def group() -> None:
    """Runtime settings: session timeouts, login throttle, TOTP window, API rate, password length."""


def _settings(obj: CliContext) -> "RuntimeSettings":
    from idp.runtime_settings import RuntimeSettings

    d = obj.deployment
    return RuntimeSettings(d.sessions, d.settings, d.now)


def _authorised(obj: CliContext, as_uid: str, change: bool, event_type: str, object_: str | None = None) -> "Actor":
    from idp.roles import Forbidden
    from idp.runtime_settings import require

    lc, who = _lifecycle(obj), _actor(obj, as_uid)
    try:
        require(who.groups, change)
    except Forbidden as exc:
        lc.refused(who, event_type, object_, str(exc), kind=exc.kind)
        raise
    return who


@group.command("show")
@_as
@_json
@click.pass_obj
@_errors
def show(obj: CliContext, as_uid: str, as_json: bool) -> None:
    """Every runtime setting: value in force, allowed range, default and last change."""
    _authorised(obj, as_uid, False, "admin.config.read")
    rows = _settings(obj).show()
    if as_json:
        _out([{"name": r.name, "value": r.value, "unit": r.unit, "minimum": r.minimum, "maximum": r.maximum,
               "default": r.default, "changed_by": r.changed_by,
               "changed_at": r.changed_at.isoformat() if r.changed_at else None} for r in rows], True, "")
        return
    click.echo(f"{'SETTING':<26} {'VALUE':>7} {'RANGE':<14} {'DEFAULT':>7}  LAST CHANGE")
    for r in rows:
        last = f"{r.changed_by} {r.changed_at:%Y-%m-%d %H:%M}Z" if r.changed_by and r.changed_at else "-"
        click.echo(f"{r.name:<26} {r.value:>7} {f'{r.minimum}..{r.maximum}':<14} {r.default:>7}  {last}")


@group.command("set")
@_as
@click.argument("name")
@click.argument("value")
@_json
@click.pass_obj
@_errors
def set_(obj: CliContext, as_uid: str, name: str, value: str, as_json: bool) -> None:
    """Set NAME to VALUE (a whole number within the setting's range; see `tessera config show`)."""
    from idp.runtime_settings import InvalidSetting

    object_ = f"config:{name[:64]}"
    who = _authorised(obj, as_uid, True, "admin.config.set", object_)
    lc = _lifecycle(obj)
    try:
        done = _settings(obj).set(name, value, lc.trail,
                                  lambda **change: lc.event(who, "admin.config.set", "success", object_, **change),
                                  who.subject)
    except InvalidSetting as exc:
        lc.refused(who, "admin.config.set", object_, str(exc), kind=exc.kind)
        raise
    _out({"name": done.name, "old": done.old, "new": done.new, "changed": done.changed}, as_json,
         f"{done.name}: {done.old} -> {done.new}" if done.changed else f"{done.name} is {done.new} already (unchanged)")
