"""Bad input gets a clear 4xx (problem details, or the protocol's own error) or a one-line CLI
error with a non-zero exit, and nothing is stored."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from tests.conftest import Home


def post(url: str, body: bytes, content_type: str) -> tuple[int, str, bytes]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read()


def store_size(home: Home) -> int:
    return len(json.loads(home.cli("ca", "list", "--json", "--limit", "10000").stdout))


def csr(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Jane Doe")])
    return x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def broken_signature_csr() -> bytes:
    der = bytearray(x509.load_pem_x509_csr(csr(ec.generate_private_key(ec.SECP256R1()))).public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01  # flip a bit inside the signature value
    return bytes(der)


CSR_CASES = {
    "garbage": (lambda: b"\x00\x01 this is not a CSR", "cannot be parsed"),
    "broken-signature": (broken_signature_csr, "signature does not verify"),
    "rsa-1024": (lambda: csr(rsa.generate_private_key(public_exponent=65537, key_size=1024)), "RSA-1024 is not accepted"),
}


@pytest.mark.parametrize("case", sorted(CSR_CASES))
def test_cli_refuses_bad_csr_and_stores_nothing(home: Home, tmp_path: Path, case: str) -> None:
    make, message = CSR_CASES[case]
    (tmp_path / "x.csr").write_bytes(make())
    before = store_size(home)
    result = home.cli("ca", "issue", "--profile", "staff-auth", "--csr", str(tmp_path / "x.csr"), check=False)
    assert result.returncode != 0
    err = result.stderr.decode()
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert store_size(home) == before


def test_cli_unknown_profile_and_reason(home: Home, tmp_path: Path) -> None:
    (tmp_path / "ok.csr").write_bytes(csr(ec.generate_private_key(ec.SECP256R1())))
    before = store_size(home)
    result = home.cli("ca", "issue", "--profile", "superuser", "--csr", str(tmp_path / "ok.csr"), check=False)
    assert result.returncode != 0 and "unknown profile 'superuser'" in result.stderr.decode()
    result = home.cli("ca", "revoke", "abc123", "--reason", "boredom", check=False)
    assert result.returncode != 0 and "unknown revocation reason" in result.stderr.decode()
    result = home.cli("ca", "show", "not-hex!", check=False)
    assert result.returncode != 0 and "not a hexadecimal serial" in result.stderr.decode()
    assert store_size(home) == before


def test_every_command_has_help(home: Home) -> None:
    for args in ([], ["init"], ["serve"], ["ca"], ["ca", "issue"], ["ca", "revoke"], ["ca", "release"], ["ca", "list"],
                 ["ca", "show"], ["ca", "crl"], ["ca", "export-chain"]):
        result = home.cli(*args, "--help")
        assert b"Usage:" in result.stdout and len(result.stdout) > 100


def test_oversized_body_is_413_problem(server: Home) -> None:
    status, ctype, body = post(server.url("/tsa"), b"\x30" * (200 * 1024), "application/timestamp-query")
    assert status == 413 and ctype == "application/problem+json"
    assert json.loads(body)["status"] == 413
    status, ctype, body = post(server.url("/ocsp/staff"), b"\x30" * (20 * 1024), "application/ocsp-request")
    assert status == 413 and ctype == "application/problem+json"


def test_malformed_ocsp_request_gets_malformed_request(server: Home) -> None:
    for body in (b"garbage", b"\x30\x03\x02\x01\x01"):
        status, ctype, raw = post(server.url("/ocsp/staff"), body, "application/ocsp-request")
        assert status == 200 and ctype == "application/ocsp-response"
        assert ocsp.load_der_ocsp_response(raw).response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    with urllib.request.urlopen(server.url("/ocsp/staff/%21%21not-base64"), timeout=10) as response:
        assert ocsp.load_der_ocsp_response(response.read()).response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_wrong_media_type_is_415(server: Home) -> None:
    status, ctype, body = post(server.url("/ocsp/staff"), b"x", "text/plain")
    assert status == 415 and ctype == "application/problem+json"
    status, ctype, body = post(server.url("/tsa"), b"x", "application/json")
    assert status == 415 and json.loads(body)["title"] == "Unsupported Media Type"


def test_timestamp_query_with_sha1_is_refused(server: Home, tmp_path: Path) -> None:
    (tmp_path / "d.txt").write_bytes(b"data")
    subprocess.run(["openssl", "ts", "-query", "-data", "d.txt", "-sha1", "-out", "q.tsq"], cwd=tmp_path, check=True)
    status, ctype, body = post(server.url("/tsa"), (tmp_path / "q.tsq").read_bytes(), "application/timestamp-query")
    assert status == 400 and ctype == "application/timestamp-reply"
    (tmp_path / "r.tsr").write_bytes(body)
    text = subprocess.run(["openssl", "ts", "-reply", "-in", "r.tsr", "-text"], cwd=tmp_path, capture_output=True,
                          text=True, check=True).stdout
    assert "Rejected" in text and "unrecognized or unsupported algorithm" in text


def test_unknown_ca_is_404_problem(server: Home) -> None:
    try:
        urllib.request.urlopen(server.url("/crl/nobody.crl"), timeout=10)
    except urllib.error.HTTPError as err:
        assert err.code == 404 and err.headers["Content-Type"] == "application/problem+json"
        assert "nobody" in json.loads(err.read())["detail"]
    else:
        pytest.fail("expected 404")


def test_server_log_has_no_unhandled_errors(server: Home) -> None:
    log = (server.path / "server.log").read_text()
    assert "unhandled error" not in log and "Traceback" not in log


def test_cli_revoke_of_an_issuing_ca_needs_four_eyes(home: Home) -> None:
    issuing = json.loads(home.cli("ca", "list", "--profile", "issuing-ca", "--json").stdout)
    assert issuing, "tessera init issues the staff and citizen CA certificates"
    serial = issuing[0]["serial"]
    result = home.cli("ca", "revoke", serial, "--reason", "keyCompromise", check=False)
    err = result.stderr.decode()
    assert result.returncode != 0 and "four eyes" in err and "Traceback" not in err
    assert json.loads(home.cli("ca", "show", serial, "--json").stdout)["status"] == "valid"
