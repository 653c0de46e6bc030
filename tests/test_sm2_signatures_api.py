"""SM2 where a signature is checked over HTTP (issue 18, item 3): citizen login with an SM2 card
key, ``signatures/verify`` with hash ``sm3`` and signed records (CMS SignedData, GB/T 35275-2017)
signed SM2 with SM3; and no 5xx for a certificate of a version above v3 (issue 15, item 1) at
every entry point that loads outside certificates.

One `tessera init --sm2` home (the standard signer identity) served in this process (Flask's test
client). SoftHSM2 has no SM2 mechanism, so a software SM2 key stands in for the card: made by
`openssl req -newkey sm2`, signing through GmSSL (:mod:`ca.sm2`) or `openssl pkeyutl`. OpenSSL
3.0's `cms -sign` cannot sign with an SM2 key ("illegal zero content": it sets no
signatureAlgorithm), so the SignedData is assembled here around an OpenSSL-made signature, and
`openssl cms -verify` (which verifies SM2 with Z of the empty identity) judges beside Tessera."""

from __future__ import annotations

import base64
import datetime
import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from asn1crypto import algos, cms, keys, pem
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy.orm import Session

from ca import sm2
from tests.conftest import Home
from tests.servers import free_port, run_tessera, tessera_env
from tests.test_sm_suite import sm2_csr
from tests.test_verification_pkits_api import _service_assertion
from verification.cms import open_signed_data as package_open
from verification.signed_data import open_signed_data as hand_open

pytestmark = pytest.mark.integration

API = "/api/v1"
#: the signatureAlgorithm of a SignerInfo: SM2-with-SM3, sm2-1 (GB/T 35275), id-ecPublicKey, ecdsa-with-SHA256
SM2_WITH_SM3, SM2_1, EC_PUBLIC_KEY, ECDSA_SHA256 = (sm2.SM2_WITH_SM3_OID, "1.2.156.10197.1.301.1",
                                                    sm2.EC_PUBLIC_KEY_OID, "1.2.840.10045.4.3.2")


@dataclass
class SoftCard:
    """A software SM2 key (made by OpenSSL, its key file in ``folder``) and its certificate."""

    name: str
    certificate: x509.Certificate
    private: bytes
    folder: Path

    @property
    def b64(self) -> str:
        return base64.b64encode(self.certificate.public_bytes(Encoding.DER)).decode()

    def openssl_sign(self, data: bytes, signer_id: bytes | None = sm2.DEFAULT_SIGNER_ID) -> bytes:
        """The SM2 signature of ``data`` by `openssl pkeyutl` (DER; Z of ``signer_id``, OpenSSL's empty one for None)."""
        (self.folder / "to-sign").write_bytes(data)
        distid = ("-pkeyopt", f"distid:{signer_id.decode()}") if signer_id else ()
        made = subprocess.run(["openssl", "pkeyutl", "-sign", "-inkey", f"{self.name}.key", "-rawin", "-digest", "sm3",
                               *distid, "-in", "to-sign", "-out", "signature"], cwd=self.folder, capture_output=True,
                              text=True, timeout=60)
        assert made.returncode == 0, made.stderr
        return (self.folder / "signature").read_bytes()


def _spki(certificate: x509.Certificate) -> sm2.Sm2PublicKey:
    from asn1crypto import x509 as asn1_x509

    loaded = asn1_x509.Certificate.load(certificate.public_bytes(Encoding.DER))
    return sm2.Sm2PublicKey.from_spki(loaded["tbs_certificate"]["subject_public_key_info"].dump())


def _private_scalar(key_file: Path) -> bytes:
    """The 32-byte private key of OpenSSL's PKCS#8 SM2 key file (RFC 5915 ECPrivateKey inside)."""
    _, _, der = pem.unarmor(key_file.read_bytes())
    return int(keys.PrivateKeyInfo.load(der)["private_key"].parsed["private_key"].native).to_bytes(32, "big")


def version_4(certificate: x509.Certificate) -> bytes:
    """``certificate``'s DER with its version field 3 (v4, RFC 5280 section 4.1.2.1 knows v1-v3 only)."""
    der = certificate.public_bytes(Encoding.DER)
    at = der.index(bytes.fromhex("a003020102"))
    return der[:at] + bytes.fromhex("a003020103") + der[at + 5:]


@dataclass
class Sm2Api:
    client: Any
    url: str
    assertion: str
    card: SoftCard
    signer: SoftCard
    folder: Path

    def api(self, path: str, body: dict[str, Any], assertion: str | None = None) -> Any:
        return self.client.post(API + path, data=json.dumps(body), content_type="application/json",
                                headers={"Authorization": "Bearer " + (assertion or self.assertion)})

    def login(self, token: Any, nonce: str | None = None, csrf: str | None = None) -> Any:
        """The login page's steps: page, challenge, then ``token`` (a function of the nonce)."""
        if csrf is None:
            match = re.search(r'data-csrf="([^"]+)"', self.client.get("/citizen/login").get_data(as_text=True))
            assert match
            csrf = match.group(1)
        challenge = self.client.post("/citizen/login/challenge", json={}, headers={"X-CSRF-Token": csrf})
        assert challenge.status_code == 200, challenge.get_data(as_text=True)
        nonce = nonce or challenge.get_json()["nonce"]
        return self.client.post("/citizen/login/token", json={"token": token(nonce), "nonce": nonce},
                                headers={"X-CSRF-Token": csrf})


def _issue(env: dict[str, str], folder: Path, name: str, profile: str, subject: str) -> SoftCard:
    sm2_csr(folder, name, subject)
    run_tessera(env, "ca", "issue", "--profile", profile, "--csr", str(folder / f"{name}.csr"),
                "--out", str(folder / f"{name}.pem"))
    certificate = x509.load_pem_x509_certificate((folder / f"{name}.pem").read_bytes())
    return SoftCard(name, certificate, _private_scalar(folder / f"{name}.key"), folder)


@pytest.fixture(scope="module")
def sm2_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sm2Api]:
    """The home with both hierarchies; an SM2 citizen-auth certificate registered as a card's (the
    card row written as `tessera card issue` would, its key a software one) and an SM2 staff-sign
    certificate; a service assertion of an ECDSA service certificate for the API."""
    folder = tmp_path_factory.mktemp("sm2-api")
    url = f"http://127.0.0.1:{free_port()}"  # never listened on: the app runs in this process
    env = tessera_env(folder / "home", url, TESSERA_API_RATE_PER_SECOND="100000")
    run_tessera(env, "init", "--sm2")
    card = _issue(env, folder, "card", "citizen-auth", "/C=CN/serialNumber=PNOCN-430000199001011234/CN=李娜")
    signer = _issue(env, folder, "signer", "staff-sign", "/C=CN/O=湘西州财政局/CN=王芳")
    assertion, _ = _service_assertion(Home(folder / "home", url, 0), env, folder)
    saved = {k: v for k, v in os.environ.items() if k.startswith(("TESSERA_", "SOFTHSM2_"))}
    for name in saved:
        del os.environ[name]
    os.environ.update({k: v for k, v in env.items() if k.startswith(("TESSERA_", "SOFTHSM2_"))})
    from idp.app import create_app
    from idp.settings import Settings

    app = create_app(Settings.from_env(folder / "home", env))
    try:
        _register_card(app, card.certificate)
        yield Sm2Api(app.test_client(), url, assertion, card, signer, folder)
    finally:
        app.extensions["tessera"].close()
        for name in [k for k in os.environ if k.startswith(("TESSERA_", "SOFTHSM2_"))]:
            del os.environ[name]
        os.environ.update(saved)


def _register_card(app: Any, certificate: x509.Certificate) -> None:
    """A card row for ``certificate`` (as its authentication and signing certificate)."""
    from ca.models import Certificate
    from cardsim.models import Card, CardStatus

    deployment = app.extensions["tessera"]
    now = datetime.datetime.now(datetime.timezone.utc)
    with Session(deployment.engine) as session, session.begin():
        row = session.query(Certificate).filter_by(serial_hex=format(certificate.serial_number, "x")).one()
        session.add(Card(number="90000000001", national_id="430000199001011234", holder="李娜",
                         status=CardStatus.ACTIVE, token_serial="sm2-software", issued_at=now,
                         expires_at=certificate.not_valid_after_utc, auth_certificate_id=row.id,
                         sign_certificate_id=row.id))


def _token(card: SoftCard, signature: bytes, algorithm: str = "SM2SM3", certificate: str | None = None) -> dict[str, str]:
    return {"unverifiedCertificate": certificate or card.b64, "algorithm": algorithm,
            "signature": base64.b64encode(signature).decode(), "format": "web-eid:1.0", "appVersion": "test"}


def _login_data(origin: str, nonce: str) -> bytes:
    return sm2.sm3(origin.encode()) + sm2.sm3(nonce.encode())


# --- citizen login ---------------------------------------------------------------------------
def test_citizen_login_with_an_sm2_card_key(sm2_api: Sm2Api) -> None:
    card = sm2_api.card
    public = _spki(card.certificate)

    def gmssl(nonce: str) -> dict[str, str]:
        return _token(card, sm2.sign(card.private, public, _login_data(sm2_api.url, nonce)))

    answer = sm2_api.login(gmssl)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.get_json()["citizen"]["card"] == "90000000001"
    # the same with OpenSSL's signature (DER), and as r || s
    answer = sm2_api.login(lambda nonce: _token(card, card.openssl_sign(_login_data(sm2_api.url, nonce))))
    assert answer.status_code == 200, answer.get_data(as_text=True)

    def raw(nonce: str) -> dict[str, str]:
        from asn1crypto.algos import DSASignature

        value = DSASignature.load(sm2.sign(card.private, public, _login_data(sm2_api.url, nonce))).native
        return _token(card, value["r"].to_bytes(32, "big") + value["s"].to_bytes(32, "big"))

    assert sm2_api.login(raw).status_code == 200


def test_sm2_login_refusals(sm2_api: Sm2Api) -> None:
    card = sm2_api.card
    public = _spki(card.certificate)

    def refused(answer: Any) -> str:
        assert answer.status_code == 403, answer.get_data(as_text=True)
        return str(answer.get_json()["type"]).rsplit("/", 1)[-1]

    other_origin = lambda nonce: _token(card, sm2.sign(card.private, public,  # noqa: E731
                                                       _login_data("https://tessera-login.example", nonce)))
    assert refused(sm2_api.login(other_origin)) == "signature-invalid"
    another_id = lambda nonce: _token(card, sm2.sign(card.private, public,  # noqa: E731
                                                     _login_data(sm2_api.url, nonce), b"ALICE123@YAHOO.COM"))
    assert refused(sm2_api.login(another_id)) == "signature-invalid"
    as_ecdsa = lambda nonce: _token(card, sm2.sign(card.private, public, _login_data(sm2_api.url, nonce)),  # noqa: E731
                                    algorithm="ES256")
    assert refused(sm2_api.login(as_ecdsa)) == "signature-invalid"
    # the SM2 staff-sign certificate is not a citizen's authentication certificate
    staff = lambda nonce: _token(sm2_api.signer, sm2.sign(sm2_api.signer.private, _spki(sm2_api.signer.certificate),  # noqa: E731
                                                          _login_data(sm2_api.url, nonce)))
    assert refused(sm2_api.login(staff)) == "certificate-wrong-purpose"


# --- signatures/verify -----------------------------------------------------------------------
def test_signatures_verify_an_sm2_signature(sm2_api: Sm2Api) -> None:
    signer = sm2_api.signer
    message = "湘西州财政局 电子公文 第 42 号".encode()
    signature = signer.openssl_sign(message)
    body = {"data": base64.b64encode(message).decode(), "hash_algorithm": "sm3",
            "signature": base64.b64encode(signature).decode(), "certificate": signer.b64}
    good = sm2_api.api("/signatures/verify", body)
    assert good.status_code == 200 and good.get_json()["valid"] is True, good.get_json()
    # over the digest e = SM3(Z || M), Z of the default identity (GB/T 32918.2 section 6.1, A1-A2)
    e = sm2.sm3(_spki(signer.certificate).z() + message)
    by_digest = sm2_api.api("/signatures/verify", {**{k: v for k, v in body.items() if k != "data"},
                                                   "digest": base64.b64encode(e).decode()})
    assert by_digest.status_code == 200 and by_digest.get_json()["valid"] is True, by_digest.get_json()
    for changed in ({"data": base64.b64encode(message + b"!").decode()}, {"hash_algorithm": "sha256"},
                    {"signature": base64.b64encode(signer.openssl_sign(message, b"ALICE123@YAHOO.COM")).decode()}):
        answer = sm2_api.api("/signatures/verify", {**body, **changed})
        assert answer.status_code == 200, answer.get_data(as_text=True)
        assert {r["code"] for r in answer.get_json()["reasons"]} == {"bad-signature"}, (changed, answer.get_json())
    # an ECDSA key never verifies "sm3"
    key = ec.generate_private_key(ec.SECP256R1())
    ecdsa = {**body, "signature": base64.b64encode(key.sign(message, ec.ECDSA(hashes.SHA256()))).decode(),
             "certificate": _self_signed(key)}
    assert "bad-signature" in {r["code"] for r in sm2_api.api("/signatures/verify", ecdsa).get_json()["reasons"]}


def _self_signed(key: ec.EllipticCurvePrivateKey) -> str:
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "not SM2")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    return cert.public_bytes(Encoding.PEM).decode()


# --- signed records --------------------------------------------------------------------------
def signed_record(signer: SoftCard, content: bytes, signer_id: bytes | None = sm2.DEFAULT_SIGNER_ID,
                  signature_algorithm: str = SM2_WITH_SM3, digest_algorithm: str = sm2.SM3_OID,
                  certificates: list[bytes] | None = None, no_z: bool = False) -> bytes:
    """A CMS SignedData over ``content`` (RFC 5652 section 5; GB/T 35275-2017 for SM2) assembled
    with asn1crypto around the signature `openssl pkeyutl` makes over the signed attributes (with
    ``no_z``, GmSSL's over their bare SM3 digest, as ca.cms signs for a key of the empty identity)."""
    from asn1crypto import x509 as asn1_x509

    certificate = asn1_x509.Certificate.load(signer.certificate.public_bytes(Encoding.DER))
    digest = sm2.sm3(content) if digest_algorithm == sm2.SM3_OID else hashes_sha256(content)
    attributes = cms.CMSAttributes([
        {"type": "content_type", "values": ["data"]},
        {"type": "signing_time", "values": [cms.Time({"utc_time": datetime.datetime.now(datetime.timezone.utc)
                                                     .replace(microsecond=0)})]},
        {"type": "message_digest", "values": [digest]},
    ])
    signature = (sm2.sign_digest(signer.private, sm2.sm3(attributes.dump())) if no_z
                 else signer.openssl_sign(attributes.dump(), signer_id))
    signer_info = cms.SignerInfo({
        "version": "v1",
        "sid": cms.SignerIdentifier({"issuer_and_serial_number": {"issuer": certificate.issuer,
                                                                  "serial_number": certificate.serial_number}}),
        "digest_algorithm": algos.DigestAlgorithm({"algorithm": digest_algorithm}),
        "signed_attrs": attributes,
        "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": signature_algorithm}),
        "signature": signature,
    })
    carried = [asn1_x509.Certificate.load(c) for c in certificates] if certificates is not None else [certificate]
    signed = cms.SignedData({
        "version": "v1", "digest_algorithms": [algos.DigestAlgorithm({"algorithm": digest_algorithm})],
        "encap_content_info": {"content_type": "data", "content": content},
        "certificates": carried, "signer_infos": [signer_info],
    })
    return cms.ContentInfo({"content_type": "signed_data", "content": signed}).dump()


def hashes_sha256(content: bytes) -> bytes:
    import hashlib

    return hashlib.sha256(content).digest()


def openssl_verifies(folder: Path, record: bytes) -> bool:
    """`openssl cms -verify` on ``record``, the signature only (OpenSSL 3.0: Z of the empty identity)."""
    (folder / "record.der").write_bytes(record)
    out = subprocess.run(["openssl", "cms", "-verify", "-inform", "DER", "-in", "record.der", "-noverify", "-binary",
                          "-out", "content"], cwd=folder, capture_output=True, text=True, timeout=60)
    return out.returncode == 0


def both_openings(record: bytes) -> tuple[bool, str]:
    """verification.cms (asn1crypto) and the reader's hand walk: the same verdict, and its reason."""
    opened, reason = package_open(record)
    walked, check = hand_open(record)
    assert (opened is None) == (walked is None), (reason, check)
    if opened is not None and walked is not None:
        assert opened.content == walked.content and opened.signer == walked.signer
        return True, ""
    assert reason is not None
    return False, reason.code


def test_signed_records_signed_sm2_with_sm3(sm2_api: Sm2Api, tmp_path: Path) -> None:
    signer = sm2_api.signer
    content = json.dumps({"data": {"national_id": "430000199001011234", "tax_year": 2025}}).encode()
    record = signed_record(signer, content)
    answer = sm2_api.api("/signed-records/verify", {"record": base64.b64encode(record).decode()})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    body = answer.get_json()
    assert body["valid"] is True, body
    assert base64.b64decode(body["content"]) == content and body["signer"]["profile"] == "staff-sign"
    # each form a Tessera verifier accepts, and what OpenSSL 3.0 says of the same bytes where it can
    # judge (it verifies SM2 in CMS with Z of the empty identity only)
    cases = {
        "standard identity, SM2-with-SM3": (signed_record(signer, content), True, None),
        "empty identity": (signed_record(signer, content, None), True, True),
        "sm2-1 (GB/T 35275)": (signed_record(signer, content, None, SM2_1), True, True),
        "id-ecPublicKey": (signed_record(signer, content, None, EC_PUBLIC_KEY), True, True),
        "ecdsa-with-SHA256 named": (signed_record(signer, content, None, ECDSA_SHA256), False, None),
        "SHA-256 digest": (signed_record(signer, content, None, digest_algorithm="2.16.840.1.101.3.4.2.1"),
                           False, None),
        "another identity": (signed_record(signer, content, b"ALICE123@YAHOO.COM"), False, False),
        "no Z": (signed_record(signer, content, no_z=True), False, False),
    }
    disagreements = []
    for name, (der, valid, openssl) in cases.items():
        ours, reason = both_openings(der)
        theirs = openssl_verifies(tmp_path, der) if openssl is not None else None
        if ours != valid or theirs != openssl:
            disagreements.append((name, ours, reason, theirs))
    assert not disagreements, disagreements
    tampered = bytearray(record)
    tampered[record.index(b"tax_year")] ^= 0x01
    assert both_openings(bytes(tampered)) == (False, "digest-mismatch")
    assert not openssl_verifies(tmp_path, bytes(tampered))
    refused = sm2_api.api("/signed-records/verify", {"record": base64.b64encode(bytes(tampered)).decode()})
    assert refused.status_code == 200 and refused.get_json()["valid"] is False


# --- a version above v3: a refusal at every entry point, never a 5xx --------------------------
def test_a_v4_certificate_is_refused_at_every_entry_point(sm2_api: Sm2Api) -> None:
    v4 = version_4(sm2_api.card.certificate)
    with pytest.raises(x509.InvalidVersion):  # what cryptography raises: not a ValueError
        x509.load_der_x509_certificate(v4)
    text = base64.b64encode(v4).decode()
    # the API's certificate fields: a 400
    for path, body in (("/certificates/verify", {"certificate": text, "purpose": "citizen-auth"}),
                       ("/signatures/verify", {"data": "AA==", "signature": "AA==", "certificate": text}),
                       ("/certificates/verify", {"certificate": sm2_api.signer.b64, "purpose": "signing",
                                                 "chain": [text]})):
        answer = sm2_api.api(path, body)
        assert answer.status_code == 400, (path, answer.get_data(as_text=True))
    # in a service assertion's x5c, before any login: a 401
    key = ec.generate_private_key(ec.SECP256R1())
    now = int(datetime.datetime.now(datetime.timezone.utc).timestamp())
    assertion = jwt.encode({"iss": "x", "aud": sm2_api.url + API, "iat": now, "exp": now + 300}, key,
                           algorithm="ES256", headers={"x5c": [text]})
    answer = sm2_api.api("/certificates/verify", {"certificate": sm2_api.signer.b64, "purpose": "signing"}, assertion)
    assert answer.status_code == 401, answer.get_data(as_text=True)
    # citizen login: a 403 token-malformed
    answer = sm2_api.login(lambda _nonce: _token(sm2_api.card, b"\x30\x00", certificate=text))
    assert answer.status_code == 403 and answer.get_json()["type"].endswith("/token-malformed"), answer.get_json()
    # a signed record carrying it: refused as malformed by both openings, a verdict through the API
    record = signed_record(sm2_api.signer, b"record", certificates=[v4])
    assert both_openings(record) == (False, "malformed")
    answer = sm2_api.api("/signed-records/verify", {"record": base64.b64encode(record).decode()})
    assert answer.status_code == 200 and answer.get_json()["valid"] is False, answer.get_data(as_text=True)
    signer_v4 = version_4(sm2_api.signer.certificate)
    assert both_openings(signed_record(sm2_api.signer, b"record", certificates=[signer_v4]))[0] is False

