"""The citizen-facing and service-facing parts of the web service, registered by the app factory.

:class:`CitizenServices` holds what they share, built once per process: the certificate
validator (verification.certificates), the Web eID token validator, the card-login nonces, the citizen
registry lookup and the audit trail.
"""

from __future__ import annotations

import os
from functools import cached_property
from typing import TYPE_CHECKING

from cryptography import x509
from flask import current_app
from sqlalchemy import bindparam, select

from ca.models import Certificate
from cardsim.models import Card
from cardsim.pseudonyms import citizen_of
from idp.deployment import Deployment

if TYPE_CHECKING:
    from audit.trail import AuditTrail
    from verification.certificates import CertificateValidator
    from idp.card_login_nonces import NonceStore
    from idp.webeid import TokenValidator

DEFAULT_AGENT_URL = "http://127.0.0.1:24727"

#: the card carrying an authentication certificate (built once: every card login asks it)
_REGISTRY = (select(Card.number, Card.status).join(Certificate, Certificate.id == Card.auth_certificate_id)
             .where(Certificate.serial_hex == bindparam("serial")))


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

    @cached_property
    def certificates(self) -> "CertificateValidator":
        from verification.certificates import CertificateValidator

        return CertificateValidator.for_deployment(self.deployment.engine, self.deployment.ocsp, self.deployment.now)

    @cached_property
    def citizen_ca(self) -> x509.Certificate:
        with self.deployment.sessions() as session:
            return x509.load_der_x509_certificate(self.deployment.ca.authority(session, "citizen").certificate_der)

    def registry(self, serial_hex: str) -> tuple[str, str] | None:
        """The card carrying the authentication certificate ``serial_hex``: (number, status), as
        last committed (the login's hot path: one statement on a pooled connection)."""
        with self.deployment.engine.connect() as conn:
            row = conn.execute(_REGISTRY, {"serial": serial_hex}).first()
        return (str(row[0]), str(row[1])) if row is not None else None

    @cached_property
    def tokens(self) -> "TokenValidator":
        from idp.webeid import TokenValidator

        return TokenValidator(self.certificates, self.origin, self.citizen_ca, self.registry, self.revocation_source,
                              self.deployment.now, citizens=self.citizen_of)

    def citizen_of(self, pseudonym: str) -> str | None:
        """The citizen identity number behind a certificate pseudonym (:func:`cardsim.pseudonyms.citizen_of`)."""
        with self.deployment.engine.connect() as conn:
            return citizen_of(conn, pseudonym)

    @cached_property
    def nonces(self) -> "NonceStore":
        from idp.card_login_nonces import NonceStore

        return NonceStore(self.deployment.engine, self.deployment.now)

    @property
    def trail(self) -> "AuditTrail":
        """The deployment's audit trail (its signed checkpoints count these entries too)."""
        return self.deployment.audit


def services() -> CitizenServices:
    return current_app.extensions["tessera.citizen"]
