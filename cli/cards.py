"""`tessera card`: Citizen smart cards: issue, read, verify, PIN/PUK, lifecycle."""

from __future__ import annotations

import csv
import datetime
import getpass
import json
import sys
from pathlib import Path
from typing import Any

import click

from cli.context import CliContext


def _issuer(ctx: click.Context) -> Any:
    from cardsim.config import CardSettings
    from cardsim.issuance import CardIssuer

    obj: CliContext = ctx.obj
    issuer = CardIssuer(obj.deployment.ca, CardSettings.from_env(obj.settings.home), actor=f"cli:{getpass.getuser()}")
    ctx.call_on_close(issuer.close)
    return issuer


def _reader(ctx: click.Context, online: bool) -> Any:
    """A card reader in this process (it opens the card shards through its own module copies)."""
    from cardsim.config import CardSettings
    from cardsim.reader import CardReader, ReaderTrust

    obj: CliContext = ctx.obj
    return CardReader(CardSettings.from_env(obj.settings.home),
                      ReaderTrust.from_registry(obj.deployment.sessions, online=online))


def _secret(prompt: str) -> str:
    """A PIN or PUK: hidden prompt on a terminal, else one line of standard input (never an option,
    so it never shows in the process list or shell history)."""
    if sys.stdin.isatty():
        return str(click.prompt(prompt, hide_input=True))
    line = sys.stdin.readline()
    if not line:
        raise click.ClickException(f"{prompt}: expected a line on standard input")
    return line.rstrip("\r\n")


def _load_json(path: str) -> dict[str, Any]:
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"cannot read {path}: {exc}") from None
    if not isinstance(value, dict):
        raise click.ClickException(f"{path} must hold a JSON object")
    return value


@click.group(name="card")
def group() -> None:
    """Citizen smart cards: issue, read, verify, PIN/PUK, lifecycle."""


@group.command("issue")
@click.option("--from", "source", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The citizen's application, JSON with the fields of `issue-batch` (see docs/cards.md).")
@click.option("--envelope", default=None, help="Write the PIN envelope (number, PIN, PUK; mode 0600) here "
              "(default: <home>/cards/envelopes/<number>.json).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary (never the PIN or PUK).")
@click.pass_context
def issue(ctx: click.Context, source: str, envelope: str | None, as_json: bool) -> None:
    """Issue one card: on-card keys, certificates, signed records, security object."""
    from cardsim.citizens import parse_application

    application = parse_application(_load_json(source))
    issued = _issuer(ctx).issue(application, envelope=Path(envelope) if envelope else None)
    path = issued.envelope
    if as_json:
        click.echo(json.dumps({"card": issued.number, "holder": issued.holder, "expires_at": issued.expires_at.isoformat(),
                               "auth_certificate": issued.auth_serial, "sign_certificate": issued.sign_serial,
                               "envelope": str(path)}, indent=2))
    else:
        click.echo(f"issued card {issued.number} for {issued.holder}, valid until {issued.expires_at:%Y-%m-%d}; "
                   f"PIN envelope -> {path}")


#: what ``card show`` prints only to a proven operator whose role may read citizens' cards
_PERSONAL = ("holder", "national_id", "records")


def _card_reader_operator(ctx: click.Context, as_uid: str, number: str) -> None:
    """Refuse (one line, exit 4 or 3, audited) unless ``as_uid`` logged in and may read cards."""
    from cli.admin import authorised_operator

    authorised_operator(ctx.obj, as_uid, "card.read", "admin.card.read", f"card:{number[:32]}")


@group.command("show")
@click.argument("number")
@click.option("--as", "as_uid", default=None, metavar="UID",
              help="Show the holder and records too: a logged-in staff member whose role may read cards.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def show(ctx: click.Context, number: str, as_uid: str | None, as_json: bool) -> None:
    """Show a card as the registry knows it: state, certificates; with --as, holder and records too."""
    summary = _issuer(ctx).summary(number)
    shown = summary.as_dict()
    if as_uid is None:
        shown = {k: v for k, v in shown.items() if k not in _PERSONAL}
    else:
        _card_reader_operator(ctx, as_uid, summary.number)
    if as_json:
        click.echo(json.dumps(shown, indent=2))
        return
    for key, value in shown.items():
        if value is not None:
            click.echo(f"{key.replace('_', ' '):>18}: {value}")


@group.group("records")
def records() -> None:
    """Read a card's records (verified), or update a department's record on it."""


@records.command("read")
@click.argument("number")
@click.option("--as", "as_uid", required=True, metavar="UID",
              help="The staff member reading (logged in with `tessera admin login`; their role must allow it).")
@click.option("--with-pin", is_flag=True, help="Ask for the PIN (standard input) to read tax and insurance too.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def records_read(ctx: click.Context, number: str, as_uid: str, with_pin: bool, as_json: bool) -> None:
    """Read the records from the card (a citizen's personal data: a security administrator's duty,
    audited); only records whose checks pass are shown."""
    _card_reader_operator(ctx, as_uid, number)
    reader = _reader(ctx, online=False)
    pin = _secret("PIN") if with_pin else None
    result = reader.verify(number, pin=pin)
    if as_json:
        click.echo(json.dumps({"card": number, "records": result.records,
                               "problems": [c.as_dict() for c in result.failures]}, indent=2, ensure_ascii=False))
    else:
        for kind, data in result.records.items():
            click.echo(f"[{kind}]")
            for key, value in data.items():
                click.echo(f"  {key}: {value}")
        for check in result.failures:
            click.echo(f"! {check.name}: {check.reason} ({check.detail})")
    if result.failures:
        ctx.exit(2)


@records.command("update")
@click.argument("number")
@click.option("--department", required=True, type=click.Choice(["tax-office", "insurance-fund"]),
              help="The department replacing its own record.")
@click.option("--data", "data_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="JSON: tax (taxpayer_number, tax_office, status, last_assessed_year) or insurance "
                   "(insurer, policy_number, coverage_class, valid_until).")
@click.pass_context
def records_update(ctx: click.Context, number: str, department: str, data_path: str) -> None:
    """Replace a record on the card: new version, new signature, new security object (citizen's PIN on stdin)."""
    data = _load_json(data_path)
    pin = _secret("PIN")
    version = _issuer(ctx).update_record(number, department, data, pin)
    click.echo(f"card {number}: {department} record is now version {version}")


@group.command("verify")
@click.argument("number")
@click.option("--with-pin", is_flag=True, help="Read the PIN from standard input: private records and active authentication.")
@click.option("--online", is_flag=True, help="Certificate status from the CA's OCSP responder (default: the CRLs).")
@click.option("--at", "at_text", default=None, help="Verify as of this UTC time (ISO 8601), e.g. to check expiry.")
@click.option("--json", "as_json", is_flag=True, help="Print the typed result as JSON.")
@click.pass_context
def verify(ctx: click.Context, number: str, with_pin: bool, online: bool, at_text: str | None, as_json: bool) -> None:
    """Verify a card: records, signers, security object, certificate status, active authentication.

    Exit status 0 when every check passed, 2 when the card failed a check."""
    at = None
    if at_text:
        try:
            at = datetime.datetime.fromisoformat(at_text.replace("Z", "+00:00"))
        except ValueError:
            raise click.ClickException(f"--at {at_text!r} is not an ISO 8601 time") from None
        if at.tzinfo is None:
            at = at.replace(tzinfo=datetime.timezone.utc)
    reader = _reader(ctx, online=online)
    pin = _secret("PIN") if with_pin else None
    result = reader.verify(number, pin=pin, at=at)
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2, ensure_ascii=False))
    else:
        for check in result.checks:
            click.echo(f"{check.outcome:<8} {check.name:<28} {check.reason}" + (f"  ({check.detail})" if check.detail else ""))
        click.echo(f"card {number}: " + ("VALID" if result.ok else "NOT VALID: " + ", ".join(sorted(result.reasons))))
    if not result.ok:
        ctx.exit(2)


@group.command("lost")
@click.argument("number")
@click.pass_context
def lost(ctx: click.Context, number: str) -> None:
    """The citizen reports the card lost: its certificates are revoked at once and the card marked."""
    summary = _issuer(ctx).report_lost(number)
    click.echo(f"card {summary.number}: {summary.status}; certificates {summary.auth_serial} and "
               f"{summary.sign_serial} revoked (keyCompromise)")


@group.command("expire")
@click.option("--dry-run", is_flag=True, help="Only list the cards that are due; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def expire(ctx: click.Context, dry_run: bool, as_json: bool) -> None:
    """Mark every active card past its expiry date expired (the earlier of its certificates'
    notAfter and the card's validity): all of them in one transaction, each audited, or none."""
    numbers = _issuer(ctx).expire_due(dry_run=dry_run)
    if as_json:
        click.echo(json.dumps({"dry_run": dry_run, "cards": numbers}))
        return
    verb = "would be marked" if dry_run else "marked"
    click.echo(f"{len(numbers)} card(s) {verb} expired" + (": " + " ".join(numbers) if numbers else ""))


@group.command("renew")
@click.argument("number")
@click.option("--envelope", default=None, help="Where to write the new card's PIN envelope.")
@click.pass_context
def renew(ctx: click.Context, number: str, envelope: str | None) -> None:
    """Issue a new card (new keys, records re-signed) and retire the old one (certificates revoked)."""
    issued = _issuer(ctx).renew(number, envelope=Path(envelope) if envelope else None)
    click.echo(f"card {number} renewed as {issued.number}, valid until {issued.expires_at:%Y-%m-%d}; "
               f"PIN envelope -> {issued.envelope}")


@group.command("unblock")
@click.argument("number")
@click.pass_context
def unblock(ctx: click.Context, number: str) -> None:
    """Unblock the PIN with the PUK and set a new PIN (PUK, then new PIN, on standard input)."""
    puk = _secret("PUK")
    new_pin = _secret("New PIN (6-8 digits)")
    _issuer(ctx).unblock(number, puk, new_pin)
    click.echo(f"card {number}: PIN unblocked and replaced")


@group.command("change-pin")
@click.argument("number")
@click.pass_context
def change_pin(ctx: click.Context, number: str) -> None:
    """Change the PIN (current PIN, then new PIN, on standard input)."""
    old = _secret("Current PIN")
    new = _secret("New PIN (6-8 digits)")
    _issuer(ctx).change_pin(number, old, new)
    click.echo(f"card {number}: PIN changed")


@group.command("issue-batch")
@click.argument("csv_path", metavar="CITIZENS.CSV", type=click.Path(exists=True, dir_okay=False))
@click.option("--envelopes", default=None, help="Folder for the PIN envelopes (default: <home>/cards/envelopes).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
def issue_batch(ctx: click.Context, csv_path: str, envelopes: str | None, as_json: bool) -> None:
    """Issue a card for every valid row of a CSV (header: the application fields; see docs/cards.md).

    Resumable: rows whose card was already issued from this file are skipped. Every invalid row is
    reported with its row number and why; a summary ends the run."""
    from cardsim.batch import BatchReport, issue_batch as run_batch

    issuer = _issuer(ctx)
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise click.ClickException(f"cannot read {csv_path}: {exc}") from None
    folder = Path(envelopes) if envelopes else None
    with click.progressbar(length=len(rows), label="issuing cards", file=sys.stderr,
                           show_pos=True, show_eta=True) as bar:
        report: BatchReport = run_batch(issuer, rows, Path(csv_path).name, folder,
                                        progress=lambda n: bar.update(n))
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        for row, problem in report.invalid:
            click.echo(f"row {row}: {problem}", err=True)
        for row, problem in report.failed:
            click.echo(f"row {row}: not issued: {problem}", err=True)
        click.echo(f"{report.issued} issued, {report.skipped} already issued (skipped), {len(report.invalid)} invalid, "
                   f"{len(report.failed)} failed, {report.seconds:.1f} s")
    if report.invalid or report.failed:
        ctx.exit(3)
