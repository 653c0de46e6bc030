"""Audit trail: append rate with chaining beside a plain insert of the same rows, and verification
time for a million entries, on SQLite and PostgreSQL, in one run.

Per store (SQLite file with WAL; private PostgreSQL 15 cluster, fsync off as in the tests):
- plain insert: the same row into a table of the same shape, one transaction per row (the limit);
- chained append: :meth:`audit.trail.AuditTrail.record` (head row lock, hash, insert, head update),
  one transaction per entry;
- chained append inside a business transaction of 1 insert (what a wired operation pays on top);
- verify(): a fresh trail of ``--entries`` entries, generated fast with bulk inserts computing the
  chain (COPY on PostgreSQL), with a signed and time-stamped checkpoint every ``--checkpoint-every``
  entries, each also witnessed in a witness file (audit.witness), then verified end to end (every
  hash, link and checkpoint), once against the database alone and once also against the witness
  (every line parsed and compared). Target: 1,000,000 < 30 s.

    .venv/bin/python bench/audit_append.py [--appends 3000] [--entries 1000000] [--stores sqlite,postgres] [--checkpoint-every 1000]
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import ROOT, table  # noqa: E402,F401

from sqlalchemy import Column, MetaData, Table, insert, text  # noqa: E402

from audit import chain  # noqa: E402
from audit.models import AuditEntry  # noqa: E402
from audit.trail import AuditEvent, AuditTrail  # noqa: E402
from audit.verification import verify  # noqa: E402
from store.engine import make_engine, make_session_factory  # noqa: E402
from store import schema  # noqa: E402
from tests.servers import tessera_env  # noqa: E402


def _event(i: int) -> AuditEvent:
    return AuditEvent("login.password", f"staff:user{i % 1000}", "success" if i % 7 else "failure",
                      subject_role="staff", object="client:portal", source_address=f"192.0.2.{i % 250}",
                      request_id=f"req-{i:08d}", details={"factors": ["pwd", "otp"], "via": "web"})


def _plain_table(metadata: MetaData) -> Table:
    return Table("bench_plain_entry", metadata, *[Column(c.name, c.type, primary_key=c.primary_key)
                                                   for c in AuditEntry.__table__.columns])


def measure_appends(url: str, count: int) -> dict[str, float]:
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    metadata = MetaData()
    plain = _plain_table(metadata)
    metadata.drop_all(engine)
    metadata.create_all(engine)
    trail = AuditTrail(sessions)
    now = datetime.datetime.now(datetime.timezone.utc)
    rows = [dict(seq=i + 1, at=now, event_type=e.type, subject=e.subject, subject_role=e.subject_role,
                 object=e.object, result=e.result, source_address=e.source_address, request_id=e.request_id,
                 details=chain.canonical_details(dict(e.details)), prev_hash="0" * 64, entry_hash="0" * 64)
            for i, e in enumerate(_event(i) for i in range(count))]
    out: dict[str, float] = {}
    start = time.perf_counter()
    for row in rows:
        with engine.begin() as conn:
            conn.execute(insert(plain).values(**row))
    out["plain"] = count / (time.perf_counter() - start)
    start = time.perf_counter()
    for i in range(count):
        trail.record(_event(i))
    out["chained"] = count / (time.perf_counter() - start)
    metadata.drop_all(engine)
    metadata.create_all(engine)
    start = time.perf_counter()
    for i, row in enumerate(rows):  # a business row and its audit entry in one transaction
        with sessions.begin() as session:
            session.execute(insert(plain).values(**row))
            trail.append(session, _event(i))
    out["business+audit"] = count / (time.perf_counter() - start)
    metadata.drop_all(engine)
    metadata.create_all(engine)
    start = time.perf_counter()
    for row in rows:
        with sessions.begin() as session:
            session.execute(insert(plain).values(**row))
    out["business alone"] = count / (time.perf_counter() - start)
    metadata.drop_all(engine)
    engine.dispose()
    return out


def generate(url: str, count: int, every: int, folder: Path, batch: int = 20_000) -> tuple[float, float]:
    """Write ``count`` chained entries fast (bulk, chain computed here), then a signed and time-stamped
    checkpoint every ``every`` entries (CA with file keys in the same database); returns both times."""
    engine = make_engine(url)
    marks: list[tuple[int, str]] = []
    start = time.perf_counter()
    base = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    prev = chain.GENESIS
    columns = [c.name for c in AuditEntry.__table__.columns]
    details = chain.canonical_details({"factors": ["pwd", "otp"], "via": "web"})

    def rows(first: int, last: int) -> list[tuple]:
        nonlocal prev
        out = []
        for seq in range(first, last):
            at = base + datetime.timedelta(microseconds=seq * 1237)
            values = (seq, at, "login.password", f"staff:user{seq % 1000}", "staff", "client:portal",
                      "success" if seq % 7 else "failure", f"192.0.2.{seq % 250}", f"req-{seq:08d}", details)
            h = chain.entry_hash(prev, chain.canonical_bytes(values[0], chain.canonical_time(at), *values[2:]))
            out.append((*values, prev, h))
            prev = h
            if every and seq % every == 0:
                marks.append((seq, h))
        return out

    if engine.dialect.name == "postgresql":
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            with cursor.copy(f"COPY audit_entry ({', '.join(columns)}) FROM STDIN") as copy:
                for first in range(1, count + 1, batch):
                    for row in rows(first, min(first + batch, count + 1)):
                        copy.write_row((*row[:1], row[1].replace(tzinfo=None), *row[2:]))
            cursor.execute("UPDATE audit_head SET seq = %s, entry_hash = %s WHERE id = 1", (count, prev))
            raw.commit()
        finally:
            raw.close()
    else:
        table_ = AuditEntry.__table__
        with engine.begin() as conn:
            for first in range(1, count + 1, batch):
                conn.execute(insert(table_), [dict(zip(columns, r, strict=True)) for r in rows(first, min(first + batch, count + 1))])
            conn.execute(text("UPDATE audit_head SET seq = :s, entry_hash = :h WHERE id = 1"), {"s": count, "h": prev})
    made = time.perf_counter() - start
    start = time.perf_counter()
    if marks:
        from audit.checkpoints import Checkpointer, prepare_audit_signer
        from audit.witness import Witness
        from ca.authority import CertificateAuthority
        from ca.hierarchy import HierarchyPlan
        from ca.keyring import Keyring
        from ca.urls import PublicUrls

        sessions = make_session_factory(engine)
        ca = CertificateAuthority(sessions, Keyring(None, lambda _p: b"bench passphrase"), PublicUrls("https://pki.example"))
        ca.initialise(HierarchyPlan(backend="file", key_dir=folder / "keys"))
        prepare_audit_signer(ca)
        checkpointer = Checkpointer(ca, sessions, witness=Witness(folder / "audit-witness.log"))
        previous = 0
        for seq, h in marks:
            checkpointer._make(seq, h, previous, checkpointer.witness)  # noqa: SLF001  (past heads, as if made while appending)
            previous = seq
    engine.dispose()
    return made, time.perf_counter() - start


def time_cli_verify(url: str, folder: Path) -> float:
    """Wall time of the real command (process start included) on the same database."""
    import subprocess

    env = tessera_env(folder / "home", TESSERA_DATABASE_URL=url)
    start = time.perf_counter()
    result = subprocess.run([str(Path(sys.executable).parent / "tessera"), "audit", "verify", "--no-record"], env=env,
                            capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"tessera audit verify failed: {result.stdout}{result.stderr}")
    return seconds


def fresh(url: str) -> None:
    engine = make_engine(url)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    schema.upgrade(engine)
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appends", type=int, default=3000, help="entries per append measurement")
    parser.add_argument("--entries", type=int, default=1_000_000, help="entries for the verification measurement")
    parser.add_argument("--stores", default="sqlite,postgres", help="comma-separated: sqlite, postgres")
    parser.add_argument("--checkpoint-every", type=int, default=1000, help="checkpoints in the verified trail (0: none)")
    args = parser.parse_args()
    from tests.servers import private_postgres

    append_rows, verify_rows = [], []
    for store in args.stores.split(","):
        with tempfile.TemporaryDirectory(prefix="tessera-bench-audit-") as tmp:
            if store == "sqlite":
                urls = [f"sqlite:///{Path(tmp) / 'a.db'}", f"sqlite:///{Path(tmp) / 'v.db'}"]
                ctx = None
            else:
                ctx = private_postgres()
                url = ctx.__enter__()
                urls = [url, url]
            try:
                fresh(urls[0])
                rates = measure_appends(urls[0], args.appends)
                append_rows.append([store, rates["plain"], rates["chained"], f"{rates['chained'] / rates['plain']:.2f}",
                                    rates["business alone"], rates["business+audit"],
                                    f"{(rates['business alone'] / rates['business+audit'] - 1) * 100:.0f}%"])
                fresh(urls[1])
                made, signed = generate(urls[1], args.entries, args.checkpoint_every, Path(tmp))
                engine = make_engine(urls[1])
                report = verify(make_session_factory(engine))
                witness = Path(tmp) / "audit-witness.log"
                witnessed = verify(make_session_factory(engine), witness=witness if witness.exists() else None)
                engine.dispose()
                if not (report.ok and witnessed.ok):
                    raise SystemExit(f"verification of the generated trail failed: {(report.problems + witnessed.problems)[:3]}")
                cli_seconds = time_cli_verify(urls[1], Path(tmp))
                verify_rows.append([store, f"{report.entries:,}", report.checkpoints, made, signed, report.seconds,
                                    witnessed.seconds, f"{report.entries / report.seconds:,.0f}", cli_seconds,
                                    "yes" if max(report.seconds, cli_seconds) < 30 else "NO"])
            finally:
                if ctx is not None:
                    ctx.__exit__(None, None, None)
    print(table(f"Audit append, one transaction each ({args.appends} entries; rates in entries/s)",
                ["store", "plain insert (limit)", "chained append", "ratio", "business txn alone",
                 "business txn + audit", "audit adds"], append_rows))
    print()
    print(table("Audit verification (full chain recomputed; target < 30 s for 1,000,000)",
                ["store", "entries", "checkpoints", "generate s", "checkpoints s", "verify() s",
                 "verify() + witness s", "entries/s", "tessera audit verify s", "< 30 s"], verify_rows))


if __name__ == "__main__":
    main()
