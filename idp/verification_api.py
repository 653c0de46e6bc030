"""The verification API for services, ``/api/v1`` (JSON in and out, OpenAPI 3.1, RFC 9457 errors).

* ``POST /api/v1/certificates/verify``: is this certificate valid now (or at a time) for a purpose
  (staff-auth, citizen-auth, signing, service)? Every reason, the chain, subject, profile and the
  revocation status with time, reason and source (:mod:`ca.validation`).
* ``POST /api/v1/signed-records/verify``: a CMS SignedData (RFC 5652) with id-data content:
  signature, the signer's certificate (purpose ``signing``), the content.
* ``POST /api/v1/signatures/verify``: a signature over data or its hash with a certificate.
* ``.../verify-batch`` of each (at most :data:`MAX_BATCH` items).

Services authenticate with their ``service`` certificate: ``Authorization: Bearer <JWT>``, a
short-lived JWS (RFC 7515/7519; ES256/ES384/RS256/PS256) signed by the service's key with its
certificate in the ``x5c`` header (RFC 7515 section 4.1.6), ``aud`` the API's URL, ``exp`` at
most ten minutes after ``iat``. The certificate is validated for the ``service`` purpose like any
other. Each service is rate limited (token bucket per worker process; a batch costs one token
per item) and every call is recorded: one ``api.verify`` audit entry and one
:class:`idp.citizen_models.VerificationLog` row per item, in one transaction.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import json  # the standard library's: Flask's provider sorts keys and goes through the app context
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from flask import Blueprint, Flask, Response, request
from joserfc.jws import JWSRegistry

from ca.validation import MALFORMED, CertificateVerdict, Reason, load_certificate
from idp.citizen_blueprints import services
from idp.json_input import JsonInputError, parse_json
from idp.problems import problem

bp = Blueprint("verification_api", __name__, url_prefix="/api/v1")


def _jws_registry(algorithms: list[str]) -> JWSRegistry:
    """joserfc's checks with ``algorithms`` only, and room for a certificate chain in the header:
    service assertions carry theirs in ``x5c`` (RFC 7515 section 4.1.6, up to 4 certificates), far
    above joserfc's default 512 bytes; the Authorization header is bounded at 16 KiB before this."""
    registry = JWSRegistry(algorithms=algorithms)
    registry.max_header_length = 16384
    return registry


#: service assertions (signed with the service certificate's key) and access tokens (the IdP's keys)
_ASSERTIONS = _jws_registry(["ES256", "ES384", "RS256", "PS256"])
_ACCESS_TOKENS = _jws_registry(["ES256", "RS256"])

MAX_BATCH = 100
#: a batch of 100 certificates with chains is larger than the service-wide request limit
MAX_BATCH_BYTES = 4 * 1024 * 1024
MAX_ASSERTION_LIFETIME = 600
PURPOSES = ("staff-auth", "citizen-auth", "signing", "service")
SOURCES = ("ocsp", "crl", "store")
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"sha256": hashes.SHA256, "sha384": hashes.SHA384,
                                                  "sha512": hashes.SHA512}


class BadInput(Exception):
    """A request body that does not match the OpenAPI description (a 400 problem)."""


# --- service authentication ---------------------------------------------------------------
@dataclass(frozen=True)
class ServiceIdentity:
    """Who calls: the service's name and the credential it showed (a certificate or an OAuth client)."""

    name: str
    certificate_serial: str | None = None
    client_id: str | None = None

    @property
    def rate_key(self) -> str:
        """Whose budget a call spends: the service account, or the certificate holder's name."""
        return f"client:{self.client_id}" if self.client_id else f"certificate:{self.name}"

    @property
    def audit_details(self) -> dict[str, str]:
        if self.client_id:
            return {"client_id": self.client_id}
        return {"service_certificate": self.certificate_serial or "-"}


class InsufficientScope(PermissionError):
    """A good access token without the ``verify`` scope (RFC 6750 section 3.1: 403 insufficient_scope)."""


#: the scope a service account's access token needs here (idp.oidc.clients.SERVICE_SCOPES)
SCOPE = "verify"


class ServiceAuthenticator:
    """Who is calling, from ``Authorization: Bearer <JWT>``: either

    * a service assertion: a JWT signed by the service's key with its ``service`` certificate in
      ``x5c`` (RFC 7515 section 4.1.6), ``aud`` this API; remembered until min(exp, 60 s); or
    * a service account's access token from the IdP's token endpoint (client credentials, RFC 6749
      section 4.4; RFC 9068 profile, ``typ`` at+jwt): signature by the IdP's key, ``iss``, ``aud``
      this API, ``exp`` and the ``verify`` scope checked once and remembered for the token's
      lifetime; on every call the token store confirms it is still live (not revoked, its account
      not removed), so a removal is seen by the next call.

    Verified tokens are remembered by the SHA-256 of the token, never the token itself.
    """

    def __init__(self, audience: str, issuer: str, idp_keys: Callable[[], Any],
                 live_token: Callable[[str], Any]) -> None:
        self.audience = audience
        self.issuer = issuer
        self._idp_keys = idp_keys
        self._live_token = live_token
        #: token hash -> (remember until, identity or the access token's client id)
        self._known: dict[str, tuple[float, ServiceIdentity | str]] = {}
        self._lock = threading.Lock()

    def authenticate(self, header: str | None) -> ServiceIdentity:
        from joserfc import jws
        from joserfc.errors import JoseError

        if not header or not header.startswith("Bearer ") or len(header) > 16384:
            raise PermissionError("a Bearer credential is required: a service assertion (JWT signed with the service "
                                  "certificate) or a service account's access token (client credentials)")
        credential = header[7:].strip()
        key = hashlib.sha256(credential.encode()).hexdigest()
        now = time.time()
        known = self._known.get(key)
        if known is None or known[0] <= now:
            try:  # the protected header only, to choose how to verify (RFC 7515 section 7.1)
                head = jws.extract_compact(credential.encode(), registry=_ASSERTIONS).headers()
            except (JoseError, ValueError, TypeError) as exc:
                raise PermissionError(f"the credential cannot be read: {type(exc).__name__}") from None
            if not isinstance(head, dict):
                raise PermissionError("the credential cannot be read: its header is not a JSON object")
            if "x5c" in head:
                known = self._assertion(credential, head, now)
            elif head.get("typ") == "at+jwt":
                known = self._access_token(credential, now)
            else:
                raise PermissionError("neither a service assertion (x5c) nor a service access token (typ at+jwt)")
            with self._lock:
                if len(self._known) > 10000:
                    self._known = {k: v for k, v in self._known.items() if v[0] > now}
                self._known[key] = known
        if isinstance(known[1], ServiceIdentity):
            return known[1]
        live = self._live_token(credential)
        if live is None:
            raise PermissionError("the access token was revoked, or its service account removed")
        return ServiceIdentity(live.name[:255], client_id=live.client_id)

    def _access_token(self, token: str, now: float) -> tuple[float, str]:
        """RFC 9068 section 4: signature, typ, iss, aud, exp; then the scope (RFC 6750 section 3.1)."""
        from joserfc import jwt as jose_jwt
        from joserfc.errors import JoseError

        try:
            decoded = jose_jwt.decode(token, self._idp_keys(), registry=_ACCESS_TOKENS)
            jose_jwt.JWTClaimsRegistry(leeway=30, iss={"essential": True, "value": self.issuer},
                                       aud={"essential": True, "value": self.audience}, exp={"essential": True},
                                       client_id={"essential": True}).validate(decoded.claims)
        except (JoseError, ValueError) as exc:
            raise PermissionError(f"the access token does not verify: {getattr(exc, 'error', type(exc).__name__)}") from None
        claims = decoded.claims
        if SCOPE not in str(claims.get("scope") or "").split():
            raise InsufficientScope(f"the access token lacks the {SCOPE!r} scope")
        client_id = claims["client_id"]
        if not isinstance(client_id, str) or not isinstance(claims["exp"], int):
            raise PermissionError("the access token does not verify: bad claims")
        return float(claims["exp"]), client_id

    def _assertion(self, assertion: str, head: dict[str, Any], now: float) -> tuple[float, ServiceIdentity]:
        from joserfc import jwt as jose_jwt
        from joserfc.errors import JoseError
        from joserfc.jwk import import_key

        chain = head.get("x5c")
        try:
            if not isinstance(chain, list) or not chain or not all(isinstance(c, str) for c in chain) or len(chain) > 4:
                raise PermissionError("the assertion has no x5c certificate chain")
            certs = [x509.load_der_x509_certificate(base64.b64decode(c, validate=True)) for c in chain]
        except (ValueError, binascii.Error) as exc:
            raise PermissionError(f"the assertion cannot be read: {type(exc).__name__}") from None
        # the JWT's signature first (with the key the assertion names), so an unauthenticated caller
        # gets no deep examination of the certificates it sends
        try:
            public = certs[0].public_key()
            kind = "RSA" if isinstance(public, rsa.RSAPublicKey) else "EC" if isinstance(public, ec.EllipticCurvePublicKey) else None
            if kind is None:
                raise PermissionError("the assertion does not verify: its certificate's key is neither RSA nor EC")
            key = import_key(public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo), kind)
        except MALFORMED as exc:
            raise PermissionError(f"the assertion's certificate cannot be read: {type(exc).__name__}") from None
        try:
            decoded = jose_jwt.decode(assertion, key, registry=_ASSERTIONS)
            jose_jwt.JWTClaimsRegistry(leeway=30, aud={"essential": True, "value": self.audience},
                                       exp={"essential": True}, iat={"essential": True},
                                       iss={"essential": True}).validate(decoded.claims)
        except (JoseError, ValueError, TypeError) as exc:
            why = getattr(exc, "description", None) or getattr(exc, "error", None) or type(exc).__name__
            raise PermissionError(f"the assertion does not verify: {why}") from None
        claims = decoded.claims
        verdict = services().certificates.validate(certs[0], "service", certs[1:], revocation_source="store")
        if not verdict.valid:
            raise PermissionError("the service certificate is not valid: " + "; ".join(r.code for r in verdict.reasons))
        exp, iat = claims.get("exp"), claims.get("iat")
        if not isinstance(exp, (int, float)) or not isinstance(iat, (int, float)) or exp - iat > MAX_ASSERTION_LIFETIME:
            raise PermissionError(f"an assertion lives at most {MAX_ASSERTION_LIFETIME} seconds")
        subject = certs[0].subject  # parsed: the verdict above found no malformed part
        cn = subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        org = subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)
        name = (str(org[0].value) + "/" if org else "") + (str(cn[0].value) if cn else subject.rfc4514_string())
        return min(float(exp), now + 60), ServiceIdentity(name[:255], format(certs[0].serial_number, "x"))


class RateLimiter:
    """A token bucket per service (per worker process): ``rate()`` per second (the value in force:
    the system administrator may change it at run time, idp.runtime_settings ``api.rate_per_second``),
    ``burst`` at most (default twice the rate, at least one full batch)."""

    def __init__(self, rate: Callable[[], float], burst: float | None = None) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, service: str, cost: int) -> float:
        """0 when allowed; otherwise the seconds to wait."""
        rate = float(self.rate())
        burst = self.burst if self.burst is not None else max(rate * 2, MAX_BATCH)
        now = time.monotonic()
        with self._lock:
            tokens, at = self._buckets.get(service, (burst, now))
            tokens = min(burst, tokens + (now - at) * rate)
            if tokens >= cost:
                self._buckets[service] = (tokens - cost, now)
                return 0.0
            self._buckets[service] = (tokens, now)
            return (cost - tokens) / rate if rate > 0 else 3600.0


# --- input ------------------------------------------------------------------------------
def _object(value: Any, allowed: set[str], required: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadInput("the body (or batch item) must be a JSON object")
    unknown = set(value) - allowed
    if unknown:
        raise BadInput(f"unknown field(s): {', '.join(sorted(unknown))[:200]}")
    missing = required - set(value)
    if missing:
        raise BadInput(f"missing field(s): {', '.join(sorted(missing))}")
    return value


def _text(item: dict[str, Any], name: str, limit: int = 65536) -> str:
    value = item.get(name)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise BadInput(f"{name} must be non-empty text of at most {limit} characters")
    return value


def _b64(item: dict[str, Any], name: str, limit: int = 65536) -> bytes:
    try:
        return base64.b64decode(_text(item, name, limit), validate=True)
    except (binascii.Error, ValueError):
        raise BadInput(f"{name} must be base64") from None


def _certificate(value: Any, name: str) -> x509.Certificate:
    if not isinstance(value, str) or not value or len(value) > 65536:
        raise BadInput(f"{name} must be a PEM or base64 DER certificate")
    try:
        return load_certificate(value)
    except ValueError:
        raise BadInput(f"{name} is not a PEM or base64 DER certificate") from None


def _chain(item: dict[str, Any]) -> list[x509.Certificate]:
    value = item.get("chain", [])
    if not isinstance(value, list) or len(value) > 8:
        raise BadInput("chain must be a list of at most 8 certificates")
    return [_certificate(c, f"chain[{i}]") for i, c in enumerate(value)]


def _time(item: dict[str, Any]) -> datetime.datetime | None:
    value = item.get("at")
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 40:
        raise BadInput("at must be an RFC 3339 date-time")
    try:
        moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadInput("at must be an RFC 3339 date-time") from None
    if moment.tzinfo is None:
        raise BadInput("at must carry a time zone (e.g. Z)")
    try:
        return moment.astimezone(datetime.timezone.utc)
    except (OverflowError, ValueError):
        raise BadInput("at is out of range") from None


def _choice(item: dict[str, Any], name: str, options: tuple[str, ...], default: str | None) -> str:
    value = item.get(name, default)
    if value not in options:
        raise BadInput(f"{name} must be one of {', '.join(options)}")
    return str(value)


# --- the three verifications ------------------------------------------------------------
@dataclass
class Outcome:
    body: dict[str, Any]
    national_id: str | None
    subject: str
    serial: str | None
    valid: bool


def _citizen_of(subject: dict[str, Any] | None, national_id: str | None) -> str | None:
    """The citizen behind a subject: the identity number a certificate carries (older card
    certificates), else the one its pseudonymous serialNumber maps to in the citizen registry
    (cardsim.pseudonyms: card certificates do not carry the number). Written into the subject
    for the authenticated service that asked."""
    from cardsim.pseudonyms import citizen_of, is_pseudonym

    if national_id is None and subject and is_pseudonym(subject.get("serial_number")):
        with services().deployment.sessions() as session:
            national_id = citizen_of(session, str(subject["serial_number"]))
        if national_id is not None:
            subject["national_id"] = national_id
    return national_id


def _verdict_outcome(verdict: CertificateVerdict) -> Outcome:
    body = verdict.as_dict()
    subject = body["subject"]["dn"][:255] if body["subject"] else ""
    national_id = _citizen_of(body["subject"], verdict.national_id)
    return Outcome(body, national_id, subject, body["serial"], verdict.valid)


def verify_certificate(item: Any) -> Outcome:
    item = _object(item, {"certificate", "chain", "at", "purpose", "revocation_source"}, {"certificate", "purpose"})
    cert = _certificate(item["certificate"], "certificate")
    purpose = _choice(item, "purpose", PURPOSES, None)
    source = _choice(item, "revocation_source", SOURCES, "ocsp")
    verdict = services().certificates.validate(cert, purpose, _chain(item), _time(item), source)
    return _verdict_outcome(verdict)


def verify_signed_record(item: Any) -> Outcome:
    from cardsim.trust import open_signed_data

    item = _object(item, {"record", "at", "revocation_source"}, {"record"})
    der = _b64(item, "record", 262144)
    source = _choice(item, "revocation_source", SOURCES, "ocsp")
    signed, check = open_signed_data(der)
    if signed is None:
        body = {"valid": False, "reasons": [{"code": check.reason, "detail": check.detail}], "signer": None,
                "content": None, "content_json": None, "signing_time": None}
        return Outcome(body, None, "unparsed record", None, False)
    at = _time(item) or signed.signing_time
    verdict = services().certificates.validate(signed.signer, "signing", list(signed.intermediates), at, source)
    content_json = None
    national_id = None
    try:
        content_json = parse_json(signed.content)
        if isinstance(content_json, dict):
            data = content_json.get("data")
            if isinstance(data, dict) and isinstance(data.get("national_id"), str):
                national_id = data["national_id"][:32]
            elif isinstance(content_json.get("card"), str):
                national_id = _card_holder(content_json["card"])
    except ValueError:
        content_json = None
    signer = verdict.as_dict()
    body = {"valid": verdict.valid, "reasons": [r.as_dict() for r in verdict.reasons],
            "signer": signer, "content": base64.b64encode(signed.content).decode(),
            "content_json": content_json if isinstance(content_json, (dict, list)) else None,
            "signing_time": signed.signing_time.isoformat() if signed.signing_time else None}
    return Outcome(body, national_id, _subject_text(signer), format(signed.signer.serial_number, "x"), verdict.valid)


def _subject_text(verdict: dict[str, Any]) -> str:
    """The signer's DN for the verification log, from its verdict (none for a malformed certificate)."""
    subject = verdict.get("subject")
    return str(subject["dn"])[:255] if subject else "malformed certificate"


def _card_holder(number: str) -> str | None:
    from sqlalchemy import text

    with services().deployment.engine.connect() as conn:
        row = conn.execute(text("SELECT national_id FROM card WHERE number = :n"), {"n": number[:16]}).first()
    return str(row[0]) if row else None


def verify_signature(item: Any) -> Outcome:
    item = _object(item, {"data", "digest", "hash_algorithm", "signature", "certificate", "chain", "at", "purpose",
                          "revocation_source"}, {"signature", "certificate"})
    if ("data" in item) == ("digest" in item):
        raise BadInput("give exactly one of data and digest")
    hash_name = _choice(item, "hash_algorithm", tuple(_HASHES), "sha256")
    algorithm = _HASHES[hash_name]()
    cert = _certificate(item["certificate"], "certificate")
    signature = _b64(item, "signature", 4096)
    purpose = _choice(item, "purpose", PURPOSES, "signing")
    source = _choice(item, "revocation_source", SOURCES, "ocsp")
    if "data" in item:
        message, prehashed = _b64(item, "data", 262144), False
    else:
        message, prehashed = _b64(item, "digest", 128), True
        if len(message) != algorithm.digest_size:
            raise BadInput(f"digest must be {algorithm.digest_size} bytes for {hash_name}")
    reasons: list[Reason] = []
    try:
        _check_signature(cert.public_key(), signature, message, algorithm, prehashed)
    except (InvalidSignature, *MALFORMED):
        reasons.append(Reason("bad-signature", "the signature does not verify with the certificate's key"))
    verdict = services().certificates.validate(cert, purpose, _chain(item), _time(item), source)
    reasons += list(verdict.reasons)
    signer = verdict.as_dict()
    body = {"valid": not reasons, "reasons": [r.as_dict() for r in reasons], "signer": signer}
    national_id = _citizen_of(signer.get("subject"), verdict.national_id)
    return Outcome(body, national_id, _subject_text(signer), format(cert.serial_number, "x"), not reasons)


def _check_signature(key: Any, signature: bytes, message: bytes, algorithm: hashes.HashAlgorithm,
                     prehashed: bool) -> None:
    alg: Any = Prehashed(algorithm) if prehashed else algorithm
    if isinstance(key, ec.EllipticCurvePublicKey):
        size = (key.curve.key_size + 7) // 8
        if len(signature) == 2 * size and signature[0] != 0x30:  # raw r||s (JWS form)
            signature = encode_dss_signature(int.from_bytes(signature[:size], "big"),
                                             int.from_bytes(signature[size:], "big"))
        key.verify(signature, message, ec.ECDSA(alg))
    elif isinstance(key, rsa.RSAPublicKey):
        key.verify(signature, message, padding.PKCS1v15(), alg)
    else:
        raise TypeError("unsupported key type")


# --- the endpoints ----------------------------------------------------------------------
_OPERATIONS = {"certificate": verify_certificate, "signed-record": verify_signed_record, "signature": verify_signature}


def _authenticated(cost: int) -> ServiceIdentity | Response:
    state = _state()
    try:
        identity = state.authenticator.authenticate(request.headers.get("Authorization"))
    except InsufficientScope as exc:
        response = problem(403, "Insufficient scope", str(exc), "api/insufficient-scope")
        response.headers["WWW-Authenticate"] = f'Bearer realm="tessera-api", error="insufficient_scope", scope="{SCOPE}"'
        return response
    except PermissionError as exc:
        response = problem(401, "Service authentication required", str(exc), "api/unauthenticated")
        response.headers["WWW-Authenticate"] = 'Bearer realm="tessera-api"'
        return response
    wait = state.limiter.take(identity.rate_key, cost)
    if wait > 0:
        response = problem(429, "Too many requests", f"rate limit of {state.limiter.rate():g}/s for {identity.name}",
                           "api/rate-limited")
        response.headers["Retry-After"] = str(max(1, int(wait + 0.999)))
        return response
    return identity


class GroupCommit:
    """Writes what concurrent calls of one process hand it in shared transactions (group commit).

    Each call takes a :meth:`ticket` when it starts. A call that has its records hands them in and
    waits; the first one to find no write in progress becomes the writer: it waits (at most
    :data:`LINGER` seconds) for the calls still in progress in this process, then writes everything
    handed in so far in ONE transaction and wakes the others. Nobody is answered before the
    transaction holding their record has committed, and a failed transaction fails every call in
    it, so each call stays recorded-or-refused; a group pays one BEGIN/COMMIT, one turn of the
    store's write lock and one audit entry per service instead of one per call.
    """

    LINGER = 0.002

    def __init__(self, write: Callable[[list[Any]], None]) -> None:
        self._write = write
        self._ready = threading.Condition()
        self._pending: list[_Pending] = []
        self._writing = False
        self._running = 0  # calls holding a ticket that have not handed in their records yet

    @contextmanager
    def ticket(self) -> Iterator["_Ticket"]:
        """For the duration of one call: its way to :meth:`_Ticket.submit` its records."""
        ticket = _Ticket(self)
        with self._ready:
            self._running += 1
        try:
            yield ticket
        finally:
            if not ticket.used:
                with self._ready:
                    self._running -= 1
                    self._ready.notify_all()

    def _submit(self, ticket: "_Ticket", item: Any) -> None:
        mine = _Pending(item)
        with self._ready:
            ticket.used = True
            self._running -= 1
            self._pending.append(mine)
            self._ready.notify_all()
            while self._writing and not mine.done:
                self._ready.wait()
            if mine.done:
                if mine.error is not None:
                    raise mine.error
                return
            self._writing = True
            deadline = time.monotonic() + self.LINGER
            while self._running > 0 and (left := deadline - time.monotonic()) > 0:
                self._ready.wait(left)
            group, self._pending = self._pending, []
        error: BaseException | None = None
        try:
            self._write([p.item for p in group])
        except BaseException as exc:  # noqa: BLE001  (handed to every call of the group, then raised)
            error = exc
        with self._ready:
            for pending in group:
                pending.done, pending.error = True, error
            self._writing = False
            self._ready.notify_all()
        if error is not None:
            raise error


class _Ticket:
    def __init__(self, group: GroupCommit) -> None:
        self.group = group
        self.used = False

    def submit(self, item: Any) -> None:
        """Return once ``item`` is committed; raise what the write raised if it was not."""
        if self.used:
            raise RuntimeError("a ticket records one call")
        self.group._submit(self, item)


@dataclass
class _Pending:
    item: Any
    done: bool = False
    error: BaseException | None = None


@dataclass(frozen=True)
class _Call:
    """What one API call leaves behind: its verification-log rows and what its audit entry says."""

    service: str
    object: str
    source_address: str | None
    details: dict[str, Any]
    rows: list[dict[str, Any]]


#: an audit entry's details are at most 4 KiB (audit.trail.MAX_DETAILS_BYTES): calls per shared entry
_CALLS_PER_ENTRY_BYTES = 3000


def _record(ticket: _Ticket, identity: ServiceIdentity, operation: str, outcomes: list[Outcome]) -> None:
    """A verification-log row per item and the call in an ``api.verify`` audit entry, committed
    (with the records of concurrent calls, :class:`GroupCommit`) before the answer goes out."""
    now = services().deployment.now()
    rows = [{"at": now, "service": identity.name, "operation": operation, "national_id": o.national_id,
             "subject": o.subject or "-", "certificate_serial": o.serial, "outcome": "valid" if o.valid else "invalid"}
            for o in outcomes]
    details: dict[str, Any] = {"citizens": sorted({o.national_id for o in outcomes if o.national_id})[:50],
                               "items": len(outcomes), "valid": sum(o.valid for o in outcomes)}
    details.update(identity.audit_details)
    obj = f"{operation}:{outcomes[0].serial or '-'}" if len(outcomes) == 1 else f"{operation}:batch"
    ticket.submit(_Call(identity.name, obj, (request.remote_addr or "")[:64] or None, details, rows))


def _audit_events(calls: list[_Call]) -> list[Any]:
    """The ``api.verify`` entries of a group: a call alone is one entry (subject ``service:<name>``,
    the citizens concerned, item and valid counts, the credential); concurrent calls of one service
    share an entry that lists each call (``calls``), as a batch request's items do."""
    from audit.trail import AuditEvent

    by_service: dict[str, list[_Call]] = {}
    for call in calls:
        by_service.setdefault(call.service, []).append(call)
    events = []
    for service, mine in by_service.items():
        chunks: list[list[_Call]] = [[]]
        size = 0
        for call in mine:
            # its share of the entry's canonical JSON, over-estimated (no encoding on the hot path)
            cost = 120 + len(call.object) + 18 * len(call.details["citizens"]) + len(call.source_address or "")
            if chunks[-1] and size + cost > _CALLS_PER_ENTRY_BYTES:
                chunks.append([])
                size = 0
            chunks[-1].append(call)
            size += cost
        for chunk in chunks:
            addresses = {c.source_address for c in chunk}
            address = chunk[0].source_address if len(addresses) == 1 else None
            if len(chunk) == 1:
                obj, details = chunk[0].object, chunk[0].details
            else:
                obj = f"calls:{len(chunk)}"
                details = {"calls": [{"object": c.object, **c.details} | ({} if address else {"source_address": c.source_address})
                                     for c in chunk]}
            events.append(AuditEvent("api.verify", f"service:{service}"[:255], "success", subject_role="service",
                                     object=obj, source_address=address, details=details))
    return events


def _write_calls(calls: list[_Call]) -> None:
    """One transaction for a group of calls: every log row (one Core insert), their audit entries."""
    from sqlalchemy import insert

    from idp.citizen_models import VerificationLog

    deployment = services().deployment
    trail = deployment.audit  # the deployment's trail: it also makes the periodic signed checkpoints
    rows = [row for call in calls for row in call.rows]
    events = _audit_events(calls)
    with deployment.sessions.begin() as session:
        session.execute(insert(VerificationLog.__table__), rows)  # Core: no unit of work for rows nobody reads back
        for event in events:
            trail.append(session, event)


def _json_body() -> Any:
    """The request's JSON (bounded: :mod:`idp.json_input`)."""
    if request.mimetype != "application/json":
        raise BadInput("send application/json")
    try:
        return parse_json(request.get_data(cache=False))
    except JsonInputError as exc:
        raise BadInput(str(exc)) from None


def _single(operation: str) -> Response:
    with _state().recorder.ticket() as ticket:
        return _single_call(ticket, operation)


def _single_call(ticket: _Ticket, operation: str) -> Response:
    identity = _authenticated(1)
    if isinstance(identity, Response):
        return identity
    try:
        outcome = _OPERATIONS[operation](_json_body())
    except BadInput as exc:
        return problem(400, "Bad request", str(exc), "api/bad-request")
    _record(ticket, identity, operation, [outcome])
    return Response(json.dumps(outcome.body), mimetype="application/json")


def _batch(operation: str) -> Response:
    with _state().recorder.ticket() as ticket:
        return _batch_call(ticket, operation)


def _batch_call(ticket: _Ticket, operation: str) -> Response:
    try:
        body = _json_body()
        body = _object(body, {"items"}, {"items"})
        items = body["items"]
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH:
            raise BadInput(f"items must be a list of 1 to {MAX_BATCH} requests")
    except BadInput as exc:
        identity = _authenticated(1)
        if isinstance(identity, Response):
            return identity
        return problem(400, "Bad request", str(exc), "api/bad-request")
    identity = _authenticated(len(items))
    if isinstance(identity, Response):
        return identity
    outcomes = []
    for i, item in enumerate(items):
        try:
            outcomes.append(_OPERATIONS[operation](item))
        except BadInput as exc:
            return problem(400, "Bad request", f"items[{i}]: {exc}", "api/bad-request")
    _record(ticket, identity, operation, outcomes)
    return Response(json.dumps({"results": [o.body for o in outcomes]}), mimetype="application/json")


@bp.before_request
def _batch_size() -> None:
    if request.endpoint and request.endpoint.endswith("_batch"):
        request.max_content_length = MAX_BATCH_BYTES


@bp.after_request
def _no_store(response: Response) -> Response:
    """Verdicts name citizens (subject, national id, record content): no cache may keep an answer
    (RFC 9111 section 5.2.2.5), errors included; the OpenAPI description sets its own."""
    response.headers.setdefault("Cache-Control", "no-store")
    return response


@bp.post("/certificates/verify")
def certificate() -> Response:
    return _single("certificate")


@bp.post("/certificates/verify-batch")
def certificate_batch() -> Response:
    return _batch("certificate")


@bp.post("/signed-records/verify")
def signed_record() -> Response:
    return _single("signed-record")


@bp.post("/signed-records/verify-batch")
def signed_record_batch() -> Response:
    return _batch("signed-record")


@bp.post("/signatures/verify")
def signature() -> Response:
    return _single("signature")


@bp.post("/signatures/verify-batch")
def signature_batch() -> Response:
    return _batch("signature")


@bp.get("/openapi.json")
def openapi() -> Response:
    response = Response(json.dumps(document(services().deployment.settings.public_url)), mimetype="application/json")
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


# --- per-process state --------------------------------------------------------------------
@dataclass
class _ApiState:
    authenticator: ServiceAuthenticator
    limiter: RateLimiter
    recorder: GroupCommit


def _state() -> _ApiState:
    from flask import current_app

    return current_app.extensions["tessera.api"]  # type: ignore[no-any-return]


def install(app: Flask) -> None:
    """Per-process state; the API's endpoints carry no cookies, so CSRF does not apply to them."""
    from idp import csrf

    runtime = app.extensions["tessera"].runtime
    burst = os.environ.get("TESSERA_API_RATE_BURST")
    provider = app.extensions["tessera.oidc"]
    authenticator = ServiceAuthenticator(provider.service_audience, provider.issuer, provider.keys.key_set,
                                         provider.tokens.service_token)
    limiter = RateLimiter(lambda: runtime.get("api.rate_per_second"), float(burst) if burst else None)
    app.extensions["tessera.api"] = _ApiState(authenticator, limiter, GroupCommit(_write_calls))
    csrf.EXEMPT.update({"verification_api." + name for name in (
        "certificate", "certificate_batch", "signed_record", "signed_record_batch", "signature", "signature_batch")})


# --- OpenAPI 3.1 description --------------------------------------------------------------
def _nullable(kind: str, **extra: Any) -> dict[str, Any]:
    return {"type": [kind, "null"], **extra}


def document(public_url: str) -> dict[str, Any]:
    """The OpenAPI 3.1 description of ``/api/v1`` (served at ``/api/v1/openapi.json``)."""
    problem_ref = {"$ref": "#/components/responses/Problem"}
    security: list[dict[str, list[str]]] = [{"serviceAssertion": []}, {"serviceAccount": [SCOPE]}]
    time_field = {"type": "string", "format": "date-time", "description": "validation time (RFC 3339), default now"}
    source = {"type": "string", "enum": list(SOURCES), "default": "ocsp",
              "description": "where revocation status comes from: our OCSP responder, the latest CRL, or the store"}
    cert_text = {"type": "string", "minLength": 1, "maxLength": 65536, "description": "PEM or base64 DER"}
    chain = {"type": "array", "maxItems": 8, "items": cert_text, "description": "intermediates (optional)"}
    requests = {
        "CertificateRequest": {"type": "object", "additionalProperties": False, "required": ["certificate", "purpose"],
                               "properties": {"certificate": cert_text, "chain": chain, "at": time_field,
                                              "purpose": {"type": "string", "enum": list(PURPOSES)},
                                              "revocation_source": source}},
        "SignedRecordRequest": {"type": "object", "additionalProperties": False, "required": ["record"],
                                "properties": {"record": {"type": "string", "minLength": 1, "maxLength": 262144,
                                                          "contentEncoding": "base64",
                                                          "description": "CMS SignedData (RFC 5652), DER, base64"},
                                               "at": time_field, "revocation_source": source}},
        "SignatureRequest": {"type": "object", "additionalProperties": False,
                             "required": ["signature", "certificate"],
                             "description": "exactly one of data and digest",
                             "properties": {"data": {"type": "string", "minLength": 1, "contentEncoding": "base64"},
                                            "digest": {"type": "string", "minLength": 1, "maxLength": 128,
                                                       "contentEncoding": "base64"},
                                            "hash_algorithm": {"type": "string", "enum": list(_HASHES), "default": "sha256"},
                                            "signature": {"type": "string", "minLength": 1, "maxLength": 4096,
                                                          "contentEncoding": "base64",
                                                          "description": "ECDSA (DER or raw r||s) or RSA PKCS#1 v1.5"},
                                            "certificate": cert_text, "chain": chain, "at": time_field,
                                            "purpose": {"type": "string", "enum": list(PURPOSES), "default": "signing"},
                                            "revocation_source": source}},
    }
    reason = {"type": "object", "required": ["code", "detail"],
              "properties": {"code": {"type": "string"}, "detail": {"type": "string"}}}
    subject = {"type": "object", "required": ["dn"], "properties": {
        "dn": {"type": "string"}, **{k: _nullable("string") for k in (
            "common_name", "given_name", "surname", "organization", "serial_number", "national_id")}}}
    verdict = {"type": "object", "required": ["valid", "purpose", "reasons", "subject", "profile", "chain", "revocation"],
               "properties": {
                   "valid": {"type": "boolean"}, "purpose": {"type": "string", "enum": list(PURPOSES)},
                   "reasons": {"type": "array", "items": {"$ref": "#/components/schemas/Reason"}},
                   "subject": {"oneOf": [{"$ref": "#/components/schemas/Subject"}, {"type": "null"}]},
                   "profile": _nullable("string"), "serial": _nullable("string"),
                   "not_before": _nullable("string", format="date-time"),
                   "not_after": _nullable("string", format="date-time"),
                   "chain": {"type": "array", "items": {"type": "object", "required": ["subject", "serial", "sha256"],
                                                         "properties": {"subject": {"type": "string"},
                                                                        "serial": {"type": "string"},
                                                                        "sha256": {"type": "string"}}}},
                   "revocation": {"type": "object", "required": ["status", "source"], "properties": {
                       "status": {"type": "string", "enum": ["good", "revoked", "unknown"]},
                       "source": {"type": "string", "enum": [*SOURCES, "none"]},
                       "checked_at": _nullable("string", format="date-time"),
                       "revoked_at": _nullable("string", format="date-time"),
                       "reason": _nullable("string"), "detail": {"type": "string"}}},
                   "validated_at": _nullable("string", format="date-time")}}
    results = {
        "CertificateVerdict": verdict,
        "SignedRecordVerdict": {"type": "object", "required": ["valid", "reasons", "signer", "content"], "properties": {
            "valid": {"type": "boolean"}, "reasons": {"type": "array", "items": {"$ref": "#/components/schemas/Reason"}},
            "signer": {"oneOf": [{"$ref": "#/components/schemas/CertificateVerdict"}, {"type": "null"}]},
            "content": _nullable("string"), "content_json": {"type": ["object", "array", "null"]},
            "signing_time": _nullable("string", format="date-time")}},
        "SignatureVerdict": {"type": "object", "required": ["valid", "reasons", "signer"], "properties": {
            "valid": {"type": "boolean"}, "reasons": {"type": "array", "items": {"$ref": "#/components/schemas/Reason"}},
            "signer": {"$ref": "#/components/schemas/CertificateVerdict"}}},
    }

    def operation(summary: str, request_schema: str, result: str, batch: bool) -> dict[str, Any]:
        req: dict[str, Any] = {"$ref": f"#/components/schemas/{request_schema}"}
        res: dict[str, Any] = {"$ref": f"#/components/schemas/{result}"}
        if batch:
            req = {"type": "object", "additionalProperties": False, "required": ["items"],
                   "properties": {"items": {"type": "array", "minItems": 1, "maxItems": MAX_BATCH, "items": req}}}
            res = {"type": "object", "required": ["results"], "properties": {"results": {"type": "array", "items": res}}}
        return {"post": {
            "summary": summary + (" (batch)" if batch else ""), "security": security,
            "requestBody": {"required": True, "content": {"application/json": {"schema": req}}},
            "responses": {"200": {"description": "the verdict", "content": {"application/json": {"schema": res}}},
                          "400": problem_ref, "401": problem_ref, "403": problem_ref, "413": problem_ref,
                          "429": problem_ref}}}

    paths: dict[str, Any] = {}
    for path, summary, req_name, res_name in (
            ("/certificates", "Verify a certificate for a purpose", "CertificateRequest", "CertificateVerdict"),
            ("/signed-records", "Verify a signed record (CMS SignedData)", "SignedRecordRequest", "SignedRecordVerdict"),
            ("/signatures", "Verify a signature over data or its hash", "SignatureRequest", "SignatureVerdict")):
        paths[path + "/verify"] = operation(summary, req_name, res_name, False)
        paths[path + "/verify-batch"] = operation(summary, req_name, res_name, True)
    paths["/openapi.json"] = {"get": {"summary": "This description", "security": [],
                                      "responses": {"200": {"description": "OpenAPI 3.1",
                                                            "content": {"application/json": {"schema": {"type": "object"}}}}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Tessera verification API", "version": "1.0.0",
                 "description": "Certificates, signed records and signatures verified against the Tessera PKI. "
                                "Errors are RFC 9457 problem details."},
        "servers": [{"url": public_url + "/api/v1"}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "serviceAssertion": {
                    "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                    "description": "A JWT (ES256/ES384/RS256/PS256) signed by the service's key, its `service` "
                                   "certificate chain in the x5c header, aud = this API's URL, exp - iat <= 600 s."},
                "serviceAccount": {
                    "type": "oauth2",
                    "description": "A service account's access token from the IdP (client credentials, RFC 6749 "
                                   "section 4.4), sent as `Authorization: Bearer <token>`.",
                    "flows": {"clientCredentials": {"tokenUrl": public_url + "/oidc/token",
                                                    "scopes": {SCOPE: "verify certificates, signed records and "
                                                                      "signatures"}}}}},
            "schemas": {**requests, **results, "Reason": reason, "Subject": subject,
                        "Problem": {"type": "object", "required": ["type", "title", "status"], "properties": {
                            "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                            "detail": {"type": "string"}, "instance": {"type": "string"}}}},
            "responses": {"Problem": {"description": "RFC 9457 problem details",
                                      "content": {"application/problem+json": {
                                          "schema": {"$ref": "#/components/schemas/Problem"}}}}},
        },
        "security": security,
    }
