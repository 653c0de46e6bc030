"""Full staff logins per second: password + TOTP + authorization code + token exchange.

One run on this machine (slapd, the service and the load generator share its cores):
  1. a private slapd with N generated staff (argon2id m=4 MiB t=3), built by bench/sso_raw_ldap.py;
  2. a Tessera home (`tessera init`) pointed at that directory, one trusted client registered with
     `tessera client add`, every staff member's account as their first login left it (TOTP enrolled,
     secret sealed as in production; the directory's claims remembered);
  3. `tessera serve` (granian, then gunicorn: --server; one worker per core) and, for each number of
     load processes L, --rounds rounds of:
       the limit: the raw ldap3 search+bind loop with 2 load processes (sso_raw_ldap.raw_logins_per_second),
       then L load processes doing complete browser-shaped logins on keep-alive connections, every
       staff member at most once:
        GET  /oidc/authorize            -> 200 the login form in place (no session yet)
        POST /login                     -> directory search+bind -> 200 the code form
        POST /login/code                -> TOTP verified, the authorization carried on in place
                                                                 -> 302 redirect_uri?code=...
        POST /oidc/token (Basic auth, PKCE verifier) -> access, refresh and id_token (ES256)
     A login counts only if every step answered as above; the id_token of every 50th login is
     verified against the JWKS with PyJWT. The limit and the logins alternate, so a change in the
     machine's speed (it is shared) hits both alike; the table shows medians and ranges.

    .venv/bin/python bench/sso_logins.py [--staff 10000] [--seconds 10] [--load 4 6] [--rounds 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import multiprocessing
import os
import re
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import ROOT, table  # noqa: E402
from tests.servers import TESSERA, free_port, start_server, stop_server, tessera_env, wait_healthy  # noqa: E402
from sso_raw_ldap import StaffDirectory, raw_logins_per_second, staff_directory  # noqa: E402

import pyotp  # noqa: E402

REDIRECT = "http://127.0.0.1:9/callback"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_COOKIE = re.compile(r"([^=;\s]+)=([^;]*)")
SEED = b"bench-totp-seed"


def totp_secret(uid: str) -> str:
    """Each staff member's own TOTP secret, derivable by the load generator."""
    return base64.b32encode(hmac.new(SEED, uid.encode(), hashlib.sha256).digest()[:20]).decode().rstrip("=")


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pgid: int | None = None, pid: int | None = None) -> float:
    """CPU time (user + system) of a process group's live processes, or of one process (/proc)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or (pid is not None and int(entry.name) != pid):
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if pgid is not None and int(fields[2]) != pgid:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / _TICK


def _children_cpu() -> float:
    """CPU seconds of this process's finished children (the raw loop's load processes)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def prepare_home(staff: StaffDirectory, base: Path, port: int) -> tuple[dict[str, str], dict[str, str]]:
    """`tessera init` against the directory, a trusted client, and every staff member's account as
    their first login left it: TOTP enrolled and the directory's claims remembered (a login only
    writes claims again when the directory changed them)."""
    env = tessera_env(base / "home", f"http://127.0.0.1:{port}", **staff.env)
    subprocess.run([TESSERA, "init"], env=env, check=True, capture_output=True)
    client = json.loads(subprocess.run([TESSERA, "client", "add", "Bench RP", "--redirect-uri", REDIRECT, "--trusted",
                                        "--json"], env=env, check=True, capture_output=True).stdout)
    code = f"""
import datetime, json, sys
from sqlalchemy import insert
sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
from sso_logins import totp_secret
from idp.settings import Settings
from idp.deployment import Deployment
from idp.models import StaffAccount
from idp.staff import claims_of
d = Deployment(Settings.from_env())
now = datetime.datetime.now(datetime.timezone.utc)
def claims(uid):  # as the login that enrolled them stored them (SecondFactor.remember)
    return json.dumps(claims_of(d.directory.find(uid)), sort_keys=True)
rows = [dict(uid=f"staff{{n:05d}}", claims_json=claims(f"staff{{n:05d}}"), totp_secret_sealed=d.secret_box.seal(totp_secret(f"staff{{n:05d}}").encode(), "totp-secret"),
             totp_enrolled_at=now, totp_last_step=0, updated_at=now) for n in range(1, {staff.count} + 1)]
with d.sessions.begin() as s:
    s.execute(insert(StaffAccount), rows)
d.close()
"""
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    return env, client


#: application/x-www-form-urlencoded for the ASCII values a login sends: only the characters that
#: would change how the body splits or decodes are escaped (one str.translate; urlencode's
#: per-character quoting was a third of the load generator's CPU)
_FORM_ESCAPES = str.maketrans({"%": "%25", "&": "%26", "+": "%2B", "=": "%3D", "#": "%23", " ": "+"})


def form_encode(fields: dict[str, str]) -> bytes:
    """A form body the server decodes to exactly ``fields`` (values must be printable ASCII)."""
    for value in fields.values():
        assert value.isascii() and value.isprintable(), "form_encode takes printable ASCII only"
    return "&".join(f"{k.translate(_FORM_ESCAPES)}={v.translate(_FORM_ESCAPES)}" for k, v in fields.items()).encode()


class Browser:
    """One keep-alive connection and its cookies: what a browser does for a login, minus rendering.

    HTTP/1.1 written and read directly on the socket (as wrk does): http.client's header parsing
    (email.parser) cost the load generator about a millisecond of CPU per login, on the same cores
    the service and slapd are measured on."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.host = f"127.0.0.1:{port}".encode()
        self.cookies: dict[str, str] = {}
        self.buffer = b""

    def close(self) -> None:
        self.sock.close()

    def request(self, method: str, path: str, body: dict[str, str] | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, str, str]:
        """(status, Location, body) of one request; cookies are kept as a browser keeps them."""
        head = [f"{method} {path} HTTP/1.1".encode(), b"Host: " + self.host]
        head += [f"{k}: {v}".encode() for k, v in (headers or {}).items()]
        if self.cookies:
            head.append(("Cookie: " + "; ".join(f"{k}={v}" for k, v in self.cookies.items())).encode())
        data = b""
        if body is not None:
            data = form_encode(body)
            head.append(b"Content-Type: application/x-www-form-urlencoded")
        if body is not None or method == "POST":
            head.append(b"Content-Length: " + str(len(data)).encode())
        self.sock.sendall(b"\r\n".join(head) + b"\r\n\r\n" + data)
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        header_block, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = header_block.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length, location, chunked = 0, "", False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name, value = name.lower(), value.strip()
            if name == "content-length":
                length = int(value)
            elif name == "location":
                location = value
            elif name == "transfer-encoding":
                chunked = "chunked" in value.lower()
            elif name == "set-cookie":
                match = _COOKIE.match(value)
                if match:
                    self.cookies[match.group(1)] = match.group(2)
        return status, location, (self._chunked() if chunked else self._take(length)).decode()

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buffer += chunk

    def _take(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self._fill()
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def _chunked(self) -> bytes:
        out = b""
        while True:
            while b"\r\n" not in self.buffer:
                self._fill()
            size_line, self.buffer = self.buffer.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            out += self._take(size + 2)[:size]
            if size == 0:
                return out


def authorization_request(client_id: str) -> tuple[str, str]:
    """(PKCE verifier, the /oidc/authorize path with its S256 challenge): OIDC Core 3.1.2.1, RFC 7636."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, "/oidc/authorize?" + urlencode({
        "response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT,
        "scope": "openid profile email department roles", "state": secrets.token_urlsafe(8),
        "nonce": secrets.token_urlsafe(8), "code_challenge": challenge, "code_challenge_method": "S256"})


def one_login(port: int, uid: str, password: str, client: dict[str, str], step: int) -> str:
    verifier, authorize = authorization_request(client["client_id"])
    b = Browser(port)
    try:
        status, _, page = b.request("GET", authorize)  # no session yet: the login form in place
        assert status == 200 and 'name="password"' in page, status
        status, _, page = b.request("POST", "/login", {"username": uid, "password": password,
                                                      "csrf_token": _CSRF.search(page).group(1), "next": authorize})  # type: ignore[union-attr]
        assert status == 200 and 'name="code"' in page, status
        code = pyotp.TOTP(totp_secret(uid)).generate_otp(step)
        status, location, _ = b.request("POST", "/login/code", {"code": code, "csrf_token": _CSRF.search(page).group(1)})  # type: ignore[union-attr]
        assert status == 302 and location.startswith(REDIRECT + "?code="), (status, location)
        code_value = re.search(r"code=([^&]+)", location).group(1)  # type: ignore[union-attr]
        basic = base64.b64encode(f"{client['client_id']}:{client['client_secret']}".encode()).decode()
        b.cookies = {}  # the relying party's back channel carries no browser cookie
        status, _, body = b.request("POST", "/oidc/token", {"grant_type": "authorization_code", "code": code_value,
                                                           "redirect_uri": REDIRECT, "code_verifier": verifier},
                                    {"Authorization": f"Basic {basic}"})
        assert status == 200, (status, body[:200])
        tokens = json.loads(body)
        assert tokens["id_token"] and tokens["access_token"] and tokens["refresh_token"]
        return str(tokens["id_token"])
    finally:
        b.close()


class StaffQueue:
    """Hands out staff members across the load processes of every round of a run, each at most once:
    a staff member's TOTP code is accepted once per time step, so a second login in the same step
    would fail (and count towards the address throttle, refusing every later login)."""

    def __init__(self, staff: StaffDirectory) -> None:
        self.staff = staff
        self._next = multiprocessing.get_context("fork").Value("i", 0)

    def take(self) -> str | None:
        with self._next.get_lock():
            self._next.value += 1
            number = self._next.value
        return self.staff.uid(number) if number <= self.staff.count else None


#: the queue of the round running now; the load processes are forked after it is set and inherit it
#: (a shared counter cannot be pickled into a pool's arguments)
_ROUND_QUEUE: StaffQueue | None = None


def _load_worker(args: tuple[int, str, dict[str, str], float, float]) -> tuple[int, int, str, float]:
    port, password, client, start_at, deadline = args
    queue = _ROUND_QUEUE
    assert queue is not None
    while time.time() < start_at:
        time.sleep(0.001)
    done = failed = 0
    first_error = ""
    import jwt

    cpu_at_start = time.process_time()

    keys = jwt.PyJWKClient(f"http://127.0.0.1:{port}/oidc/jwks.json")
    while time.time() < deadline:
        uid = queue.take()
        if uid is None:
            first_error = first_error or "ran out of staff: use more --staff or fewer --seconds"
            break
        try:
            id_token = one_login(port, uid, password, client, int(time.time() // 30))
            if done % 50 == 0:
                key = keys.get_signing_key_from_jwt(id_token)
                claims = jwt.decode(id_token, key.key, algorithms=["ES256"], audience=client["client_id"])
                assert claims["sub"] == uid and claims["amr"] == ["pwd", "otp"]
            done += 1
        except Exception as exc:  # noqa: BLE001  (a failed login is counted, the first one reported)
            failed += 1
            first_error = first_error or f"{uid}: {exc!r}"[:300]
    return done, failed, first_error, time.process_time() - cpu_at_start


def full_logins_per_second(port: int, queue: StaffQueue, client: dict[str, str], seconds: float, load: int,
                           server_pgid: int) -> tuple[float, int, str, dict[str, float]]:
    """Logins/s, failures, errors, and CPU milliseconds per login of Tessera, slapd and the load."""
    staff = queue.staff
    slapd_pid = int(staff.folder.pid_file.read_text().strip())
    tessera_cpu, slapd_cpu = cpu_seconds(pgid=server_pgid), cpu_seconds(pid=slapd_pid)
    start_at = time.time() + 1.0
    jobs = [(port, staff.password, client, start_at, start_at + seconds) for _ in range(load)]
    global _ROUND_QUEUE
    _ROUND_QUEUE = queue
    with multiprocessing.get_context("fork").Pool(load) as pool:
        results = pool.map(_load_worker, jobs)
    done = sum(r[0] for r in results)
    failed = sum(r[1] for r in results)
    errors = "; ".join(r[2] for r in results if r[2])
    per = 1000 / max(done, 1)
    cpu = {"tessera": (cpu_seconds(pgid=server_pgid) - tessera_cpu) * per,
           "slapd": (cpu_seconds(pid=slapd_pid) - slapd_cpu) * per,
           "load": sum(r[3] for r in results) * per}  # type: ignore[misc]
    return done / seconds, failed, errors, cpu


def serve(env: dict[str, str], port: int, workers: int, log: Path) -> subprocess.Popen[bytes]:
    """`tessera serve` in its own session, answering /healthz; stop it with tests.servers.stop_server."""
    proc = start_server([TESSERA, "serve", "--port", str(port), "--workers", str(workers)], port, log, env=env)
    try:
        wait_healthy(f"http://127.0.0.1:{port}/healthz")
    except BaseException:
        stop_server(proc)
        raise
    return proc


def raw_round(staff: StaffDirectory, seconds: float, processes: int) -> tuple[float, float, float]:
    """The raw ldap3 search+bind loop once: (logins/s, slapd CPU ms/login, load generator CPU ms/login)."""
    slapd_pid = int(staff.folder.pid_file.read_text().strip())
    slapd_before, load_before_cpu = cpu_seconds(pid=slapd_pid), _children_cpu()
    rate = raw_logins_per_second(staff, seconds, processes)
    count = max(rate * seconds, 1)
    return rate, (cpu_seconds(pid=slapd_pid) - slapd_before) * 1000 / count, (_children_cpu() - load_before_cpu) * 1000 / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--staff", type=int, default=10_000, help="generated staff in the directory")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each measurement")
    parser.add_argument("--load", type=int, nargs="+", default=[4, 6], help="load processes to try")
    parser.add_argument("--rounds", type=int, default=3,
                        help="measure the raw limit and the full logins alternately this many times; medians are shown")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="server worker processes")
    parser.add_argument("--server", nargs="+", default=["granian", "gunicorn"], choices=["granian", "gunicorn"],
                        help="HTTP servers to measure, one after the other (TESSERA_HTTP_SERVER)")
    parser.add_argument("--keep", type=Path, default=None, help="build the directory here and reuse it next time")
    args = parser.parse_args()
    if not 100 <= args.staff <= 1_000_000 or not 1 <= args.seconds <= 60 or not all(1 <= n <= 8 for n in args.load) \
            or not 1 <= args.rounds <= 9:
        parser.error("--staff 100..1,000,000, --seconds 1..60, --load 1..8, --rounds 1..9")
    base = Path(tempfile.mkdtemp(prefix="tessera-bench-sso-"))
    load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    port = free_port()
    cores = os.cpu_count() or 2
    with staff_directory(args.staff, args.keep) as staff:
        one = raw_round(staff, args.seconds, 1)  # shown for scale: one load process cannot keep slapd busy
        rows: list[list[object]] = [["raw ldap3 search+bind, 1 process", one[0], "", "", "", "", "", one[1], one[2],
                                     cores * 1000 / (one[1] + one[2])]]
        env, client = prepare_home(staff, base, port)
        queue = StaffQueue(staff)
        for server in args.server:
            proc = serve({**env, "TESSERA_HTTP_SERVER": server}, port, args.workers, base / f"server-{server}.log")
            try:
                for load in args.load:
                    raws: list[tuple[float, float, float]] = []
                    fulls: list[tuple[float, int, dict[str, float]]] = []
                    for _ in range(args.rounds):  # alternated, so a change in the machine's speed hits both alike
                        raws.append(raw_round(staff, args.seconds, 2))
                        rate, failed, errors, cpu = full_logins_per_second(port, queue, client, args.seconds, load,
                                                                           proc.pid)
                        fulls.append((rate, failed, cpu))
                        if errors:
                            print(f"errors with {server}, {load} load processes: {errors}", file=sys.stderr)
                    raw = statistics.median(r[0] for r in raws)
                    raw_cpu = [statistics.median(r[i] for r in raws) for i in (1, 2)]
                    rows.append([f"raw ldap3 search+bind, 2 processes (beside {server}, {load})", raw,
                                 f"{min(r[0] for r in raws):.0f}-{max(r[0] for r in raws):.0f}", "", "100%", "", "",
                                 raw_cpu[0], raw_cpu[1], cores * 1000 / sum(raw_cpu)])
                    rate = statistics.median(f[0] for f in fulls)
                    cpu = {k: statistics.median(f[2][k] for f in fulls) for k in ("tessera", "slapd", "load")}
                    projected = cores * 1000 / sum(cpu.values())
                    rows.append([f"full login (4 requests), {server}, {load} load processes", rate,
                                 f"{min(f[0] for f in fulls):.0f}-{max(f[0] for f in fulls):.0f}",
                                 sum(f[1] for f in fulls), f"{rate / raw:.0%}",
                                 f"{statistics.median(f[0] / r[0] for f, r in zip(fulls, raws, strict=True)):.0%}",
                                 cpu["tessera"], cpu["slapd"], cpu["load"], projected])
            finally:
                stop_server(proc)
    print(table(f"Staff logins/s: {args.staff:,} staff (argon2id m=4 MiB t=3), slapd + Tessera ({args.workers} workers) "
                f"+ load on {multiprocessing.cpu_count()} cores, medians of {args.rounds} alternating rounds "
                f"(load average before: {load_before})",
                ["what", "per second", "range", "failed", "of raw limit", "of raw, round by round (median)",
                 "CPU ms/login Tessera", "slapd", "load generator", "per second if the cores were ours (CPU-bound)"],
                rows))


if __name__ == "__main__":
    main()
