"""Offline certificate status from CRLs (RFC 5280 section 6.3) for the card reader."""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Sequence

from cryptography import x509

from verification.reasons import Check


class CrlStatus:
    """Offline status from CRLs (RFC 5280 section 6.3): one verified CRL per issuing CA.

    Given a ``source``, the CRLs are fetched again every ``max_age`` seconds, so a long-running
    service sees a card reported lost within that time; ``generation`` counts the loads so
    callers can drop answers cached from older CRLs."""

    def __init__(self, crls: Sequence[x509.CertificateRevocationList], issuers: Sequence[x509.Certificate],
                 source: Callable[[], Sequence[x509.CertificateRevocationList]] | None = None,
                 max_age: float = 60.0) -> None:
        self._issuers = list(issuers)
        self._source = source
        self._max_age = max_age
        self.generation = 0
        self._load(crls)

    def _load(self, crls: Sequence[x509.CertificateRevocationList]) -> None:
        by_issuer: dict[bytes, x509.CertificateRevocationList] = {}
        problems: dict[bytes, str] = {}
        for crl in crls:
            issuer = next((c for c in self._issuers if c.subject == crl.issuer), None)
            key = crl.issuer.public_bytes()
            if issuer is None or not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
                problems[key] = "the CRL's signature does not verify with its issuer"
                continue
            by_issuer[key] = crl
        self._by_issuer, self._problems = by_issuer, problems
        self._numbers = {key: _crl_number(crl) for key, crl in by_issuer.items()}
        self._loaded = time.monotonic()
        self.generation += 1

    def refresh_if_old(self) -> None:
        if self._source is not None and time.monotonic() - self._loaded > self._max_age:
            self._load(self._source())

    def status(self, certificate: x509.Certificate, issuer: x509.Certificate, at: datetime.datetime,
               name: str = "status") -> Check:
        self.refresh_if_old()
        key = certificate.issuer.public_bytes()
        crl = self._by_issuer.get(key)
        if crl is None:
            return Check(name, False, "status-unknown", self._problems.get(key, "no CRL for the issuer"))
        if crl.next_update_utc is not None and crl.next_update_utc < at:
            return Check(name, False, "status-stale", "the CRL is past its nextUpdate")
        entry = crl.get_revoked_certificate_by_serial_number(certificate.serial_number)
        if entry is not None:
            try:
                reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.value
            except x509.ExtensionNotFound:
                reason = "unspecified"
            return Check(name, False, "revoked", f"revoked ({reason}) at {entry.revocation_date_utc:%Y-%m-%d %H:%M:%SZ}")
        return Check(name, True, "good", f"not on CRL #{self._numbers[key]}")


def _crl_number(crl: x509.CertificateRevocationList) -> int:
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return -1
