"""The CA judged by independent implementations: openssl verify/ocsp/ts and pkcs11-tool,
against the running service (gunicorn, PKCS#11 keys on a SoftHSM2 token)."""

from __future__ import annotations

import base64
import json
import subprocess
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from ca.profiles import EXAMPLE_POLICY_ARC, PROFILES
from tests.conftest import Home


def run(*cmd: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=60)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {result.returncode}: {result.stdout}{result.stderr}")
    return result


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


@pytest.fixture()
def work(server: Home, tmp_path: Path) -> Path:
    """A folder with the staff CA chain (root.pem, staff.pem) fetched from caIssuers URLs."""
    for name in ("root", "staff", "citizen"):
        der = fetch(server.url(f"/ca/{name}.crt"))
        (tmp_path / f"{name}.pem").write_bytes(x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM))
    return tmp_path


def issue(home: Home, work: Path, name: str, profile: str = "staff-auth", subject: str = "/CN=Jane Doe/O=Ministry of Finance/C=EE") -> x509.Certificate:
    run("openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{name}.key", cwd=work)
    run("openssl", "req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr", cwd=work)
    home.cli("ca", "issue", "--profile", profile, "--csr", str(work / f"{name}.csr"), "--out", str(work / f"{name}.pem"))
    return x509.load_pem_x509_certificate((work / f"{name}.pem").read_bytes())


def ocsp_check(home: Home, work: Path, cert: str, issuer: str = "staff", extra: tuple[str, ...] = ()) -> str:
    result = run(
        "openssl", "ocsp", "-issuer", f"{issuer}.pem", *(("-cert", f"{cert}.pem") if cert else ()), *extra,
        "-url", home.url(f"/ocsp/{issuer}"), "-CAfile", "root.pem", "-verify_other", f"{issuer}.pem", "-resp_text",
        cwd=work, check=False,
    )
    return result.stdout + result.stderr


def test_openssl_verifies_issued_chain(server: Home, work: Path) -> None:
    issue(server, work, "jane")
    out = run("openssl", "verify", "-CAfile", "root.pem", "-untrusted", "staff.pem", "jane.pem", cwd=work).stdout
    assert out.strip() == "jane.pem: OK"
    # and it fails against the wrong intermediate: the judge can say no
    bad = run("openssl", "verify", "-CAfile", "root.pem", "-untrusted", "citizen.pem", "jane.pem", cwd=work, check=False)
    assert bad.returncode != 0


#: a subject each profile accepts (ca.profiles), for the CSRs of the policy test
_SUBJECTS = {"staff-auth": "/CN=Pat Policy/O=Ministry of Finance/C=CN", "staff-sign": "/CN=Pat Policy/C=CN",
             "service": "/CN=Policy Service/O=Tax Office/C=CN", "citizen-auth": "/CN=Citizen/serialNumber=P-1/C=CN",
             "citizen-sign": "/CN=Citizen/serialNumber=P-1/C=CN"}


def _certificate_of(home: Home, work: Path, profile: str, issuing: str) -> Path:
    """A certificate of ``profile`` from ``issuing``: issued from a CSR, or the one `tessera init`
    made (OCSP responders, TSA)."""
    if profile in _SUBJECTS:
        issue(home, work, profile, profile, _SUBJECTS[profile])
    else:
        listed = json.loads(home.cli("ca", "list", "--profile", profile, "--issuer", issuing, "--json").stdout)
        (work / f"{profile}.pem").write_bytes(home.cli("ca", "show", listed[0]["serial"], "--pem").stdout)
    return work / f"{profile}.pem"


@pytest.mark.parametrize("profile, issuing", [(p.name, i) for p in PROFILES.values() for i in p.issuers])
def test_openssl_explicit_policy_accepts_every_profile(server: Home, work: Path, profile: str, issuing: str) -> None:
    """Issue 15 item 4: a relying party that requires the profile's policy (RFC 5280 section 6.1,
    initial-explicit-policy) accepts the path root -> issuing CA -> certificate: the issuing CA
    names the policies of its profiles, the root anyPolicy."""
    leaf = _certificate_of(server, work, profile, issuing)
    policy = PROFILES[profile].policy_oid(EXAMPLE_POLICY_ARC).dotted_string
    strict = ("openssl", "verify", "-x509_strict", "-explicit_policy", "-CAfile", "root.pem",
              "-untrusted", f"{issuing}.pem")
    out = run(*strict, "-policy", policy, "-policy_print", str(leaf), cwd=work, check=False)
    assert out.returncode == 0 and f"{leaf}: OK" in out.stdout, out.stdout + out.stderr
    # and the judge can say no: the policy of another profile is not this certificate's
    other = next(p.policy_oid(EXAMPLE_POLICY_ARC).dotted_string for p in PROFILES.values() if p.name != profile)
    refused = run(*strict, "-policy", other, str(leaf), cwd=work, check=False)
    assert refused.returncode != 0 and "no explicit policy" in refused.stdout + refused.stderr


def test_ocsp_good_then_revoked_with_reason_and_nonce(server: Home, work: Path) -> None:
    cert = issue(server, work, "ocspuser")
    out = ocsp_check(server, work, "ocspuser")
    assert "Response verify OK" in out
    assert "ocspuser.pem: good" in out
    assert "OCSP Nonce" in out and "WARNING: no nonce" not in out

    server.cli("ca", "revoke", format(cert.serial_number, "x"), "--reason", "keyCompromise")
    out = ocsp_check(server, work, "ocspuser")
    assert "Response verify OK" in out
    assert "ocspuser.pem: revoked" in out
    assert "Reason: keyCompromise" in out


def test_ocsp_unknown_serial(server: Home, work: Path) -> None:
    out = ocsp_check(server, work, "", extra=("-serial", "0x1234567890abcdef"))
    assert "Response verify OK" in out
    assert ": unknown" in out


def test_ocsp_hold_and_release(server: Home, work: Path) -> None:
    cert = issue(server, work, "held")
    serial = format(cert.serial_number, "x")
    server.cli("ca", "revoke", serial, "--reason", "certificateHold")
    out = ocsp_check(server, work, "held")
    assert "held.pem: revoked" in out and "Reason: certificateHold" in out
    server.cli("ca", "release", serial)
    assert "held.pem: good" in ocsp_check(server, work, "held")


def test_ocsp_get_without_nonce_is_cached_but_never_stale(server: Home, work: Path) -> None:
    cert = issue(server, work, "getter")
    staff = x509.load_pem_x509_certificate((work / "staff.pem").read_bytes())
    request = ocsp.OCSPRequestBuilder().add_certificate(cert, staff, hashes.SHA256()).build()
    encoded = base64.b64encode(request.public_bytes(serialization.Encoding.DER)).decode()
    url = server.url("/ocsp/staff/" + urllib.request.quote(encoded, safe=""))
    first = ocsp.load_der_ocsp_response(fetch(url))
    second = ocsp.load_der_ocsp_response(fetch(url))
    assert first.certificate_status == ocsp.OCSPCertStatus.GOOD
    assert first.produced_at_utc == second.produced_at_utc  # pre-produced: the same signed answer
    server.cli("ca", "revoke", format(cert.serial_number, "x"), "--reason", "superseded")
    third = ocsp.load_der_ocsp_response(fetch(url))
    assert third.certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert third.revocation_reason == x509.ReasonFlags.superseded


def test_ocsp_foreign_issuer_is_unauthorized(server: Home, work: Path) -> None:
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
        "other.key", "-subj", "/CN=Unrelated CA", "-days", "2", "-out", "other.pem", cwd=work)
    result = run("openssl", "ocsp", "-issuer", "other.pem", "-serial", "0x01", "-url", server.url("/ocsp/staff"),
                 "-noverify", cwd=work, check=False)
    assert "unauthorized" in (result.stdout + result.stderr)


def test_crl_check_before_and_after_revocation(server: Home, work: Path) -> None:
    cert = issue(server, work, "crluser")
    cdp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    url = cdp[0].full_name[0].value
    assert url == server.url("/crl/staff.crl")

    def crl_verify() -> subprocess.CompletedProcess[str]:
        crl = x509.load_der_x509_crl(fetch(url))
        (work / "staff.crl.pem").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
        return run("openssl", "verify", "-crl_check", "-CAfile", "root.pem", "-untrusted", "staff.pem",
                   "-CRLfile", "staff.crl.pem", "crluser.pem", cwd=work, check=False)

    before = crl_verify()
    assert before.returncode == 0, before.stdout + before.stderr
    number_before = x509.load_der_x509_crl(fetch(url)).extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    server.cli("ca", "revoke", format(cert.serial_number, "x"), "--reason", "affiliationChanged")
    after = crl_verify()
    assert after.returncode != 0
    assert "certificate revoked" in after.stdout + after.stderr
    crl = x509.load_der_x509_crl(fetch(url))
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number > number_before
    entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.affiliation_changed


def test_timestamp_verified_by_openssl_ts(server: Home, work: Path) -> None:
    (work / "document.txt").write_bytes(b"Decision 2026/11 of the Ministry of Finance\n")
    run("openssl", "ts", "-query", "-data", "document.txt", "-sha256", "-cert", "-out", "q.tsq", cwd=work)
    req = urllib.request.Request(server.url("/tsa"), data=(work / "q.tsq").read_bytes(),
                                 headers={"Content-Type": "application/timestamp-query"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as response:
        assert response.headers["Content-Type"] == "application/timestamp-reply"
        (work / "r.tsr").write_bytes(response.read())
    out = run("openssl", "ts", "-verify", "-data", "document.txt", "-in", "r.tsr", "-CAfile", "root.pem",
              "-untrusted", "staff.pem", cwd=work)
    assert "Verification: OK" in out.stdout
    (work / "other.txt").write_bytes(b"something else\n")
    tampered = run("openssl", "ts", "-verify", "-data", "other.txt", "-in", "r.tsr", "-CAfile", "root.pem",
                   "-untrusted", "staff.pem", cwd=work, check=False)
    assert "Verification: OK" not in tampered.stdout


def test_pkcs11_tool_shows_ca_keys_sensitive_and_never_extractable(server: Home) -> None:
    pin = (server.path / "secrets" / "ca-token.pin").read_text().strip()
    result = subprocess.run(
        ["pkcs11-tool", "--module", "/usr/lib/softhsm/libsofthsm2.so", "--token-label", "tessera-ca",
         "--login", "--pin", pin, "--list-objects", "--type", "privkey"],
        env={**server.env, "SOFTHSM2_CONF": str(server.path / "softhsm" / "softhsm2.conf")},
        capture_output=True, text=True, timeout=30, check=True,
    )
    blocks = {}
    for block in result.stdout.split("Private Key Object")[1:]:
        label = next(line.split(":", 1)[1].strip() for line in block.splitlines() if "label:" in line)
        blocks[label] = block
    assert {"tessera-root", "tessera-staff-ca", "tessera-citizen-ca", "tessera-ocsp-staff", "tessera-tsa-staff"} <= set(blocks)
    for label in ("tessera-staff-ca", "tessera-citizen-ca", "tessera-root"):
        access = next(line for line in blocks[label].splitlines() if "Access:" in line)
        assert "sensitive" in access and "never extractable" in access, access
        usage = next(line for line in blocks[label].splitlines() if "Usage:" in line)
        assert usage.split(":", 1)[1].strip() == "sign", usage
