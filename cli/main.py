"""The ``tessera`` command: set up, serve and operate the CA.

Errors are one clear line on stderr and a non-zero exit; ``--json`` gives scripts stable output.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

import click
from sqlalchemy.exc import SQLAlchemyError
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from audit import AuditError
from backup import BackupError
from ca.errors import CaError
from cardsim.errors import CardError
from ca.hierarchy import HierarchyPlan
from ca.keys import KeyType
from ca.models import Certificate
from ca.profiles import PROFILES
from ca.revocation import REASONS, parse_reason
from cli import admin, audit, backup, card_agent, cards, certs, clients, config, directory, services, sessions  # noqa: F401  (card_agent adds `card agent`)
from cli.context import CliContext as _Context
from store import schema
from directory.errors import DirectoryError
from idp.settings import ConfigurationError


class _TesseraGroup(click.Group):
    """Turns domain, configuration and database errors of every command into one line and exit
    status 1 (never a traceback)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (CaError, CardError, DirectoryError, AuditError, BackupError) as exc:
            raise click.ClickException(str(exc)) from None
        except (ConfigurationError, OSError) as exc:
            raise click.ClickException(str(exc)) from None
        except SQLAlchemyError as exc:
            raise click.ClickException(f"the database cannot be used: {type(exc).__name__}") from None


@click.group(cls=_TesseraGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", envvar="TESSERA_HOME", type=click.Path(file_okay=False), default=None,
              help="Home folder of the embedded deployment (env TESSERA_HOME, default ./var).")
@click.pass_context
def main(ctx: click.Context, home: str | None) -> None:
    """Tessera: identity, certificate authority and citizen smart cards for e-government."""
    os.umask(0o077)  # keys, PINs, the database and its WAL: owner only (docs/operations.md)
    ctx.obj = _Context(home)
    ctx.call_on_close(lambda: ctx.obj._deployment.close() if ctx.obj._deployment else None)


@main.command()
@click.option("--key-type", type=click.Choice([k.value for k in KeyType if k is not KeyType.SM2]),
              default=KeyType.EC_P256.value, show_default=True,
              help="Algorithm of every CA, OCSP and TSA key of the main hierarchy (for SM2 see --sm2).")
@click.option("--key-backend", type=click.Choice(["pkcs11", "file"]), default="pkcs11", show_default=True,
              help="Where CA keys live: the PKCS#11 token, or encrypted PKCS#8 files.")
@click.option("--root-key-backend", type=click.Choice(["pkcs11", "file"]), default=None,
              help="Keep the root key elsewhere, e.g. 'file' for an offline root (default: --key-backend).")
@click.option("--organisation", default="Tessera Government PKI", show_default=True, help="O= of the CA names.")
@click.option("--country", default="CN", show_default=True, help="C= of the CA names (ISO 3166 alpha-2).")
@click.option("--sm2", is_flag=True, help="Also create the SM2 hierarchy (GB/T 20518, SM2-with-SM3) beside the main "
              "one, as `tessera ca add-sm2` does.")
@click.pass_obj
def init(obj: _Context, key_type: str, key_backend: str, root_key_backend: str | None, organisation: str, country: str,
         sm2: bool) -> None:
    """Create the home folder, the CA token, the database and the CA hierarchy (idempotent)."""
    from idp.home import initialise_home

    plan = HierarchyPlan(organisation=organisation, country=country, key_type=KeyType(key_type),
                         backend=key_backend, root_backend=root_key_backend)
    steps = initialise_home(obj.settings, plan)
    if sm2:
        steps += _add_sm2_hierarchy(obj, organisation, country)
    for line in steps:
        click.echo(line)
    click.echo(f"Tessera home ready: {obj.settings.home}" + ("" if steps else " (nothing to do)"))


def _report_start_findings(obj: _Context) -> None:
    """Once per start, before the workers fork: the example policy arc, and what the audit witness
    knows that the database does not (a restore's gap, CRL numbers or revocations behind:
    docs/operations.md). Logged and printed; the service still starts, so status stays answerable."""
    from audit.verification import witness_findings
    from audit.witness import witness_from_settings

    obj.settings.warn_if_example_policy_arc()
    witness = witness_from_settings(obj.settings.home, obj.settings.audit_witness, obj.settings.audit_syslog)
    if witness.path is None:
        return
    for problem in witness_findings(obj.deployment.sessions, witness.path):
        click.echo(f"audit witness: {problem}", err=True)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535), help="TCP port.")
@click.option("--workers", default=None, type=click.IntRange(1, 64), help="Worker processes (default: one per core).")
@click.option("--dev", is_flag=True, help="Flask's development server with the reloader instead of the production server.")
@click.pass_obj
def serve(obj: _Context, host: str, port: int, workers: int | None, dev: bool) -> None:
    """Run the web service (granian, or gunicorn with TESSERA_HTTP_SERVER=gunicorn; each worker
    opens PKCS#11 after the fork).

    With the embedded directory (no TESSERA_LDAP_URLS), its private slapd is started first,
    started again if it dies, and stopped by PID when the service exits (Ctrl-C, SIGTERM; after
    a SIGKILL the kernel stops it).
    """
    import signal

    from idp.server import chosen_server, claim_address, run
    from directory.slapd import DirectoryFolder, EmbeddedSlapd

    if not obj.deployment.ca.is_initialised():
        raise click.ClickException(f"{obj.settings.home} has no CA yet: run `tessera init` first")
    try:
        chosen_server()
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    missing = schema.pending(obj.deployment.engine)
    if missing:  # every worker would fail on the tables it lacks
        raise click.ClickException(f"the database of {obj.settings.home} lacks migrations {', '.join(missing)}: "
                                   "run `tessera init` to bring it up to date")
    if not dev:  # before slapd starts and "serving" is said: a taken port is one line, nothing started
        claim_address(host, port)
    _report_start_findings(obj)
    obj.deployment.close()  # nothing PKCS#11 or SQL may cross the fork into the workers
    os.environ["TESSERA_HOME"] = str(obj.settings.home)
    slapd: EmbeddedSlapd | None = None
    folder = DirectoryFolder(obj.settings.home / "ldap")
    if not os.environ.get("TESSERA_LDAP_URLS") and folder.is_prepared():
        slapd = EmbeddedSlapd(folder)
        if slapd.is_running():
            click.echo(f"the staff directory is already running on {folder.url} (left running on exit)")
            slapd = None
        else:
            slapd.start()
            click.echo(f"started the staff directory on {folder.url} (pid {slapd.pid})")
    end_watch = slapd.supervise(on_restart=lambda n, why: click.echo(
        f"the staff directory stopped: {why}; started again (restart {n})", err=True)) if slapd else None
    previous = signal.getsignal(signal.SIGTERM)
    if dev:  # the production servers handle SIGTERM themselves; Flask's server would die without cleaning up
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        click.echo(f"Tessera is serving on http://{host}:{port}/  (home {obj.settings.home})")
        if dev:
            from idp.app import create_app

            create_app(obj.settings).run(host=host, port=port, debug=True, use_reloader=True)
            return
        run(host, port, workers or os.cpu_count() or 1)
    finally:
        signal.signal(signal.SIGTERM, previous)
        if end_watch is not None:
            end_watch()
        if slapd is not None:
            slapd.stop()  # by PID, and only in this process (the forked workers skip it)


# --- ca ---------------------------------------------------------------------------------
@main.group()
def ca() -> None:
    """Operate the certificate authority: issue, revoke, list, show, CRLs, chains."""


def _cert_summary(row: Certificate) -> dict[str, Any]:
    return {
        "serial": row.serial_hex,
        "profile": row.profile,
        "subject": row.subject,
        "status": row.status,
        "issuer_id": row.issuer_id,
        "requester": row.requester,
        "issued_at": row.issued_at.isoformat(),
        "not_before": row.not_before.isoformat(),
        "not_after": row.not_after.isoformat(),
        "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
        "revocation_reason": row.revocation_reason,
        "fingerprint_sha256": row.fingerprint_sha256,
    }


def _write(out: str | None, data: bytes) -> None:
    if out in (None, "-"):
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        Path(out).write_bytes(data)


@ca.command("issue")
@click.option("--profile", "profile_name", required=True, help=f"One of: {', '.join(PROFILES)}.")
@click.option("--csr", "csr_path", required=True, type=click.Path(exists=True, dir_okay=False), help="PKCS#10 CSR, PEM or DER.")
@click.option("--subject", default=None, help="Subject to issue to, e.g. 'CN=Jane Doe,O=Ministry,C=EE' (default: the CSR's, validated).")
@click.option("--san", "alt_names", multiple=True, help="subjectAltName as email:..., dns:... or uri:... (repeatable).")
@click.option("--issuer", default=None, help="Issuing CA (default: the profile's).")
@click.option("--requester", default=None, help="Who asked for it (default: cli:<user>).")
@click.option("--out", default=None, help="Write the PEM certificate here (default: stdout).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary (the PEM goes to --out).")
@click.pass_obj
def ca_issue(obj: _Context, profile_name: str, csr_path: str, subject: str | None, alt_names: tuple[str, ...],
             issuer: str | None, requester: str | None, out: str | None, as_json: bool) -> None:
    """Issue a certificate from a CSR under a profile."""
    row = obj.deployment.ca.issue(profile_name, Path(csr_path).read_bytes(), requester or f"cli:{getpass.getuser()}",
                                  subject=subject, alt_names=list(alt_names), issuer=issuer)
    pem = x509.load_der_x509_certificate(row.der).public_bytes(Encoding.PEM)
    if as_json:
        if out:
            _write(out, pem)
        click.echo(json.dumps(_cert_summary(row) | {"pem": pem.decode()}, indent=2))
        return
    if out:
        _write(out, pem)
        click.echo(f"issued {row.profile} certificate {row.serial_hex} for {row.subject} -> {out}", err=True)
    else:
        _write(None, pem)


@ca.command("revoke")
@click.argument("serial")
@click.option("--reason", required=True, help=f"RFC 5280 reason: {', '.join(REASONS)}.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def ca_revoke(obj: _Context, serial: str, reason: str, as_json: bool) -> None:
    """Revoke a certificate (certificateHold puts it on hold; see `release`)."""
    parse_reason(reason)  # a bad reason is reported before anything is looked up
    if obj.deployment.ca.get(serial).profile == "issuing-ca":
        raise click.ClickException("revoking an issuing CA needs four eyes: "
                                   "tessera admin four-eyes request revoke-issuing-ca NAME --as UID")
    row = obj.deployment.ca.revoke(serial, reason, actor=f"cli:{getpass.getuser()}")
    if as_json:
        click.echo(json.dumps(_cert_summary(row), indent=2))
    else:
        click.echo(f"{row.serial_hex}: {row.status} ({row.revocation_reason}) at {row.revoked_at:%Y-%m-%d %H:%M:%SZ}")


@ca.command("release")
@click.argument("serial")
@click.pass_obj
def ca_release(obj: _Context, serial: str) -> None:
    """Release a certificate from hold (certificateHold): it is valid again."""
    row = obj.deployment.ca.release_hold(serial, actor=f"cli:{getpass.getuser()}")
    click.echo(f"{row.serial_hex}: {row.status}")


@ca.command("list")
@click.option("--status", type=click.Choice(["valid", "revoked", "on-hold"]), default=None, help="Only this status.")
@click.option("--profile", default=None, help="Only this profile.")
@click.option("--issuer", default=None, help="Only certificates of this CA.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10000), help="At most this many.")
@click.option("--offset", default=0, type=click.IntRange(0), help="Skip this many (paging).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def ca_list(obj: _Context, status: str | None, profile: str | None, issuer: str | None, limit: int, offset: int, as_json: bool) -> None:
    """List issued certificates, newest first."""
    rows = obj.deployment.ca.list_certificates(status=status, profile=profile, issuer=issuer, limit=limit, offset=offset)
    if as_json:
        click.echo(json.dumps([_cert_summary(r) for r in rows], indent=2))
        return
    click.echo(f"{'SERIAL':<42} {'PROFILE':<13} {'STATUS':<8} {'EXPIRES':<10} SUBJECT")
    for r in rows:
        click.echo(f"{r.serial_hex:<42} {r.profile:<13} {r.status:<8} {r.not_after:%Y-%m-%d} {r.subject}")


@ca.command("show")
@click.argument("serial")
@click.option("--pem", is_flag=True, help="Print the certificate as PEM.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def ca_show(obj: _Context, serial: str, pem: bool, as_json: bool) -> None:
    """Show one certificate by serial number (hex)."""
    row = obj.deployment.ca.get(serial)
    cert = x509.load_der_x509_certificate(row.der)
    if pem:
        _write(None, cert.public_bytes(Encoding.PEM))
        return
    summary = _cert_summary(row) | {"issuer": cert.issuer.rfc4514_string()}
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    for key, value in summary.items():
        if value is not None:
            click.echo(f"{key.replace('_', ' '):>20}: {value}")


@ca.command("crl")
@click.option("--ca", "name", default="staff", show_default=True, help="Which CA's CRL.")
@click.option("--publish", is_flag=True, help="Sign a new CRL now instead of returning the current one.")
@click.option("--pem", is_flag=True, help="PEM instead of DER.")
@click.option("--out", default=None, help="Write here (default: stdout).")
@click.pass_obj
def ca_crl(obj: _Context, name: str, publish: bool, pem: bool, out: str | None) -> None:
    """Print the current CRL of a CA (re-signed when close to nextUpdate)."""
    current = obj.deployment.ca.publish_crl(name) if publish else obj.deployment.ca.current_crl(name)
    data = current.der
    if pem:
        data = x509.load_der_x509_crl(data).public_bytes(Encoding.PEM)
    _write(out, data)
    if out:
        click.echo(f"CRL #{current.number} of {name}, next update {current.next_update:%Y-%m-%d %H:%M:%SZ} -> {out}", err=True)


@ca.command("add-sm2")
@click.option("--organisation", default="Tessera Government PKI", show_default=True, help="O= of the CA names.")
@click.option("--country", default="CN", show_default=True, help="C= of the CA names (ISO 3166 alpha-2).")
@click.pass_obj
def ca_add_sm2(obj: _Context, organisation: str, country: str) -> None:
    """Add the SM2 hierarchy beside the existing one: sm2-root, sm2-staff, sm2-citizen, their OCSP
    responders and TSA, signed SM2-with-SM3 (GB/T 20518), keys in the sealed SM2 keystore."""
    steps = _add_sm2_hierarchy(obj, organisation, country)
    for line in steps or ["the SM2 hierarchy exists already (nothing to do)"]:
        click.echo(line)


def _add_sm2_hierarchy(obj: _Context, organisation: str, country: str) -> list[str]:
    """The SM2 hierarchy beside the main one, once: a line per CA created, none if it exists."""
    import secrets

    from ca.profiles import SM2_PREFIX

    ca_ = obj.deployment.ca
    if any(a.name.startswith(SM2_PREFIX) for a in ca_.authorities()):
        return []
    passphrase = obj.settings.secrets_dir / "key-passphrase"
    if not os.environ.get("TESSERA_KEY_PASSPHRASE") and not passphrase.exists():
        with open(passphrase, "x", opener=lambda p, f: os.open(p, f, 0o600)) as fh:
            fh.write(secrets.token_urlsafe(32))
    plan = HierarchyPlan(organisation=organisation, country=country, key_type=KeyType.SM2,
                         key_dir=obj.settings.key_dir)
    return [f"created CA {authority.name}: {authority.subject}" for authority in ca_.initialise(plan)]


@ca.command("export-chain")
@click.option("--ca", "name", default="staff", show_default=True, help="Start from this CA (its chain to the root).")
@click.option("--out", default=None, help="Write here (default: stdout).")
@click.pass_obj
def ca_export_chain(obj: _Context, name: str, out: str | None) -> None:
    """Export a CA's certificate chain up to the root, PEM."""
    chain = obj.deployment.ca.chain(name)
    _write(out, b"".join(c.public_bytes(Encoding.PEM) for c in chain))


for _group in (directory.group, clients.group, certs.group, cards.group, audit.group, admin.group, config.group,
               services.group):
    main.add_command(_group)
main.add_command(sessions.group)
backup.register(main)


if __name__ == "__main__":  # pragma: no cover
    main()
