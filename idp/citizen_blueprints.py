"""The citizen-facing and service-facing parts of the web service, registered by the app factory.

:class:`CitizenServices` holds what they share, built once per process: the certificate
validator (ca.validation), the Web eID token validator, the card-login nonces, the citizen
registry lookup and the audit trail.
"""

from __future__ import annotations

import os
from functools import cached_property
from typing import TYPE_CHECKING

from cryptography import x509
from flask import current_app
from sqlalchemy import text

from store.held_connection import HeldStatement
from idp.deployment import Deployment

if TYPE_CHECKING:
    from audit.trail import AuditTrail
    from ca.validation import CertificateValidator
    from idp.card_login_nonces import NonceStore
    from idp.webeid import TokenValidator

DEFAULT_AGENT_URL = "http://127.0.0.1:24727"

_PSEUDONYM = text("SELECT national_id FROM citizen_pseudonym WHERE pseudonym = :p")
_REGISTRY = text("SELECT card.number, card.status FROM card JOIN ca_certificate c ON c.id = card.auth_certificate_id "
                 "WHERE c.serial_hex = :s")


class CitizenServices:
    """The shared parts of citizen login, the portal and the verification API (per process)."""

    def __init__(self, deployment: Deployment) -> None:
        import idp.citizen_models  # noqa: F401  (registers the tables on the one metadata)

        self.deployment = deployment
        settings = deployment.settings
        from urllib.parse import urlsplit

        parts = urlsplit(settings.public_url)
        #: the IdP's origin (RFC 6454): what the card signs
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.agent_url = (os.environ.get("TESSERA_CARD_AGENT_URL") or DEFAULT_AGENT_URL).rstrip("/")
        #: fail closed unless the operator says otherwise (TESSERA_CARD_LOGIN_REVOCATION=ocsp|crl|store)
        self.revocation_source = os.environ.get("TESSERA_CARD_LOGIN_REVOCATION") or "ocsp"
        self._registry = HeldStatement(deployment.engine, "SELECT card.number, card.status FROM card JOIN ca_certificate c "
                                       "ON c.id = card.auth_certificate_id WHERE c.serial_hex = ?", "card registry")
        self._pseudonyms = HeldStatement(deployment.engine, "SELECT national_id FROM citizen_pseudonym WHERE pseudonym = ?",
                                         "pseudonym registry")

    @cached_property
    def certificates(self) -> "CertificateValidator":
        from ca.validation import CertificateValidator

        return CertificateValidator.for_deployment(self.deployment.engine, self.deployment.ocsp, self.deployment.now)

    @cached_property
    def citizen_ca(self) -> x509.Certificate:
        with self.deployment.sessions() as session:
            return x509.load_der_x509_certificate(self.deployment.ca.authority(session, "citizen").certificate_der)

    def registry(self, serial_hex: str) -> tuple[str, str] | None:
        """The card carrying the authentication certificate ``serial_hex``: (number, status).

        On the login's hot path: one query on a driver connection held per thread
        (:class:`store.held_connection.HeldStatement`: each read sees the latest committed card state);
        when the driver fails, the query goes through the engine."""
        executed = self._registry.execute((serial_hex,))
        if executed is not None:
            row = executed.row
        else:
            with self.deployment.engine.connect() as conn:
                row = conn.execute(_REGISTRY, {"s": serial_hex}).first()
        return (str(row[0]), str(row[1])) if row is not None else None

    @cached_property
    def tokens(self) -> "TokenValidator":
        from idp.webeid import TokenValidator

        return TokenValidator(self.certificates, self.origin, self.citizen_ca, self.registry, self.revocation_source,
                              self.deployment.now, citizens=self.citizen_of)

    def citizen_of(self, pseudonym: str) -> str | None:
        """The citizen identity number behind a certificate pseudonym (table citizen_pseudonym)."""
        executed = self._pseudonyms.execute((pseudonym,))
        if executed is not None:
            row = executed.row
        else:
            with self.deployment.engine.connect() as conn:
                row = conn.execute(_PSEUDONYM, {"p": pseudonym}).first()
        return str(row[0]) if row is not None else None

    @cached_property
    def nonces(self) -> "NonceStore":
        from idp.card_login_nonces import NonceStore

        return NonceStore(self.deployment.engine, self.deployment.now)

    @property
    def trail(self) -> "AuditTrail":
        """The deployment's audit trail (its signed checkpoints count these entries too)."""
        return self.deployment.audit


def services() -> CitizenServices:
    return current_app.extensions["tessera.citizen"]  # type: ignore[no-any-return]
