"""RFC 3161 time-stamp tokens opened by the verification package (verification.cms.open_timestamp_token),
the audit verifier's one path: a token of Tessera's TSA opens with its TSTInfo's fields; a token
signed by a certificate that is not a time-stamping unit's (RFC 3161 section 2.3), one whose ESS
signingCertificateV2 names another certificate (RFC 5816), a changed byte or another content type
is refused with a reason, never an exception."""

from __future__ import annotations

import datetime
import hashlib
from pathlib import Path

import pytest
from asn1crypto import cms as asn1_cms
from asn1crypto import tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ca.cms import CmsSigner, sign_data, signing_certificate_v2
from ca.keys import FileKey, KeyType
from ca.profiles import tsa_policy
from ca.tsa import TimeStampAuthority, TimeStampResp
from verification.cms import open_signed_data, open_timestamp_token

NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
ROOT_KEY = ec.generate_private_key(ec.SECP256R1())


def _certificate(name: str, public: ec.EllipticCurvePublicKey, usage: list[x509.ObjectIdentifier] | None,
                 critical: bool = True) -> x509.Certificate:
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test Root")]))
               .public_key(public).serial_number(x509.random_serial_number())
               .not_valid_before(NOW - datetime.timedelta(hours=1)).not_valid_after(NOW + datetime.timedelta(days=1)))
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usage), critical=critical)
    return builder.sign(ROOT_KEY, hashes.SHA256())


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> FileKey:
    folder: Path = tmp_path_factory.mktemp("tsa")
    return FileKey.create(folder / "tsa.key.pem", KeyType.EC_P256, b"correct horse battery")


def _tst_info(imprint: bytes, policy: str = "1.3.6.1.4.1.99999.1.7.1") -> bytes:
    return tsp.TSTInfo({"version": "v1", "policy": policy,
                        "message_imprint": {"hash_algorithm": {"algorithm": "sha256"}, "hashed_message": imprint},
                        "serial_number": 12345, "gen_time": NOW}).dump()


def _query(data: bytes) -> bytes:
    return tsp.TimeStampReq({"version": "v1", "message_imprint": {"hash_algorithm": {"algorithm": "sha256"},
                                                                  "hashed_message": hashlib.sha256(data).digest()},
                             "cert_req": True}).dump()


def test_a_token_of_the_tsa_opens_with_its_fields(key: FileKey) -> None:
    certificate = _certificate("Test TSA", key.public_key(), [ExtendedKeyUsageOID.TIME_STAMPING])  # type: ignore[arg-type]
    policy = tsa_policy("1.3.6.1.4.1.99999.1")
    tsa = TimeStampAuthority(key, certificate, [certificate], policy, lambda _issued: None, lambda: NOW)
    reply = tsa.respond(_query(b"a checkpoint's signature"))
    token_der = TimeStampResp.load(reply.der)["time_stamp_token"].dump()

    token, reason = open_timestamp_token(token_der)

    assert reason is None and token is not None
    assert token.policy == policy == "1.3.6.1.4.1.99999.1.7.1"
    assert token.record.signer == certificate and token.gen_time == NOW and token.hash_algorithm == "sha256"
    assert token.covers(b"a checkpoint's signature") and not token.covers(b"another signature")
    # a token is no signed record of id-data, and a record's opening names what it expected
    record, refused = open_signed_data(token_der)
    assert record is None and refused is not None and refused.code == "no-content" and "id-data" in refused.detail
    # every byte changed refuses the token (a reason, not an exception)
    for position in range(0, len(token_der), 7):
        changed = bytearray(token_der)
        changed[position] ^= 0x41
        opened, why = open_timestamp_token(bytes(changed))
        assert (opened is None) == (why is not None)
        assert opened is None or opened.covers(b"a checkpoint's signature")


@pytest.mark.parametrize("usage, critical", [(None, True), ([ExtendedKeyUsageOID.TIME_STAMPING], False),
                                             ([ExtendedKeyUsageOID.TIME_STAMPING,
                                               ExtendedKeyUsageOID.CODE_SIGNING], True)])
def test_a_signer_that_is_not_a_time_stamping_unit_is_refused(key: FileKey, usage: list[x509.ObjectIdentifier] | None,
                                                              critical: bool) -> None:
    certificate = _certificate("Not a TSA", key.public_key(), usage, critical)  # type: ignore[arg-type]
    der = sign_data(_tst_info(b"\x01" * 32), "tst_info", certificate, key, NOW, [certificate])
    token, reason = open_timestamp_token(der)
    assert token is None and reason is not None and reason.code == "not-a-tsa"


def test_the_signing_certificate_attribute_must_name_the_signer(key: FileKey) -> None:
    certificate = _certificate("Test TSA", key.public_key(), [ExtendedKeyUsageOID.TIME_STAMPING])  # type: ignore[arg-type]
    other = _certificate("Other TSA", ec.generate_private_key(ec.SECP256R1()).public_key(),
                         [ExtendedKeyUsageOID.TIME_STAMPING])
    signer = CmsSigner(certificate, key, "tst_info", [certificate])
    assert open_timestamp_token(signer.sign(_tst_info(b"\x02" * 32), NOW))[1] is None
    signer._constant_attributes[1] = asn1_cms.CMSAttribute({  # the ESS attribute of another certificate
        "type": "signing_certificate_v2",
        "values": [signing_certificate_v2(asn1_x509.Certificate.load(other.public_bytes(Encoding.DER)))]}).dump()
    token, reason = open_timestamp_token(signer.sign(_tst_info(b"\x02" * 32), NOW))
    assert token is None and reason is not None and reason.code == "signer-missing"


def test_a_record_of_another_content_type_is_no_token(key: FileKey) -> None:
    certificate = _certificate("Test TSA", key.public_key(), [ExtendedKeyUsageOID.TIME_STAMPING])  # type: ignore[arg-type]
    statement = sign_data(b"tessera-audit-checkpoint-v1\n", "2.999.1863.3.1", certificate, key, NOW, [certificate])
    token, reason = open_timestamp_token(statement)
    assert token is None and reason is not None and reason.code == "no-content"
    record, refused = open_signed_data(statement, "2.999.1863.3.1")
    assert refused is None and record is not None and record.content == b"tessera-audit-checkpoint-v1\n"

