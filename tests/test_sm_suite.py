"""The SM2/SM3 suite (issue 18): known answers of the standards, OpenSSL 3 as the independent judge."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from asn1crypto import crl as asn1_crl
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import x509 as asn1_x509
from asn1crypto.algos import DSASignature
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from ca import sm2
from ca.authority import CertificateAuthority
from ca.errors import InvalidCsr, KeyPolicyViolation, KeyUnavailable
from ca.events import CaEvent
from ca.hierarchy import HierarchyPlan
from ca.issuance import load_csr
from ca.keyring import Keyring
from ca.keys import KeyType, SigningKey
from ca.ocsp import OcspResponder
from ca.profiles import PROFILES
from ca.timestamps import StoredTimeStampAuthority
from ca.tsa import TimeStampResp
from ca.urls import PublicUrls
from sqlalchemy.engine import Engine

from store import schema
from store.engine import make_engine, make_session_factory

#: GB/T 32918.5-2017 Annex A (= GM/T 0003.5-2012 Annex A): signature on the recommended curve
ANNEX_PUBLIC = bytes.fromhex(
    "09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020"
    "CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13")
ANNEX_PRIVATE = bytes.fromhex("3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8")
ANNEX_Z = bytes.fromhex("B2E14C5C79C6DF5B85F4FE7ED8DB7A262B9DA7E07CCB0EA9F4747B8CCDA8A4F3")
ANNEX_R = int("F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3", 16)
ANNEX_S = int("B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA", 16)


def openssl(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if check and result.returncode != 0:
        raise AssertionError(f"openssl {' '.join(args)} exited {result.returncode}: {result.stdout}{result.stderr}")
    return result


def test_sm3_known_answer() -> None:
    # GB/T 32905-2016 Annex A.1
    assert sm2.sm3(b"abc").hex() == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"


def test_standard_signature_verifies() -> None:
    key = sm2.Sm2PublicKey(ANNEX_PUBLIC)
    assert key.z() == ANNEX_Z  # identity 1234567812345678
    signature = DSASignature({"r": ANNEX_R, "s": ANNEX_S}).dump()
    assert key.verify(b"message digest", signature)
    assert not key.verify(b"message digesT", signature)
    assert not key.verify(b"message digest", signature, signer_id=b"ALICE123@YAHOO.COM")
    # and a signature by the standard's private key through GmSSL (random k) verifies too
    assert key.verify(b"message digest", sm2.sign(ANNEX_PRIVATE, key, b"message digest"))


def test_openssl_verifies_a_gmssl_signature(tmp_path: Path) -> None:
    private, public = sm2.generate()
    (tmp_path / "public.der").write_bytes(public.spki_der())
    (tmp_path / "message").write_bytes("签名的消息".encode())
    (tmp_path / "signature").write_bytes(sm2.sign(private, public, "签名的消息".encode()))
    verify = ("pkeyutl", "-verify", "-pubin", "-inkey", "public.der", "-keyform", "DER", "-rawin", "-digest", "sm3",
              "-in", "message", "-sigfile", "signature")
    # OpenSSL 3.0 takes an empty identity unless told the default one of GB/T 35276 section 10
    out = openssl(*verify, "-pkeyopt", "distid:1234567812345678", cwd=tmp_path).stdout
    assert "Signature Verified Successfully" in out
    assert openssl(*verify, cwd=tmp_path, check=False).returncode != 0


def test_sm2_keystore_seals_the_key(tmp_path: Path) -> None:
    passphrase = b"correct horse battery staple"
    ring = Keyring(None, lambda _path: passphrase)
    key = ring.generate("pkcs11", "tessera-sm2-root", KeyType.SM2, tmp_path)
    assert isinstance(key, SigningKey) and key.reference.startswith("sm2-soft:")
    path = Path(key.reference.partition(":")[2])
    assert path.stat().st_mode & 0o777 == 0o600
    sealed = json.loads(path.read_text())
    assert sealed["algorithm"] == "SM4-GCM" and sealed["kdf"] == "PBKDF2-HMAC-SM3"
    signature = key.sign(b"to be signed", hashes.SM3())
    # a fresh keyring unseals it and it is the same key
    again = Keyring(None, lambda _path: passphrase).get(key.reference)
    public = again.public_key()
    assert public == key.public_key() and isinstance(public, sm2.Sm2PublicKey)
    assert public.verify(b"to be signed", signature)
    with pytest.raises(KeyPolicyViolation):
        key.sign(b"x", hashes.SHA256())
    with pytest.raises(KeyUnavailable, match="wrong passphrase"):
        Keyring(None, lambda _path: b"another passphrase!").get(key.reference)
    sealed["public_key"] = base64.b64encode(sm2.generate()[1].point).decode()  # swap the public key
    path.write_text(json.dumps(sealed))
    with pytest.raises(KeyUnavailable, match="altered"):
        Keyring(None, lambda _path: passphrase).get(key.reference)


def test_a_key_signs_with_the_identity_it_was_made_with(tmp_path: Path) -> None:
    passphrase = b"correct horse battery staple"
    empty = Keyring(None, lambda _path: passphrase, sm2_signer_id=b"").generate("file", "k", KeyType.SM2, tmp_path)
    public = empty.public_key()
    assert isinstance(public, sm2.Sm2PublicKey)
    signature = empty.sign(b"data", hashes.SM3())
    assert public.verify(b"data", signature, b"") and not public.verify(b"data", signature)
    assert json.loads(Path(empty.reference.partition(":")[2]).read_text())["signer_id"] == ""
    # a keyring configured with the standard's identity refuses the key rather than mix identities
    with pytest.raises(KeyUnavailable, match="TESSERA_SM2_SIGNER_ID is '1234567812345678'"):
        Keyring(None, lambda _path: passphrase).get(empty.reference)
    assert Keyring(None, lambda _path: passphrase, sm2_signer_id=b"").get(empty.reference).public_key() == public
    # the recorded identity is authenticated: rewriting it breaks the seal
    path = Path(empty.reference.partition(":")[2])
    sealed = json.loads(path.read_text())
    sealed["signer_id"] = base64.b64encode(sm2.DEFAULT_SIGNER_ID).decode()
    path.write_text(json.dumps(sealed))
    with pytest.raises(KeyUnavailable, match="altered"):
        Keyring(None, lambda _path: passphrase).get(empty.reference)


@dataclass
class Sm2Home:
    """A CA in SQLite with the SM2 hierarchy, its OCSP responder and its SM2 TSA."""

    ca: CertificateAuthority
    ocsp: OcspResponder
    tsa: StoredTimeStampAuthority
    events: list[CaEvent]


def sm2_home(folder: Path, signer_id: bytes, with_ecdsa: bool) -> tuple[Sm2Home, Engine]:
    engine = make_engine(f"sqlite:///{folder / 'store.db'}")
    schema.upgrade(engine)
    events: list[CaEvent] = []
    keyring = Keyring(None, lambda _path: b"correct horse battery staple", sm2_signer_id=signer_id)
    sessions = make_session_factory(engine)
    ca = CertificateAuthority(sessions, keyring, PublicUrls("https://pki.gov.example"),
                              events=lambda _session, event: events.append(event))
    if with_ecdsa:
        ca.initialise(HierarchyPlan(backend="file", key_dir=folder / "keys"))
    made = ca.initialise(HierarchyPlan(key_type=KeyType.SM2, key_dir=folder / "keys"))
    assert [a.name for a in made] == ["sm2-root", "sm2-staff", "sm2-citizen"]
    assert {e.object for e in events if e.type == "cert.issue"} >= {f"cert:{a.serial_hex}" for a in made}
    home = Sm2Home(ca, OcspResponder(engine, keyring, ca.clock), StoredTimeStampAuthority(ca, sessions, "sm2-staff"),
                   events)
    return home, engine


@pytest.fixture(scope="module")
def standard_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sm2Home]:
    """An ECDSA hierarchy (file keys) with the SM2 hierarchy added beside it, signing with the
    standard's identity 1234567812345678."""
    home, engine = sm2_home(tmp_path_factory.mktemp("sm2-ca"), sm2.DEFAULT_SIGNER_ID, with_ecdsa=True)
    yield home
    engine.dispose()


@pytest.fixture(scope="module")
def sm2_ca(standard_home: Sm2Home) -> CertificateAuthority:
    return standard_home.ca


@pytest.fixture(scope="module")
def openssl_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sm2Home]:
    """An SM2 hierarchy signing with the empty identity (TESSERA_SM2_SIGNER_ID=""), as OpenSSL 3.0 verifies."""
    home, engine = sm2_home(tmp_path_factory.mktemp("sm2-openssl"), b"", with_ecdsa=False)
    yield home
    engine.dispose()


#: the default SM2 identity of GB/T 35276 section 10, which OpenSSL 3.0 must be given
DISTID = ("-vfyopt", "distid:1234567812345678")


def pem(der: bytes, label: str = "CERTIFICATE") -> bytes:
    body = base64.encodebytes(der).decode().replace("\n", "")
    lines = "\n".join(body[i:i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN {label}-----\n{lines}\n-----END {label}-----\n".encode()


def sm2_csr(folder: Path, name: str, subject: str, distid: bool = False) -> bytes:
    """An SM2 CSR as OpenSSL 3.0 makes one (`openssl req -newkey sm2 -sm3`)."""
    openssl("req", "-new", "-newkey", "sm2", "-nodes", "-keyout", f"{name}.key", "-sm3", "-subj", subject,
            *(("-sigopt", "distid:1234567812345678") if distid else ()), "-out", f"{name}.csr", cwd=folder)
    return (folder / f"{name}.csr").read_bytes()


SUBJECTS = {
    "staff-auth": "/C=CN/O=湘西州财政局/CN=王芳",
    "staff-sign": "/C=CN/O=湘西州财政局/CN=王芳",
    "citizen-auth": "/C=CN/serialNumber=430000199001011234/CN=李娜",
    "citizen-sign": "/C=CN/serialNumber=430000199001011234/CN=李娜",
    "service": "/C=CN/O=湘西州税务局/CN=tax records",
    "ocsp": "/C=CN/O=湘西州/CN=extra OCSP responder",
    "tsa": "/C=CN/O=湘西州/CN=extra TSA",
}


def test_openssl_verifies_every_sm2_profile(standard_home: Sm2Home, tmp_path: Path) -> None:
    sm2_ca = standard_home.ca
    for name in ("sm2-root", "sm2-staff", "sm2-citizen"):
        (tmp_path / f"{name}.pem").write_bytes(pem(sm2_ca.authority_certificate(name).public_bytes(Encoding.DER)))
    text = openssl("x509", "-in", "sm2-staff.pem", "-noout", "-text", cwd=tmp_path).stdout
    assert "SM2-with-SM3" in text and "ASN1 OID: SM2" in text
    for name in ("sm2-staff", "sm2-citizen"):
        out = openssl("verify", *DISTID, "-CAfile", "sm2-root.pem", f"{name}.pem", cwd=tmp_path)
        assert out.stdout.strip() == f"{name}.pem: OK"
    root = sm2_ca.authority_certificate("sm2-root")  # its self-signature, through GmSSL
    assert sm2.Sm2PublicKey.from_spki(
        asn1_x509.Certificate.load(root.public_bytes(Encoding.DER)).public_key.dump()
    ).verify(root.tbs_certificate_bytes, root.signature)
    # without the identity OpenSSL 3.0 fails: it is not a default it assumes
    assert openssl("verify", "-CAfile", "sm2-root.pem", "sm2-staff.pem", cwd=tmp_path, check=False).returncode != 0
    for profile in PROFILES:
        role = PROFILES[profile].issuers[0]
        row = sm2_ca.issue(profile, sm2_csr(tmp_path, profile, SUBJECTS[profile], distid=profile == "service"),
                           "test")
        assert sm2_ca.list_certificates(issuer=f"sm2-{role}", profile=profile)[0].serial_hex == row.serial_hex
        (tmp_path / f"{profile}.pem").write_bytes(pem(row.der))
        # OpenSSL 3.0 assumes an empty SM2 identity unless told the default one, and applies -vfyopt to
        # the certificate verified only, not to the chain (docs/sm2.md): so each link is judged alone
        verdict = openssl("verify", *DISTID, "-partial_chain", "-CAfile", f"sm2-{role}.pem", f"{profile}.pem",
                          cwd=tmp_path).stdout.strip()
        assert verdict == f"{profile}.pem: OK", verdict
        text = openssl("x509", "-in", f"{profile}.pem", "-noout", "-text", cwd=tmp_path).stdout
        assert "Signature Algorithm: SM2-with-SM3" in text
        assert "CA Issuers - URI:https://pki.gov.example/ca/sm2-" in text and "X509v3 CRL Distribution Points" in text
    issued = [e for e in standard_home.events if e.type == "cert.issue"]
    assert {e.details["profile"] for e in issued} >= set(PROFILES)


def test_suites_do_not_mix(sm2_ca: CertificateAuthority, tmp_path: Path) -> None:
    csr = sm2_csr(tmp_path, "mixed", "/C=CN/O=湘西州财政局/CN=王芳")
    with pytest.raises(KeyPolicyViolation, match="SM2"):
        sm2_ca.issue("staff-auth", csr, "test", issuer="staff")
    key = ec.generate_private_key(ec.SECP256R1())
    ecdsa_csr = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name.from_rfc4514_string("CN=Jane,O=Finance,C=CN")).sign(key, hashes.SHA256()).public_bytes(Encoding.DER)
    with pytest.raises(KeyPolicyViolation, match="SM2"):
        sm2_ca.issue("staff-auth", ecdsa_csr, "test", issuer="sm2-staff")
    assert sm2_ca.issue("staff-auth", ecdsa_csr, "test").issuer_id == sm2_ca.authorities()[1].id


def test_sm2_csr_signature_is_checked(tmp_path: Path) -> None:
    csr = bytearray(sm2_csr(tmp_path, "bad", "/CN=x"))
    der = base64.b64decode(b"".join(csr.splitlines()[1:-1]))
    tampered = der.replace(b"\x0c\x01x", b"\x0c\x01y")
    with pytest.raises(InvalidCsr, match="does not verify"):
        load_csr(tampered)


def gmssl_key(certificate_der: bytes) -> sm2.Sm2PublicKey:
    return sm2.Sm2PublicKey.from_spki(asn1_x509.Certificate.load(certificate_der).public_key.dump())


def write_authorities(home: Sm2Home, folder: Path) -> None:
    for name in ("sm2-root", "sm2-staff", "sm2-citizen"):
        (folder / f"{name}.pem").write_bytes(pem(home.ca.authority_certificate(name).public_bytes(Encoding.DER)))


def status_and_time(home: Sm2Home, folder: Path, leaf: str, issuer: str) -> tuple[bytes, bytes]:
    """An OCSP response on ``leaf`` (the request made by `openssl ocsp`) and an SM3 time-stamp reply."""
    openssl("ocsp", "-issuer", f"{issuer}.pem", "-cert", f"{leaf}.pem", "-reqout", "request.der", cwd=folder)
    reply = home.ocsp.respond((folder / "request.der").read_bytes())
    (folder / "response.der").write_bytes(reply.der)
    (folder / "document").write_bytes("会议纪要 2025-11-25".encode())
    openssl("ts", "-query", "-data", "document", "-sm3", "-cert", "-out", "query.tsq", cwd=folder)
    stamp = home.tsa.respond((folder / "query.tsq").read_bytes())
    assert stamp.granted, stamp.failure
    (folder / "reply.tsr").write_bytes(stamp.der)
    return reply.der, stamp.der


def test_gmssl_judges_crl_ocsp_and_time_stamps_of_the_standard_identity(standard_home: Sm2Home,
                                                                        tmp_path: Path) -> None:
    """CRLs, OCSP responses and tokens signed with Z of 1234567812345678, checked through GmSSL
    (OpenSSL 3.0 cannot be told the identity for them: docs/sm2.md)."""
    write_authorities(standard_home, tmp_path)
    staff = gmssl_key(standard_home.ca.authority_certificate("sm2-staff").public_bytes(Encoding.DER))
    row = standard_home.ca.issue("staff-auth", sm2_csr(tmp_path, "jane", SUBJECTS["staff-auth"]), "test")
    (tmp_path / "jane.pem").write_bytes(pem(row.der))
    standard_home.ca.revoke(row.serial_hex, "keyCompromise", actor="test")
    crl = asn1_crl.CertificateList.load(standard_home.ca.current_crl("sm2-staff").der)
    assert crl["signature_algorithm"]["algorithm"].dotted == sm2.SM2_WITH_SM3_OID
    assert staff.verify(crl["tbs_cert_list"].dump(), crl["signature"].native)
    assert not staff.verify(crl["tbs_cert_list"].dump(), crl["signature"].native, b"")
    response_der, stamp_der = status_and_time(standard_home, tmp_path, "jane", "sm2-staff")
    basic = asn1_ocsp.OCSPResponse.load(response_der)["response_bytes"]["response"].parsed
    assert basic["signature_algorithm"]["algorithm"].dotted == sm2.SM2_WITH_SM3_OID
    responder_der = basic["certs"][0].dump()
    assert staff.verify(asn1_x509.Certificate.load(responder_der)["tbs_certificate"].dump(),
                        asn1_x509.Certificate.load(responder_der)["signature_value"].native)
    assert gmssl_key(responder_der).verify(basic["tbs_response_data"].dump(), basic["signature"].native)
    assert basic["tbs_response_data"]["responses"][0]["cert_status"].name == "revoked"
    signed = TimeStampResp.load(stamp_der)["time_stamp_token"]["content"]
    signer = signed["signer_infos"][0]
    assert signer["digest_algorithm"]["algorithm"].dotted == sm2.SM3_OID
    assert signer["signature_algorithm"]["algorithm"].dotted == sm2.SM2_WITH_SM3_OID
    tst_info = signed["encap_content_info"]["content"].parsed
    assert tst_info["message_imprint"]["hash_algorithm"]["algorithm"].dotted == sm2.SM3_OID
    attributes = {a["type"].native: a["values"][0] for a in signer["signed_attrs"]}
    assert attributes["message_digest"].native == sm2.sm3(tst_info.dump())
    signed_attributes = b"\x31" + signer["signed_attrs"].dump()[1:]  # signed as SET OF (RFC 5652 section 5.4)
    tsa_der = signed["certificates"][0].chosen.dump()
    assert gmssl_key(tsa_der).verify(signed_attributes, signer["signature"].native)
    # OpenSSL 3.0's PKCS#7 code checks SM2 without Z: it cannot judge the standard's tokens
    assert "Verification: OK" not in openssl("ts", "-verify", "-queryfile", "query.tsq", "-in", "reply.tsr", "-CAfile",
                                             "sm2-root.pem", "-untrusted", "sm2-staff.pem", cwd=tmp_path,
                                             check=False).stdout


def test_openssl_judges_everything_of_the_empty_identity(openssl_home: Sm2Home, tmp_path: Path) -> None:
    """TESSERA_SM2_SIGNER_ID="": OpenSSL 3.0's own commands, without options, judge chains, CRLs,
    OCSP responses and time-stamps."""
    write_authorities(openssl_home, tmp_path)
    for profile in PROFILES:
        role = PROFILES[profile].issuers[0]
        row = openssl_home.ca.issue(profile, sm2_csr(tmp_path, profile, SUBJECTS[profile]), "test")
        (tmp_path / f"{profile}.pem").write_bytes(pem(row.der))
        verdict = openssl("verify", "-CAfile", "sm2-root.pem", "-untrusted", f"sm2-{role}.pem", f"{profile}.pem",
                          cwd=tmp_path).stdout.strip()
        assert verdict == f"{profile}.pem: OK", verdict
    revoked = openssl_home.ca.list_certificates(profile="citizen-auth")[0]
    openssl_home.ca.revoke(revoked.serial_hex, "keyCompromise", actor="test")
    (tmp_path / "citizen.crl").write_bytes(openssl_home.ca.current_crl("sm2-citizen").der)
    out = openssl("crl", "-inform", "DER", "-in", "citizen.crl", "-CAfile", "sm2-citizen.pem", "-noout", "-text",
                  cwd=tmp_path)
    assert "verify OK" in out.stderr and "Signature Algorithm: SM2-with-SM3" in out.stdout
    tampered = bytearray((tmp_path / "citizen.crl").read_bytes())
    tampered[-1] ^= 1
    (tmp_path / "tampered.crl").write_bytes(tampered)
    out = openssl("crl", "-inform", "DER", "-in", "tampered.crl", "-CAfile", "sm2-citizen.pem", "-noout",
                  cwd=tmp_path, check=False)
    assert "verify OK" not in out.stderr
    status_and_time(openssl_home, tmp_path, "citizen-auth", "sm2-citizen")
    out = openssl("ocsp", "-respin", "response.der", "-issuer", "sm2-citizen.pem", "-cert", "citizen-auth.pem",
                  "-no_nonce", "-CAfile", "sm2-root.pem", "-verify_other", "sm2-citizen.pem", cwd=tmp_path)
    assert "Response verify OK" in out.stderr and "citizen-auth.pem: revoked" in out.stdout, out
    out = openssl("ts", "-verify", "-queryfile", "query.tsq", "-in", "reply.tsr", "-CAfile", "sm2-root.pem",
                  "-untrusted", "sm2-staff.pem", cwd=tmp_path)
    assert "Verification: OK" in out.stdout
    assert "Hash Algorithm: sm3" in openssl("ts", "-reply", "-in", "reply.tsr", "-text", cwd=tmp_path).stdout
