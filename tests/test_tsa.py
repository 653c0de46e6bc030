"""The RFC 3161 TSA in process (file key) and over HTTP (token key), judged by `openssl ts`."""

from __future__ import annotations

import datetime
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from asn1crypto import cms, tsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ca.keys import FileKey, KeyType
from ca.tsa import IssuedTimestamp, TimeStampAuthority, TimeStampResp
from tests.conftest import Home

POLICY = "2.999.1863.2.1"


def _cert(subject: str, issuer_key: ec.EllipticCurvePrivateKey, public: ec.EllipticCurvePublicKey, issuer: str,
          ca: bool, tsa: bool = False) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(public).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    )
    if tsa:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture()
def authority(tmp_path: Path) -> tuple[TimeStampAuthority, list[IssuedTimestamp], Path]:
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = _cert("Test Root", root_key, root_key.public_key(), "Test Root", ca=True)
    key = FileKey.create(tmp_path / "tsa.key.pem", KeyType.EC_P256, b"correct horse battery")
    tsa_cert = _cert("Test TSA", root_key, key.public_key(), "Test Root", ca=False, tsa=True)  # type: ignore[arg-type]
    (tmp_path / "root.pem").write_bytes(root.public_bytes(Encoding.PEM))
    issued: list[IssuedTimestamp] = []
    clock = lambda: datetime.datetime.now(datetime.timezone.utc)  # noqa: E731
    return TimeStampAuthority(key, tsa_cert, [tsa_cert, root], POLICY, issued.append, clock), issued, tmp_path


def openssl(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=30)


def test_reply_carries_nonce_policy_accuracy_and_verifies(authority: tuple[TimeStampAuthority, list[IssuedTimestamp], Path]) -> None:
    tsa, issued, work = authority
    (work / "doc.txt").write_bytes(b"the minutes of 25 November\n")
    assert openssl("ts", "-query", "-data", "doc.txt", "-sha384", "-cert", "-tspolicy", POLICY, "-out", "q.tsq",
                   cwd=work).returncode == 0
    reply = tsa.respond((work / "q.tsq").read_bytes())
    assert reply.granted and reply.http_status == 200
    (work / "r.tsr").write_bytes(reply.der)
    verified = openssl("ts", "-verify", "-queryfile", "q.tsq", "-in", "r.tsr", "-CAfile", "root.pem", cwd=work)
    assert "Verification: OK" in verified.stdout, verified.stdout + verified.stderr
    text = openssl("ts", "-reply", "-in", "r.tsr", "-text", cwd=work).stdout
    assert "Status: Granted." in text and f"Policy OID: {POLICY}" in text
    assert "Accuracy: 0x01 seconds" in text and "Nonce: 0x" in text and "Hash Algorithm: sha384" in text
    token = TimeStampResp.load(reply.der)["time_stamp_token"]
    tst = token["content"]["encap_content_info"]["content"].parsed
    assert issued and tst["serial_number"].native == issued[0].serial
    # a reply for another query (another nonce) fails the query-bound check: the judge can say no
    assert openssl("ts", "-query", "-data", "doc.txt", "-sha384", "-out", "other.tsq", cwd=work).returncode == 0
    mismatch = openssl("ts", "-verify", "-queryfile", "other.tsq", "-in", "r.tsr", "-CAfile", "root.pem", cwd=work)
    assert "Verification: OK" not in mismatch.stdout


def test_serials_are_unique(authority: tuple[TimeStampAuthority, list[IssuedTimestamp], Path]) -> None:
    tsa, issued, work = authority
    (work / "d").write_bytes(b"x")
    openssl("ts", "-query", "-data", "d", "-sha256", "-out", "q.tsq", cwd=work)
    for _ in range(50):
        assert tsa.respond((work / "q.tsq").read_bytes()).granted
    assert len({i.serial for i in issued}) == 50


def test_no_certificate_unless_asked(authority: tuple[TimeStampAuthority, list[IssuedTimestamp], Path]) -> None:
    tsa, _, work = authority
    (work / "d").write_bytes(b"x")
    openssl("ts", "-query", "-data", "d", "-sha256", "-no_nonce", "-out", "q.tsq", cwd=work)
    reply = tsa.respond((work / "q.tsq").read_bytes())
    signed = TimeStampResp.load(reply.der)["time_stamp_token"]["content"]
    assert isinstance(signed, cms.SignedData) and len(signed["certificates"]) == 0


@pytest.mark.parametrize("query, failure", [
    (b"", "bad_request"),
    (b"\x30\x03\x02\x01\x01", "bad_data_format"),
    (b"not der at all", "bad_data_format"),
])
def test_garbage_is_rejected_with_fail_info(authority: tuple[TimeStampAuthority, list[IssuedTimestamp], Path],
                                            query: bytes, failure: str) -> None:
    tsa, issued, _ = authority
    reply = tsa.respond(query)
    assert not reply.granted and reply.http_status == 400
    status = TimeStampResp.load(reply.der)["status"]
    assert status["status"].native == "rejection" and status["fail_info"].native == {failure}
    assert issued == []


def _query(**fields: object) -> bytes:
    base: dict[str, object] = {"version": "v1",
                               "message_imprint": {"hash_algorithm": {"algorithm": "sha256"}, "hashed_message": b"\x01" * 32}}
    base.update(fields)
    return tsp.TimeStampReq(base).dump()


@pytest.mark.parametrize("query, failure", [
    (_query(req_policy="1.2.3.4"), "unaccepted_policy"),
    (_query(message_imprint={"hash_algorithm": {"algorithm": "sha256"}, "hashed_message": b"\x01" * 20}), "bad_data_format"),
    (_query(message_imprint={"hash_algorithm": {"algorithm": "md5"}, "hashed_message": b"\x01" * 16}), "bad_alg"),
    (_query(extensions=[{"extn_id": "1.2.3.4.5", "critical": False, "extn_value": b"\x05\x00"}]), "unaccepted_extensions"),
    (_query(nonce=-5), "bad_request"),
])
def test_unsupported_queries_are_rejected(authority: tuple[TimeStampAuthority, list[IssuedTimestamp], Path],
                                          query: bytes, failure: str) -> None:
    tsa, issued, _ = authority
    reply = tsa.respond(query)
    assert TimeStampResp.load(reply.der)["status"]["fail_info"].native == {failure}
    assert issued == []


def test_served_tsa_rejects_unknown_policy_with_400(server: Home) -> None:
    request = urllib.request.Request(server.url("/tsa"), data=_query(req_policy="1.2.3.4"),
                                     headers={"Content-Type": "application/timestamp-query"}, method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=10)
    assert err.value.code == 400 and err.value.headers["Content-Type"] == "application/timestamp-reply"
    assert TimeStampResp.load(err.value.read())["status"]["fail_info"].native == {"unaccepted_policy"}


def test_sm3_imprints_are_accepted(authority: tuple[TimeStampAuthority, list[IssuedTimestamp], Path]) -> None:
    # GB/T 32905 SM3 (OID 1.2.156.10197.1.401), as `openssl ts -query -sm3` asks; recorded as "sm3"
    tsa, issued, work = authority
    (work / "d").write_bytes(b"x")
    assert openssl("ts", "-query", "-data", "d", "-sm3", "-cert", "-out", "q.tsq", cwd=work).returncode == 0
    reply = tsa.respond((work / "q.tsq").read_bytes())
    assert reply.granted and issued[0].hash_algorithm == "sm3"
    (work / "r.tsr").write_bytes(reply.der)
    verified = openssl("ts", "-verify", "-queryfile", "q.tsq", "-in", "r.tsr", "-CAfile", "root.pem", cwd=work)
    assert "Verification: OK" in verified.stdout, verified.stdout + verified.stderr
