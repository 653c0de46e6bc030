"""The card agent: runs on the citizen's machine and lets the IdP's login page use the card.

It plays the part of Web eID's native application and browser extension in one small HTTP
server on 127.0.0.1 (never another address). The login page's JavaScript asks it:

* ``GET /card``: which card it talks to (number, holder, the authentication certificate), so the
  page can show the citizen which card will be used;
* ``POST /authenticate`` with ``{"nonce": ..., "pin": ...}``: the PIN is checked through the card
  layer (:class:`cardsim.pins.TryCounter`: counted before the attempt, three tries), then the
  card's authentication key signs ``hash(origin) || hash(nonce)`` through PKCS#11, and the agent
  answers with a Web eID ``web-eid:1.0`` authentication token.

Only the configured IdP origin may call it: every request must carry that exact ``Origin`` (a
browser sets it and pages cannot forge it), and CORS answers name only that origin. The origin
the card signs is the configured one, never one taken from the request. The PIN goes from the
page to this agent on the same machine and never to the IdP.

Connections are served concurrently (one idle or slow connection must not block the page), each
on its own thread, at most :data:`MAX_CONNECTIONS` at once, and closed after
:data:`IDLE_TIMEOUT` seconds without a complete request. Every PKCS#11 call goes through one lock
(:attr:`CardSigner.lock`): SoftHSM2 tokens are damaged by concurrent PKCS#11 calls from several
threads of one process (docs/operations.md). Methods other than GET, POST and OPTIONS get a 405
problem detail (RFC 9457) with an ``Allow`` header (RFC 9110 section 15.5.6). One card per agent.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cardsim.citizens import holder_name
from cardsim.config import CardSettings
from cardsim.errors import CardError, CardNotFound
from cardsim.numbers import is_card_number
from cardsim.personalisation import AUTH_KEY
from cardsim.pins import TryCounter, check_pin_form
from cardsim.shard_module import ShardLibrary

APP_VERSION = "https://tessera.invalid/card-agent/1.0"
MAX_BODY = 4096
#: Web eID nonces are base64 of at least 32 bytes; refuse anything silly before touching the card
MAX_NONCE = 256
#: seconds a connection may stay without sending a complete request (headers and body)
IDLE_TIMEOUT = 10.0
#: connections served at once; more are closed at once (the login page needs one or two)
MAX_CONNECTIONS = 32
ALLOWED_METHODS = "GET, POST, OPTIONS"


@dataclass(frozen=True)
class CardInfo:
    number: str
    holder: str
    certificate_der: bytes
    algorithm: str

    def as_dict(self) -> dict[str, Any]:
        return {"card": self.number, "holder": self.holder, "algorithm": self.algorithm,
                "certificate": base64.b64encode(self.certificate_der).decode()}


class CardSigner:
    """One card, opened through python-pkcs11 on its shard's own module instance (cardsim.shard_module)."""

    def __init__(self, settings: CardSettings, number: str | None = None) -> None:
        import pkcs11
        from cryptography import x509
        from cryptography.hazmat.primitives.asymmetric import ec

        settings.require()
        self.settings = settings
        self._pkcs11 = pkcs11
        #: held around every PKCS#11 call once the agent serves (concurrent calls damage SoftHSM2 tokens)
        self.lock = threading.Lock()
        if number is not None:  # its shard, from the number
            shards = [settings.shard_of(number)] if is_card_number(number) else []
        else:  # "the card in the reader": only shards that hold a token are opened
            shards = [s for s in settings.existing_shards() if s.token_count()]
        found = []
        for shard in shards:
            if not shard.exists():
                continue
            library = ShardLibrary(shard, settings.module_path)
            found += [(library, t) for label, t in library.tokens.items() if label.isdigit()
                      and (number is None or label == number)]
        if not found:
            raise CardNotFound("no card in the reader" if number is None else f"card {number} is not in the reader")
        if number is None and len(found) > 1:
            raise CardNotFound(f"{len(found)} cards in the reader: choose one with --card")
        self._library, self.token = found[0]
        self.number = str(self.token.label)
        with self.token.open() as session:
            der = None
            for obj in session.get_objects({pkcs11.Attribute.CLASS: pkcs11.ObjectClass.CERTIFICATE,
                                            pkcs11.Attribute.LABEL: AUTH_KEY}):
                der = bytes(obj[pkcs11.Attribute.VALUE])
        if der is None:
            raise CardNotFound(f"card {self.number} holds no authentication certificate")
        cert = x509.load_der_x509_certificate(der)
        key = cert.public_key()
        size = key.curve.key_size if isinstance(key, ec.EllipticCurvePublicKey) else 0
        algorithm = {256: "ES256", 384: "ES384", 521: "ES512"}.get(size)
        if algorithm is None:
            raise CardError("the card's authentication key is not an EC P-256/P-384/P-521 key")
        self.info = CardInfo(self.number, holder_name(cert), der, algorithm)
        self._hash = {"ES256": hashlib.sha256, "ES384": hashlib.sha384, "ES512": hashlib.sha512}[algorithm]

    def authenticate(self, origin: str, nonce: str, pin: str) -> dict[str, str]:
        """The Web eID token: the card signs hash(origin) || hash(nonce) after a counted PIN try.

        One at a time (:attr:`lock`): the PIN try, the login and the signature of two requests never
        interleave on the token."""
        check_pin_form(pin)
        with self.lock:
            return self._authenticate(origin, nonce, pin)

    def _authenticate(self, origin: str, nonce: str, pin: str) -> dict[str, str]:
        pkcs11 = self._pkcs11
        counter = TryCounter(self.settings.counter_dir, self.number, self.settings.fsync_counters)

        def wrong(exc: Exception) -> bool:
            return isinstance(exc, (pkcs11.exceptions.PinIncorrect, pkcs11.exceptions.PinLocked))

        try:
            session = counter.attempt_pin(lambda: self.token.open(user_pin=pin), wrong)
        except CardError:
            # a failed login leaks its session in python-pkcs11 (docs/platform-notes.md): close them all
            self._library.close_all_sessions(self.token.slot.slot_id)
            raise
        try:
            key = session.get_key(object_class=pkcs11.ObjectClass.PRIVATE_KEY, label=AUTH_KEY)
            h = self._hash
            to_be_signed = h(origin.encode()).digest() + h(nonce.encode()).digest()
            # SoftHSM has no CKM_ECDSA_SHA256: hash here, sign the digest; raw r||s is JWS's form
            signature = bytes(key.sign(h(to_be_signed).digest(), mechanism=pkcs11.Mechanism.ECDSA))
        finally:
            session.close()
        return {"unverifiedCertificate": base64.b64encode(self.info.certificate_der).decode(),
                "algorithm": self.info.algorithm, "signature": base64.b64encode(signature).decode(),
                "format": "web-eid:1.0", "appVersion": APP_VERSION}


class AgentServer(ThreadingHTTPServer):
    """The agent's HTTP server (a thread per connection, at most :data:`MAX_CONNECTIONS`) with its
    card and the one origin it serves."""

    daemon_threads = True  # Ctrl-C does not wait for idle connections

    def __init__(self, port: int, origin: str, signer: CardSigner, idle_timeout: float = IDLE_TIMEOUT) -> None:
        self.origin = origin.rstrip("/")
        self.signer = signer
        self.idle_timeout = idle_timeout
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(("127.0.0.1", port), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):  # full: refuse at once rather than queue
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class _Handler(BaseHTTPRequestHandler):
    server: AgentServer
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        # the socket timeout StreamRequestHandler.setup applies (typeshed calls it a ClassVar; it is
        # read per handler): an idle or slow connection is closed
        self.timeout = self.server.idle_timeout  # type: ignore[misc]
        super().setup()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("do_"):  # any other method (PUT, DELETE, PATCH, HEAD, ...): 405
            return self._method_not_allowed
        raise AttributeError(name)

    def _method_not_allowed(self) -> None:
        raw = json.dumps({"type": "about:blank", "title": "Method Not Allowed", "status": 405,
                          "detail": f"this agent answers {ALLOWED_METHODS} only",
                          "error": "method-not-allowed"}).encode()
        self.send_response(405)
        self.send_header("Allow", ALLOWED_METHODS)
        self.send_header("Content-Type", "application/problem+json")
        self.send_header("Content-Length", str(len(raw)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(raw)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  (never log bodies: PINs)
        pass

    def _send(self, status: int, body: dict[str, Any], cors: bool = True) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Vary", "Origin")
        self.send_header("Connection", "close")
        self.close_connection = True  # one request per connection: nothing idles between the page's calls
        if cors:
            self.send_header("Access-Control-Allow-Origin", self.server.origin)
        self.end_headers()
        self.wfile.write(raw)

    def _origin_ok(self) -> bool:
        if self.headers.get("Origin") != self.server.origin:
            self._send(403, {"error": "origin-refused", "detail": "this agent answers only its configured IdP"},
                       cors=False)
            return False
        return True

    def do_OPTIONS(self) -> None:  # noqa: N802  (CORS preflight, Fetch standard section 3.2)
        if not self._origin_ok():
            return
        self.send_response(204)
        self.send_header("Access-Control-Allow-Origin", self.server.origin)
        self.send_header("Access-Control-Allow-Methods", "GET, POST")
        self.send_header("Access-Control-Allow-Headers", "Content-Type")
        self.send_header("Access-Control-Allow-Private-Network", "true")
        self.send_header("Access-Control-Max-Age", "600")
        self.send_header("Vary", "Origin")
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")
        self.close_connection = True
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802
        if not self._origin_ok():
            return
        if self.path != "/card":
            self._send(404, {"error": "not-found"})
            return
        self._send(200, self.server.signer.info.as_dict())

    def do_POST(self) -> None:  # noqa: N802
        if not self._origin_ok():
            return
        if self.path != "/authenticate":
            self._send(404, {"error": "not-found"})
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 < length <= MAX_BODY:
            self._send(400, {"error": "bad-request", "detail": "a JSON body of at most 4 KiB"})
            return
        try:
            body = json.loads(self.rfile.read(length))
            nonce, pin = body["nonce"], body["pin"]
            if not isinstance(nonce, str) or not isinstance(pin, str) or not 0 < len(nonce) <= MAX_NONCE:
                raise ValueError
        except (ValueError, KeyError, TypeError):
            self._send(400, {"error": "bad-request", "detail": "expected {\"nonce\": text, \"pin\": text}"})
            return
        try:
            token = self.server.signer.authenticate(self.server.origin, nonce, pin)
        except CardError as exc:
            answer: dict[str, Any] = {"error": exc.kind, "detail": str(exc)}
            remaining = getattr(exc, "remaining", None)
            if isinstance(remaining, int):
                answer["tries_left"] = remaining
            self._send(403 if exc.kind in ("wrong-pin", "pin-blocked", "card-blocked") else 400, answer)
            return
        except self.server.signer._pkcs11.exceptions.PKCS11Error as exc:
            self._send(503, {"error": "card-unavailable", "detail": type(exc).__name__})
            return
        self._send(200, token)


def serve(settings: CardSettings, origin: str, port: int, number: str | None = None,
          ready: Any = None, idle_timeout: float = IDLE_TIMEOUT) -> None:
    """Run the agent until interrupted."""
    signer = CardSigner(settings, number)
    server = AgentServer(port, origin, signer, idle_timeout)
    if ready is not None:
        ready(server, signer)
    try:
        server.serve_forever()
    finally:
        server.server_close()
