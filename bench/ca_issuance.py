"""Certificates issued per second from CSRs with the CA key on a PKCS#11 token (SoftHSM2).

For each store (SQLite file, private PostgreSQL cluster) a child process builds a fresh CA home and
measures, in the same run: the raw signing rate of the issuing CA's token key over a certificate's
TBS bytes (the limit), and full issuances (CSR parse + signature check, profile policy, certificate
built and signed on the token, stored with its audit entry in one transaction), first from one
process, then from one process per core (as `tessera serve` runs). Target: >= 500 issuances/s.

    .venv/bin/python bench/ca_issuance.py [--count 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import ROOT, ca_home, table  # noqa: E402

#: the seed's finance department (ldap/seed-organisation.ldif), the staff certificates' organisation
FINANCE = "湘西土家族苗族自治州财政局"


def child(store: str, database_url: str | None, count: int) -> dict[str, float]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from cardsim.demo_citizens import name_of

    deployment = ca_home(database_url)
    ca = deployment.ca
    csrs = []
    names = [name_of(i) for i in range(count)]  # (王芳, "Wang Fang"): staff named like the seed's
    for i in range(count):
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[i][0])])
        csrs.append(x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
                    .public_bytes(serialization.Encoding.DER))

    first = ca.issue("staff-auth", csrs[0], "bench", subject=f"CN=预热,O={FINANCE},C=CN")
    tbs = x509.load_der_x509_certificate(first.der).tbs_certificate_bytes
    with ca.sessions() as session:
        staff_key = ca.keyring.get(ca.authority(session, "staff").key_ref)
    start = time.perf_counter()
    for _ in range(count):
        staff_key.sign(tbs, hashes.SHA256())
    raw = count / (time.perf_counter() - start)

    def issue_all(share: list[bytes]) -> None:
        for i, csr in enumerate(share):
            uid = names[i][1].replace(" ", "").lower() + str(i)  # pinyin, numbered: wangfang17
            ca.issue("staff-auth", csr, "bench", subject=f"CN={names[i][0]},O={FINANCE},C=CN",
                     alt_names=[f"email:{uid}@finance.tessera.example"])

    start = time.perf_counter()
    issue_all(csrs)
    issued = count / (time.perf_counter() - start)

    # the same CSRs again (serials are random) from one process per core, as `tessera serve` runs
    workers = os.cpu_count() or 1
    start = time.perf_counter()
    children = []
    for k in range(workers):
        pid = os.fork()
        if pid == 0:  # a worker: its own database connections and PKCS#11 session after the fork
            code = 1
            try:
                deployment.engine.dispose(close=False)
                issue_all(csrs[k::workers])
                code = 0
            except BaseException:  # noqa: BLE001  say why, then leave without running the parent's cleanup
                import traceback

                traceback.print_exc()
            finally:
                os._exit(code)
        children.append(pid)
    for pid in children:
        if os.waitpid(pid, 0)[1] != 0:
            raise SystemExit("a worker process failed")
    parallel = count / (time.perf_counter() - start)
    deployment.close()
    return {"raw_sign_per_s": raw, "issued_per_s": issued, "parallel_per_s": parallel, "workers": workers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=2000, help="certificates per store (default 2000)")
    parser.add_argument("--child", choices=["sqlite", "postgres"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.url, args.count)))
        return

    from tests.servers import private_postgres

    results: dict[str, dict[str, float]] = {}

    def run(store: str, url: str | None) -> None:
        cmd = [sys.executable, __file__, "--child", store, "--count", str(args.count)] + (["--url", url] if url else [])
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout
        results[store] = json.loads(out.strip().splitlines()[-1])

    run("sqlite", None)
    with private_postgres() as url:
        run("postgres", url)
    rows = [(store, r["raw_sign_per_s"], r["issued_per_s"], f"{r['issued_per_s'] / r['raw_sign_per_s']:.1%}",
             r["parallel_per_s"], "yes" if max(r["issued_per_s"], r["parallel_per_s"]) >= 500 else "NO")
            for store, r in results.items()]
    workers = next(iter(results.values()))["workers"]
    print(table(f"Certificate issuance, PKCS#11 P-256 CA key, audit entry in each transaction, {args.count} CSRs per store",
                ["store", "raw token signatures/s (limit)", "issued/s, 1 process", "1 process / raw",
                 f"issued/s, {workers:.0f} processes", ">= 500/s"], rows))


if __name__ == "__main__":
    main()
