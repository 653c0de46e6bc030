"""The CMS openings of signed records against asn1crypto's parse of the same SignedData:
verification.cms (asn1crypto; the public /api/v1/signed-records/verify and the audit verifier)
and the hand-written walk in verification.signed_data (the card reader's).
On valid records (ECDSA, RSA, and SM2 with SM3 as GB/T 35275-2017 signs them) and on mutated ones
(bytes flipped, inserted, deleted, cut) all accept or all refuse, and agree on content and signer;
neither opening raises (RFC 5652 sections 5.1-5.6)."""

from __future__ import annotations

import datetime
import json

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from asn1crypto import cms

from ca import sm2
from ca.cms import sign_data
from tests.test_sm2_verification import SoftSm2, build
from verification.signed_data import open_signed_data as hand_open
from verification.cms import open_signed_data as package_open
from tests.test_protocol_fuzz import mutated, nested


def _signer(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Records department")])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))


KEYS: list[ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey] = [
    ec.generate_private_key(ec.SECP256R1()), rsa.generate_private_key(public_exponent=65537, key_size=2048)]
SIGNERS = [_signer(k) for k in KEYS]


def record(content: bytes, which: int = 0, digest: hashes.SHA256 | hashes.SHA384 | hashes.SHA512 | None = None) -> bytes:
    return pkcs7.PKCS7SignatureBuilder().set_data(content).add_signer(SIGNERS[which], KEYS[which],
                                                                      digest or hashes.SHA256()) \
        .sign(serialization.Encoding.DER, [])


SM2_KEY = SoftSm2(sm2.DEFAULT_SIGNER_ID)
SM2_SIGNER = build("Records department (SM2)", SM2_KEY, ca=False)


def sm2_record(content: bytes) -> bytes:
    """SignedData signed SM2 with SM3, Z of the standard identity (ca.cms: GB/T 35275-2017)."""
    return sign_data(content, "data", SM2_SIGNER, SM2_KEY, datetime.datetime.now(datetime.timezone.utc), [SM2_SIGNER])


RECORDS = [record(json.dumps({"data": {"national_id": "11010519491231002X"}}).encode()),
           record(b"x" * 3000, 1, hashes.SHA384()), record(nested(2000)), record(b"", 0, hashes.SHA512()),
           sm2_record(json.dumps({"data": {"national_id": "430000199001011234"}}).encode()), sm2_record(b"")]


def outcome(der: bytes) -> tuple[str, bytes | None, int | None]:
    signed, check = hand_open(der)  # must not raise
    hand = ("ok", signed.content, signed.signer.serial_number) if signed else ("refused", None, None)
    record, reason = package_open(der)  # must not raise
    package = ("ok", record.content, record.signer.serial_number) if record else ("refused", None, None)
    try:
        # asn1crypto parses lazily: every field of the SignedData and its SignerInfo is forced
        # (the certificates are the certificate parser's business, cryptography's in both)
        parsed = cms.ContentInfo.load(der, strict=True)["content"]
        for field in ("version", "digest_algorithms", "encap_content_info", "crls", "signer_infos"):
            parsed[field].native  # noqa: B018
        reference = package
    except Exception:  # noqa: BLE001  (asn1crypto's every refusal counts as a refusal)
        reference = ("refused", None, None)
    assert package == reference, (reason, package[0], reference[0])
    assert hand == reference, (check, hand[0], reference[0])
    if record is not None and signed_ok(hand):
        assert record.intermediates == hand_open(der)[0].intermediates  # type: ignore[union-attr]
    return hand


def signed_ok(result: tuple[str, bytes | None, int | None]) -> bool:
    return result[0] == "ok"


def test_valid_records_agree() -> None:
    for der in RECORDS:
        assert outcome(der)[0] == "ok"


@settings(max_examples=400, deadline=None, database=None)
@given(st.sampled_from(range(len(RECORDS))).flatmap(lambda i: mutated(RECORDS[i])))
def test_mutated_records_agree(der: bytes) -> None:
    outcome(der)
