"""CA keys on a PKCS#11 token (SoftHSM2 here, an HSM in production).

Keys are generated on the token as sensitive, never-extractable, sign-only objects (PKCS#11
v2.40 section 4.9); only signatures and public keys ever leave it.

Process model (docs/platform-notes.md): python-pkcs11 initialises the library without
CKF_OS_LOCKING_OK, so SoftHSM turns its own locking off. We re-initialise once through ctypes
with that flag, and additionally serialise every call behind one process-wide lock. After a
fork the child re-initialises before its first use; sessions are never shared across processes.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import threading
from dataclasses import dataclass, field
from typing import Any

import pkcs11
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from pkcs11 import Attribute, Mechanism, MechanismFlag, ObjectClass
from pkcs11 import KeyType as P11KeyType
from pkcs11.util.ec import encode_ec_public_key, encode_ecdsa_signature, encode_named_curve_parameters
from pkcs11.util.rsa import encode_rsa_public_key

from ca.errors import KeyPolicyViolation, KeyUnavailable
from ca.keys import KeyType, key_type_of

DEFAULT_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
CKF_OS_LOCKING_OK = 0x2

#: every PKCS#11 call in this process goes through this lock
_LOCK = threading.RLock()


class _InitArgs(ctypes.Structure):
    """CK_C_INITIALIZE_ARGS (PKCS#11 v2.40 section 5.4)."""

    _fields_ = [
        ("CreateMutex", ctypes.c_void_p),
        ("DestroyMutex", ctypes.c_void_p),
        ("LockMutex", ctypes.c_void_p),
        ("UnlockMutex", ctypes.c_void_p),
        ("flags", ctypes.c_ulong),
        ("pReserved", ctypes.c_void_p),
    ]


def _enable_os_locking(module_path: str) -> None:
    """C_Finalize, then C_Initialize with CKF_OS_LOCKING_OK on the already loaded module."""
    native = ctypes.CDLL(module_path)  # dlopen returns the handle python-pkcs11 already holds
    native.C_Finalize(None)
    args = _InitArgs(None, None, None, None, CKF_OS_LOCKING_OK, None)
    rv = native.C_Initialize(ctypes.byref(args))
    if rv != 0:
        raise KeyUnavailable(f"C_Initialize with OS locking failed (CKR 0x{rv:x})")


def _close_all_sessions(module_path: str, slot_id: int) -> None:
    ctypes.CDLL(module_path).C_CloseAllSessions(ctypes.c_ulong(slot_id))


class _Module:
    """The PKCS#11 library as loaded in this process: initialised once per process."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.pid: int | None = None
        self.generation = 0
        self.lib: Any = None

    def ready(self) -> Any:
        if self.pid != os.getpid():
            self.lib = pkcs11.lib(self.path)
            if self.pid is not None:
                self.lib.reinitialize()  # forked child: never reuse the parent's state
            _enable_os_locking(self.path)
            self.pid = os.getpid()
            self.generation += 1
        return self.lib

    def reinitialise(self) -> None:
        """Needed to see tokens another process created; invalidates every open session."""
        self.ready()
        _enable_os_locking(self.path)
        self.generation += 1


_MODULES: dict[str, _Module] = {}


def finalize_all() -> None:
    """C_Finalize every PKCS#11 library this process initialised (PKCS#11 v2.40 section 5.4).

    Every session ends and every login with it; the next use initialises the library again and
    so reads its configuration (``SOFTHSM2_CONF``) anew. For a process that is done with one
    home before it opens another (the test suite, tools that visit several homes)."""
    with _LOCK:
        for module in _MODULES.values():
            if module.pid == os.getpid():
                ctypes.CDLL(module.path).C_Finalize(None)
                module.pid = None
                module.generation += 1


def _module(path: str) -> _Module:
    if path not in _MODULES:
        _MODULES[path] = _Module(path)
    return _MODULES[path]


@dataclass(frozen=True)
class TokenConfig:
    """Where the CA token is and how to log in to it."""

    module_path: str
    token_label: str
    user_pin: str = field(repr=False)


class Pkcs11Token:
    """One logged-in session on one token, owned by the current process."""

    def __init__(self, config: TokenConfig) -> None:
        self.config = config
        self._module = _module(config.module_path)
        self._generation = -1
        self._pid = -1
        self._session: Any = None
        self._keys: dict[str, Any] = {}

    # -- session lifecycle -------------------------------------------------------------
    def _find_token(self) -> Any:
        for attempt in (1, 2):
            lib = self._module.ready()
            try:
                return lib.get_token(token_label=self.config.token_label)
            except pkcs11.exceptions.NoSuchToken:
                if attempt == 2:
                    raise KeyUnavailable(f"PKCS#11 token {self.config.token_label!r} not found") from None
                self._module.reinitialise()
            except pkcs11.exceptions.MultipleTokensReturned:
                raise KeyUnavailable(f"several tokens are labelled {self.config.token_label!r}") from None
            except pkcs11.exceptions.PKCS11Error as exc:
                raise KeyUnavailable(f"PKCS#11 module unusable: {type(exc).__name__}") from None
        raise AssertionError("unreachable")

    def _ensure_session(self) -> Any:
        self._module.ready()
        if (
            self._session is not None
            and self._pid == os.getpid()
            and self._generation == self._module.generation
        ):
            return self._session
        token = self._find_token()
        try:
            session = token.open(rw=True, user_pin=self.config.user_pin)
        except pkcs11.exceptions.UserAlreadyLoggedIn:
            session = token.open(rw=True)  # another object of ours logged in: login is per token
        except pkcs11.exceptions.PKCS11Error as exc:
            # python-pkcs11 leaks the session when C_Login fails: close it ourselves
            _close_all_sessions(self.config.module_path, token.slot.slot_id)
            raise KeyUnavailable(
                f"cannot log in to token {self.config.token_label!r}: {type(exc).__name__}"
            ) from None
        self._session, self._keys = session, {}
        self._pid, self._generation = os.getpid(), self._module.generation
        return session

    def close(self) -> None:
        with _LOCK:
            if self._session is not None and self._pid == os.getpid() and self._generation == self._module.generation:
                self._session.close()
            self._session, self._keys = None, {}

    # -- keys --------------------------------------------------------------------------
    def private_key(self, label: str) -> Any:
        with _LOCK:
            session = self._ensure_session()
            key = self._keys.get(label)
            if key is None:
                try:
                    key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=label)
                except (pkcs11.exceptions.NoSuchKey, pkcs11.exceptions.MultipleObjectsReturned):
                    raise KeyUnavailable(f"no unique private key {label!r} on the token") from None
                self._keys[label] = key
            return key

    def public_key(self, label: str) -> CertificatePublicKeyTypes:
        with _LOCK:
            session = self._ensure_session()
            try:
                pub = session.get_key(object_class=ObjectClass.PUBLIC_KEY, label=label)
            except (pkcs11.exceptions.NoSuchKey, pkcs11.exceptions.MultipleObjectsReturned):
                raise KeyUnavailable(f"no unique public key {label!r} on the token") from None
            if pub.key_type == P11KeyType.EC:
                der = encode_ec_public_key(pub)
            else:
                rsa_pkcs1 = encode_rsa_public_key(pub)
                loaded = serialization.load_der_public_key(_rsa_spki(rsa_pkcs1))
                return loaded  # type: ignore[return-value]
        return serialization.load_der_public_key(der)  # type: ignore[return-value]

    def has_object(self, label: str) -> bool:
        with _LOCK:
            session = self._ensure_session()
            return any(True for _ in session.get_objects({Attribute.LABEL: label}))

    def generate_key_pair(self, label: str, key_type: KeyType) -> "Pkcs11Key":
        """Generate a sign-only key pair on the token (PKCS#11 v2.40 C_GenerateKeyPair)."""
        if not label or len(label) > 32:
            raise KeyPolicyViolation("a token key label needs 1 to 32 characters")
        if self.has_object(label):
            raise KeyPolicyViolation(f"the token already holds an object labelled {label!r}")
        key_id = hashlib.sha256(label.encode()).digest()[:16]
        private_template = {
            Attribute.TOKEN: True,
            Attribute.PRIVATE: True,
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
            Attribute.SIGN: True,
            Attribute.DECRYPT: False,
            Attribute.UNWRAP: False,
            Attribute.DERIVE: False,
        }
        public_template = {Attribute.TOKEN: True, Attribute.VERIFY: True, Attribute.ENCRYPT: False, Attribute.WRAP: False}
        caps = MechanismFlag.SIGN | MechanismFlag.VERIFY
        with _LOCK:
            session = self._ensure_session()
            if key_type.is_ec:
                oid = {KeyType.EC_P256: "secp256r1", KeyType.EC_P384: "secp384r1"}[key_type]
                params = session.create_domain_parameters(
                    P11KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters(oid)}, local=True
                )
                params.generate_keypair(
                    id=key_id, label=label, store=True, capabilities=caps,
                    public_template=public_template, private_template=private_template,
                )
            else:
                session.generate_keypair(
                    P11KeyType.RSA, key_type.rsa_bits, id=key_id, label=label, store=True,
                    capabilities=caps, public_template=public_template, private_template=private_template,
                )
        return Pkcs11Key(self, label)


def _rsa_spki(pkcs1_der: bytes) -> bytes:
    from asn1crypto.keys import PublicKeyInfo, RSAPublicKey

    return PublicKeyInfo(
        {"algorithm": {"algorithm": "rsa", "parameters": None}, "public_key": RSAPublicKey.load(pkcs1_der)}
    ).dump()


_RSA_MECHANISMS = {
    "sha256": Mechanism.SHA256_RSA_PKCS,
    "sha384": Mechanism.SHA384_RSA_PKCS,
    "sha512": Mechanism.SHA512_RSA_PKCS,
}


class Pkcs11Key:
    """A :class:`ca.keys.SigningKey` whose private half lives on a PKCS#11 token."""

    def __init__(self, token: Pkcs11Token, label: str) -> None:
        self._token = token
        self.label = label
        self.reference = f"pkcs11:{label}"
        self._public = token.public_key(label)
        self.key_type = key_type_of(self._public)

    def public_key(self) -> CertificatePublicKeyTypes:
        return self._public

    def sign(self, data: bytes, hash_algorithm: hashes.HashAlgorithm) -> bytes:
        with _LOCK:
            key = self._token.private_key(self.label)
            try:
                if isinstance(self._public, ec.EllipticCurvePublicKey):
                    # SoftHSM has no CKM_ECDSA_SHA256: hash here, sign the digest with CKM_ECDSA
                    digest = hashes.Hash(hash_algorithm)
                    digest.update(data)
                    raw = key.sign(digest.finalize(), mechanism=Mechanism.ECDSA)
                    return encode_ecdsa_signature(raw)
                assert isinstance(self._public, rsa.RSAPublicKey)
                mechanism = _RSA_MECHANISMS.get(hash_algorithm.name)
                if mechanism is None:
                    raise KeyPolicyViolation(f"hash {hash_algorithm.name} not supported for RSA signing")
                return key.sign(data, mechanism=mechanism)
            except pkcs11.exceptions.PKCS11Error as exc:
                raise KeyUnavailable(f"token refused to sign with {self.label!r}: {type(exc).__name__}") from None
