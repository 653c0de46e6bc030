"""The cost of full RFC 5280 validation of a foreign chain beside Tessera's own fast path, in one run.

One run: a fresh home (`tessera init`), a service certificate of Tessera's staff CA (the caller's
credential, and the "own" certificate verified), and a foreign hierarchy (root, issuing CA, signer;
built as in tests/test_verification_trust_list.py) whose CRLs a small HTTP server on 127.0.0.1
serves from the certificates' distribution points; the trust list names the foreign root for
``signing``. `tessera serve` (gunicorn/granian, --workers) runs with that trust list.

1. In process: one verdict for the own certificate (the deployment's validator: cryptography's
   verifier, cached path, OCSP from the responder in process) and for the foreign chain
   (pyhanko-certvalidator: path building, policy processing, both CRLs of the path, cached until
   their nextUpdate), alternating in ``--rounds``.
2. Over HTTP (wrk, bounded by --seconds and --connections): ``POST /api/v1/certificates/verify``
   with the own certificate (purpose service, OCSP source) and with the foreign chain (purpose
   signing), alternating in ``--rounds``; every call authenticated, rate limited and recorded.

The ratio own/foreign of each pair is the figure that survives a noisy machine; the load average
(`uptime`) is printed before and after.

    .venv/bin/python bench/foreign_verification.py [--seconds 8] [--rounds 2] [--calls 300]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import ROOT, table  # noqa: E402

import requests  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402

sys.path.insert(0, str(ROOT))
from tests.servers import free_port, stop_server, tessera_env, wait_for_port  # noqa: E402
from tests.test_verification_trust_list import POLICY, Foreign  # noqa: E402

TESSERA = str(Path(sys.executable).parent / "tessera")


def _load() -> str:
    """The 1-minute load average, as `uptime` shows it."""
    return Path("/proc/loadavg").read_text().split(" ")[0]


def der(cert: x509.Certificate) -> str:
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=8, help="wrk duration per run")
    parser.add_argument("--rounds", type=int, default=2, help="own/foreign pairs, alternating")
    parser.add_argument("--calls", type=int, default=300, help="verdicts per in-process run")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--workers", type=int, default=2, help="tessera serve worker processes")
    args = parser.parse_args()
    load_before = _load()
    base = Path(tempfile.mkdtemp(prefix="tessera-bench-foreign-"))
    foreign = Foreign()
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    (base / "northland-root.pem").write_bytes(foreign.root.public_bytes(serialization.Encoding.PEM))
    (base / "trust.toml").write_text(f'[[anchor]]\nname = "Northland"\ncertificate = "northland-root.pem"\n'
                                     f'purposes = ["signing"]\npolicies = ["{POLICY}"]\nrevocation = "crl"\n')
    env = tessera_env(base / "home", public, TESSERA_API_RATE_PER_SECOND="1000000",
                      TESSERA_TRUST_LIST=str(base / "trust.toml"))
    server = None
    try:
        print("setting up: tessera init, a service certificate ...", file=sys.stderr)
        subprocess.run([TESSERA, "init"], env=env, check=True, capture_output=True)
        subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(base / "svc.key")],
                       check=True, capture_output=True)
        subprocess.run(["openssl", "req", "-new", "-key", str(base / "svc.key"), "-subj", "/CN=Bench verifier/O=Bench/C=EE",
                        "-out", str(base / "svc.csr")], check=True, capture_output=True)
        subprocess.run([TESSERA, "ca", "issue", "--profile", "service", "--csr", str(base / "svc.csr"), "--out",
                        str(base / "svc.pem")], env=env, check=True, capture_output=True)
        svc = x509.load_pem_x509_certificate((base / "svc.pem").read_bytes())
        key = serialization.load_pem_private_key((base / "svc.key").read_bytes(), None)

        # -- 1. in process -------------------------------------------------------------------
        os.environ.update(env)
        from idp.citizen_blueprints import CitizenServices
        from idp.deployment import Deployment
        from idp.settings import Settings

        deployment = Deployment(Settings.from_env(base / "home"))
        validator = CitizenServices(deployment).certificates
        jobs = {"own": lambda: validator.validate(svc, "service", revocation_source="ocsp"),
                "foreign": lambda: validator.validate(foreign.ee, "signing", [foreign.ca])}
        for name, job in jobs.items():
            verdict = job()
            assert verdict.valid, (name, verdict.reasons)
        in_process: dict[str, list[float]] = {"own": [], "foreign": []}
        for _ in range(args.rounds):
            for name, job in jobs.items():
                started = time.perf_counter()
                for _ in range(args.calls):
                    job()
                in_process[name].append(args.calls / (time.perf_counter() - started))
        fetched = sum(foreign.hits.values())

        # -- 2. over HTTP ----------------------------------------------------------------------
        import jwt

        now = int(time.time())
        assertion = jwt.encode({"iss": "bench", "aud": public + "/api/v1", "iat": now, "exp": now + 600}, key,
                               algorithm="ES256", headers={"x5c": [der(svc)]})
        log = open(base / "serve.log", "wb")
        server = subprocess.Popen([TESSERA, "serve", "--port", str(port), "--workers", str(args.workers)], env=env,
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for_port(port, server, timeout=30)
        time.sleep(1)
        bodies = {"own": {"certificate": der(svc), "purpose": "service"},
                  "foreign": {"certificate": der(foreign.ee), "chain": [der(foreign.ca)], "purpose": "signing"}}
        for name, body in bodies.items():
            check = requests.post(public + "/api/v1/certificates/verify", json=body, timeout=30,
                                  headers={"Authorization": "Bearer " + assertion})
            assert check.status_code == 200 and check.json()["valid"], (name, check.text)
        lua = base / "post.lua"
        over_http: dict[str, list[tuple[float, str, str]]] = {"own": [], "foreign": []}
        for _ in range(args.rounds):
            for name, body in bodies.items():
                lua.write_text('wrk.method = "POST"\nwrk.body = ' + json.dumps(json.dumps(body)) +
                               '\nwrk.headers["Content-Type"] = "application/json"\n'
                               'wrk.headers["Authorization"] = "Bearer ' + assertion + '"\n')
                out = subprocess.run(["wrk", "-t", "2", "-c", str(args.connections), "-d", f"{args.seconds}s", "-s",
                                      str(lua), public + "/api/v1/certificates/verify"], capture_output=True, text=True,
                                     timeout=args.seconds + 60).stdout
                rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
                non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
                latency = re.search(r"Latency\s+(\S+)", out)
                over_http[name].append((rate, non2xx.group(1) if non2xx else "0", latency.group(1) if latency else "?"))
        load_after = _load()

        def best(values: list[float]) -> float:
            return max(values)

        own_p, foreign_p = best(in_process["own"]), best(in_process["foreign"])
        own_h = best([r for r, _, _ in over_http["own"]])
        foreign_h = best([r for r, _, _ in over_http["foreign"]])
        rows = [
            ["own certificate, in process (fast path, OCSP in process)", own_p,
             f"{1e6 / own_p:,.0f} µs per verdict; best of {args.rounds} x {args.calls}"],
            ["foreign chain, in process (pyhanko, 2 CRLs cached)", foreign_p,
             f"{1e3 / foreign_p:,.1f} ms per verdict; own/foreign {own_p / foreign_p:,.0f}x; "
             f"{fetched} CRL fetches in all"],
            ["own certificate, API over HTTP (wrk)", own_h,
             "runs: " + ", ".join(f"{r:,.0f}/s (lat {lat}, non-2xx {n})" for r, n, lat in over_http["own"])],
            ["foreign chain, API over HTTP (wrk)", foreign_h,
             "runs: " + ", ".join(f"{r:,.0f}/s (lat {lat}, non-2xx {n})" for r, n, lat in over_http["foreign"])
             + f"; own/foreign {own_h / foreign_h:,.1f}x"],
        ]
        print(table(f"Foreign chain vs Tessera's own, one run ({args.workers} workers, {args.connections} connections, "
                    f"{args.seconds} s runs; load average {load_before} before, {load_after} after)",
                    ["measure", "per second", "note"], rows))
        deployment.close()
    finally:
        if server is not None:
            stop_server(server)
        foreign.server.shutdown()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
