"""What the audit trail adds to a staff login: full logins with the trail on and off, in one run.

One run on this machine (slapd, the service and the load generator share its cores):
  1. a private slapd with N generated staff (bench/sso_raw_ldap.py) and, as the limit, the raw
     ldap3 search+bind loop with 2 processes;
  2. one Tessera home (bench/sso_logins.py's prepare_home: `tessera init`, a trusted client, every
     staff member's TOTP enrolled);
  3. `tessera serve` on that home, alternately with the audit trail on (as shipped) and off, ``--rounds``
     times each (on/off, then off/on, ...), each round measuring complete logins (password, TOTP,
     authorization code, token exchange; bench/sso_logins.py's full_logins_per_second) from ``--load``
     processes for ``--seconds``, after 3 seconds of uncounted warm-up logins.
"Off" is the same service with bench/audit_off/ on PYTHONPATH: its sitecustomize subscribes no
audit trail to the login's security events (nothing in the service can switch auditing off; the
shim refuses to act outside a tessera-bench-* home). The entries each login wrote are counted from
the database, so "off" is checked to write none and "on" to write every one. Last, with the service
stopped, ``--entries`` login-shaped entries are appended in process to the same home's trail: CPU
per entry x entries per login, against Tessera's CPU per login without audit, is a second estimate
of the overhead that the machine's other work disturbs much less.

Reported per mode: logins/s (and of the raw limit), Tessera's CPU ms per login (the steadier number
on a shared machine), audit entries per login; then the overhead: extra Tessera CPU per login and
lost throughput. Target (issue 6): audit adds under 10% to a login.

    .venv/bin/python bench/audit_login_overhead.py [--staff 6000] [--seconds 8] [--load 2] [--rounds 2] [--entries 3000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import table  # noqa: E402
from sso_logins import StaffQueue, full_logins_per_second, prepare_home, serve  # noqa: E402
from tests.servers import free_port, stop_server  # noqa: E402
from sso_raw_ldap import raw_logins_per_second, staff_directory  # noqa: E402

AUDIT_OFF = Path(__file__).resolve().parent / "audit_off"
#: seconds of logins, not counted, after each start of the service
WARM_UP = 3.0


def audit_tip(home: Path) -> int:
    """The newest audit entry's sequence number (read with the service stopped)."""
    conn = sqlite3.connect(f"file:{home / 'tessera.db'}?mode=ro", uri=True, timeout=30)
    try:
        return int(conn.execute("SELECT coalesce(max(seq), 0) FROM audit_entry").fetchone()[0])
    finally:
        conn.close()


def audit_cpu_per_entry(env: dict[str, str], count: int) -> tuple[float, float]:
    """(CPU ms, wall ms) per login-shaped entry appended in process to the home's own trail (chain,
    own transaction, automatic signed checkpoints), the service stopped: the audit part of a login
    measured alone, away from the noise of the whole service."""
    import secrets

    from audit.trail import AuditEvent
    from idp.deployment import Deployment
    from idp.settings import Settings

    deployment = Deployment(Settings.from_env(env["TESSERA_HOME"], env))
    try:
        trail = deployment.audit
        events = [AuditEvent("login", f"staff:staff{i % 1000:05d}", "success", subject_role="staff",
                             object=f"staff:staff{i % 1000:05d}", source_address="127.0.0.1",
                             request_id=secrets.token_hex(8), details={"address": "127.0.0.1", "factors": ["pwd", "otp"]})
                  for i in range(count)]
        trail.record(events[0])  # warm: statements compiled, connection open, token logged in
        cpu, wall = time.process_time(), time.perf_counter()
        for event in events[1:]:
            trail.record(event)
        return ((time.process_time() - cpu) * 1000 / (count - 1), (time.perf_counter() - wall) * 1000 / (count - 1))
    finally:
        deployment.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--staff", type=int, default=6_000, help="generated staff in the directory")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each measurement")
    parser.add_argument("--load", type=int, default=2, help="load processes")
    parser.add_argument("--rounds", type=int, default=2, help="measurements per mode (alternating)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="server worker processes")
    parser.add_argument("--server", choices=["granian", "gunicorn"], default="granian",
                        help="the HTTP server (TESSERA_HTTP_SERVER)")
    parser.add_argument("--entries", type=int, default=3000, help="entries appended in process at the end")
    parser.add_argument("--keep", type=Path, default=None, help="build the directory here and reuse it next time")
    args = parser.parse_args()
    if not 100 <= args.staff <= 1_000_000 or not 1 <= args.seconds <= 60 or not 1 <= args.load <= 8 \
            or not 1 <= args.rounds <= 10:
        parser.error("--staff 100..1,000,000, --seconds 1..60, --load 1..8, --rounds 1..10")
    base = Path(tempfile.mkdtemp(prefix="tessera-bench-audit-login-"))
    load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    port = free_port()
    results: dict[str, list[tuple[float, int, float, float]]] = {"audit on": [], "audit off": []}
    with staff_directory(args.staff, args.keep) as staff:
        limit = raw_logins_per_second(staff, args.seconds, 2)
        env, client = prepare_home(staff, base, port)
        home = Path(env["TESSERA_HOME"])
        env = dict(env, TESSERA_HTTP_SERVER=args.server)
        envs = {"audit on": env,
                "audit off": dict(env, TESSERA_BENCH_AUDIT_OFF="1",
                                  PYTHONPATH=os.pathsep.join(p for p in (str(AUDIT_OFF), env.get("PYTHONPATH")) if p))}
        queue = StaffQueue(staff)  # every login of the run by a different staff member
        for r in range(args.rounds):
            for mode in (("audit on", "audit off") if r % 2 == 0 else ("audit off", "audit on")):
                proc = serve(envs[mode], port, args.workers, base / f"server-{mode.replace(' ', '-')}-{r}.log")
                try:
                    # warm-up: each worker builds its deployment (token, directory pool, keys) on first use
                    full_logins_per_second(port, queue, client, WARM_UP, args.load, proc.pid)
                    before = audit_tip(home)
                    rate, failed, errors, cpu = full_logins_per_second(port, queue, client, args.seconds, args.load,
                                                                       proc.pid)
                finally:
                    stop_server(proc)
                done = max(int(rate * args.seconds), 1)
                results[mode].append((rate, failed, cpu["tessera"], (audit_tip(home) - before) / done))
                if errors:
                    print(f"errors ({mode}, round {r + 1}): {errors}", file=sys.stderr)
    entry_cpu, entry_wall = audit_cpu_per_entry(env, args.entries)
    rows: list[list[object]] = [["raw ldap3 search+bind, 2 processes (the limit)", limit, "", "100%", "", ""]]
    summary: dict[str, tuple[float, float]] = {}
    for mode, runs in results.items():
        for i, (rate, failed, cpu_ms, entries) in enumerate(runs):
            rows.append([f"full login, {mode}, round {i + 1}", rate, failed, f"{rate / limit:.0%}", cpu_ms,
                         f"{entries:.2f}"])
        rate = statistics.mean(r[0] for r in runs)
        cpu_ms = statistics.mean(r[2] for r in runs)
        summary[mode] = (rate, cpu_ms)
        rows.append([f"full login, {mode}, mean", rate, sum(r[1] for r in runs), f"{rate / limit:.0%}", cpu_ms, ""])
    (on_rate, on_cpu), (off_rate, off_cpu) = summary["audit on"], summary["audit off"]
    print(table(f"Staff logins with and without the audit trail: {args.staff:,} staff, {args.load} load processes, "
                f"Tessera ({args.workers} workers, SQLite) + slapd + load on {os.cpu_count()} cores "
                f"(load average before: {load_before})",
                ["what", "logins/s", "failed", "of raw limit", "Tessera CPU ms/login", "audit entries/login"], rows))
    per_login = statistics.mean(r[3] for r in results["audit on"])
    print(f"\nwith and without, in the service: audit adds {on_cpu - off_cpu:+.2f} ms Tessera CPU per login "
          f"({on_cpu / off_cpu - 1:+.1%}); throughput {on_rate / off_rate - 1:+.1%} with the trail on")
    print(f"alone, in process ({args.entries:,} login entries on the same database): {entry_cpu:.3f} ms CPU "
          f"({entry_wall:.3f} ms wall) per entry x {per_login:.2f} entries per login = {entry_cpu * per_login:.2f} ms "
          f"CPU per login = {entry_cpu * per_login / off_cpu:.1%} of a login without audit (target: under 10%)")


if __name__ == "__main__":
    main()
