"""`tessera service`: service accounts, the OAuth 2.0 clients of the verification API.

A service account is a confidential client of the client credentials grant only (RFC 6749
section 4.4): no redirect URIs, scopes among ``verify``; it gets short-lived access tokens from
``/oidc/token`` and calls ``/api/v1`` with them. Only the system administrator manages them
(permissions ``client.read``, ``client.add``, ``client.remove`` of :mod:`idp.roles`): every command
acts as a named staff member (``--as UID``) whose role is read from the directory, as ``tessera
admin`` does. A registration or removal and its audit entry commit in one transaction; a refusal
is audited too.
"""

from __future__ import annotations

from typing import Any

import click

from cli.admin import _actor, _errors, _lifecycle, _out
from cli.clients import read_jwks
from cli.context import CliContext
from idp.oidc.clients import SERVICE_AUTH_METHODS, SERVICE_SCOPES, ClientRegistrationError, RegisteredClient


@click.group(name="service")
def group() -> None:
    """Service accounts: OAuth 2.0 client credentials for the verification API (system administrator)."""


_as = click.option("--as", "as_uid", required=True, metavar="UID",
                   help="The staff member (directory user name) acting; only a system administrator may.")
_json = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def summary(client: RegisteredClient) -> dict[str, Any]:
    """What ``list`` and ``add`` show of a service account (never its secret's hash)."""
    return {"client_id": client.client_id, "name": client.name, "scope": " ".join(client.scopes),
            "token_endpoint_auth_method": client.token_endpoint_auth_method,
            "grant_types": client.client_metadata.get("grant_types", []), "created_at": client.created_at.isoformat()}


@group.command("add")
@click.argument("name")
@_as
@click.option("--scope", "scopes", multiple=True, type=click.Choice(SERVICE_SCOPES),
              help="Scope it may be granted (repeatable; default: all of " + ", ".join(SERVICE_SCOPES) + ").")
@click.option("--auth-method", type=click.Choice(SERVICE_AUTH_METHODS), default="client_secret_basic",
              show_default=True, help="How it authenticates at the token endpoint.")
@click.option("--jwks", "jwks_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Its public JWK Set (JSON file), for private_key_jwt.")
@click.option("--client-id", default=None, help="Choose the client id (default: random).")
@_json
@click.pass_obj
@_errors
def add(obj: CliContext, name: str, as_uid: str, scopes: tuple[str, ...], auth_method: str, jwks_file: str | None,
        client_id: str | None, as_json: bool) -> None:
    """Register a service account. Its secret is printed once: Tessera stores only a hash."""
    lc, who = _lifecycle(obj), _actor(obj, as_uid)
    event_type = "admin.service.add"
    lc.authorise(who, "client.add", event_type, f"client:{client_id}" if client_id else None)
    jwks = read_jwks(jwks_file) if jwks_file else None
    granted = list(scopes) or list(SERVICE_SCOPES)

    def audit(session: Any, new_id: str) -> None:
        lc.trail.append(session, lc.event(who, event_type, "success", f"client:{new_id}", name=name[:200],
                                          scope=" ".join(granted), auth_method=auth_method))

    try:
        new = obj.deployment.clients.add_service(name, granted, client_id=client_id, auth_method=auth_method,
                                                 jwks=jwks, on_change=audit)
    except ClientRegistrationError as exc:
        lc.refused(who, event_type, f"client:{client_id}" if client_id else None, str(exc))
        raise click.ClickException(str(exc)) from None
    client = obj.deployment.clients.get(new.client_id)
    assert client is not None
    token_url = obj.settings.public_url + "/oidc/token"
    if as_json:
        _out(summary(client) | {"client_secret": new.client_secret, "token_endpoint": token_url}, True, "")
        return
    click.echo(f"client_id:      {new.client_id}")
    if new.client_secret:
        click.echo(f"client_secret:  {new.client_secret}   (shown once)")
    click.echo(f"token endpoint: {token_url}  (grant_type=client_credentials, scope {' '.join(granted)})")


@group.command("list")
@_as
@_json
@click.pass_obj
@_errors
def list_(obj: CliContext, as_uid: str, as_json: bool) -> None:
    """List service accounts."""
    lc, who = _lifecycle(obj), _actor(obj, as_uid)
    lc.authorise(who, "client.read", "admin.service.read")
    accounts = [c for c in obj.deployment.clients.list() if c.is_service]
    if as_json:
        _out([summary(c) for c in accounts], True, "")
        return
    click.echo(f"{'CLIENT ID':<28} {'AUTH':<20} {'SCOPE':<10} NAME")
    for c in accounts:
        click.echo(f"{c.client_id:<28} {c.token_endpoint_auth_method:<20} {' '.join(c.scopes):<10} {c.name}")


@group.command("remove")
@click.argument("client_id")
@_as
@_json
@click.pass_obj
@_errors
def remove(obj: CliContext, client_id: str, as_uid: str, as_json: bool) -> None:
    """Remove a service account: its access tokens stop working at the next call."""
    lc, who = _lifecycle(obj), _actor(obj, as_uid)
    event_type = "admin.service.remove"
    target = f"client:{client_id[:128]}"
    lc.authorise(who, "client.remove", event_type, target)
    client = obj.deployment.clients.get(client_id)
    if client is None or not client.is_service:
        lc.refused(who, event_type, target, "no such service account")
        raise click.ClickException(f"no service account {client_id!r}")

    def audit(session: Any, removed: str) -> None:
        lc.trail.append(session, lc.event(who, event_type, "success", f"client:{removed}", name=client.name))

    if not obj.deployment.clients.remove(client_id, on_change=audit):
        lc.refused(who, event_type, target, "no such service account")
        raise click.ClickException(f"no service account {client_id!r}")
    _out({"removed": client_id}, as_json, f"removed service account {client_id} ({client.name})")
