"""The SM2/SM3 suite (issue 18): known answers of the standards, OpenSSL 3 as the independent judge."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest
from asn1crypto.algos import DSASignature
from cryptography.hazmat.primitives import hashes

from ca import sm2
from ca.errors import KeyPolicyViolation, KeyUnavailable
from ca.keyring import Keyring
from ca.keys import KeyType, SigningKey

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
    assert again.public_key() == key.public_key()
    assert again.public_key().verify(b"to be signed", signature)  # type: ignore[union-attr]
    with pytest.raises(KeyPolicyViolation):
        key.sign(b"x", hashes.SHA256())
    with pytest.raises(KeyUnavailable, match="wrong passphrase"):
        Keyring(None, lambda _path: b"another passphrase!").get(key.reference)
    sealed["public_key"] = base64.b64encode(sm2.generate()[1].point).decode()  # swap the public key
    path.write_text(json.dumps(sealed))
    with pytest.raises(KeyUnavailable, match="altered"):
        Keyring(None, lambda _path: passphrase).get(key.reference)
