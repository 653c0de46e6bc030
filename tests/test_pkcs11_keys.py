"""CA keys on the SoftHSM2 token of a real `tessera init` home: attributes, threads, fork, PINs.

It points SoftHSM2 at the home's private token folder before it first uses the library; the
conftest finalises the library after every module, so no other module's login or token folder
is still in force here."""

from __future__ import annotations

import multiprocessing
import os
import secrets
import threading
from collections.abc import Iterator

import pkcs11
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from pkcs11 import Attribute, ObjectClass

from ca.errors import KeyPolicyViolation, KeyUnavailable
from ca.keyring import Keyring
from ca.keys import KeyType, SigningKey
from ca.pkcs11_keys import Pkcs11Token, TokenConfig
from idp.settings import DEFAULT_PKCS11_MODULE
from tests.conftest import Home


@pytest.fixture(scope="module")
def token_config(home: Home) -> TokenConfig:
    os.environ["SOFTHSM2_CONF"] = str(home.path / "softhsm" / "softhsm2.conf")
    pin = (home.path / "secrets" / "ca-token.pin").read_text().strip()
    return TokenConfig(DEFAULT_PKCS11_MODULE, "tessera-ca", pin)


@pytest.fixture(scope="module")
def keyring(token_config: TokenConfig) -> Iterator[Keyring]:
    ring = Keyring(token_config)
    yield ring
    ring.close()


def verify(key: SigningKey, data: bytes, signature: bytes) -> None:
    public = key.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        public.verify(signature, data, ec.ECDSA(key.key_type.signature_hash()))
    else:
        public.verify(signature, data, padding.PKCS1v15(), key.key_type.signature_hash())  # type: ignore[union-attr]


@pytest.mark.parametrize("key_type", [KeyType.EC_P256, KeyType.EC_P384, KeyType.RSA_2048])
def test_generated_keys_sign_and_never_leave_the_token(keyring: Keyring, key_type: KeyType) -> None:
    label = f"t-{key_type.value}-{secrets.token_hex(4)}"
    key = keyring.generate("pkcs11", label, key_type)
    assert key.key_type is key_type and key.reference == f"pkcs11:{label}"
    verify(key, b"payload", key.sign(b"payload", key_type.signature_hash()))
    with pytest.raises(InvalidSignature):
        verify(key, b"other payload", key.sign(b"payload", key_type.signature_hash()))
    private = keyring.token.private_key(label)
    assert private[Attribute.SENSITIVE] and private[Attribute.ALWAYS_SENSITIVE]
    assert not private[Attribute.EXTRACTABLE] and private[Attribute.NEVER_EXTRACTABLE]
    assert private[Attribute.SIGN] and not private[Attribute.DECRYPT] and not private[Attribute.UNWRAP]
    with pytest.raises(pkcs11.exceptions.PKCS11Error):  # AttributeSensitive
        private[Attribute.VALUE if key_type.is_ec else Attribute.PRIVATE_EXPONENT]


def test_duplicate_label_refused(keyring: Keyring) -> None:
    with pytest.raises(KeyPolicyViolation, match="already holds"):
        keyring.generate("pkcs11", "tessera-staff-ca", KeyType.EC_P256)
    with pytest.raises(KeyPolicyViolation, match="32 characters"):
        keyring.generate("pkcs11", "x" * 33, KeyType.EC_P256)


def test_threads_signing_at_once_leave_the_token_intact(keyring: Keyring, token_config: TokenConfig) -> None:
    key = keyring.get("pkcs11:tessera-staff-ca")
    failures: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(150):
                data = f"{n}-{i}".encode()
                verify(key, data, key.sign(data, hashes.SHA256()))
        except BaseException as exc:  # collected and re-raised in the main thread
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    fresh = Pkcs11Token(token_config)  # the token still opens and still holds the key
    assert fresh.has_object("tessera-staff-ca")


def _sign_in_child(keyring: Keyring, queue: "multiprocessing.Queue[str]") -> None:
    try:
        key = keyring.get("pkcs11:tessera-citizen-ca")
        verify(key, b"child", key.sign(b"child", hashes.SHA256()))
        queue.put("ok")
    except BaseException as exc:  # reported to the parent
        queue.put(f"{type(exc).__name__}: {exc}")


def test_forked_child_reinitialises_before_use(keyring: Keyring) -> None:
    key = keyring.get("pkcs11:tessera-citizen-ca")
    key.sign(b"parent first", hashes.SHA256())  # the parent has a live session before the fork
    ctx = multiprocessing.get_context("fork")
    queue: "multiprocessing.Queue[str]" = ctx.Queue()
    child = ctx.Process(target=_sign_in_child, args=(keyring, queue))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    assert queue.get(timeout=5) == "ok"
    verify(key, b"parent after", key.sign(b"parent after", hashes.SHA256()))


def test_wrong_pin_is_refused_without_leaking_sessions(token_config: TokenConfig, keyring: Keyring) -> None:
    keyring.close()  # log out, so the wrong PIN really reaches C_Login
    for _ in range(20):
        wrong = Pkcs11Token(TokenConfig(token_config.module_path, token_config.token_label, "wrong-pin"))
        with pytest.raises(KeyUnavailable, match="cannot log in"):
            wrong.private_key("tessera-staff-ca")
    right = Pkcs11Token(token_config)
    assert right.private_key("tessera-staff-ca")[Attribute.CLASS] == ObjectClass.PRIVATE_KEY
    right.close()
