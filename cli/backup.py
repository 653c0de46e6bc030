"""`tessera backup` (create, verify, new-key, prune) and `tessera restore`: thin over :mod:`backup`.

The archive key comes from ``--key-file`` (32 random bytes, `tessera backup new-key`; for scheduled
backups), ``--passphrase-file``, the environment (``TESSERA_BACKUP_KEY_FILE``,
``TESSERA_BACKUP_PASSPHRASE``) or, on a terminal, a prompt; never from the command line, never
printed. Progress goes to stderr, ``--json`` prints the result on stdout. A backup is recorded in
the audit trail before it copies anything (``backup.create``), a restore after it reconciled
(``backup.restore``).
"""

from __future__ import annotations

import datetime
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from backup import (DeploymentFiles, KeySource, backup_name, create_backup, new_key_file, prune,
                    reconcile, restore_backup, verify_backup)
from backup.restore import ENVIRONMENT_FILE
from cli.context import CliContext
from idp.settings import DEFAULT_PKCS11_MODULE, Settings

#: variables of the backing-up process that are not the deployment's configuration
_NOT_CONFIGURATION = ("TESSERA_BACKUP_", "TESSERA_OPERATOR_TOKEN", "TESSERA_HOME")
MIN_PASSPHRASE = 12


@click.group(name="backup")
def group() -> None:
    """Back the deployment up while it serves, and check or prune backups (docs/operations.md)."""


_key_file = click.option("--key-file", type=click.Path(dir_okay=False), default=None,
                         help="The archive key: a file of 32 random bytes, base64 (env TESSERA_BACKUP_KEY_FILE).")
_passphrase_file = click.option("--passphrase-file", type=click.Path(exists=True, dir_okay=False), default=None,
                                help="The archive passphrase: the first line of this file "
                                     "(env TESSERA_BACKUP_PASSPHRASE; else asked on the terminal).")
_json = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")


def _key(key_file: str | None, passphrase_file: str | None, confirm: bool) -> KeySource:
    """The archive key from the options, the environment or the terminal (never echoed)."""
    key_file = key_file or os.environ.get("TESSERA_BACKUP_KEY_FILE") or None
    if key_file and passphrase_file:
        raise click.UsageError("give --key-file or --passphrase-file, not both")
    if key_file:
        return KeySource(key_file=Path(key_file))
    if passphrase_file:
        lines = Path(passphrase_file).read_text().splitlines()
        passphrase = lines[0] if lines else ""
    elif os.environ.get("TESSERA_BACKUP_PASSPHRASE"):
        passphrase = os.environ["TESSERA_BACKUP_PASSPHRASE"]
    elif sys.stdin.isatty():
        passphrase = getpass.getpass("Backup passphrase: ")
        if confirm and getpass.getpass("Again: ") != passphrase:
            raise click.UsageError("the two passphrases differ")
    else:
        raise click.UsageError("no archive key: give --key-file or --passphrase-file "
                               "(or TESSERA_BACKUP_KEY_FILE / TESSERA_BACKUP_PASSPHRASE)")
    if confirm and len(passphrase) < MIN_PASSPHRASE:
        raise click.UsageError(f"a backup passphrase has at least {MIN_PASSPHRASE} characters "
                               "(or use a key file: `tessera backup new-key`)")
    return KeySource(passphrase=passphrase)


def deployment_files(settings: Settings, environment: dict[str, str] | None = None) -> DeploymentFiles:
    """Where ``settings``' deployment keeps each part (the embedded layout unless configured otherwise)."""
    from cardsim.config import CardSettings

    environment = dict(os.environ if environment is None else environment)
    embedded_token = settings.pkcs11_module == DEFAULT_PKCS11_MODULE
    return DeploymentFiles(
        home=settings.home, database_url=settings.database_url, secrets_dir=settings.secrets_dir,
        key_dir=settings.key_dir, softhsm_dir=settings.softhsm_conf.parent if embedded_token else None,
        card_dir=CardSettings.from_env(settings.home).folder,
        ldap_dir=None if environment.get("TESSERA_LDAP_URLS") else settings.home / "ldap",
        environment={k: v for k, v in environment.items()
                     if k.startswith("TESSERA_") and not k.startswith(_NOT_CONFIGURATION)})


def _present(files: DeploymentFiles) -> DeploymentFiles:
    """Only the parts this deployment has (a home without cards or keys yet)."""
    from dataclasses import replace

    def there(path: Path | None) -> Path | None:
        return path if path is not None and path.exists() else None

    return replace(files, key_dir=there(files.key_dir), softhsm_dir=there(files.softhsm_dir),
                   card_dir=there(files.card_dir), ldap_dir=there(files.ldap_dir))


def _progress(line: str) -> None:
    click.echo(line, err=True)


def _witness_path(settings: Settings) -> Path | None:
    from audit.witness import witness_from_settings

    try:
        return witness_from_settings(settings.home, settings.audit_witness, None).path
    except ValueError as exc:
        raise click.ClickException(f"TESSERA_AUDIT_WITNESS: {exc}") from None


def _operator() -> str:
    return f"cli:{getpass.getuser()}"


def _record(deployment: Any, event_type: str, object_: str, **details: Any) -> None:
    from audit import AuditEvent

    deployment.audit.record(AuditEvent(event_type, _operator(), "success", subject_role="operator",
                                       object=object_[:255], source_address="local", details=details))


@group.command("create")
@click.option("--out", default=None, type=click.Path(),
              help="The backup file, or an existing folder to put it in (default: "
                   "./tessera-backup-<UTC time>.tbk). Never overwritten.")
@_key_file
@_passphrase_file
@_json
@click.pass_obj
def create_cmd(obj: CliContext, out: str | None, key_file: str | None, passphrase_file: str | None,
               as_json: bool) -> None:
    """Back up the database, CA token, cards, secrets, keys, directory and configuration while the
    service runs, sealed (AES-256-GCM) with a manifest of SHA-256 hashes."""
    key = _key(key_file, passphrase_file, confirm=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    target = Path(out) if out else Path.cwd()
    if target.is_dir():
        target = target / backup_name(now)
    files = _present(deployment_files(obj.settings))
    witness = _witness_path(obj.settings)
    if witness is not None and witness.resolve().is_relative_to(obj.settings.home):
        click.echo(f"warning: the audit witness {witness} is inside the home: losing the home loses it too, and a "
                   "restore then cannot tell what was published after the backup (set TESSERA_AUDIT_WITNESS "
                   "outside it: docs/operations.md)", err=True)
    _record(obj.deployment, "backup.create", str(target.resolve()))
    manifest = create_backup(files, target, key, _progress, now)
    result = {"file": str(target), "bytes": target.stat().st_size, **manifest.summary()}
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        state = manifest.state
        click.echo(f"backup {target}: {result['files']} files, {result['bytes']} bytes sealed; audit head "
                   f"{state.get('audit_head')}, CRL numbers {state.get('crl_numbers')}")


@group.command("verify")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@_key_file
@_passphrase_file
@_json
def verify_cmd(file: str, key_file: str | None, passphrase_file: str | None, as_json: bool) -> None:
    """Read a backup end to end: every byte must authenticate and every file match the manifest
    (exit 1 if not). Writes nothing."""
    manifest = verify_backup(Path(file), _key(key_file, passphrase_file, confirm=False))
    if as_json:
        click.echo(json.dumps({"ok": True, "file": file, **manifest.summary()}, indent=2))
    else:
        click.echo(f"OK: {file} is whole: the backup of {manifest.created}, {len(manifest.files)} files "
                   f"({', '.join(manifest.summary()['parts'])})")


@group.command("new-key")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Where to write the key (mode 0600).")
def new_key_cmd(out: str) -> None:
    """Make a key file for backups (keep a copy apart from the backups: without it they cannot be read)."""
    try:
        new_key_file(Path(out))
    except FileExistsError:
        raise click.ClickException(f"{out} exists: a key file is never overwritten") from None
    click.echo(f"new backup key in {out}", err=True)


@group.command("prune")
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("--keep", type=click.IntRange(1), required=True, help="Keep the newest N backups.")
@click.option("--max-age-days", type=click.IntRange(1), default=None,
              help="Also delete backups older than this (the newest is always kept).")
@click.option("--dry-run", is_flag=True, help="Say what would be deleted; delete nothing.")
@_json
def prune_cmd(folder: str, keep: int, max_age_days: int | None, dry_run: bool, as_json: bool) -> None:
    """Delete old backups of FOLDER (files named tessera-backup-<time>.tbk), keeping the newest N."""
    age = datetime.timedelta(days=max_age_days) if max_age_days else None
    gone = prune(Path(folder), keep, age, dry_run=dry_run)
    if as_json:
        click.echo(json.dumps({"dry_run": dry_run, "deleted": [str(b.path) for b in gone]}, indent=2))
        return
    for backup in gone:
        click.echo(("would delete " if dry_run else "deleted ") + str(backup.path))


@click.command("restore")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--home", "home", type=click.Path(file_okay=False), default=None,
              help="The empty (or absent) home to restore into (default: tessera --home / TESSERA_HOME).")
@click.option("--witness", "witness_file", type=click.Path(dir_okay=False), default=None,
              help="The audit witness file of the backed-up deployment (default: TESSERA_AUDIT_WITNESS).")
@click.option("--without-witness", is_flag=True,
              help="Restore without a witness: nothing then tells what was published after the backup.")
@click.option("--reconcile-only", is_flag=True,
              help="The home holds this backup already (a restore stopped after placing it): only compare it "
                   "with the witness.")
@_key_file
@_passphrase_file
@_json
@click.pass_obj
def restore_cmd(obj: CliContext, file: str, home: str | None, witness_file: str | None, without_witness: bool,
                reconcile_only: bool, key_file: str | None, passphrase_file: str | None, as_json: bool) -> None:
    """Restore a backup into an empty home, then bring it level with the witness: the audit gap
    is reported, CRL numbers continue above the witnessed ones, lost revocations are made again."""
    from audit.checkpoints import Checkpointer
    from audit.witness import Witness, attach
    from idp.deployment import Deployment
    from store import schema

    settings = Settings.from_env(home) if home else obj.settings
    witness_path = Path(witness_file) if witness_file else _witness_path(settings)
    if without_witness:
        witness_path = None
    elif witness_path is None or not witness_path.is_file():
        raise click.ClickException(f"no audit witness at {witness_path}: without it the restore cannot tell what was "
                                   "published after the backup; give --witness PATH, or --without-witness")
    key = _key(key_file, passphrase_file, confirm=False)
    if reconcile_only:
        if not settings.home.is_dir() or not any(settings.home.iterdir()):
            raise click.ClickException(f"{settings.home} is empty: restore the backup first (without --reconcile-only)")
        manifest = verify_backup(Path(file), key)
    else:
        manifest = restore_backup(Path(file), key, deployment_files(settings), _progress)
    deployment = Deployment(settings)
    try:
        schema.upgrade(deployment.engine)
        witness = Witness(witness_path) if witness_path is not None else None
        if witness is not None:
            attach(deployment.sessions, witness)
        created = datetime.datetime.fromisoformat(manifest.created.replace("Z", "+00:00"))
        try:
            result = reconcile(deployment.ca, deployment.sessions, witness, created, _operator(), deployment.tsa)
        except Exception:
            click.echo(f"the backup is in {settings.home} but was not compared with the witness: remove the cause "
                       f"below, then run `tessera --home {settings.home} restore {file} --reconcile-only ...`",
                       err=True)
            raise
        _record(deployment, "backup.restore", file, backup_created=manifest.created, gap=result.as_dict()["gap"],
                crl_numbers=len(result.crl_numbers), revoked_again=len(result.reapplied), unknown=len(result.unknown))
        Checkpointer(deployment.ca, deployment.sessions, deployment.tsa, witness=witness).checkpoint()
    finally:
        deployment.close()
    configured = _witness_path(settings)
    if witness_path is not None and configured != witness_path:
        click.echo(f"note: set TESSERA_AUDIT_WITNESS={witness_path} for the restored deployment (it is configured "
                   f"with {configured})", err=True)
    if (settings.home / ENVIRONMENT_FILE).exists():
        click.echo(f"the backed-up deployment's TESSERA_* configuration is in {settings.home / ENVIRONMENT_FILE}",
                   err=True)
    if as_json:
        click.echo(json.dumps({"home": str(settings.home), "backup": manifest.summary(), **result.as_dict()}, indent=2))
    else:
        for line in result.lines():
            click.echo(line)
        click.echo(f"restored the backup of {manifest.created} into {settings.home}")


def register(main: click.Group) -> None:
    """Add `backup` and `restore` to the `tessera` command."""
    main.add_command(group)
    main.add_command(restore_cmd)
