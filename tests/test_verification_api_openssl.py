"""Interoperability: the API's revocation verdict agrees with `openssl ocsp` (against our OCSP
responder over HTTP) and `openssl verify -crl_check` (with the CRL from the CDP URL), for a good
card certificate and a revoked one."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tests.fixtures_citizen import *  # noqa: F401,F403
from tests.fixtures_citizen import CitizenIdp, agent_card


def _openssl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("name", ["bob", "lost-openssl"])
def test_api_agrees_with_openssl_ocsp_and_crl(citizen_idp: CitizenIdp, tmp_path: Path, name: str) -> None:
    if name == "lost-openssl":
        from tests.fixtures_cards import issue_card

        card = issue_card(citizen_idp, 777, tmp_path)
        agent = citizen_idp.start_agent(name, card)
        citizen_idp.cli("card", "lost", card.number)
    else:
        agent = citizen_idp.agents[name]
    der = base64.b64decode(agent_card(citizen_idp, agent)["certificate"])
    cert = x509.load_der_x509_certificate(der)
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(Encoding.PEM))
    chain = citizen_idp.cli("ca", "export-chain", "--ca", "citizen").stdout
    (tmp_path / "chain.pem").write_bytes(chain)
    end = b"-----END CERTIFICATE-----"
    (tmp_path / "citizen.pem").write_bytes(chain.split(end)[0] + end + b"\n")
    aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    ocsp_url = next(d.access_location.value for d in aia if d.access_method == x509.AuthorityInformationAccessOID.OCSP)
    cdp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    crl_url = cdp[0].full_name[0].value
    (tmp_path / "crl.der").write_bytes(requests.get(crl_url, timeout=30).content)
    converted = _openssl("crl", "-inform", "DER", "-in", str(tmp_path / "crl.der"), "-out", str(tmp_path / "crl.pem"))
    assert converted.returncode == 0

    ocsp = _openssl("ocsp", "-issuer", str(tmp_path / "citizen.pem"), "-cert", str(tmp_path / "cert.pem"),
                    "-url", ocsp_url, "-CAfile", str(tmp_path / "chain.pem"), "-no_nonce")
    assert ocsp.returncode == 0, ocsp.stderr
    assert "Response verify OK" in ocsp.stderr + ocsp.stdout
    openssl_ocsp = "revoked" if f"{tmp_path / 'cert.pem'}: revoked" in ocsp.stdout else (
        "good" if f"{tmp_path / 'cert.pem'}: good" in ocsp.stdout else "unknown")
    verify = _openssl("verify", "-crl_check", "-CAfile", str(tmp_path / "chain.pem"),
                      "-CRLfile", str(tmp_path / "crl.pem"), str(tmp_path / "cert.pem"))
    openssl_crl = "good" if verify.returncode == 0 else (
        "revoked" if "certificate revoked" in verify.stdout + verify.stderr else "error")

    verdicts = {}
    for source in ("ocsp", "crl"):
        body = citizen_idp.api("/certificates/verify", {"certificate": cert.public_bytes(Encoding.PEM).decode(),
                                                        "purpose": "citizen-auth", "revocation_source": source}).json()
        verdicts[source] = body["revocation"]["status"]
    expected = "revoked" if name == "lost-openssl" else "good"
    assert openssl_ocsp == verdicts["ocsp"] == expected
    assert openssl_crl == verdicts["crl"] == expected
