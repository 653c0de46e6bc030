"""The OCSP responder (RFC 6960), signing with each issuing CA's delegated responder key.

Responses to requests without a nonce are pre-produced once per certificate and hash algorithm
and kept in the store until shortly before their nextUpdate (the RFC 5019 lightweight profile
model); a status change deletes them in the same transaction, so a cached answer is never
older than the certificate's current status. Requests with a nonce (RFC 8954) are signed fresh.
One statement per request reads the certificate's status and its stored response together, on a
pooled connection returned at once, so each answer sees the latest committed status. It runs on
the driver (:class:`store.driver_read.DriverRead`): through SQLAlchemy's execution it cost GET
answers about 40% of their rate (docs/platform-notes.md, "SQLAlchemy").
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import threading
import time
from typing import Any
from collections.abc import Callable
from dataclasses import dataclass

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from sqlalchemy import Engine, and_, bindparam, delete, exists, insert, literal, select
from sqlalchemy.exc import DBAPIError, IntegrityError

from store.driver_read import DriverRead
from ca.keyring import Keyring
from ca.models import Authority, Certificate, CertificateStatus, OcspResponse, Signer
from ca.signing import sign_ocsp_response

#: Hashes accepted in a CertID (RFC 6960 section 4.1.1; SHA-1 stays for interoperability).
_CERT_ID_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1, "sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512,
}
MAX_NONCE_LENGTH = 32  # RFC 8954 section 2.1
MAX_REQUEST_BYTES = 8 * 1024

_log = logging.getLogger(__name__)


#: the certificate's status with its stored response for the CertID's hash, if any
_LOOKUP = (
    select(
        Certificate.id, Certificate.issuer_id, Certificate.status, Certificate.revoked_at,
        Certificate.revocation_reason, Certificate.status_changed_at,
        OcspResponse.der, OcspResponse.next_update,
    )
    .outerjoin(
        OcspResponse,
        and_(OcspResponse.certificate_id == Certificate.id,
             OcspResponse.hash_algorithm == bindparam("hash_algorithm")),
    )
    .where(Certificate.serial_hex == bindparam("serial"))
)


@dataclass(frozen=True)
class _Issuer:
    authority_id: int
    name: str
    signer_certificate: x509.Certificate
    signer_key_ref: str


@dataclass(frozen=True)
class OcspReply:
    der: bytes
    #: successful, malformedRequest, unauthorized, internalError ...
    status: str
    #: the cert status for successful replies: good, revoked, unknown
    cert_status: str | None = None
    #: when a shared cache may keep it (RFC 5019 section 6), None when it carries a nonce
    next_update: datetime.datetime | None = None
    this_update: datetime.datetime | None = None


def unsuccessful(status: ocsp.OCSPResponseStatus) -> OcspReply:
    """An OCSPResponse with only a responseStatus (RFC 6960 section 4.2.1: no responseBytes)."""
    der = ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(Encoding.DER)
    return OcspReply(der, status.name.lower())


class OcspResponder:
    """Answers OCSP requests for every issuing CA that has a delegated responder."""

    def __init__(
        self,
        engine: Engine,
        keyring: Keyring,
        clock: Callable[[], datetime.datetime],
        validity: datetime.timedelta = datetime.timedelta(hours=4),
        refresh_before: datetime.timedelta = datetime.timedelta(hours=1),
    ) -> None:
        self.engine = engine
        self.keyring = keyring
        self.clock = clock
        self.validity = validity
        self.refresh_before = refresh_before
        self._issuers: dict[tuple[str, bytes, bytes], _Issuer] = {}
        self._loaded_at = 0.0
        self._lock = threading.Lock()
        self._lookup = DriverRead(engine, _LOOKUP)

    # -- issuers we serve ----------------------------------------------------------------
    def _load_issuers(self) -> None:
        table: dict[tuple[str, bytes, bytes], _Issuer] = {}
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(Authority.id, Authority.name, Authority.certificate_der, Certificate.der, Signer.key_ref)
                .join(Signer, and_(Signer.authority_id == Authority.id, Signer.role == "ocsp"))
                .join(Certificate, Certificate.id == Signer.certificate_id)
            ).all()
        for authority_id, name, ca_der, signer_der, key_ref in rows:
            ca_cert = x509.load_der_x509_certificate(ca_der)
            name_der = ca_cert.subject.public_bytes()
            # read with asn1crypto: cryptography cannot load the SM2 CAs' keys
            spki = asn1_x509.Certificate.load(ca_der)["tbs_certificate"]["subject_public_key_info"]
            key_bits = spki["public_key"].contents[1:]  # BIT STRING value (section 4.1.1)
            issuer = _Issuer(authority_id, name, x509.load_der_x509_certificate(signer_der), key_ref)
            for hash_name in _CERT_ID_HASHES:
                table[(hash_name, hashlib.new(hash_name, name_der).digest(), hashlib.new(hash_name, key_bits).digest())] = issuer
        self._issuers = table
        self._loaded_at = time.monotonic()

    def _issuer(self, hash_name: str, name_hash: bytes, key_hash: bytes) -> _Issuer | None:
        key = (hash_name, name_hash, key_hash)
        found = self._issuers.get(key)
        if found is None and time.monotonic() - self._loaded_at > 10:
            with self._lock:
                self._load_issuers()  # a CA added since we looked (at most every 10 s)
            found = self._issuers.get(key)
        return found

    # -- answering -----------------------------------------------------------------------
    def respond(self, request_der: bytes) -> OcspReply:
        """Answer one DER OCSPRequest (RFC 6960 section 4.1) with a DER OCSPResponse (4.2)."""
        if not request_der or len(request_der) > MAX_REQUEST_BYTES:
            return unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
        try:
            request = ocsp.load_der_ocsp_request(request_der)
            hash_name = request.hash_algorithm.name
            name_hash, key_hash, serial = request.issuer_name_hash, request.issuer_key_hash, request.serial_number
            nonce = _nonce(request)
        except (ValueError, x509.UnsupportedGeneralNameType):
            return unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
        except NotImplementedError:  # several Requests: RFC 5019 section 2.1.1 allows exactly one
            return unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
        except UnsupportedAlgorithm:  # a CertID hash cryptography does not know
            return unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED)
        if nonce is not None and not 1 <= len(nonce) <= MAX_NONCE_LENGTH:
            return unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
        if serial < 0:  # CertificateSerialNumber is a positive INTEGER (RFC 5280 section 4.1.2.2)
            return unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
        if hash_name not in _CERT_ID_HASHES:
            return unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED)
        if not self._issuers:
            with self._lock:
                self._load_issuers()
        issuer = self._issuer(hash_name, name_hash, key_hash)
        if issuer is None:
            return unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED)

        now = self.clock()
        serial_hex = format(serial, "x")
        row: Any = self._lookup.first({"serial": serial_hex, "hash_algorithm": hash_name})  # a named row
        if row is not None and row.issuer_id != issuer.authority_id:
            row = None  # same serial under another CA: not ours to answer for this issuer
        if row is not None and nonce is None and row.der is not None and row.next_update - now > self.refresh_before:
            return OcspReply(row.der, "successful", _cert_status(row.status), row.next_update,
                             row.next_update - self.validity)

        this_update = now.replace(microsecond=0)
        next_update = this_update + self.validity
        builder = ocsp.OCSPResponseBuilder()
        status = ocsp.OCSPCertStatus.UNKNOWN
        revoked_at = reason = None
        if row is not None:
            status = ocsp.OCSPCertStatus.GOOD if row.status == CertificateStatus.VALID else ocsp.OCSPCertStatus.REVOKED
            if status is ocsp.OCSPCertStatus.REVOKED:
                revoked_at = row.revoked_at
                flag = x509.ReasonFlags(row.revocation_reason or "unspecified")
                reason = None if flag is x509.ReasonFlags.unspecified else flag
        builder = builder.add_response_by_hash(
            issuer_name_hash=name_hash, issuer_key_hash=key_hash, serial_number=serial,
            algorithm=_CERT_ID_HASHES[hash_name](), cert_status=status, this_update=this_update,
            next_update=next_update, revocation_time=revoked_at, revocation_reason=reason,
        )
        if nonce is not None:
            builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
        der = sign_ocsp_response(builder, issuer.signer_certificate, self.keyring.get(issuer.signer_key_ref))
        cert_status = status.name.lower()
        if nonce is not None:
            return OcspReply(der, "successful", cert_status, None, this_update)
        if row is not None:
            self._keep(row, hash_name, der, next_update)
        return OcspReply(der, "successful", cert_status, next_update, this_update)

    def _keep(self, row: object, hash_name: str, der: bytes, next_update: datetime.datetime) -> None:
        """Store a pre-produced response unless the status changed since we read it.

        The certificate row is share-locked (PostgreSQL) and the insert is conditional on the
        status we signed (atomic on SQLite), so a concurrent revocation either waits for us and
        then deletes this row, or wins and makes this insert a no-op.
        """
        cert_id, status, changed = row.id, row.status, row.status_changed_at  # type: ignore[attr-defined]
        same_status = select(Certificate.id).where(
            Certificate.id == cert_id, Certificate.status == status,
            Certificate.status_changed_at.is_(None) if changed is None else Certificate.status_changed_at == changed,
        )
        try:
            with self.engine.begin() as conn:
                conn.execute(same_status.with_for_update(read=True))
                conn.execute(delete(OcspResponse).where(
                    OcspResponse.certificate_id == cert_id, OcspResponse.hash_algorithm == hash_name))
                conn.execute(
                    insert(OcspResponse).from_select(
                        ["certificate_id", "hash_algorithm", "next_update", "der"],
                        select(literal(cert_id), literal(hash_name),
                               literal(next_update, OcspResponse.next_update.type), literal(der, OcspResponse.der.type))
                        .where(exists(same_status)),
                    )
                )
        except IntegrityError:
            pass  # another worker stored the same answer a moment ago
        except DBAPIError as exc:
            # the store is busy (SQLite lock): the answer is still correct, only not cached
            _log.warning("OCSP response not cached: %s", type(exc.orig).__name__)


def _nonce(request: ocsp.OCSPRequest) -> bytes | None:
    try:
        return request.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        return None


def _cert_status(status: str) -> str:
    return "good" if status == CertificateStatus.VALID else "revoked"
