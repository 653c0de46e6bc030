"""Staff certificates: the subject and SAN come from the directory entry, never the CSR; a staff
member lists and revokes only their own. Judged by openssl."""

from __future__ import annotations

import re
import subprocess

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.fixtures_web import *  # noqa: F401,F403
from tests.fixtures_web import IdpServer, StaffAgent, csrf_of


def english(agent: StaffAgent) -> StaffAgent:
    """The agent reads the pages in English (the default language is Chinese; the words asserted here are English)."""
    agent.headers["Accept-Language"] = "en"
    return agent


def hostile_csr() -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Chief Administrator"),
                                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Somebody Else")]))
           .add_extension(x509.SubjectAlternativeName([x509.RFC822Name("boss@evil.example"), x509.DNSName("evil.example")]),
                          critical=False)
           .sign(key, hashes.SHA256()))
    return key, csr.public_bytes(serialization.Encoding.PEM)


def test_subject_from_directory_not_csr(idp: IdpServer, staff_user: tuple[str, str], tmp_path) -> None:  # type: ignore[no-untyped-def]
    agent = english(StaffAgent(idp, *staff_user))
    agent.login()
    key, csr = hostile_csr()
    page = agent.get(idp.url("/account"))
    issued = agent.post(idp.url("/account/certificates"), data={"csr": csr.decode(), "csrf_token": csrf_of(page.text)})
    assert issued.status_code == 201, issued.text[:400]
    serial = re.search(r'id="issued">Certificate <code>([0-9a-fA-F]+)</code>', issued.text).group(1)
    pem = agent.get(idp.url(f"/account/certificates/{serial}.pem"))
    assert pem.status_code == 200
    (tmp_path / "cert.pem").write_bytes(pem.content)
    text = subprocess.run(["openssl", "x509", "-in", str(tmp_path / "cert.pem"), "-noout", "-text", "-nameopt", "RFC2253,-esc_msb"],
                          capture_output=True, text=True, check=True).stdout
    assert "Chief Administrator" not in text and "evil.example" not in text and "Somebody Else" not in text
    uid = staff_user[0]
    assert f"email:{uid}@finance.tessera.example" in text
    assert f"CN=Wendy Web{uid[-4:]}" in text and "OU=湘西土家族苗族自治州财政局" in text  # the department's name
    cert = x509.load_pem_x509_certificate(pem.content)
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()  # the CSR's key, nothing else
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])
    # the chain verifies with openssl
    chain = requests.get(idp.url("/ca/staff/chain.pem"), timeout=10).content
    (tmp_path / "chain.pem").write_bytes(chain)
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(tmp_path / "chain.pem"), str(tmp_path / "cert.pem")],
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_own_certificates_listed_and_revocable_only_by_owner(idp: IdpServer, staff_user: tuple[str, str], slapd) -> None:  # type: ignore[no-untyped-def]
    owner = english(StaffAgent(idp, *staff_user))
    owner.login()
    _, csr = hostile_csr()
    page = owner.get(idp.url("/account"))
    issued = owner.post(idp.url("/account/certificates"), files={"csr_file": ("me.csr", csr)},
                        data={"csrf_token": csrf_of(page.text)})
    assert issued.status_code == 201
    serial = re.search(r'id="issued">Certificate <code>([0-9a-fA-F]+)</code>', issued.text).group(1)

    from tests.fixtures_web import PASSWORD, new_uid

    other_uid = new_uid("o")
    slapd.create_user(other_uid, PASSWORD)
    other = english(StaffAgent(idp, other_uid, PASSWORD))
    other_page = other.login()
    assert serial not in other_page.text
    for confirm in ("", "yes"):  # neither the confirmation page nor the act for someone else's
        stolen = other.post(idp.url(f"/account/certificates/{serial}/revoke"),
                            data={"reason": "keyCompromise", "confirm": confirm, "csrf_token": csrf_of(other_page.text)})
        assert stolen.status_code == 404
    assert other.get(idp.url(f"/account/certificates/{serial}.pem")).status_code == 404

    page = owner.get(idp.url("/account"))
    assert serial in page.text
    where = idp.url(f"/account/certificates/{serial}/revoke")
    # first a page saying what will happen; nothing is revoked yet
    asked = owner.post(where, data={"reason": "keyCompromise", "csrf_token": csrf_of(page.text)})
    assert asked.status_code == 200 and 'id="confirm-revoke"' in asked.text and 'id="revoke-consequences"' in asked.text
    assert 'name="reason" value="keyCompromise"' in asked.text
    crl = x509.load_der_x509_crl(requests.get(idp.url("/crl/staff.crl"), timeout=10).content)
    assert crl.get_revoked_certificate_by_serial_number(int(serial, 16)) is None
    revoked = owner.post(where, data={"reason": "keyCompromise", "confirm": "yes", "csrf_token": csrf_of(page.text)})
    assert revoked.status_code == 200 and 'id="revoke-done"' in revoked.text
    again = owner.post(where, data={"reason": "keyCompromise", "csrf_token": csrf_of(page.text)})
    assert again.status_code == 409  # revoked already: no second confirmation
    crl = x509.load_der_x509_crl(requests.get(idp.url("/crl/staff.crl"), timeout=10).content)
    entry = crl.get_revoked_certificate_by_serial_number(int(serial, 16))
    assert entry is not None


def test_bad_csr_is_a_clear_400(idp: IdpServer, staff_user: tuple[str, str]) -> None:
    agent = english(StaffAgent(idp, *staff_user))
    agent.login()
    page = agent.get(idp.url("/account"))
    bad = agent.post(idp.url("/account/certificates"), data={"csr": "-----BEGIN CERTIFICATE REQUEST-----\nnonsense\n",
                                                            "csrf_token": csrf_of(page.text)})
    assert bad.status_code == 400 and "refused" in bad.text


def test_cli_request_with_both_factors(idp: IdpServer, staff_user: tuple[str, str], tmp_path) -> None:  # type: ignore[no-untyped-def]
    agent = english(StaffAgent(idp, *staff_user))
    agent.login()
    _, csr = hostile_csr()
    (tmp_path / "req.pem").write_bytes(csr)
    import time

    import pyotp

    valid = {pyotp.TOTP(agent.secret).at(time.time() + offset) for offset in (-60, -30, 0, 30, 60)}
    wrong_code = next(c for c in ("000000", "111111", "222222", "333333", "444444", "555555") if c not in valid)
    wrong = idp.cli("cert", "request", "--user", staff_user[0], "--csr", str(tmp_path / "req.pem"), "--password-stdin",
                    input=f"{staff_user[1]}\n{wrong_code}\n".encode(), check=False)
    assert wrong.returncode != 0 and b"Traceback" not in wrong.stderr
    ok = idp.cli("cert", "request", "--user", staff_user[0], "--csr", str(tmp_path / "req.pem"), "--password-stdin",
                 "--out", str(tmp_path / "cli.pem"), input=f"{staff_user[1]}\n{agent.code()}\n".encode())
    assert ok.returncode == 0
    cert = x509.load_pem_x509_certificate((tmp_path / "cli.pem").read_bytes())
    emails = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.RFC822Name)
    assert emails == [f"{staff_user[0]}@finance.tessera.example"]
    listed = idp.cli("cert", "list", "--user", staff_user[0]).stdout.decode()
    assert format(cert.serial_number, "x") in listed.lower()
    bad_password = idp.cli("cert", "request", "--user", staff_user[0], "--csr", str(tmp_path / "req.pem"), "--password-stdin",
                           input=b"wrong\n123456\n", check=False)
    assert bad_password.returncode == 1 and b"incorrect" in bad_password.stderr
