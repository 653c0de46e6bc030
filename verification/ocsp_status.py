"""Online certificate status from the CA's OCSP responder (RFC 6960) for the card reader: a
fresh signed answer with a nonce, from the CA or its delegated responder (section 4.2.2.2), about
the end entity; the CAs above it are checked against their CRLs (RFC 5280 section 6.3), so a
revoked CA revokes its certificates online too. An SM2 CA's answers, signed SM2-with-SM3, are
verified through :mod:`verification.sm2_signatures` (GmSSL)."""

from __future__ import annotations

import datetime
import os
import urllib.request
from collections.abc import Callable, Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from verification.crl_status import CrlStatus
from verification.reasons import Check
from verification.signatures import directly_issued_by, verify_signed_by


class OcspStatus:
    """Online status from the CA's OCSP responder (RFC 6960), URL from the certificate's AIA."""

    def __init__(self, timeout: float = 5.0, fetch: Callable[[str, bytes], bytes] | None = None,
                 authorities: CrlStatus | None = None) -> None:
        """``authorities``: the CRLs that give the status of the CAs above the end entities
        (:meth:`path_status`); without them only the end entity's status is asked."""
        self.timeout = timeout
        self._fetch = fetch or self._post
        self.authorities = authorities
        #: (issuer key hash, serial) -> a verified, conclusive answer and its nextUpdate
        self._kept: dict[tuple[bytes, int], tuple[Check, datetime.datetime]] = {}

    def _post(self, url: str, body: bytes) -> bytes:
        request = urllib.request.Request(url, data=body, method="POST",
                                         headers={"Content-Type": "application/ocsp-request"})
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return response.read(64 * 1024)

    def status(self, certificate: x509.Certificate, issuer: x509.Certificate, at: datetime.datetime,
               name: str = "status") -> Check:
        """A fresh answer (with a nonce) from the certificate's OCSP responder."""
        return self._ask(certificate, issuer, at, name)[0]

    @property
    def generation(self) -> int:
        """The generation of the CAs' CRLs (answers cached by callers are dropped when it moves)."""
        return self.authorities.generation if self.authorities is not None else 0

    def authorities_status(self, path: Sequence[x509.Certificate], at: datetime.datetime,
                           name: str = "status") -> Check | None:
        """The first CA of ``path`` that is not good per the CRLs of :attr:`authorities`, or None."""
        return self.authorities.authorities_status(path, at, name) if self.authorities is not None else None

    def path_status(self, path: Sequence[x509.Certificate], at: datetime.datetime, name: str = "status") -> Check:
        """The status of every certificate of ``path`` (end entity first): the CAs above the end
        entity from the CRLs of :attr:`authorities` (RFC 5280 section 6.3), then a fresh OCSP
        answer about the end entity."""
        if len(path) < 2:
            return Check(name, False, "status-unknown", "no issuer to ask about the certificate")
        return self.authorities_status(path, at, name) or self.status(path[0], path[1], at, name)

    def kept_status(self, certificate: x509.Certificate, issuer: x509.Certificate, at: datetime.datetime,
                    name: str = "status") -> Check:
        """As :meth:`status`, but a verified good or revoked answer is reused until its nextUpdate
        (RFC 6960 section 2.4: the responder vouches for it until then). For the few certificates
        every card shares (the departments' signers), not for a card's own."""
        key = (issuer.fingerprint(hashes.SHA256()), certificate.serial_number)
        kept = self._kept.get(key)
        if kept is not None and at < kept[1]:
            return kept[0]
        check, next_update = self._ask(certificate, issuer, at, name)
        if next_update is not None and at < next_update and check.reason in ("good", "revoked"):
            if len(self._kept) > 1_000:
                self._kept.clear()
            self._kept[key] = (check, next_update)
        return check

    def _ask(self, certificate: x509.Certificate, issuer: x509.Certificate, at: datetime.datetime,
             name: str) -> tuple[Check, datetime.datetime | None]:
        """(the answer, the response's nextUpdate when the response verified)."""
        try:
            aia = certificate.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
            url = next(d.access_location.value for d in aia if d.access_method == x509.AuthorityInformationAccessOID.OCSP)
        except (x509.ExtensionNotFound, StopIteration):
            return Check(name, False, "status-unknown", "the certificate names no OCSP responder"), None
        nonce = os.urandom(16)
        request = (ocsp.OCSPRequestBuilder().add_certificate(certificate, issuer, hashes.SHA256())
                   .add_extension(x509.OCSPNonce(nonce), critical=False).build())
        try:
            raw = self._fetch(url, request.public_bytes(serialization.Encoding.DER))
            response = ocsp.load_der_ocsp_response(raw)
        except (OSError, ValueError) as exc:
            return Check(name, False, "status-unavailable", f"OCSP responder unreachable: {type(exc).__name__}"), None
        if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
            return Check(name, False, "status-unavailable", f"OCSP responder said {response.response_status.name}"), None
        responder = next(iter(response.certificates), None)
        signer = issuer
        if responder is not None:
            # delegated responder: issued by the CA, id-kp-OCSPSigning (RFC 6960 section 4.2.2.2)
            try:
                eku = responder.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
                if x509.ExtendedKeyUsageOID.OCSP_SIGNING not in eku or not directly_issued_by(responder, issuer):
                    raise ValueError("not a delegated responder of the CA")
            except (ValueError, TypeError, x509.ExtensionNotFound, UnsupportedAlgorithm):
                return Check(name, False, "status-untrusted", "the OCSP responder is not authorised by the CA"), None
            signer = responder
        try:
            verify_signed_by(signer, response.signature, response.tbs_response_bytes, response.signature_algorithm_oid,
                             lambda: response.signature_hash_algorithm or hashes.SHA256())
        except InvalidSignature:
            return Check(name, False, "status-untrusted", "the OCSP response signature does not verify"), None
        try:
            got = response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
            if got != nonce:
                return Check(name, False, "status-replayed", "the OCSP response carries another nonce"), None
        except x509.ExtensionNotFound:
            if response.next_update_utc is not None and response.next_update_utc < at:
                return Check(name, False, "status-stale", "the OCSP response is past its nextUpdate"), None
        if response.serial_number != certificate.serial_number:
            return Check(name, False, "status-unknown", "the OCSP response is about another certificate"), None
        next_update = response.next_update_utc
        if response.certificate_status == ocsp.OCSPCertStatus.GOOD:
            return Check(name, True, "good", "OCSP: good"), next_update
        if response.certificate_status == ocsp.OCSPCertStatus.REVOKED:
            reason = response.revocation_reason.value if response.revocation_reason else "unspecified"
            return Check(name, False, "revoked", f"OCSP: revoked ({reason})"), next_update
        return Check(name, False, "status-unknown", "OCSP: unknown certificate"), None
