"""The SM2 hierarchy over HTTP (issue 18): its certificates, CRLs and RFC 3161 time-stamps served
by `tessera serve` and judged by OpenSSL 3.0 (SM2-with-SM3, the empty signer identity so that
OpenSSL's own defaults verify)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import Home
from tests.servers import TESSERA, free_port, running_server, run_tessera, tessera_env, wait_healthy


def openssl(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def sm2_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    port = free_port()
    folder = tmp_path_factory.mktemp("sm2-web-home")
    url = f"http://127.0.0.1:{port}"
    env = tessera_env(folder, url, TESSERA_SM2_SIGNER_ID="")
    made = run_tessera(env, "init", "--sm2").stdout.decode()
    assert "created CA sm2-root" in made and "created CA sm2-citizen" in made, made
    # both ways are idempotent: the hierarchy is made once
    assert "nothing to do" in run_tessera(env, "init", "--sm2").stdout.decode()
    assert "exists already" in run_tessera(env, "ca", "add-sm2").stdout.decode()
    with running_server([TESSERA, "serve", "--port", str(port), "--workers", "1"], port, folder / "server.log",
                        env=env):
        wait_healthy(url + "/healthz", timeout=30)
        yield url, env


def test_an_sm3_time_stamp_from_the_sm2_tsa_verifies_with_openssl(sm2_server: tuple[str, dict[str, str]],
                                                                  tmp_path: Path) -> None:
    url, _ = sm2_server
    for name in ("sm2-root", "sm2-staff"):
        der = requests.get(f"{url}/ca/{name}.crt", timeout=10)
        assert der.status_code == 200 and der.headers["Content-Type"] == "application/pkix-cert"
        (tmp_path / f"{name}.der").write_bytes(der.content)
        assert openssl("x509", "-inform", "DER", "-in", f"{name}.der", "-out", f"{name}.pem", cwd=tmp_path).returncode == 0
    (tmp_path / "document.txt").write_text("政务外网 · 电子公文\n", encoding="utf-8")
    made = openssl("ts", "-query", "-data", "document.txt", "-sm3", "-cert", "-out", "query.tsq", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    reply = requests.post(f"{url}/tsa/sm2", data=(tmp_path / "query.tsq").read_bytes(), timeout=30,
                          headers={"Content-Type": "application/timestamp-query"})
    assert reply.status_code == 200 and reply.headers["Content-Type"] == "application/timestamp-reply"
    (tmp_path / "reply.tsr").write_bytes(reply.content)
    verdict = openssl("ts", "-verify", "-data", "document.txt", "-in", "reply.tsr", "-CAfile", "sm2-root.pem",
                      "-untrusted", "sm2-staff.pem", cwd=tmp_path)
    assert "Verification: OK" in verdict.stdout, verdict.stdout + verdict.stderr
    text = openssl("ts", "-reply", "-in", "reply.tsr", "-text", cwd=tmp_path).stdout
    assert "Hash Algorithm: sm3" in text and "Status: Granted." in text
    # the same query at the ECDSA TSA is signed by the other hierarchy: OpenSSL refuses it against the SM2 root
    ecdsa = requests.post(f"{url}/tsa", data=(tmp_path / "query.tsq").read_bytes(), timeout=30,
                          headers={"Content-Type": "application/timestamp-query"})
    (tmp_path / "ecdsa.tsr").write_bytes(ecdsa.content)
    other = openssl("ts", "-verify", "-data", "document.txt", "-in", "ecdsa.tsr", "-CAfile", "sm2-root.pem",
                    "-untrusted", "sm2-staff.pem", cwd=tmp_path)
    assert "Verification: OK" not in other.stdout


def test_the_sm2_crl_is_served_and_verifies(sm2_server: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    url, _ = sm2_server
    crl = requests.get(f"{url}/crl/sm2-staff.crl", timeout=10)
    assert crl.status_code == 200 and crl.headers["Content-Type"] == "application/pkix-crl"
    (tmp_path / "staff.crl").write_bytes(crl.content)
    (tmp_path / "staff.der").write_bytes(requests.get(f"{url}/ca/sm2-staff.crt", timeout=10).content)
    openssl("x509", "-inform", "DER", "-in", "staff.der", "-out", "staff.pem", cwd=tmp_path)
    out = openssl("crl", "-inform", "DER", "-in", "staff.crl", "-CAfile", "staff.pem", "-noout", "-text", cwd=tmp_path)
    assert "verify OK" in out.stderr and "SM2-with-SM3" in out.stdout, out.stdout + out.stderr


def test_bad_queries_and_a_home_without_sm2_are_4xx(sm2_server: tuple[str, dict[str, str]], server: Home) -> None:
    url, _ = sm2_server
    for body, media_type, statuses in ((b"\x30\x03\x02\x01", "application/timestamp-query", {400}),
                                       (b"hello", "text/plain", {400, 415})):  # a form post meets the CSRF check
        reply = requests.post(f"{url}/tsa/sm2", data=body, headers={"Content-Type": media_type}, timeout=30)
        assert reply.status_code in statuses, reply.text
    missing = requests.post(server.url("/tsa/sm2"), data=b"\x30\x00", timeout=30,
                            headers={"Content-Type": "application/timestamp-query"})
    assert missing.status_code == 404 and missing.headers["Content-Type"].startswith("application/problem+json")
