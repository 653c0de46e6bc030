"""`tessera audit`: verify, checkpoint, archive, export, report on and list the tamper-evident audit trail.

Every command that reads the trail out (verify, export) is itself recorded in it
(``audit.verify``, ``audit.export``); an export whose audit entry cannot be written does not run.
"""

from __future__ import annotations

import datetime
import getpass
import json
import sys
from pathlib import Path
from typing import Any

import click
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from cli.admin import authorised_operator
from cli.context import CliContext


@click.group(name="audit")
def group() -> None:
    """Verify, export and report on the tamper-evident audit trail."""


def _witness(obj: CliContext) -> Any:
    """The deployment's witness (TESSERA_AUDIT_WITNESS, TESSERA_AUDIT_SYSLOG)."""
    from audit.witness import witness_from_settings

    settings = obj.settings
    try:
        return witness_from_settings(settings.home, settings.audit_witness, settings.audit_syslog)
    except ValueError as exc:
        raise click.ClickException(f"TESSERA_AUDIT_SYSLOG: {exc}") from None


def _trail(obj: CliContext) -> Any:
    from audit import open_trail

    d = obj.deployment
    return open_trail(d.ca, d.sessions, d.tsa, checkpoint_every=max(1, d.settings.audit_checkpoint_every),
                      witness=_witness(obj))


def _operator() -> str:
    return f"cli:{getpass.getuser()}"


def _record(obj: CliContext, event_type: str, result: str, object_: str | None = None, actor: Any = None,
            **details: Any) -> None:
    """One entry by the command's operator: the proven staff member ``actor`` (an account_lifecycle.Actor)
    when the command needed one, else the operating-system account."""
    from audit import AuditEvent

    subject, role = (actor.subject, actor.role) if actor is not None else (_operator(), "operator")
    if actor is not None:
        details = {"channel": actor.channel, **details}
    _trail(obj).record(AuditEvent(event_type, subject, result, subject_role=role, object=object_,
                                  source_address="local", details=details))


#: reading the trail is the auditor's (roles.py): who asks must have proved it (`tessera admin login`)
_as = click.option("--as", "as_uid", required=True, metavar="UID",
                   help="Your directory user name (an auditor, logged in with `tessera admin login`).")


def _when(_ctx: click.Context, param: click.Parameter, value: str | None) -> datetime.datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter("use an ISO 8601 date or time, e.g. 2026-11-25 or 2026-11-25T09:00Z") from None
    return parsed.replace(tzinfo=datetime.timezone.utc) if parsed.tzinfo is None else parsed


_since = click.option("--since", callback=_when, default=None, help="From this UTC date/time (inclusive, ISO 8601).")
_until = click.option("--until", callback=_when, default=None, help="Before this UTC date/time (exclusive, ISO 8601).")
_type = click.option("--type", "event_type", default=None, help="Only this event type; 'admin.*' matches a family.")
_subject = click.option("--subject", default=None, help="Only this subject, e.g. staff:jdoe.")


def _filter(since: datetime.datetime | None, until: datetime.datetime | None, event_type: str | None,
            subject: str | None) -> Any:
    from audit.export import EntryFilter

    return EntryFilter(since, until, event_type, subject)


@group.command("verify")
@click.option("--anchor", type=click.Path(exists=True, dir_okay=False), default=None,
              help="PEM root certificate(s) held outside the database to check the staff CA against.")
@click.option("--witness", "witness_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The witness file to compare with (default: the deployment's, TESSERA_AUDIT_WITNESS).")
@click.option("--archive", "archives", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="An archive of entries that left the database (`tessera audit archive`); repeatable: each is "
                   "checked alone and at its junctions, with the others and the database.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--no-record", is_flag=True,
              help="Do not append an audit.verify entry: reads the database alone (read-only copies; no CA token needed).")
@click.pass_obj
def verify_cmd(obj: CliContext, anchor: str | None, witness_file: str | None, archives: tuple[str, ...],
               as_json: bool, no_record: bool) -> None:
    """Recompute the hash chain, check every checkpoint and compare with the witness (and the
    archives given); one line per finding (e.g. `checkpoint-missing seq=12`, `audit-gap seq=40`
    after a restore), exit 1 if any."""
    from audit.export import count_entries
    from audit.verification import verify

    try:
        anchors = x509.load_pem_x509_certificates(Path(anchor).read_bytes()) if anchor else []
    except ValueError:
        raise click.BadParameter("not PEM certificates", param_hint="--anchor") from None
    witness = Path(witness_file) if witness_file else _witness(obj).path
    if witness is not None and not witness.exists():
        click.echo(f"no witness file at {witness}: the trail is checked against the database alone", err=True)
        witness = None
    # --no-record writes nothing: the database alone, so an auditor can check a copy of it
    sessions = obj.read_only_sessions() if no_record else obj.deployment.sessions
    if sys.stderr.isatty() and not as_json:
        with click.progressbar(length=count_entries(sessions), label="verifying", file=sys.stderr) as bar:
            report = verify(sessions, anchors, progress=bar.update, witness=witness,
                            archives=[Path(a) for a in archives])
    else:
        report = verify(sessions, anchors, witness=witness, archives=[Path(a) for a in archives])
    if not no_record:
        _record(obj, "audit.verify", "success" if report.ok else "failure", None,
                entries=report.entries, problems=len(report.problems))
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        for problem in report.problems:
            click.echo(str(problem))
        for note in report.notes:
            click.echo(f"note: {note}", err=True)
        restored = all(p.code == "audit-gap" for p in report.problems)  # lost with a restore, not rewritten
        state = "OK" if report.ok else f"{'INCOMPLETE' if restored else 'TAMPERED'} ({len(report.problems)} problem(s))"
        if witness is not None:
            click.echo(f"compared with the witness {witness}", err=True)
        click.echo(f"{state}: {report.entries} entries up to {report.last_seq}, {report.checkpoints} checkpoint(s), "
                   f"last checkpoint at {report.last_checkpoint_seq}, in {report.seconds:.2f}s", err=True)
    if not report.ok:
        sys.exit(1)


@group.command("archive")
@click.option("--before", required=True, callback=_when,
              help="Move the entries made before this UTC date (ISO 8601), at least 180 days ago.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The archive file (never overwritten).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_as
@click.pass_obj
def archive_cmd(obj: CliContext, before: datetime.datetime, out: str, as_json: bool, as_uid: str) -> None:
    """Move old entries with their checkpoints to a file that verifies alone (retention: 180 days
    online at least); the move is recorded as audit.archive. Check with `audit verify --archive`."""
    from audit.archive import archive_entries
    from ca.authority import utc_now

    who = authorised_operator(obj, as_uid, "audit.export", "audit.archive", out)
    moved = archive_entries(_trail(obj), obj.deployment.ca.chain("staff"), before, Path(out), who.subject, utc_now())
    summary = {"file": out, "first_seq": moved.first_seq, "last_seq": moved.last_seq, "last_hash": moved.last_hash,
               "sha256": moved.sha256}
    click.echo(json.dumps(summary, indent=2) if as_json else
               f"archived entries {moved.first_seq} to {moved.last_seq} with their checkpoints -> {out} "
               f"(SHA-256 {moved.sha256})")


@group.command("checkpoint")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def checkpoint_cmd(obj: CliContext, as_json: bool) -> None:
    """Sign and time-stamp the current head now (creates the audit signer first if missing) and
    witness it; refused, with exit status 1, when the chain does not extend the head last signed."""
    from audit.checkpoints import prepare_audit_signer

    for line in prepare_audit_signer(obj.deployment.ca):
        click.echo(line, err=True)
    trail = _trail(obj)
    assert trail.checkpointer is not None
    row = trail.checkpointer.checkpoint()
    summary = {"id": row.id, "seq": row.seq, "entry_hash": row.entry_hash, "created_at": row.created_at.isoformat()}
    click.echo(json.dumps(summary, indent=2) if as_json else
               f"checkpoint #{row.id}: entries 1 to {row.seq}, head {row.entry_hash}, at {row.created_at:%Y-%m-%d %H:%M:%SZ}")


@group.command("checkpoints")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10000), help="At most this many.")
@click.option("--export", "export_dir", type=click.Path(file_okay=False), default=None,
              help="Write each checkpoint's statement, CMS signature (.p7s), time-stamp token (.tst) and the "
                   "signer certificate here, for openssl cms -verify / openssl ts -verify.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def checkpoints_cmd(obj: CliContext, limit: int, export_dir: str | None, as_json: bool) -> None:
    """List checkpoints, newest first."""
    from audit.checkpoints import list_checkpoints

    rows = list_checkpoints(obj.deployment.sessions, limit)
    if export_dir:
        folder = Path(export_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for row in rows:
            from audit.checkpoints import CHECKPOINT_CONTENT_TYPE
            from verification.cms import open_signed_data

            record, refused = open_signed_data(row.signature, CHECKPOINT_CONTENT_TYPE)
            if record is None:
                raise click.ClickException(f"checkpoint {row.seq}: its signature does not open"
                                           f" ({refused.detail if refused else 'unknown'}); run tessera audit verify")
            (folder / f"checkpoint-{row.seq}.statement").write_bytes(record.content)
            (folder / f"checkpoint-{row.seq}.p7s").write_bytes(row.signature)
            (folder / f"checkpoint-{row.seq}.tst").write_bytes(row.timestamp_token)
            (folder / f"checkpoint-{row.seq}.signer.pem").write_bytes(
                x509.load_der_x509_certificate(row.signer_certificate).public_bytes(Encoding.PEM))
    out = [{"id": r.id, "seq": r.seq, "entry_hash": r.entry_hash, "created_at": r.created_at.isoformat()} for r in rows]
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
    for r in rows:
        click.echo(f"#{r.id:<6} seq {r.seq:<10} {r.created_at:%Y-%m-%d %H:%M:%SZ}  {r.entry_hash}")


@group.command("export")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True,
              help="JSON lines (for a SIEM) or CSV.")
@_since
@_until
@_type
@_subject
@click.option("--out", default=None, help="Write here (default: stdout).")
@_as
@click.pass_obj
def export_cmd(obj: CliContext, fmt: str, since: datetime.datetime | None, until: datetime.datetime | None,
               event_type: str | None, subject: str | None, out: str | None, as_uid: str) -> None:
    """Export entries (streamed); the export itself is recorded first as audit.export."""
    from audit.export import export

    who = authorised_operator(obj, as_uid, "audit.export", "audit.export", out or "stdout")
    where = _filter(since, until, event_type, subject)
    _record(obj, "audit.export", "success", out or "stdout", actor=who, format=fmt, filter=where.as_dict())
    if out in (None, "-"):
        count = export(obj.deployment.sessions, fmt, sys.stdout, where)
        sys.stdout.flush()
    else:
        with open(out, "w", encoding="utf-8", newline="") as fh:
            count = export(obj.deployment.sessions, fmt, fh, where)
    click.echo(f"exported {count} entries as {fmt}" + (f" -> {out}" if out else ""), err=True)


@group.command("report")
@click.option("--by", type=click.Choice(["person", "type", "day", "hour"]), required=True,
              help="Count per person (subject), event type, day or hour (UTC).")
@_since
@_until
@_type
@_subject
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for charts).")
@_as
@click.pass_obj
def report_cmd(obj: CliContext, by: str, since: datetime.datetime | None, until: datetime.datetime | None,
               event_type: str | None, subject: str | None, as_json: bool, as_uid: str) -> None:
    """Counts of events, split by result."""
    from audit.reports import report

    authorised_operator(obj, as_uid, "audit.report", "audit.report")

    rows = report(obj.deployment.sessions, by, _filter(since, until, event_type, subject))
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in rows], indent=2))
        return
    click.echo(f"{by.upper():<40} {'TOTAL':>8} {'SUCCESS':>8} {'FAILURE':>8} {'REFUSED':>8}")
    for r in rows:
        click.echo(f"{r.key:<40} {r.total:>8} {r.success:>8} {r.failure:>8} {r.refused:>8}")


@group.command("list")
@_since
@_until
@_type
@_subject
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10000), help="Entries per page.")
@click.option("--page", default=1, show_default=True, type=click.IntRange(1), help="Page number (newest first).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_as
@click.pass_obj
def list_cmd(obj: CliContext, since: datetime.datetime | None, until: datetime.datetime | None,
             event_type: str | None, subject: str | None, limit: int, page: int, as_json: bool, as_uid: str) -> None:
    """List entries, newest first, a page at a time."""
    from audit.export import iter_entries

    authorised_operator(obj, as_uid, "audit.read", "audit.read")

    rows = list(iter_entries(obj.deployment.sessions, _filter(since, until, event_type, subject),
                             limit=limit, offset=(page - 1) * limit, newest_first=True))
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    click.echo(f"{'SEQ':>8} {'TIME (UTC)':<20} {'TYPE':<22} {'RESULT':<8} {'SUBJECT':<28} OBJECT")
    for r in rows:
        click.echo(f"{r['seq']:>8} {r['time'][:19].replace('T', ' '):<20} {r['type']:<22} {r['result']:<8} "
                   f"{r['subject'] + (' (' + r['subject_role'] + ')' if r['subject_role'] else ''):<28} {r['object'] or ''}")
