"""The directory's limit for staff logins: a raw ldap3 search+bind loop over 10,000 argon2 staff.

One run: a private slapd built like the embedded one (template, ppolicy, memberof, argon2id
m=4 MiB t=3 hashes, one salt per person) with N generated staff loaded by slapadd; then, for
1 and 2 load processes on this same machine as slapd:
  raw ldap3     search uid=... as the service account, then simple bind as the user, both on
                reused connections: the least work any password login can do (the limit);
  Directory     directory.client.Directory.authenticate: the same plus escaping, ppolicy control
                decoding, memberOf/department mapping, pooling and failover bookkeeping.
The full-login benchmark (password + TOTP + code + token) imports `staff_directory` and
`raw_logins_per_second` from here to measure its limit in the same run.

    .venv/bin/python bench/sso_raw_ldap.py [--staff 10000] [--seconds 10] [--processes 1 2] [--rounds 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import table  # noqa: E402

from ldap3 import NONE, SUBTREE, Connection, Server  # noqa: E402
from ldap3.utils.conv import escape_filter_chars  # noqa: E402

from directory.client import Directory  # noqa: E402
from directory.config import DirectoryConfig  # noqa: E402
from directory.slapd import DirectoryFolder, EmbeddedSlapd, build_directory, generated_staff, slapadd  # noqa: E402

PASSWORD = "Load-test-password-1"


@dataclass(frozen=True)
class StaffDirectory:
    """A running private slapd with ``count`` generated staff ``staff00001``... (password PASSWORD)."""

    folder: DirectoryFolder
    config: DirectoryConfig
    count: int
    password: str = PASSWORD

    @property
    def url(self) -> str:
        return self.folder.url

    @property
    def env(self) -> dict[str, str]:
        """TESSERA_LDAP_* pointing a `tessera serve` under test at this directory."""
        return {"TESSERA_LDAP_URLS": self.url, "TESSERA_LDAP_BASE_DN": self.folder.suffix,
                "TESSERA_LDAP_BIND_DN": self.config.bind_dn, "TESSERA_LDAP_BIND_PASSWORD": self.config.bind_password,
                "TESSERA_LDAP_READ_ONLY": "false"}

    def uid(self, number: int) -> str:
        return f"staff{number:05d}"

    def random_uids(self, n: int, seed: int = 1) -> list[str]:
        rng = random.Random(seed)
        return [self.uid(rng.randint(1, self.count)) for _ in range(n)]


@contextmanager
def staff_directory(count: int = 10_000, keep: Path | None = None) -> Iterator[StaffDirectory]:
    """Build (or reuse, with ``keep``) a private slapd with ``count`` staff, run it, stop it by PID."""
    base = keep or Path(tempfile.mkdtemp(prefix="tessera-bench-ldap-"))
    folder = DirectoryFolder(base / "ldap")
    marker = base / "generated-staff"
    if not (folder.is_prepared() and marker.exists() and int(marker.read_text()) >= count):
        if folder.path.exists():
            shutil.rmtree(folder.path)
        build_directory(folder, base / "secrets")
        started = time.monotonic()
        loaded = slapadd(folder, generated_staff(folder.suffix, count, PASSWORD))
        print(f"loaded {loaded:,} staff (argon2id hashes + slapadd) in {time.monotonic() - started:.1f}s",
              file=sys.stderr)
        marker.write_text(str(count))
    slapd = EmbeddedSlapd(folder)
    slapd.start()
    try:
        yield StaffDirectory(folder, DirectoryConfig.embedded_for(folder.path, base / "secrets"), count)
    finally:
        slapd.stop()
        if keep is None:
            shutil.rmtree(base, ignore_errors=True)


def _raw_worker(args: tuple[str, str, str, str, str, list[str], str, float, float]) -> tuple[int, float]:
    """search uid + bind as the user, on two reused connections, from start_at until deadline:
    (logins, CPU seconds this process spent on them)."""
    url, bind_dn, bind_password, people_base, uid_attr, uids, password, start_at, deadline = args
    server = Server(url, get_info=NONE)
    search = Connection(server, user=bind_dn, password=bind_password, auto_bind=True, raise_exceptions=True)
    binder = Connection(server, raise_exceptions=False)
    binder.open(read_server_info=False)
    while time.time() < start_at:
        time.sleep(0.001)
    done, cpu = 0, time.process_time()
    for uid in _cycle(uids):
        if time.time() >= deadline:
            break
        search.search(people_base, f"(&(objectClass=inetOrgPerson)({uid_attr}={escape_filter_chars(uid)}))",
                      search_scope=SUBTREE, attributes=["1.1"], size_limit=2)
        dn = search.response[0]["dn"]
        if not binder.rebind(user=dn, password=password, read_server_info=False):
            raise RuntimeError(f"bind of {dn} failed: {binder.result}")
        done += 1
    cpu = time.process_time() - cpu
    search.unbind()
    binder.unbind()
    return done, cpu


def _directory_worker(args: tuple[DirectoryConfig, list[str], str, float, float]) -> tuple[int, float]:
    config, uids, password, start_at, deadline = args
    directory = Directory(config)
    directory.find(uids[0])  # warm the pool and the department cache
    while time.time() < start_at:
        time.sleep(0.001)
    done, cpu = 0, time.process_time()
    for uid in _cycle(uids):
        if time.time() >= deadline:
            break
        directory.authenticate(uid, password)
        done += 1
    cpu = time.process_time() - cpu
    directory.close()
    return done, cpu


def _cycle(items: list[str]) -> Iterator[str]:
    while True:
        yield from items


def _run(worker: Callable[[object], tuple[int, float]], jobs: list[object], seconds: float) -> tuple[float, float]:
    """(logins per second, client CPU milliseconds per login) of ``worker`` in len(jobs) processes."""
    with multiprocessing.get_context("fork").Pool(len(jobs)) as pool:
        results = pool.map(worker, jobs)  # type: ignore[arg-type]
    done = sum(r[0] for r in results)
    return done / seconds, sum(r[1] for r in results) * 1000 / max(done, 1)


def raw_logins(staff: StaffDirectory, seconds: float = 10.0, processes: int = 1) -> tuple[float, float]:
    """The limit: raw ldap3 search+bind (logins per second, client CPU ms per login)."""
    start_at = time.time() + 1.0
    jobs = [(staff.url, staff.config.bind_dn, staff.config.bind_password, staff.config.people_base,
             staff.config.attributes.uid, staff.random_uids(5000, seed=p), staff.password, start_at,
             start_at + seconds) for p in range(processes)]
    return _run(_raw_worker, jobs, seconds)  # type: ignore[arg-type]


def raw_logins_per_second(staff: StaffDirectory, seconds: float = 10.0, processes: int = 1) -> float:
    """The limit: raw ldap3 search+bind logins per second with ``processes`` load processes."""
    return raw_logins(staff, seconds, processes)[0]


def directory_logins(staff: StaffDirectory, seconds: float = 10.0, processes: int = 1) -> tuple[float, float]:
    """Tessera's Directory.authenticate: (logins per second, CPU ms per login in the calling process)."""
    start_at = time.time() + 1.0
    jobs = [(staff.config, staff.random_uids(5000, seed=100 + p), staff.password, start_at, start_at + seconds)
            for p in range(processes)]
    return _run(_directory_worker, jobs, seconds)  # type: ignore[arg-type]


def slapd_cpu_seconds(staff: StaffDirectory) -> float:
    """CPU time slapd has used so far (user + system, from /proc): its cost per login, free of noise."""
    pid = EmbeddedSlapd(staff.folder).pid
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--staff", type=int, default=10_000, help="generated staff in the directory")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each measurement")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2], help="load processes to try")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternate raw and Directory this many times; the median of each is shown")
    parser.add_argument("--keep", type=Path, default=None, help="build the directory here and reuse it next time")
    args = parser.parse_args()
    if not 1 <= args.staff <= 1_000_000 or not 1 <= args.seconds <= 120 \
            or not all(1 <= p <= 8 for p in args.processes) \
            or not 1 <= args.rounds <= 9:
        parser.error("--staff 1..1,000,000, --seconds 1..120, --processes 1..8, --rounds 1..9")
    rows = []
    with staff_directory(args.staff, args.keep) as staff:
        for processes in args.processes:
            raws, ours_, cpu, raw_client, ours_client = [], [], [], [], []
            for _ in range(args.rounds):  # alternated, so a noisy neighbour hits both alike
                before = slapd_cpu_seconds(staff)
                rate, client = raw_logins(staff, args.seconds, processes)
                raws.append(rate)
                raw_client.append(client)
                cpu.append((slapd_cpu_seconds(staff) - before) / (rate * args.seconds) * 1000)
                rate, client = directory_logins(staff, args.seconds, processes)
                ours_.append(rate)
                ours_client.append(client)
            raw, ours = statistics.median(raws), statistics.median(ours_)
            rows.append([processes, raw, ours, f"{ours / raw:.0%}", f"{min(raws):.0f}-{max(raws):.0f}",
                         statistics.median(cpu), statistics.median(raw_client), statistics.median(ours_client)])
    print(table(f"Password logins/s, {args.staff:,} staff, argon2id m=4 MiB t=3, slapd + load on "
                f"{multiprocessing.cpu_count()} cores",
                ["load processes", "raw ldap3 search+bind /s", "Directory.authenticate /s", "ours / raw",
                 "raw range", "slapd CPU ms per login", "raw client CPU ms per login",
                 "Directory.authenticate CPU ms per login"], rows))


if __name__ == "__main__":
    main()
