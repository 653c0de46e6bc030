"""Card personalisation: the process that makes and changes card tokens.

As in real card personalisation, a separate process holds the card folder: :class:`CardWriter`
runs in it (``python -m cardsim.personalisation``, started by :class:`PersonalisationStation`)
and the CA side talks to it over a pipe, so key generation on one card overlaps the CA side's
signing for another. The writer generates the keys on the card and writes the objects
the CA side signed; private keys never leave the token, only public keys come back.

Process rules (docs/platform-notes.md, Process model): one process, no threads, PKCS#11 initialised with OS
locking. Cards are sharded (cardsim.config): the writer opens a shard's own SoftHSM2 instance
(cardsim.shard_module) the first time it touches a card of that shard, indexes that shard's slots
by label once and adds new cards as they are made, so making or finding a card costs the same
with 10,000 cards as with 100. The child dies with its parent (PR_SET_PDEATHSIG), so a killed
issuer leaves no writer behind.
"""

from __future__ import annotations

import ctypes
import logging
import os
import pickle
import shutil
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from cardsim import cryptoki as ck
from cardsim import errors
from cardsim.config import CardSettings, CardShard
from cardsim.pins import TryCounter, check_pin_form, check_puk_form
from cardsim.shard_module import read_token_info

#: labels and ids of what a card holds (ids pair each certificate with its key, PKCS#11 v2.40 4.4)
AUTH_KEY, SIGN_KEY = "citizen-auth", "citizen-sign"
KEY_IDS = {AUTH_KEY: b"\x01", SIGN_KEY: b"\x02"}
APPLICATION = "tessera-card"
log = logging.getLogger("tessera.cards")
_CURVES = {"ec-p256": ec.SECP256R1(), "ec-p384": ec.SECP384R1()}


@dataclass(frozen=True)
class CardObject:
    """A certificate or data object to write on a card."""

    label: str
    value: bytes
    kind: str = "data"  # "data" or "certificate"
    private: bool = False
    subject: bytes = b""  # certificates: DER subject, issuer, serial (PKCS#11 v2.40 section 4.6.3)
    issuer: bytes = b""
    serial: bytes = b""


def _wrong_pin(exc: Exception) -> bool:
    return isinstance(exc, ck.CryptokiError) and exc.rv in (ck.CKR_PIN_INCORRECT, ck.CKR_PIN_LOCKED)


def token_folder(token_dir: Path, serial: str) -> Path | None:
    """SoftHSM2 names a token's folder by a UUID whose last 16 hex digits are its serial."""
    if len(serial) != 16 or any(c not in "0123456789abcdef" for c in serial):
        return None
    matches = list(token_dir.glob(f"*-*-*-{serial[:4]}-{serial[4:]}"))
    return matches[0] if len(matches) == 1 else None


def find_token_folder_by_label(token_dir: Path, label: str, newer_than: float) -> list[Path]:
    """Crash recovery only: folders changed after ``newer_than`` whose token carries ``label``, and
    folders of that time whose token SoftHSM never finished writing (no or an empty token.object:
    the issuer was killed inside C_InitToken, before the token had a label to find it by)."""
    wanted = label.encode().ljust(32, b" ")
    found = []
    with os.scandir(token_dir) as entries:
        for entry in entries:
            try:
                if entry.is_dir() and entry.stat().st_mtime >= newer_than - 1:
                    token_object = Path(entry.path) / "token.object"
                    if not token_object.exists() or token_object.stat().st_size == 0:
                        found.append(Path(entry.path))
                        continue
                    if wanted in token_object.read_bytes():
                        found.append(Path(entry.path))
            except OSError:
                continue
    return found


class ShardTokens:
    """One card shard in this process: its own SoftHSM2 instance and a label -> slot index,
    built once (O(cards of the shard)) and kept up to date as cards are made here."""

    def __init__(self, shard: CardShard, module_path: str) -> None:
        self.shard = shard
        self.full_scans = 0  # how often the index had to be rebuilt (the benchmark reports it)
        with shard.locked(exclusive=False):
            self.p11 = ck.Cryptoki(module_path, shard.softhsm_conf)
            self.index()

    def index(self) -> None:
        """Label -> (slot, serial) of every card token, and the first free slot. A token SoftHSM2
        cannot read (its writer was killed while writing token.object: C_GetTokenInfo fails with
        CKR_GENERAL_ERROR for good) is left out, as the readers leave it out
        (cardsim.shard_module): one broken token must not stop every card after it."""
        self.slots: dict[str, tuple[int, str]] = {}
        self.free_slot: int | None = None
        for slot_id in self.p11.slot_ids():
            info = self._token_info(slot_id)
            if info is None:
                continue
            label, serial, initialised = info
            if initialised:
                self.slots[label] = (slot_id, serial)
            elif self.free_slot is None:
                self.free_slot = slot_id

    def _token_info(self, slot_id: int) -> tuple[str, str, bool] | None:
        """The slot's token info; None (logged) if it cannot be read (read_token_info)."""
        info = read_token_info(lambda: self.p11.token_info(slot_id), (ck.CryptokiError,))
        if info is None:
            log.warning("card shard %d: the token in slot %d cannot be read; left out", self.shard.index, slot_id)
        return info

    def reinitialise(self) -> None:
        """See cards made by other processes (and forget deleted ones): C_Finalize, C_Initialize.
        Every open session of this shard is invalid afterwards."""
        with self.shard.locked(exclusive=False):
            self.p11.reinitialize()
            self.index()

    def next_free_slot(self, used: int) -> int:
        """SoftHSM2 appends a fresh free slot after C_InitToken: try the next id, then the last
        slot of the list (one C call), and only then the full index of the shard."""
        for guess in (used + 1, None):
            try:
                slot = guess if guess is not None else self.p11.slot_ids()[-1]
                if not self.p11.token_info(slot)[2]:
                    return slot
            except (ck.CryptokiError, IndexError):
                pass
        self.full_scans += 1
        self.index()
        assert self.free_slot is not None
        return self.free_slot


class CardWriter:
    """The card side of personalisation, inside the process that owns the card folder."""

    def __init__(self, settings: CardSettings) -> None:
        self.settings = settings
        self._shards: dict[int, ShardTokens] = {}
        self._open: dict[str, int] = {}  # card number -> logged-in session of a card being made

    # -- shards and slots -------------------------------------------------------------------
    def _tokens(self, number: str, create: bool = False) -> ShardTokens | None:
        """The shard of card ``number`` (made when ``create``); None if it does not exist."""
        shard = self.settings.shard_of(number)
        tokens = self._shards.get(shard.index)
        if tokens is None:
            if create:
                shard.prepare()
            elif not shard.exists():
                return None
            tokens = self._shards[shard.index] = ShardTokens(shard, self.settings.module_path)
        return tokens

    def _reinitialise(self, tokens: ShardTokens) -> None:
        for number in [n for n in self._open if self.settings.shard_of(n).index == tokens.shard.index]:
            tokens.p11.close_session(self._open.pop(number))
        tokens.reinitialise()

    def p11_of(self, number: str) -> ck.Cryptoki:
        tokens = self._tokens(number)
        if tokens is None:
            raise errors.CardNotFound(f"no card {number} in the card folder")
        return tokens.p11

    def _slot(self, number: str) -> tuple[ck.Cryptoki, int]:
        tokens = self._tokens(number)
        if tokens is not None and number not in tokens.slots:
            self._reinitialise(tokens)
        if tokens is None or number not in tokens.slots:
            raise errors.CardNotFound(f"no card {number} in the card folder")
        return tokens.p11, tokens.slots[number][0]

    def counter(self, number: str) -> TryCounter:
        return TryCounter(self.settings.counter_dir, number, self.settings.fsync_counters)

    # -- making a card --------------------------------------------------------------------
    def create_card(self, number: str, pin: str, puk: str) -> dict[str, Any]:
        """C_InitToken (PUK as SO PIN), C_InitPIN, then both key pairs generated on the card."""
        check_pin_form(pin)
        check_puk_form(puk)
        tokens = self._tokens(number, create=True)
        assert tokens is not None
        if number in tokens.slots:
            raise errors.InvalidCardState(f"a card labelled {number} already exists in the card folder")
        p11 = tokens.p11
        with tokens.shard.locked(exclusive=True):  # no other process reads the folder meanwhile
            if tokens.free_slot is None:
                tokens.index()
            slot = tokens.free_slot
            assert slot is not None
            p11.init_token(slot, puk, number)
            label, serial, _ = p11.token_info(slot)
            tokens.slots[number] = (slot, serial)
            tokens.free_slot = tokens.next_free_slot(slot)
        counter = self.counter(number)
        counter.create()
        session = p11.open_session(slot)
        try:
            p11.login(session, ck.CKU_SO, puk)
            p11.init_pin(session, pin)
            p11.logout(session)
            p11.login(session, ck.CKU_USER, pin)
            public = {name: self._generate(p11, session, name) for name in (AUTH_KEY, SIGN_KEY)}
        except ck.CryptokiError as exc:
            p11.close_session(session)
            raise errors.CardWriteFailed(f"card {number}: {exc}") from None
        self._open[number] = session
        return {"serial": serial, "public_keys": public}

    def _generate(self, p11: ck.Cryptoki, session: int, name: str) -> bytes:
        """A sign-only key pair: sensitive, never extractable (PKCS#11 v2.40 section 4.9)."""
        common: dict[int, bool | int | str | bytes] = {ck.CKA_TOKEN: True, ck.CKA_LABEL: name, ck.CKA_ID: KEY_IDS[name]}
        public = {**common, ck.CKA_PRIVATE: False, ck.CKA_VERIFY: True, ck.CKA_ENCRYPT: False, ck.CKA_WRAP: False,
                  ck.CKA_VERIFY_RECOVER: False, ck.CKA_MODIFIABLE: False}
        private = {**common, ck.CKA_PRIVATE: True, ck.CKA_SENSITIVE: True, ck.CKA_EXTRACTABLE: False,
                   ck.CKA_SIGN: True, ck.CKA_DECRYPT: False, ck.CKA_UNWRAP: False, ck.CKA_DERIVE: False,
                   ck.CKA_SIGN_RECOVER: False, ck.CKA_MODIFIABLE: False}
        pub, _ = p11.generate_ec_key_pair(session, ck.EC_PARAMS[self.settings.key_type], public, private)
        point = p11.attribute(session, pub, ck.CKA_EC_POINT)
        # CKA_EC_POINT is the DER OCTET STRING of the uncompressed point (X9.62)
        raw = point[2:] if point[1] < 0x80 else point[2 + (point[1] & 0x7F):]
        key = ec.EllipticCurvePublicKey.from_encoded_point(_CURVES[self.settings.key_type], raw)
        return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)

    def write_objects(self, number: str, objects: list[CardObject]) -> None:
        """Write what the CA side signed onto the card being made, then log out."""
        session = self._open.pop(number, None)
        if session is None:
            raise errors.InvalidCardState(f"card {number} is not being personalised here")
        p11 = self.p11_of(number)
        try:
            for obj in objects:
                self._create(p11, session, obj)
        except (ck.CryptokiError, TypeError) as exc:
            raise errors.CardWriteFailed(f"card {number}: {exc}") from None
        finally:
            p11.close_session(session)

    def _create(self, p11: ck.Cryptoki, session: int, obj: CardObject) -> None:
        if obj.kind == "certificate":
            p11.create_object(session, {
                ck.CKA_CLASS: ck.CKO_CERTIFICATE, ck.CKA_CERTIFICATE_TYPE: ck.CKC_X_509, ck.CKA_TOKEN: True,
                ck.CKA_PRIVATE: False, ck.CKA_LABEL: obj.label, ck.CKA_ID: KEY_IDS[obj.label],
                ck.CKA_SUBJECT: obj.subject, ck.CKA_ISSUER: obj.issuer, ck.CKA_SERIAL_NUMBER: obj.serial,
                ck.CKA_VALUE: obj.value, ck.CKA_MODIFIABLE: False,
            })
        else:
            p11.create_object(session, {
                ck.CKA_CLASS: ck.CKO_DATA, ck.CKA_TOKEN: True, ck.CKA_PRIVATE: obj.private,
                ck.CKA_APPLICATION: APPLICATION, ck.CKA_LABEL: obj.label, ck.CKA_VALUE: obj.value,
            })

    def destroy(self, number: str, serial: str | None) -> bool:
        """Remove a half-made card: its token folder and its counter (all-or-nothing issuance)."""
        tokens = self._tokens(number)
        session = self._open.pop(number, None)
        if session is not None and tokens is not None:
            tokens.p11.close_session(session)
        entry = tokens.slots.pop(number, None) if tokens is not None else None
        serial = serial or (entry[1] if entry else None)
        folder = token_folder(self.settings.shard_of(number).token_dir, serial) if serial else None
        self.counter(number).remove()
        if folder is None or tokens is None:
            return False
        with tokens.shard.locked(exclusive=True):
            shutil.rmtree(folder, ignore_errors=True)
        self._reinitialise(tokens)  # SoftHSM must forget the deleted token before the next lookup
        return True

    # -- PIN-protected changes --------------------------------------------------------------
    def _user_session(self, number: str, pin: str) -> tuple[ck.Cryptoki, int]:
        """A session logged in with the user PIN, the try counted first (cardsim.pins)."""
        check_pin_form(pin)
        p11, slot = self._slot(number)
        session = p11.open_session(slot)
        try:
            self.counter(number).attempt_pin(lambda: p11.login(session, ck.CKU_USER, pin), _wrong_pin)
        except BaseException:
            p11.close_session(session)  # a failed login must not leak its session
            raise
        return p11, session

    def replace_objects(self, number: str, pin: str, objects: list[CardObject]) -> None:
        """Replace data objects by label (a department's record update and the new security object)."""
        p11, session = self._user_session(number, pin)
        try:
            try:
                old = {obj.label: p11.find_objects(session, {ck.CKA_CLASS: ck.CKO_DATA, ck.CKA_LABEL: obj.label})
                       for obj in objects}
                for obj in objects:
                    self._create(p11, session, obj)
                for handles in old.values():
                    for handle in handles:
                        p11.destroy_object(session, handle)
            except ck.CryptokiError as exc:
                raise errors.CardWriteFailed(f"card {number}: {exc}") from None
        finally:
            p11.close_session(session)

    def change_pin(self, number: str, old_pin: str, new_pin: str) -> None:
        check_pin_form(new_pin)
        p11, session = self._user_session(number, old_pin)
        try:
            p11.set_pin(session, old_pin, new_pin)
        except ck.CryptokiError as exc:
            raise errors.CardWriteFailed(f"card {number}: {exc}") from None
        finally:
            p11.close_session(session)

    def unblock(self, number: str, puk: str, new_pin: str) -> None:
        """Log in as SO with the PUK (counted) and set a new user PIN (C_InitPIN)."""
        check_pin_form(new_pin)
        check_puk_form(puk)
        p11, slot = self._slot(number)
        session = p11.open_session(slot)
        counter = self.counter(number)
        try:
            counter.attempt_puk(lambda: p11.login(session, ck.CKU_SO, puk), _wrong_pin)
            p11.init_pin(session, new_pin)
            counter.reset_after_unblock()
        finally:
            p11.close_session(session)

    def statistics(self) -> dict[str, float]:
        """For the benchmark: cards indexed, full index rebuilds, shards open, CPU seconds used."""
        return {"cards_indexed": sum(len(t.slots) for t in self._shards.values()),
                "full_scans": sum(t.full_scans for t in self._shards.values()), "shards_open": len(self._shards),
                "cpu_seconds": time.process_time()}

    def try_state(self, number: str) -> dict[str, int]:
        state = self.counter(number).read()
        return {"pin_failures": state.pin_failures, "puk_failures": state.puk_failures}


# -- the pipe between the CA side and the writer ------------------------------------------
_FRAME = struct.Struct("<I")


def _send(stream: IO[bytes], message: object) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_FRAME.pack(len(data)) + data)
    stream.flush()


def _receive(stream: IO[bytes]) -> Any:
    header = stream.read(_FRAME.size)
    if len(header) < _FRAME.size:
        raise EOFError
    (length,) = _FRAME.unpack(header)
    data = stream.read(length)
    if len(data) < length:
        raise EOFError
    return pickle.loads(data)  # only ever from our own parent or child process


_OPERATIONS = ("create_card", "write_objects", "destroy", "replace_objects", "change_pin", "unblock", "try_state",
               "statistics")


def serve(settings: CardSettings) -> None:
    """The writer's loop: one request, one answer, until the parent closes the pipe."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL: die with the issuer
    requests = os.fdopen(os.dup(0), "rb")
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # nothing else may write into the answer pipe
    writer = CardWriter(settings)
    _send(answers, ("ready", None))
    while True:
        try:
            operation, kwargs = _receive(requests)
        except EOFError:
            return
        if operation not in _OPERATIONS:
            _send(answers, ("error", "CardError", f"unknown operation {operation}"))
            continue
        try:
            result = getattr(writer, operation)(**kwargs)
        except errors.CardError as exc:
            extra = {"remaining": exc.remaining} if isinstance(exc, errors.WrongPin) else {}
            _send(answers, ("error", type(exc).__name__, str(exc), extra))
        except Exception as exc:  # reported to the parent, which raises CardWriteFailed
            _send(answers, ("error", "CardWriteFailed", f"{type(exc).__name__}: {exc}", {}))
        else:
            _send(answers, ("ok", result))


class PersonalisationStation:
    """The CA side's handle on the writer process (started on first use, one per process)."""

    def __init__(self, settings: CardSettings) -> None:
        self.settings = settings
        self._process: subprocess.Popen[bytes] | None = None

    def _start(self) -> subprocess.Popen[bytes]:
        if self._process is not None and self._process.poll() is None:
            return self._process
        self.settings.require()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TESSERA_CARD_", "SOFTHSM2_"))}
        env.update(TESSERA_CARD_DIR=str(self.settings.folder),
                   TESSERA_CARD_KEY_TYPE=self.settings.key_type, TESSERA_CARD_PKCS11_MODULE=self.settings.module_path,
                   TESSERA_CARD_FSYNC="1" if self.settings.fsync_counters else "0",
                   TESSERA_CARD_VALIDITY_DAYS=str(self.settings.validity.days))
        if os.environ.get("TESSERA_CARD_CRASH_AT"):  # fault injection of the crash tests
            env["TESSERA_CARD_CRASH_AT"] = os.environ["TESSERA_CARD_CRASH_AT"]
        process = subprocess.Popen([sys.executable, "-m", "cardsim.personalisation", str(self.settings.home)],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self._process = process
        assert process.stdout is not None
        try:
            ready = _receive(process.stdout)
        except EOFError:
            raise errors.CardWriteFailed("the card personalisation process did not start") from None
        if ready != ("ready", None):
            raise errors.CardWriteFailed("the card personalisation process answered nonsense")
        return process

    def send(self, operation: str, **kwargs: Any) -> None:
        """Start ``operation`` in the writer; :meth:`receive` collects its answer."""
        process = self._start()
        assert process.stdin is not None
        try:
            _send(process.stdin, (operation, kwargs))
        except BrokenPipeError:
            self._process = None
            raise errors.CardWriteFailed("the card personalisation process stopped") from None

    def receive(self) -> Any:
        process = self._process
        if process is None or process.stdout is None:
            raise errors.CardWriteFailed("the card personalisation process stopped")
        try:
            answer = _receive(process.stdout)
        except EOFError:
            self._process = None
            raise errors.CardWriteFailed("the card personalisation process stopped") from None
        if answer[0] == "ok":
            return answer[1]
        _, name, message, extra = answer
        cls = getattr(errors, name, errors.CardWriteFailed)
        if cls is errors.WrongPin:
            raise errors.WrongPin(message, extra.get("remaining", 0))
        raise cls(message)

    def call(self, operation: str, **kwargs: Any) -> Any:
        self.send(operation, **kwargs)
        return self.receive()

    def close(self) -> None:
        if self._process is not None:
            process, self._process = self._process, None
            if process.stdin:
                process.stdin.close()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout:
                process.stdout.close()


if __name__ == "__main__":  # the writer process
    serve(CardSettings.from_env(Path(sys.argv[1])))
