"""`tessera client`: Register and manage OpenID Connect clients.

A registration or removal and its audit entry (``client.add`` / ``client.remove``) commit in one
transaction; service accounts (client credentials) are managed by ``tessera service``.
"""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Any

import click

from idp import events
from cli.context import CliContext
from idp.oidc.clients import AUTH_METHODS, SCOPES, USERINFO_ALGORITHMS, ClientRegistrationError, RegisteredClient


@click.group(name="client")
def group() -> None:
    """Register and manage OpenID Connect clients."""


def _summary(client: RegisteredClient) -> dict[str, Any]:
    meta = client.client_metadata
    return {
        "client_id": client.client_id,
        "name": client.name,
        "trusted": client.trusted,
        "token_endpoint_auth_method": client.token_endpoint_auth_method,
        "redirect_uris": client.redirect_uris,
        "post_logout_redirect_uris": meta.get("post_logout_redirect_uris", []),
        "scope": meta.get("scope", ""),
        "grant_types": meta.get("grant_types", []),
        "id_token_signed_response_alg": client.id_token_signed_response_alg,
        "userinfo_signed_response_alg": client.userinfo_signed_response_alg,
        "introspection": client.may_introspect,
        "backchannel_logout_uri": client.backchannel_logout_uri,
        "created_at": client.created_at.isoformat(),
    }


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def _audited(obj: CliContext, event_type: str, **details: Any) -> Any:
    """The registry's in-transaction hook: the audit entry of the change, written with it."""
    from audit.trail import AuditEvent

    trail = obj.deployment.audit

    def sink(session: Any, client_id: str) -> None:
        trail.append(session, AuditEvent(event_type, _actor()[:255], "success", subject_role="operator",
                                         object=f"client:{client_id[:128]}", details=details))

    return sink


@group.command("add")
@click.argument("name")
@click.option("--redirect-uri", "redirect_uris", multiple=True, required=True,
              help="Exact redirect URI (repeatable); https, or http only on loopback.")
@click.option("--client-id", default=None, help="Choose the client id (default: random).")
@click.option("--auth-method", type=click.Choice(AUTH_METHODS), default="client_secret_basic", show_default=True,
              help="Token endpoint authentication; 'none' makes a public client (PKCE S256 required).")
@click.option("--post-logout-redirect-uri", "post_logout", multiple=True, help="Allowed after RP-initiated logout (repeatable).")
@click.option("--scope", "scopes", multiple=True, type=click.Choice(SCOPES),
              help="Allowed scope (repeatable; default: all).")
@click.option("--trusted", is_flag=True, help="A first-party application: no consent screen.")
@click.option("--jwks", "jwks_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The client's public JWK Set (JSON file), for private_key_jwt.")
@click.option("--id-token-alg", type=click.Choice(["ES256", "RS256"]), default="ES256", show_default=True,
              help="Algorithm of the id_tokens it receives.")
@click.option("--userinfo-alg", type=click.Choice(USERINFO_ALGORITHMS), default=None,
              help="Sign its userinfo answers (a JWT, userinfo_signed_response_alg) with this algorithm; "
                   "default: plain JSON.")
@click.option("--no-refresh", is_flag=True, help="Issue no refresh tokens to it.")
@click.option("--introspection", is_flag=True,
              help="A resource server: may ask /oidc/introspect about access tokens (RFC 7662).")
@click.option("--backchannel-logout-uri", default=None,
              help="Told of every logout of a session it took part in (OpenID Connect Back-Channel Logout 1.0).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with the secret).")
@click.pass_obj
def add(obj: CliContext, name: str, redirect_uris: tuple[str, ...], client_id: str | None, auth_method: str,
        post_logout: tuple[str, ...], scopes: tuple[str, ...], trusted: bool, jwks_file: str | None, id_token_alg: str,
        userinfo_alg: str | None, no_refresh: bool, introspection: bool, backchannel_logout_uri: str | None,
        as_json: bool) -> None:
    """Register a client. Its secret is printed once: Tessera stores only a hash."""
    jwks = read_jwks(jwks_file) if jwks_file else None
    registry = obj.deployment.clients
    try:
        new = registry.add(name, list(redirect_uris), client_id=client_id, auth_method=auth_method,
                           post_logout_redirect_uris=list(post_logout), scopes=list(scopes) or list(SCOPES),
                           trusted=trusted, jwks=jwks, id_token_alg=id_token_alg, userinfo_alg=userinfo_alg,
                           refresh_tokens=not no_refresh,
                           introspection=introspection, backchannel_logout_uri=backchannel_logout_uri,
                           on_change=_audited(obj, "client.add", auth_method=auth_method, trusted=trusted,
                                              introspection=introspection))
    except ClientRegistrationError as exc:
        events.record("client.add", _actor(), f"client:{client_id}", "failure", reason=str(exc))
        raise click.ClickException(str(exc)) from None
    client = registry.get(new.client_id)
    assert client is not None
    if as_json:
        click.echo(json.dumps(_summary(client) | {"client_secret": new.client_secret,
                                                  "issuer": obj.settings.public_url}, indent=2))
        return
    click.echo(f"client_id:     {new.client_id}")
    if new.client_secret:
        click.echo(f"client_secret: {new.client_secret}   (shown once)")
    click.echo(f"issuer:        {obj.settings.public_url}")


def read_jwks(path: str) -> dict[str, Any]:
    """A client's public JWK Set (RFC 7517 section 5) from a JSON file, for private_key_jwt."""
    try:
        jwks = json.loads(Path(path).read_text())
    except ValueError as exc:
        raise click.ClickException(f"{path} is not JSON: {exc}") from None
    if not isinstance(jwks, dict):
        raise click.ClickException(f"{path} is not a JWK Set")
    return jwks


@group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def list_(obj: CliContext, as_json: bool) -> None:
    """List registered clients."""
    clients = obj.deployment.clients.list()
    if as_json:
        click.echo(json.dumps([_summary(c) for c in clients], indent=2))
        return
    click.echo(f"{'CLIENT ID':<28} {'AUTH':<20} {'TRUSTED':<8} NAME / REDIRECT URIS")
    for c in clients:
        click.echo(f"{c.client_id:<28} {c.token_endpoint_auth_method:<20} {'yes' if c.trusted else 'no':<8} "
                   f"{c.name}  {' '.join(c.redirect_uris)}")


@group.command("show")
@click.argument("client_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def show(obj: CliContext, client_id: str, as_json: bool) -> None:
    """Show one client."""
    client = obj.deployment.clients.get(client_id)
    if client is None:
        raise click.ClickException(f"no client {client_id!r}")
    summary = _summary(client)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    for key, value in summary.items():
        click.echo(f"{key.replace('_', ' '):>28}: {' '.join(value) if isinstance(value, list) else value}")


@group.command("remove")
@click.argument("client_id")
@click.pass_obj
def remove(obj: CliContext, client_id: str) -> None:
    """Remove a client with its codes, tokens and consents."""
    if not obj.deployment.clients.remove(client_id, on_change=_audited(obj, "client.remove")):
        events.record("client.remove", _actor(), f"client:{client_id}", "failure", reason="not-found")
        raise click.ClickException(f"no client {client_id!r}")
    click.echo(f"removed client {client_id}")


@group.command("rotate-key")
@click.option("--alg", type=click.Choice(["ES256", "RS256"]), default="ES256", show_default=True,
              help="Which id_token signing key to replace.")
@click.pass_obj
def rotate_key(obj: CliContext, alg: str) -> None:
    """Make a new id_token signing key; the old one stays in the JWKS so issued tokens still verify."""
    kid = obj.deployment.signing_keys.rotate(alg)
    events.record("oidc.key_rotate", _actor(), f"key:{kid}", "success", alg=alg)
    click.echo(f"new {alg} signing key {kid} (the previous one stays published for verification)")
