"""The TSA's policy follows the deployment's policy arc (``TESSERA_POLICY_ARC``): tokens of a CA
under another arc name ``<arc>.7.1`` (RFC 3161 section 2.4.2 policy), `openssl ts -verify`
accepts them against a query asking for that policy, and a query asking for the example arc's
policy is refused (unacceptedPolicy)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding

from ca.profiles import EXAMPLE_POLICY_ARC, tsa_policy
from ca.timestamps import StoredTimeStampAuthority
from ca.tsa import TimeStampResp
from store.engine import make_engine
from tests.fixtures_ca import file_key_ca

ARC = "1.3.6.1.4.1.99999.1"


def test_the_tsa_policy_lies_under_the_policy_arc() -> None:
    assert tsa_policy(EXAMPLE_POLICY_ARC) == f"{EXAMPLE_POLICY_ARC}.7.1"
    assert tsa_policy(ARC) == f"{ARC}.7.1"


def test_tokens_name_the_arcs_policy_and_openssl_accepts_them(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'tsa.db'}")
    sessions, ca = file_key_ca(engine, tmp_path / "keys", policy_arc=ARC)
    tsa = StoredTimeStampAuthority(ca, sessions)
    (tmp_path / "root.pem").write_bytes(ca.authority_certificate("root").public_bytes(Encoding.PEM))
    (tmp_path / "staff.pem").write_bytes(ca.authority_certificate("staff").public_bytes(Encoding.PEM))
    (tmp_path / "minutes.txt").write_bytes(b"the minutes of 3 December\n")

    def openssl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["openssl", "ts", *args], cwd=tmp_path, capture_output=True, text=True, timeout=30)

    assert openssl("-query", "-data", "minutes.txt", "-sha256", "-cert", "-tspolicy", f"{ARC}.7.1",
                   "-out", "q.tsq").returncode == 0
    reply = tsa.respond((tmp_path / "q.tsq").read_bytes())
    assert reply.granted
    (tmp_path / "r.tsr").write_bytes(reply.der)
    verified = openssl("-verify", "-queryfile", "q.tsq", "-in", "r.tsr", "-CAfile", "root.pem",
                       "-untrusted", "staff.pem")
    assert "Verification: OK" in verified.stdout, verified.stdout + verified.stderr
    assert f"Policy OID: {ARC}.7.1" in openssl("-reply", "-in", "r.tsr", "-text").stdout
    # the example arc's policy (and the old fixed 2.999.1863.2.1) is not this TSA's
    for other in (tsa_policy(EXAMPLE_POLICY_ARC), "2.999.1863.2.1"):
        assert openssl("-query", "-data", "minutes.txt", "-sha256", "-tspolicy", other, "-out", "o.tsq").returncode == 0
        refused = tsa.respond((tmp_path / "o.tsq").read_bytes())
        assert not refused.granted and refused.failure == "unaccepted_policy"
        assert TimeStampResp.load(refused.der)["status"]["status"].native == "rejection"
    engine.dispose()
