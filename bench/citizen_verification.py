"""Citizen login token validations per second in process, and verification API requests per second
over HTTP, beside `openssl verify` on the same certificates in the same run.

One run: a fresh home (`tessera init`, CA keys on a private SoftHSM2 token), a few cards issued
with the real CLI, one card agent (`tessera card agent`) that signs Web eID tokens through PKCS#11.

1. Token validations in process: every token signed by a real card over (origin, fresh nonce);
   :class:`idp.webeid.TokenValidator` with revocation from our OCSP responder in process (the
   pre-produced answer from the store) and single-use nonces in SQL (issued, then consumed by an
   atomic DELETE), as the login endpoint does. Also without the nonce SQL (what the crypto and
   path validation cost alone).
2. The verification API (`POST /api/v1/certificates/verify`, purpose citizen-auth, OCSP source)
   under `tessera serve` (gunicorn, --workers, default 2) with wrk (bounded: --seconds,
   --connections); every call authenticated (a service certificate JWT, and again with a service
   account's access token from /oidc/token, client credentials), rate limited and recorded (audit
   entry + verification log row, group-committed); the ratio to GET /healthz on the same server
   in the same run is the figure that survives a noisy machine.
3. `openssl verify -crl_check` over the same card certificates (one process, all files at once).

Targets: >= 1,000 token validations/s; >= 1,500 API verifications/s on this 2-core machine.

    .venv/bin/python bench/citizen_verification.py [--tokens 2000] [--seconds 10] [--connections 16]
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

sys.path.insert(0, str(ROOT))
from cardsim.demo_citizens import chinese_citizen as citizen  # noqa: E402
from tests.servers import free_port, stop_server, tessera_env, wait_for_port  # noqa: E402

TESSERA = str(Path(sys.executable).parent / "tessera")
BATCH = 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=2000, help="tokens to validate in process")
    parser.add_argument("--cards", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=10, help="wrk duration")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--workers", type=int, default=2, help="tessera serve worker processes")
    parser.add_argument("--server", default=None, help="TESSERA_HTTP_SERVER for tessera serve (default: its own)")
    parser.add_argument("--postgres", action="store_true", help="the store on a private PostgreSQL 15 cluster")
    args = parser.parse_args()
    if args.postgres:
        from tests.servers import private_postgres

        with private_postgres() as url:
            run(args, url)
    else:
        run(args, None)


def run(args: argparse.Namespace, database_url: str | None) -> None:

    base = Path(tempfile.mkdtemp(prefix="tessera-bench-citizen-"))
    home = base / "home"
    port, agent_port = free_port(), free_port()
    public = f"http://127.0.0.1:{port}"
    env = tessera_env(home, public, TESSERA_API_RATE_PER_SECOND="1000000")
    if args.server:
        env["TESSERA_HTTP_SERVER"] = args.server
    if database_url:
        env["TESSERA_DATABASE_URL"] = database_url
    procs: list[subprocess.Popen[bytes]] = []

    def cli(*a: str) -> str:
        return subprocess.run([TESSERA, *a], env=env, check=True, capture_output=True).stdout.decode()

    try:
        print("setting up: tessera init, cards, agent ...", file=sys.stderr)
        cli("init")
        cards = []
        for i in range(args.cards):
            source = base / f"c{i}.json"
            source.write_text(json.dumps(citizen(900 + i)))
            cli("card", "issue", "--from", str(source), "--envelope", str(base / f"e{i}.json"))
            cards.append(json.loads((base / f"e{i}.json").read_text()))
        agents = []
        for i, card in enumerate(cards):
            p = agent_port if i == 0 else free_port()
            proc = subprocess.Popen([TESSERA, "card", "agent", "--port", str(p), "--card", card["card"]], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            procs.append(proc)
            wait_for_port(p, proc)
            agents.append((f"http://127.0.0.1:{p}", card))

        # -- 1. token validations in process -----------------------------------------------
        os.environ.update(env)
        from idp.citizen_blueprints import CitizenServices
        from idp.deployment import Deployment
        from idp.settings import Settings

        deployment = Deployment(Settings.from_env(home))
        services = CitizenServices(deployment)
        validator = services.tokens
        binding = "bench-session"
        print(f"signing {args.tokens} tokens with {len(agents)} cards through the agents ...", file=sys.stderr)
        tokens = []
        session = requests.Session()
        started = time.perf_counter()
        for i in range(args.tokens):
            url, card = agents[i % len(agents)]
            nonce = services.nonces.issue(binding)
            token = session.post(url + "/authenticate", json={"nonce": nonce, "pin": card["pin"]},
                                 headers={"Origin": public}).json()
            tokens.append((token, nonce))
        signing_rate = args.tokens / (time.perf_counter() - started)
        validator.validate(tokens[0][0], tokens[0][1], lambda n: services.nonces.consume(n, binding))  # warm: OCSP answers stored
        for token, nonce in tokens[1:len(agents)]:
            validator.validate(token, nonce, lambda n: services.nonces.consume(n, binding))
        rest = tokens[len(agents):]
        started = time.perf_counter()
        for token, nonce in rest:
            validator.validate(token, nonce, lambda n: services.nonces.consume(n, binding))
        with_sql = len(rest) / (time.perf_counter() - started)
        started = time.perf_counter()
        for token, nonce in rest:
            validator.validate(token, nonce, lambda n: True)
        without_sql = len(rest) / (time.perf_counter() - started)
        refused = 0
        for token, nonce in rest[:100]:
            try:
                validator.validate(token, nonce, lambda n: services.nonces.consume(n, binding))
            except Exception:  # noqa: BLE001  (every replay must be refused)
                refused += 1
        assert refused == min(100, len(rest)), "a replayed nonce was accepted"

        # -- 2. the verification API over HTTP ----------------------------------------------
        work = base / "svc"
        work.mkdir()
        subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(work / "svc.key")],
                       check=True, capture_output=True)
        subprocess.run(["openssl", "req", "-new", "-key", str(work / "svc.key"), "-subj", "/CN=Bench verifier/O=Bench/C=EE",
                        "-out", str(work / "svc.csr")], check=True, capture_output=True)
        cli("ca", "issue", "--profile", "service", "--csr", str(work / "svc.csr"), "--out", str(work / "svc.pem"))
        import jwt
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        key = serialization.load_pem_private_key((work / "svc.key").read_bytes(), None)
        svc_cert = x509.load_pem_x509_certificate((work / "svc.pem").read_bytes())
        now = int(time.time())
        assertion = jwt.encode({"iss": "bench", "aud": public + "/api/v1", "iat": now, "exp": now + 600}, key,
                               algorithm="ES256", headers={"x5c": [base64.b64encode(svc_cert.public_bytes(
                                   serialization.Encoding.DER)).decode()]})
        log = open(base / "serve.log", "wb")
        server = subprocess.Popen([TESSERA, "serve", "--port", str(port), "--workers", str(args.workers)], env=env, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(server)
        wait_for_port(port, server, timeout=30)
        time.sleep(1)
        cert_b64 = tokens[0][0]["unverifiedCertificate"]
        body = json.dumps({"certificate": cert_b64, "purpose": "citizen-auth"})
        check = requests.post(public + "/api/v1/certificates/verify", data=body, timeout=30,
                              headers={"Authorization": "Bearer " + assertion, "Content-Type": "application/json"})
        assert check.status_code == 200 and check.json()["valid"], check.text
        # a service account (client credentials) and its access token from the token endpoint
        account = deployment.clients.add_service("Bench account")
        granted = requests.post(public + "/oidc/token", data={"grant_type": "client_credentials"}, timeout=30,
                                auth=(account.client_id, account.client_secret or ""))
        assert granted.status_code == 200, granted.text
        access_token = granted.json()["access_token"]
        lua = work / "post.lua"

        def api_run(credential: str) -> tuple[float, str, str, int]:
            lua.write_text('wrk.method = "POST"\nwrk.body = ' + json.dumps(body) + '\nwrk.headers["Content-Type"] = '
                           '"application/json"\nwrk.headers["Authorization"] = "Bearer ' + credential + '"\n')
            before = _count(deployment, "verification_log")
            out = subprocess.run(["wrk", "-t", "2", "-c", str(args.connections), "-d", f"{args.seconds}s", "-s", str(lua),
                                  public + "/api/v1/certificates/verify"], capture_output=True, text=True,
                                 timeout=args.seconds + 60).stdout
            rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
            non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
            latency = re.search(r"Latency\s+(\S+)", out)
            return (rate, non2xx.group(1) if non2xx else "0", latency.group(1) if latency else "?",
                    _count(deployment, "verification_log") - before)

        api_rate, non2xx, latency, recorded = api_run(assertion)
        oauth_rate, oauth_non2xx, oauth_latency, oauth_recorded = api_run(access_token)
        # the ceiling: the same server answering /healthz (no work, no SQL) under the same load
        wrk_health = subprocess.run(["wrk", "-t", "2", "-c", str(args.connections), "-d", f"{max(3, args.seconds // 2)}s",
                                     public + "/healthz"], capture_output=True, text=True, timeout=args.seconds + 60)
        health_rate = float(re.search(r"Requests/sec:\s+([\d.]+)", wrk_health.stdout).group(1))  # type: ignore[union-attr]
        # the batch form: BATCH verifications per request (one audit entry, BATCH log rows)
        certs = [t["unverifiedCertificate"] for t, _ in tokens[:len(agents)]]
        batch_body = json.dumps({"items": [{"certificate": certs[i % len(certs)], "purpose": "citizen-auth"}
                                           for i in range(BATCH)]})
        lua.write_text('wrk.method = "POST"\nwrk.body = ' + json.dumps(batch_body) + '\nwrk.headers["Content-Type"] = '
                       '"application/json"\nwrk.headers["Authorization"] = "Bearer ' + assertion + '"\n')
        wrk_batch = subprocess.run(["wrk", "-t", "2", "-c", str(args.connections), "-d", f"{args.seconds}s", "-s", str(lua),
                                    public + "/api/v1/certificates/verify-batch"], capture_output=True, text=True,
                                   timeout=args.seconds + 60)
        batch_rate = float(re.search(r"Requests/sec:\s+([\d.]+)", wrk_batch.stdout).group(1))  # type: ignore[union-attr]
        batch_non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", wrk_batch.stdout)

        # -- 3. openssl verify -crl_check on the same certificates ---------------------------
        chain = cli("ca", "export-chain", "--ca", "citizen")
        (work / "chain.pem").write_text(chain)
        crl = subprocess.run([TESSERA, "ca", "crl", "--ca", "citizen"], env=env, capture_output=True, check=True).stdout
        (work / "crl.pem").write_bytes(crl if crl.startswith(b"-----") else
                                       subprocess.run(["openssl", "crl", "-inform", "DER"], input=crl,
                                                      capture_output=True, check=True).stdout)
        files = []
        for i, (token, _) in enumerate(tokens[:len(agents)]):
            der = base64.b64decode(token["unverifiedCertificate"])
            pem = x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
            for j in range(max(1, 2000 // len(agents))):
                path = work / f"cert-{i}-{j}.pem"
                path.write_bytes(pem)
                files.append(str(path))
        started = time.perf_counter()
        ossl = subprocess.run(["openssl", "verify", "-crl_check", "-CAfile", str(work / "chain.pem"), "-CRLfile",
                               str(work / "crl.pem"), *files], capture_output=True, text=True)
        openssl_rate = len(files) / (time.perf_counter() - started)
        assert ossl.returncode == 0 and ossl.stdout.count(": OK") == len(files), ossl.stderr[:500]

        store = "PostgreSQL 15" if database_url else "SQLite"
        print(table(f"Citizen login and verification API ({store} store, this machine, one run)", ["measure", "per second", "note"], [
            ["token validations in process (nonce single-use in SQL)", with_sql,
             f"{len(rest)} tokens from real cards; OCSP from the store; target >= 1,000"],
            ["token validations in process (no nonce SQL)", without_sql, "signature + path + OCSP only"],
            ["API verifications over HTTP (wrk), service certificate JWT", api_rate,
             f"{api_rate / health_rate:.0%} of healthz; {args.connections} connections, {args.seconds} s, {args.workers} "
             f"workers, latency avg {latency}, non-2xx {non2xx}, {recorded} calls recorded; target >= 1,500"],
            ["API verifications over HTTP (wrk), service account access token", oauth_rate,
             f"{oauth_rate / health_rate:.0%} of healthz; client credentials token, live in the store each call; "
             f"latency avg {oauth_latency}, non-2xx {oauth_non2xx}, {oauth_recorded} calls recorded"],
            [f"API verifications over HTTP, batch form ({BATCH} per request)", batch_rate * BATCH,
             f"{batch_rate:,.0f} requests/s, non-2xx {batch_non2xx.group(1) if batch_non2xx else 0}"],
            ["GET /healthz on the same server (ceiling of Flask + the HTTP server here)", health_rate,
             f"no work, no SQL; server {args.server or 'tessera serve default'}"],
            ["openssl verify -crl_check (one process)", openssl_rate, f"{len(files)} certificate files, same chain and CRL"],
            ["card signatures through the agent (HTTP + PIN + PKCS#11)", signing_rate, "setup step, for scale"],
        ]))
    finally:
        for proc in reversed(procs):
            stop_server(proc)
        shutil.rmtree(base, ignore_errors=True)


def _count(deployment: object, table_name: str) -> int:
    from sqlalchemy import text

    with deployment.engine.connect() as conn:  # type: ignore[attr-defined]
        return int(conn.execute(text(f"SELECT count(*) FROM {table_name}")).scalar_one())


if __name__ == "__main__":
    main()
