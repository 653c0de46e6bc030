"""The few PKCS#11 v2.40 functions card personalisation needs, called through ctypes.

Why not python-pkcs11 here: it has no C_InitToken, and it hands out a Slot object only from
``get_slots()``, which walks every slot (~14 ms with 10,000 cards). Personalising a new card must
not cost more with 10,000 cards than with 100, so the card writer keeps slot ids itself: the slot
it initialised keeps its id for the life of the process (SoftHSM2 appends the next free slot).
Services find cards through python-pkcs11 (:mod:`cardsim.shard_module` loads and indexes a shard)
and read them through :meth:`Cryptoki.attached` on that same loaded module: one C_FindObjects for
all of a card's objects and one C_GetAttributeValue per object (python-pkcs11 sizes every value
in a call of its own and each search walks the token again; about half of a read's PKCS#11 time).

Every function is one PKCS#11 call with its section of the specification; a non-zero CK_RV
becomes :class:`CryptokiError` carrying the code. One instance per process, no threads
(docs/platform-notes.md: SoftHSM's locking is off unless CKF_OS_LOCKING_OK is passed, which we do).
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Union

from cardsim.shard_module import initialised_for, module_copy

CK_ULONG = ctypes.c_ulong
CK_BYTE = ctypes.c_ubyte

# object classes, key types, attribute types, mechanisms, user types, flags (PKCS#11 v2.40 pkcs11t.h)
CKO_DATA, CKO_CERTIFICATE, CKO_PUBLIC_KEY, CKO_PRIVATE_KEY = 0, 1, 2, 3
CKC_X_509 = 0
CKK_EC = 3
CKA_CLASS, CKA_TOKEN, CKA_PRIVATE, CKA_LABEL = 0x0, 0x1, 0x2, 0x3
CKA_APPLICATION, CKA_VALUE = 0x10, 0x11
CKA_CERTIFICATE_TYPE, CKA_ISSUER, CKA_SERIAL_NUMBER = 0x80, 0x81, 0x82
CKA_KEY_TYPE, CKA_SUBJECT, CKA_ID, CKA_SENSITIVE = 0x100, 0x101, 0x102, 0x103
CKA_ENCRYPT, CKA_DECRYPT, CKA_WRAP, CKA_UNWRAP, CKA_SIGN, CKA_SIGN_RECOVER = 0x104, 0x105, 0x106, 0x107, 0x108, 0x109
CKA_VERIFY, CKA_VERIFY_RECOVER, CKA_DERIVE = 0x10A, 0x10B, 0x10C
CKA_EXTRACTABLE, CKA_MODIFIABLE = 0x162, 0x170
CKA_EC_PARAMS, CKA_EC_POINT = 0x180, 0x181
CKM_EC_KEY_PAIR_GEN, CKM_ECDSA = 0x1040, 0x1041
CKU_SO, CKU_USER = 0, 1
CKF_RW_SESSION, CKF_SERIAL_SESSION = 0x2, 0x4
CKF_OS_LOCKING_OK = 0x2
CKF_TOKEN_INITIALIZED = 0x400

CKR_OK = 0x0
CKR_ATTRIBUTE_SENSITIVE = 0x11
CKR_ATTRIBUTE_TYPE_INVALID = 0x12
CKR_BUFFER_TOO_SMALL = 0x150
CKR_PIN_INCORRECT = 0xA0
CKR_PIN_INVALID = 0xA1
CKR_PIN_LEN_RANGE = 0xA2
CKR_PIN_LOCKED = 0xA4
CKR_USER_ALREADY_LOGGED_IN = 0x100
CKR_USER_PIN_NOT_INITIALIZED = 0x102
CKR_CRYPTOKI_ALREADY_INITIALIZED = 0x191
#: ulValueLen of an attribute the token could not return (section 3.1, CK_UNAVAILABLE_INFORMATION)
CK_UNAVAILABLE_INFORMATION = CK_ULONG(-1).value

#: DER of the named curve OIDs (RFC 5480 section 2.1.1.1), the CKA_EC_PARAMS value
EC_PARAMS = {
    "ec-p256": bytes.fromhex("06082a8648ce3d030107"),
    "ec-p384": bytes.fromhex("06052b81040022"),
}

AttributeValue = Union[bool, int, str, bytes]


class CryptokiError(Exception):
    """A PKCS#11 call returned something other than CKR_OK."""

    def __init__(self, function: str, rv: int) -> None:
        super().__init__(f"{function} failed with CKR 0x{rv:x}")
        self.function = function
        self.rv = rv


class _Attribute(ctypes.Structure):
    _fields_ = [("type", CK_ULONG), ("pValue", ctypes.c_void_p), ("ulValueLen", CK_ULONG)]


class _Mechanism(ctypes.Structure):
    _fields_ = [("mechanism", CK_ULONG), ("pParameter", ctypes.c_void_p), ("ulParameterLen", CK_ULONG)]


class _Version(ctypes.Structure):
    _fields_ = [("major", CK_BYTE), ("minor", CK_BYTE)]


class _TokenInfo(ctypes.Structure):
    """CK_TOKEN_INFO (section 3.2)."""

    _fields_ = [
        ("label", ctypes.c_char * 32), ("manufacturerID", ctypes.c_char * 32), ("model", ctypes.c_char * 16),
        ("serialNumber", ctypes.c_char * 16), ("flags", CK_ULONG), ("ulMaxSessionCount", CK_ULONG),
        ("ulSessionCount", CK_ULONG), ("ulMaxRwSessionCount", CK_ULONG), ("ulRwSessionCount", CK_ULONG),
        ("ulMaxPinLen", CK_ULONG), ("ulMinPinLen", CK_ULONG), ("ulTotalPublicMemory", CK_ULONG),
        ("ulFreePublicMemory", CK_ULONG), ("ulTotalPrivateMemory", CK_ULONG), ("ulFreePrivateMemory", CK_ULONG),
        ("hardwareVersion", _Version), ("firmwareVersion", _Version), ("utcTime", ctypes.c_char * 16),
    ]


class _InitArgs(ctypes.Structure):
    _fields_ = [
        ("CreateMutex", ctypes.c_void_p), ("DestroyMutex", ctypes.c_void_p), ("LockMutex", ctypes.c_void_p),
        ("UnlockMutex", ctypes.c_void_p), ("flags", CK_ULONG), ("pReserved", ctypes.c_void_p),
    ]


class _Template:
    """A CK_ATTRIBUTE array whose value buffers live as long as the template."""

    def __init__(self, attributes: dict[int, AttributeValue]) -> None:
        self._buffers: list[object] = []
        self.array = (_Attribute * len(attributes))()
        for i, (kind, value) in enumerate(attributes.items()):
            if isinstance(value, bool):
                raw = b"\x01" if value else b"\x00"
            elif isinstance(value, int):
                raw = bytes(CK_ULONG(value))
            elif isinstance(value, str):
                raw = value.encode("utf-8")
            elif isinstance(value, bytes):
                raw = value
            else:  # a wrong type crashes SoftHSM instead of failing: refuse it here (docs/platform-notes.md)
                raise TypeError(f"attribute 0x{kind:x}: unsupported value type {type(value).__name__}")
            buffer = ctypes.create_string_buffer(raw, len(raw)) if raw else None
            self._buffers.append(buffer)
            self.array[i].type = kind
            self.array[i].pValue = ctypes.cast(buffer, ctypes.c_void_p) if buffer is not None else None
            self.array[i].ulValueLen = len(raw)

    def __len__(self) -> int:
        return len(self.array)


class Cryptoki:
    """A PKCS#11 module instance initialised with OS locking: with ``conf``, this process's own
    copy of the module, over the token folder that SoftHSM2 configuration names (one card shard,
    :mod:`cardsim.shard_module`)."""

    def __init__(self, module_path: str, conf: Path | None = None, initialise: bool = True) -> None:
        self._lib = ctypes.CDLL(module_copy(module_path, conf) if conf is not None else module_path)
        self._conf = conf
        if initialise:
            self._initialize()

    @classmethod
    def attached(cls, loaded_module: str) -> "Cryptoki":
        """The functions of a module this process has loaded and initialised already (a shard's
        module copy that python-pkcs11 loaded: :class:`cardsim.shard_module.ShardLibrary`). The
        dynamic loader hands back the same library, so sessions and logins are that module's;
        no C_Initialize here, and re-initialisation stays with its owner."""
        return cls(loaded_module, initialise=False)

    def _initialize(self) -> None:
        args = _InitArgs(None, None, None, None, CKF_OS_LOCKING_OK, None)
        if self._conf is not None:
            rv = initialised_for(self._conf, lambda: self._lib.C_Initialize(ctypes.byref(args)))
        else:
            rv = self._lib.C_Initialize(ctypes.byref(args))
        if rv not in (CKR_OK, CKR_CRYPTOKI_ALREADY_INITIALIZED):
            raise CryptokiError("C_Initialize", rv)

    def reinitialize(self) -> None:
        """C_Finalize then C_Initialize: see tokens made or deleted by other processes (slot ids change)."""
        self.finalize()
        self._initialize()

    def _call(self, name: str, *args: object) -> None:
        rv = getattr(self._lib, name)(*args)
        if rv != CKR_OK:
            raise CryptokiError(name, rv)

    def finalize(self) -> None:
        self._lib.C_Finalize(None)

    # -- slots and tokens (section 5.5) ------------------------------------------------
    def slot_ids(self) -> list[int]:
        count = CK_ULONG()
        self._call("C_GetSlotList", CK_BYTE(0), None, ctypes.byref(count))
        array = (CK_ULONG * count.value)()
        self._call("C_GetSlotList", CK_BYTE(0), array, ctypes.byref(count))
        return list(array[: count.value])

    def token_info(self, slot_id: int) -> tuple[str, str, bool]:
        """(label, serial, initialised) of the token in ``slot_id``."""
        info = _TokenInfo()
        self._call("C_GetTokenInfo", CK_ULONG(slot_id), ctypes.byref(info))
        return (
            bytes(info.label).decode("utf-8", "replace").rstrip(" \x00"),
            bytes(info.serialNumber).decode("ascii", "replace").strip(" \x00"),
            bool(info.flags & CKF_TOKEN_INITIALIZED),
        )

    def init_token(self, slot_id: int, so_pin: str, label: str) -> None:
        """C_InitToken (section 5.6): the SO PIN is the card's PUK."""
        raw_label = label.encode("utf-8")
        if len(raw_label) > 32:
            raise ValueError("a token label has at most 32 bytes")
        pin = so_pin.encode()
        self._call("C_InitToken", CK_ULONG(slot_id), pin, CK_ULONG(len(pin)), raw_label.ljust(32, b" "))

    # -- sessions (section 5.6/5.7) ----------------------------------------------------
    def open_session(self, slot_id: int, rw: bool = True) -> int:
        handle = CK_ULONG()
        flags = CKF_SERIAL_SESSION | (CKF_RW_SESSION if rw else 0)
        self._call("C_OpenSession", CK_ULONG(slot_id), CK_ULONG(flags), None, None, ctypes.byref(handle))
        return handle.value

    def close_session(self, session: int) -> None:
        self._lib.C_CloseSession(CK_ULONG(session))

    def login(self, session: int, user_type: int, pin: str) -> None:
        raw = pin.encode()
        self._call("C_Login", CK_ULONG(session), CK_ULONG(user_type), raw, CK_ULONG(len(raw)))

    def logout(self, session: int) -> None:
        self._lib.C_Logout(CK_ULONG(session))

    def init_pin(self, session: int, pin: str) -> None:
        """C_InitPIN (section 5.6): the SO sets the user PIN (PUK unblock)."""
        raw = pin.encode()
        self._call("C_InitPIN", CK_ULONG(session), raw, CK_ULONG(len(raw)))

    def set_pin(self, session: int, old: str, new: str) -> None:
        """C_SetPIN (section 5.6) for the logged-in user."""
        a, b = old.encode(), new.encode()
        self._call("C_SetPIN", CK_ULONG(session), a, CK_ULONG(len(a)), b, CK_ULONG(len(b)))

    # -- objects (section 5.7) ---------------------------------------------------------
    def create_object(self, session: int, attributes: dict[int, AttributeValue]) -> int:
        template = _Template(attributes)
        handle = CK_ULONG()
        self._call("C_CreateObject", CK_ULONG(session), template.array, CK_ULONG(len(template)), ctypes.byref(handle))
        return handle.value

    def destroy_object(self, session: int, handle: int) -> None:
        self._call("C_DestroyObject", CK_ULONG(session), CK_ULONG(handle))

    def find_objects(self, session: int, attributes: dict[int, AttributeValue], limit: int = 64) -> list[int]:
        template = _Template(attributes)
        self._call("C_FindObjectsInit", CK_ULONG(session), template.array, CK_ULONG(len(template)))
        try:
            found = (CK_ULONG * limit)()
            count = CK_ULONG()
            self._call("C_FindObjects", CK_ULONG(session), found, CK_ULONG(limit), ctypes.byref(count))
            return list(found[: count.value])
        finally:
            self._lib.C_FindObjectsFinal(CK_ULONG(session))

    def all_objects(self, session: int, batch: int = 32) -> list[int]:
        """Every object the session can see (an empty template, section 5.7: C_FindObjectsInit),
        in one search however many there are."""
        self._call("C_FindObjectsInit", CK_ULONG(session), None, CK_ULONG(0))
        try:
            out: list[int] = []
            found = (CK_ULONG * batch)()
            count = CK_ULONG()
            while True:
                self._call("C_FindObjects", CK_ULONG(session), found, CK_ULONG(batch), ctypes.byref(count))
                out += found[: count.value]
                if count.value < batch:
                    return out
        finally:
            self._lib.C_FindObjectsFinal(CK_ULONG(session))

    def attributes(self, session: int, handle: int, kinds: tuple[int, ...],
                   sizes: tuple[int, ...]) -> dict[int, bytes | None]:
        """Several attributes of one object in one C_GetAttributeValue (section 5.7), every one of
        them asked for again if it reads as None (:class:`AttributeReader`, which reads object
        after object into the same buffers, asks again only for the values the caller needs)."""
        reader = AttributeReader(self, kinds, sizes)
        return reader.complete(session, handle, reader.read(session, handle), kinds)

    def attribute(self, session: int, handle: int, kind: int) -> bytes:
        """C_GetAttributeValue (section 5.7) of one attribute, sized in a first call."""
        probe = (_Attribute * 1)()
        probe[0].type, probe[0].pValue, probe[0].ulValueLen = kind, None, 0
        self._call("C_GetAttributeValue", CK_ULONG(session), CK_ULONG(handle), probe, CK_ULONG(1))
        buffer = ctypes.create_string_buffer(probe[0].ulValueLen)
        probe[0].pValue = ctypes.cast(buffer, ctypes.c_void_p)
        self._call("C_GetAttributeValue", CK_ULONG(session), CK_ULONG(handle), probe, CK_ULONG(1))
        return buffer.raw[: probe[0].ulValueLen]

    # -- keys (section 5.14) -----------------------------------------------------------
    def generate_ec_key_pair(
        self, session: int, ec_params: bytes, public: dict[int, AttributeValue], private: dict[int, AttributeValue]
    ) -> tuple[int, int]:
        mechanism = _Mechanism(CKM_EC_KEY_PAIR_GEN, None, 0)
        pub = _Template({CKA_EC_PARAMS: ec_params, **public})
        priv = _Template(private)
        pub_handle, priv_handle = CK_ULONG(), CK_ULONG()
        self._call("C_GenerateKeyPair", CK_ULONG(session), ctypes.byref(mechanism), pub.array, CK_ULONG(len(pub)),
                   priv.array, CK_ULONG(len(priv)), ctypes.byref(pub_handle), ctypes.byref(priv_handle))
        return pub_handle.value, priv_handle.value

    def sign_ecdsa(self, session: int, key: int, digest: bytes) -> bytes:
        """CKM_ECDSA over a digest computed by the caller; returns raw r||s (section 2.3.6)."""
        mechanism = _Mechanism(CKM_ECDSA, None, 0)
        self._call("C_SignInit", CK_ULONG(session), ctypes.byref(mechanism), CK_ULONG(key))
        out = ctypes.create_string_buffer(132)
        length = CK_ULONG(len(out))
        self._call("C_Sign", CK_ULONG(session), digest, CK_ULONG(len(digest)), out, ctypes.byref(length))
        return out.raw[: length.value]


class AttributeReader:
    """Several attributes of an object in one C_GetAttributeValue (section 5.7), into buffers of
    the given sizes, reused from object to object (one reader per thread).

    An attribute the token does not return reads as None: one the object lacks
    (CKR_ATTRIBUTE_TYPE_INVALID), hides (CKR_ATTRIBUTE_SENSITIVE, a private key's value), or
    whose value did not fit its buffer: when several of these happen in one call the token may
    report any one of them (section 5.7), so a value that must be there and reads as None is
    asked for again by :meth:`complete`, sized first."""

    def __init__(self, cryptoki: Cryptoki, kinds: tuple[int, ...], sizes: tuple[int, ...]) -> None:
        self._function = cryptoki._lib.C_GetAttributeValue
        self._kinds = kinds
        self._count = CK_ULONG(len(kinds))
        self._template = (_Attribute * len(kinds))()
        self._buffers = [ctypes.create_string_buffer(size) for size in sizes]
        self._pointers = [ctypes.cast(buffer, ctypes.c_void_p).value for buffer in self._buffers]
        for i, kind in enumerate(kinds):
            self._template[i].type = kind

    def read(self, session: int, handle: int) -> dict[int, bytes | None]:
        template = self._template
        for i, (buffer, pointer) in enumerate(zip(self._buffers, self._pointers, strict=True)):
            template[i].pValue, template[i].ulValueLen = pointer, len(buffer)
        rv = self._function(CK_ULONG(session), CK_ULONG(handle), template, self._count)
        if rv not in (CKR_OK, CKR_ATTRIBUTE_SENSITIVE, CKR_ATTRIBUTE_TYPE_INVALID, CKR_BUFFER_TOO_SMALL):
            raise CryptokiError("C_GetAttributeValue", rv)
        out: dict[int, bytes | None] = {}
        for i, kind in enumerate(self._kinds):
            size = template[i].ulValueLen
            out[kind] = None if size == CK_UNAVAILABLE_INFORMATION else ctypes.string_at(self._buffers[i], size)
        if rv == CKR_BUFFER_TOO_SMALL:
            return self.complete(session, handle, out, self._kinds)
        return out

    def complete(self, session: int, handle: int, values: dict[int, bytes | None],
                 needed: tuple[int, ...]) -> dict[int, bytes | None]:
        """``values`` with those of ``needed`` that read as None asked for again: sized in one call
        (a NULL pValue asks for the length), then read into buffers of that size; still None
        when the object lacks or hides them."""
        missing = [kind for kind in needed if values.get(kind) is None]
        if not missing:
            return values
        template = (_Attribute * len(missing))()
        for i, kind in enumerate(missing):
            template[i].type, template[i].pValue, template[i].ulValueLen = kind, None, 0
        count = CK_ULONG(len(missing))
        rv = self._function(CK_ULONG(session), CK_ULONG(handle), template, count)
        if rv not in (CKR_OK, CKR_ATTRIBUTE_SENSITIVE, CKR_ATTRIBUTE_TYPE_INVALID):
            raise CryptokiError("C_GetAttributeValue", rv)
        buffers: list[ctypes.Array[ctypes.c_char] | None] = []
        for i in range(len(missing)):
            size = template[i].ulValueLen
            buffer = ctypes.create_string_buffer(max(size, 1)) if size != CK_UNAVAILABLE_INFORMATION else None
            buffers.append(buffer)
            template[i].pValue = ctypes.cast(buffer, ctypes.c_void_p) if buffer is not None else None
        rv = self._function(CK_ULONG(session), CK_ULONG(handle), template, count)
        if rv not in (CKR_OK, CKR_ATTRIBUTE_SENSITIVE, CKR_ATTRIBUTE_TYPE_INVALID):
            raise CryptokiError("C_GetAttributeValue", rv)
        out = dict(values)
        for i, kind in enumerate(missing):
            size, buffer = template[i].ulValueLen, buffers[i]
            out[kind] = None if size == CK_UNAVAILABLE_INFORMATION or buffer is None else ctypes.string_at(buffer, size)
        return out
