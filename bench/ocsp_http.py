"""OCSP responses per second over HTTP on 127.0.0.1, beside `openssl ocsp` serving the same CA.

One run: a fresh CA home (keys on a private SoftHSM2 token), N staff certificates issued, some
revoked; `tessera serve` (gunicorn, one worker per core) and `openssl ocsp -index ... -port` (its
own responder certificate from the same staff CA, a file key) answer the same RFC 5019 GET requests
(SHA-1 CertID, no nonce) for the same certificates under bounded wrk loads (wrk runs on this machine
too). openssl's responder (-multi: a process per core) wedges when wrk opens more connections than it
has processes, or after a kept-alive run, so it is measured at its best: a fresh responder and one
connection; Tessera is measured both with one connection and with many. Also: requests with a nonce (signed fresh on the
token each time), and latency with 1,000 and with 100,000 certificates in the store.
Targets: >= 3,000 responses/s and >= 10x openssl's responder; latency flat from 1,000 to 100,000.

    .venv/bin/python bench/ocsp_http.py [--certs 1000] [--seconds 10] [--connections 32]
"""

from __future__ import annotations

import argparse
import base64
import datetime
import hashlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import ca_home, table  # noqa: E402

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509 import ocsp  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402
from sqlalchemy import insert  # noqa: E402

from ca.models import Certificate  # noqa: E402
from cardsim.demo_citizens import name_of  # noqa: E402
from idp.deployment import Deployment  # noqa: E402
from tests.servers import TESSERA, free_port, tessera_env, wait_for_port  # noqa: E402


def csr_for(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    return key, x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256()).public_bytes(
        serialization.Encoding.DER)


def wrk(url: str, script: Path, seconds: int, connections: int, threads: int = 2) -> dict[str, float]:
    """Run a bounded wrk load; returns requests/s, p50 and p99 latency (ms) and the error count."""
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
                         capture_output=True, text=True, check=True, timeout=seconds + 30).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    errors += sum(int(n) for n in re.findall(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)[0]) \
        if "Socket errors" in out else 0

    def percentile(p: str) -> float:
        value, unit = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    return {"rate": rate, "p50": percentile("50"), "p99": percentile("99"), "errors": errors}


def lua_get(paths: list[str], path: Path) -> Path:
    body = ",\n".join(f'"{p}"' for p in paths)
    path.write_text(f"paths = {{\n{body}\n}}\ni = 0\nrequest = function()\n  i = i + 1\n"
                    "  return wrk.format(\"GET\", paths[(i % #paths) + 1])\nend\n")
    return path


def lua_post(target: str, bodies: list[bytes], path: Path) -> Path:
    encoded = ",\n".join('"' + "".join(f"\\{b}" for b in body) + '"' for body in bodies)
    path.write_text(f"bodies = {{\n{encoded}\n}}\ni = 0\nwrk.headers[\"Content-Type\"] = \"application/ocsp-request\"\n"
                    f"request = function()\n  i = i + 1\n  return wrk.format(\"POST\", \"{target}\", nil, bodies[(i % #bodies) + 1])\nend\n")
    return path


def openssl_index(rows: list[tuple[x509.Certificate, str, datetime.datetime | None]], path: Path) -> None:
    """The `openssl ca` index format: status, expiry, revocation, serial, file, subject (tab-separated)."""
    lines = []
    for cert, status, revoked_at in rows:
        expiry = cert.not_valid_after_utc.strftime("%y%m%d%H%M%SZ")
        revoked = revoked_at.strftime("%y%m%d%H%M%SZ") + ",keyCompromise" if revoked_at else ""
        lines.append("\t".join(["R" if status != "valid" else "V", expiry, revoked, format(cert.serial_number, "X"),
                                "unknown", cert.subject.rfc4514_string()]))
    path.write_text("\n".join(lines) + "\n")


def check_answer(url: str, path: str) -> str:
    with urllib.request.urlopen(url + path, timeout=10) as response:
        return ocsp.load_der_ocsp_response(response.read()).certificate_status.name


def filler_rows(deployment: Deployment, issuer_id: int, template: Certificate, count: int) -> None:
    """Store ``count`` extra certificate rows (random serials) so lookups run against a large table."""
    engine = deployment.engine
    batch = []
    with engine.begin() as conn:
        for i in range(count):
            serial = format(secrets.randbits(158) | (1 << 158), "x")
            batch.append({
                "serial_hex": serial, "issuer_id": issuer_id, "profile": "staff-auth", "subject": f"CN=filler {i}",
                "requester": "bench", "issued_at": template.issued_at, "not_before": template.not_before,
                "not_after": template.not_after, "fingerprint_sha256": hashlib.sha256(serial.encode()).hexdigest(),
                "der": template.der, "status": "valid",
            })
            if len(batch) == 5000:
                conn.execute(insert(Certificate), batch)
                batch = []
        if batch:
            conn.execute(insert(Certificate), batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--certs", type=int, default=1000, help="certificates issued and queried (default 1000)")
    parser.add_argument("--seconds", type=int, default=10, help="length of each load run (default 10)")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections (default 32)")
    parser.add_argument("--large", type=int, default=100_000, help="store size of the latency check (default 100000)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    if os.environ.get("TESSERA_BENCH_NETNS") != "1":
        # openssl's responder binds every address; a private network namespace holds only loopback,
        # so nothing of this run is reachable from outside the machine
        os.environ["TESSERA_BENCH_NETNS"] = "1"
        os.execvp("unshare", ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$0" "$@"',
                              sys.executable, __file__, *sys.argv[1:]])

    work = Path(tempfile.mkdtemp(prefix="tessera-bench-ocsp-"))
    deployment = ca_home()
    ca = deployment.ca
    print(f"issuing {args.certs} certificates ...", file=sys.stderr)
    issued: list[tuple[x509.Certificate, str, datetime.datetime | None]] = []
    for i in range(args.certs):
        name, _ = name_of(i)  # staff named like the seed's (王芳), in its finance department
        _, csr = csr_for(name)
        row = ca.issue("staff-auth", csr, "bench", subject=f"CN={name},O=湘西土家族苗族自治州财政局,C=CN")
        if i % 10 == 0:
            row = ca.revoke(row.serial_hex, "keyCompromise")
        issued.append((x509.load_der_x509_certificate(row.der), row.status, row.revoked_at))
    staff = ca.authority_certificate("staff")
    template = ca.get(format(issued[1][0].serial_number, "x"))
    with ca.sessions() as session:
        staff_id = ca.authority(session, "staff").id

    # the peer: openssl's responder with its own delegated certificate (file key) from the same CA
    peer_key, peer_csr = csr_for("openssl peer responder")
    peer = ca.issue("ocsp", peer_csr, "bench", subject="CN=openssl peer OCSP responder,O=Bench,C=EE")
    (work / "peer.key").write_bytes(peer_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
    (work / "peer.pem").write_bytes(x509.load_der_x509_certificate(peer.der).public_bytes(serialization.Encoding.PEM))
    (work / "staff.pem").write_bytes(staff.public_bytes(serialization.Encoding.PEM))
    openssl_index(issued, work / "index.txt")
    deployment.close()

    requests = [ocsp.OCSPRequestBuilder().add_certificate(cert, staff, hashes.SHA1()).build()
                .public_bytes(serialization.Encoding.DER) for cert, _, _ in issued]
    encoded = [urllib.parse.quote(base64.b64encode(r).decode(), safe="") for r in requests]
    tessera_get = lua_get([f"/ocsp/staff/{e}" for e in encoded], work / "tessera_get.lua")
    openssl_get = lua_get([f"/{e}" for e in encoded], work / "openssl_get.lua")
    with_nonce = [ocsp.OCSPRequestBuilder().add_certificate(cert, staff, hashes.SHA1())
                  .add_extension(x509.OCSPNonce(secrets.token_bytes(16)), critical=False).build()
                  .public_bytes(serialization.Encoding.DER) for cert, _, _ in issued[:200]]
    tessera_nonce = lua_post("/ocsp/staff", with_nonce, work / "tessera_nonce.lua")
    openssl_nonce = lua_post("/", with_nonce, work / "openssl_nonce.lua")

    cores = os.cpu_count() or 1
    port = free_port()
    env = tessera_env(deployment.settings.home, f"http://127.0.0.1:{port}")
    server = subprocess.Popen([TESSERA, "serve", "--port", str(port), "--workers", str(cores)], env=env,
                              stdout=subprocess.DEVNULL, stderr=open(work / "serve.log", "wb"), start_new_session=True)

    def peer(script: Path) -> dict[str, float]:
        """openssl's responder at its best: a fresh process per run and one connection (with more
        connections, or after a run on a kept-alive connection, it stops answering: measured here)."""
        peer_port = free_port()
        # -multi: a process per core, plus two for the readiness probe and the answer check, each of which
        # holds one process (openssl keeps waiting on a connection it has answered or that sent nothing);
        # no new session for it: with -multi it makes its own process group, which a session leader cannot
        proc = subprocess.Popen(["openssl", "ocsp", "-index", "index.txt", "-port", str(peer_port), "-rsigner",
                                 "peer.pem", "-rkey", "peer.key", "-CA", "staff.pem", "-nmin", "60",
                                 "-multi", str(cores + 2)], cwd=work,
                                stdout=subprocess.DEVNULL, stderr=open(work / "openssl.log", "ab"))
        try:
            wait_for_port(peer_port, proc)
            expected = "REVOKED"
            assert check_answer(f"http://127.0.0.1:{peer_port}", f"/{encoded[0]}") == expected
            return wrk(f"http://127.0.0.1:{peer_port}", script, args.seconds, 1, threads=1)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)

    results = []
    try:
        wait_for_port(port, server)
        base = f"http://127.0.0.1:{port}"
        # the right answers before anything is timed
        assert check_answer(base, f"/ocsp/staff/{encoded[0]}") == "REVOKED"
        assert check_answer(base, f"/ocsp/staff/{encoded[1]}") == "GOOD"
        wrk(base, tessera_get, 3, args.connections)  # warm: pre-produce every response once
        for label, connections, run in (
                ("Tessera GET (pre-produced)", args.connections, lambda: wrk(base, tessera_get, args.seconds, args.connections)),
                ("Tessera GET, one connection", 1, lambda: wrk(base, tessera_get, args.seconds, 1, threads=1)),
                ("openssl ocsp GET, one connection", 1, lambda: peer(openssl_get)),
                ("Tessera POST with nonce (signed on the token)", args.connections,
                 lambda: wrk(base, tessera_nonce, args.seconds, args.connections)),
                ("openssl ocsp POST with nonce (file key), one connection", 1, lambda: peer(openssl_nonce))):
            print(f"load: {label} ...", file=sys.stderr)
            results.append((label, connections, run()))

        print(f"latency with {args.certs} certificates, then {args.large} ...", file=sys.stderr)
        small = results[1][2]
        reopened = Deployment(deployment.settings)
        filler_rows(reopened, staff_id, template, args.large - args.certs)
        reopened.close()
        wrk(base, tessera_get, 2, args.connections)
        large = wrk(base, tessera_get, args.seconds, 1, threads=1)
        large_loaded = wrk(base, tessera_get, args.seconds, args.connections)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=20)

    tessera_rate = results[0][2]["rate"]
    peer_rate = max(results[2][2]["rate"], 1e-9)
    rows = [(label, c, r["rate"], f"{r['p50']:.2f}", f"{r['p99']:.2f}", int(r["errors"])) for label, c, r in results]
    print(table(f"OCSP over HTTP, {args.certs} certificates, wrk {args.seconds}s per run, {cores} workers / processes",
                ["server", "connections", "responses/s", "p50 ms", "p99 ms", "errors"], rows))
    print(f"\nTessera / openssl (GET): {tessera_rate / peer_rate:.1f}x   target >= 10x: "
          f"{'yes' if tessera_rate >= 10 * peer_rate else 'NO'}; >= 3,000/s: {'yes' if tessera_rate >= 3000 else 'NO'}")
    print()
    print(table("OCSP latency, one connection (GET, pre-produced)", ["certificates in store", "responses/s", "p50 ms", "p99 ms"],
                [(f"{args.certs:,}", small["rate"], f"{small['p50']:.2f}", f"{small['p99']:.2f}"),
                 (f"{args.large:,}", large["rate"], f"{large['p50']:.2f}", f"{large['p99']:.2f}"),
                 (f"{args.large:,} ({args.connections} connections)", large_loaded["rate"], f"{large_loaded['p50']:.2f}",
                  f"{large_loaded['p99']:.2f}")]))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
