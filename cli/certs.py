"""`tessera cert`: Staff certificates from the directory entry."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ca.errors import CaError
from idp import events
from cli.context import CliContext
from directory.errors import DirectoryUnavailable
from idp.staff import claims_of
from idp.staff_certificates import OWN_REVOCATION_REASONS, StaffCertificates


@click.group(name="cert")
def group() -> None:
    """Staff certificates from the directory entry."""


def _login(obj: CliContext, username: str, password: str | None, code: str | None) -> dict[str, object]:
    """Both factors, as on the login page (:meth:`idp.operators.Operators.authenticate`: the
    directory password, then a TOTP or recovery code; failures counted in the login throttle)."""
    from idp.operators import NotAuthenticated, Operators

    password = password if password is not None else click.prompt("Directory password", hide_input=True, err=True)
    code = code if code is not None else click.prompt("Authenticator code", err=True)
    try:
        member = Operators(obj.deployment).authenticate(username, password, code)
    except DirectoryUnavailable as exc:
        raise click.ClickException(exc.message) from None
    except NotAuthenticated as exc:
        raise click.ClickException(str(exc)) from None
    events.record("login", f"staff:{member.uid}", f"staff:{member.uid}", "success", factors=["pwd", "otp"], via="cli")
    return claims_of(member)


@group.command("request")
@click.option("--user", "username", required=True, help="Your directory user name.")
@click.option("--csr", "csr_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="PKCS#10 request (PEM or DER) made with your own key; only its key is used.")
@click.option("--out", default=None, help="Write the PEM certificate here (default: stdout).")
@click.option("--password-stdin", is_flag=True, help="Read the password and then the code from stdin, one per line.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@click.pass_obj
def request(obj: CliContext, username: str, csr_path: str, out: str | None, password_stdin: bool, as_json: bool) -> None:
    """Get a staff-auth certificate: subject and e-mail come from the directory, never the CSR."""
    password = code = None
    if password_stdin:
        lines = sys.stdin.read().splitlines()
        if len(lines) < 2:
            raise click.ClickException("--password-stdin needs two lines: the password, then the code")
        password, code = lines[0], lines[1]
    claims = _login(obj, username, password, code)
    uid = str(claims["sub"])
    data = Path(csr_path).read_bytes()
    try:
        row = StaffCertificates(obj.deployment.ca, obj.deployment.sessions).issue(uid, claims, data)
    except CaError as exc:
        events.record("cert.issue", f"staff:{uid}", None, "failure", reason=exc.kind, via="cli")
        raise
    events.record("cert.issue", f"staff:{uid}", f"cert:{row.serial_hex}", "success", profile=row.profile, via="cli")
    pem = x509.load_der_x509_certificate(row.der).public_bytes(Encoding.PEM)
    if out:
        Path(out).write_bytes(pem)
    if as_json:
        click.echo(json.dumps({"serial": row.serial_hex, "subject": row.subject, "profile": row.profile,
                               "not_after": row.not_after.isoformat(), "pem": pem.decode()}, indent=2))
    elif out:
        click.echo(f"issued {row.profile} certificate {row.serial_hex} for {row.subject} -> {out}", err=True)
    else:
        sys.stdout.write(pem.decode())


@group.command("list")
@click.option("--user", "username", required=True, help="Whose certificates (directory user name).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def list_(obj: CliContext, username: str, as_json: bool) -> None:
    """List a staff member's certificates (operator view; no login needed on the server itself)."""
    rows = StaffCertificates(obj.deployment.ca, obj.deployment.sessions).list_for(username)
    if as_json:
        click.echo(json.dumps([{"serial": r.serial_hex, "subject": r.subject, "status": r.status,
                                "not_after": r.not_after.isoformat()} for r in rows], indent=2))
        return
    for r in rows:
        click.echo(f"{r.serial_hex}  {r.status:<8} {r.not_after:%Y-%m-%d}  {r.subject}")


@group.command("revoke")
@click.argument("serial")
@click.option("--user", "username", required=True, help="Your directory user name.")
@click.option("--reason", type=click.Choice(OWN_REVOCATION_REASONS), default="unspecified", show_default=True)
@click.option("--password-stdin", is_flag=True, help="Read the password and then the code from stdin, one per line.")
@click.pass_obj
def revoke(obj: CliContext, serial: str, username: str, reason: str, password_stdin: bool) -> None:
    """Revoke one of your own staff certificates (after logging in with both factors)."""
    password = code = None
    if password_stdin:
        lines = sys.stdin.read().splitlines() + ["", ""]
        password, code = lines[0], lines[1]
    claims = _login(obj, username, password, code)
    uid = str(claims["sub"])
    row = StaffCertificates(obj.deployment.ca, obj.deployment.sessions).revoke_own(uid, serial, reason)
    events.record("cert.revoke", f"staff:{uid}", f"cert:{row.serial_hex}", "success", reason=reason, via="cli")
    click.echo(f"{row.serial_hex}: {row.status} ({row.revocation_reason})")
