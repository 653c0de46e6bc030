"""The Web eID authentication token (format ``web-eid:1.0``) and its validation.

The token is what the card agent returns to the login page (Web eID's authentication token
specification, as validated by web-eid-authtoken-validation-java and its Python/.NET siblings)::

    {"unverifiedCertificate": "<base64 DER of the card's authentication certificate>",
     "algorithm": "ES256", "signature": "<base64 signature>", "format": "web-eid:1.0",
     "appVersion": "https://tessera.invalid/card-agent/1.0"}

The card signs ``hash(origin) || hash(nonce)`` with its authentication key, the hash being the
algorithm's (SHA-256 for ES256/RS256/PS256, SHA-384 for ES384, SHA-512 for ES512); ECDSA
signatures are the raw ``r || s`` of JWS (RFC 7518 section 3.4). A card with an SM2 key (the SM2
hierarchy's ``sm2-citizen`` CA, docs/sm2.md) uses :data:`SM2_ALGORITHM`, which JWS does not name:
``SM3(origin) || SM3(nonce)`` signed SM2 with SM3 and Z of the default signer identity
``1234567812345678`` (GB/T 32918.2 section 6.1, GB/T 35276-2017 section 10; the empty identity
verifies too, :data:`verification.sm2_signatures.SIGNER_IDS`), the signature DER or ``r || s``.
The origin is the IdP's own (RFC 6454 serialisation), so a token made for another site never
verifies here.

Validation order (each failure a :class:`LoginRefused` with a machine ``code``): token structure,
the nonce (single use: consumed before anything else is looked at, so a replay fails even if the
rest is good), the certificate (chain to a citizen CA, ECDSA or SM2, validity now, revocation
through our OCSP responder failing closed, the citizen-auth key usage, extended key usage and policy), the
signature over origin and nonce, then the citizen registry (the card still active).
"""

from __future__ import annotations

import base64
import binascii
import datetime
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from ca.profiles import SM2_PREFIX
from ca.sm2 import Sm2PublicKey
from verification.certificates import CertificateValidator, CertificateVerdict, load_certificate, subject_der
from verification.signatures import public_key_of, verify_signature
from cardsim.citizens import holder_name
from cardsim.models import CardStatus

FORMAT = "web-eid:1.0"
MAX_TOKEN_FIELD = 8192
#: the token algorithm of an SM2 card: SM2 with SM3 (GB/T 32918.2), which JWS has no name for
SM2_ALGORITHM = "SM2SM3"
#: JWS algorithm names (RFC 7518 section 3.1), and :data:`SM2_ALGORITHM` -> (hash, key kind)
ALGORITHMS: dict[str, tuple[type[hashes.HashAlgorithm], str]] = {
    "ES256": (hashes.SHA256, "ec"), "ES384": (hashes.SHA384, "ec"), "ES512": (hashes.SHA512, "ec"),
    "RS256": (hashes.SHA256, "rsa"), "RS384": (hashes.SHA384, "rsa"), "RS512": (hashes.SHA512, "rsa"),
    "PS256": (hashes.SHA256, "pss"), "PS384": (hashes.SHA384, "pss"), "PS512": (hashes.SHA512, "pss"),
    SM2_ALGORITHM: (hashes.SM3, "sm2"),
}
#: the SM2 hierarchy's citizen CA (``tessera ca add-sm2``), beside the ECDSA one
SM2_CITIZEN_CA = SM2_PREFIX + "citizen"


class LoginRefused(Exception):
    """A card login refused: ``code`` for machines and the audit trail, ``detail`` for people."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class AuthToken:
    """A parsed (not yet trusted) ``web-eid:1.0`` authentication token."""

    certificate_der: bytes
    algorithm: str
    signature: bytes
    app_version: str

    @classmethod
    def parse(cls, data: Any) -> "AuthToken":
        """Structure only (Web eID token format section "Authentication token format")."""
        if not isinstance(data, Mapping):
            raise LoginRefused("token-malformed", "the token is not a JSON object")
        if data.get("format") != FORMAT:
            raise LoginRefused("token-malformed", f"the token format is not {FORMAT}")
        fields = {}
        for name in ("unverifiedCertificate", "algorithm", "signature", "appVersion"):
            value = data.get(name)
            if not isinstance(value, str) or not value or len(value) > MAX_TOKEN_FIELD:
                raise LoginRefused("token-malformed", f"the token field {name} is missing or not text")
            fields[name] = value
        if fields["algorithm"] not in ALGORITHMS:
            raise LoginRefused("token-malformed", f"unsupported algorithm {fields['algorithm']!r}")
        try:
            der = base64.b64decode(fields["unverifiedCertificate"], validate=True)
            signature = base64.b64decode(fields["signature"], validate=True)
        except (binascii.Error, ValueError):
            raise LoginRefused("token-malformed", "certificate or signature is not base64") from None
        return cls(der, fields["algorithm"], signature, fields["appVersion"])


def signed_data(origin: str, nonce: str, algorithm: str) -> bytes:
    """``hash(origin) || hash(nonce)``: what the card signs (the signature then hashes it once more)."""
    hash_type = ALGORITHMS[algorithm][0]

    def digest(value: str) -> bytes:
        h = hashes.Hash(hash_type())
        h.update(value.encode("utf-8"))
        return h.finalize()

    return digest(origin) + digest(nonce)


def verify_token_signature(public_key: Any, algorithm: str, signature: bytes, data: bytes) -> None:
    """Verify a JWS-style signature (raw r||s for ECDSA, RFC 7518 section 3.4; DER or r||s for
    SM2, Z of a signer identity hashed in, GB/T 32918.2 section 7); raises InvalidSignature."""
    hash_type, kind = ALGORITHMS[algorithm]
    if ((kind == "ec") != isinstance(public_key, ec.EllipticCurvePublicKey)
            or (kind == "sm2") != isinstance(public_key, Sm2PublicKey)):
        raise InvalidSignature("algorithm and key do not match")
    verify_signature(public_key, signature, data, hash_type(), pss=kind == "pss",
                     raw_ecdsa=None if kind == "sm2" else kind == "ec")


@dataclass(frozen=True)
class CitizenLogin:
    """Who logged in: national identity number, name, card, and the verdict on the certificate."""

    national_id: str
    name: str
    card_number: str | None
    certificate_serial: str
    verdict: CertificateVerdict
    #: the certificate's pseudonym (cardsim.pseudonyms); None for certificates made before pseudonyms
    pseudonym: str | None = None

    @property
    def subject(self) -> str:
        """How the citizen is named to applications (OIDC ``sub``) and in the audit trail:
        ``citizen:<pseudonym>``, never the identity number (PIPL art. 28; GB/T 35273-2020 6.2).
        The pseudonym is per citizen and deployment, the same on every card of the citizen."""
        return f"citizen:{self.pseudonym or self.national_id}"


#: the citizen registry: certificate serial (hex) -> (card number, card status) or None
Registry = Callable[[str], "tuple[str, str] | None"]
#: the pseudonym registry (cardsim.pseudonyms): certificate pseudonym -> citizen identity number or None
Citizens = Callable[[str], "str | None"]


class TokenValidator:
    """Validates Web eID tokens for one origin against the citizen CAs: ``citizen_ca`` (ECDSA) and,
    when the deployment has the SM2 hierarchy, its ``sm2-citizen`` CA (from the validator's anchors)."""

    def __init__(self, certificates: CertificateValidator, origin: str, citizen_ca: x509.Certificate,
                 registry: Registry | None = None, revocation_source: str = "ocsp",
                 clock: Callable[[], datetime.datetime] | None = None, citizens: Citizens | None = None) -> None:
        self.certificates = certificates
        self.citizens = citizens
        self.origin = origin
        self.citizen_ca = citizen_ca
        anchors = certificates.anchors
        self.citizen_cas = (citizen_ca, *(c for c in anchors.sm2_intermediates
                                          if anchors.ours.get(subject_der(c)) == SM2_CITIZEN_CA))
        self.registry = registry
        self.revocation_source = revocation_source
        self.clock = clock or certificates.clock

    def validate(self, data: Any, nonce: str, consume_nonce: Callable[[str], bool]) -> CitizenLogin:
        """Every check of the token for ``nonce`` (issued to this browser session); raises
        :class:`LoginRefused` with the first failing check's reason."""
        token = AuthToken.parse(data)
        if not nonce or not consume_nonce(nonce):
            raise LoginRefused("nonce-invalid", "the challenge was already used, has expired, or was never issued here")
        try:  # any certificate that does not load, a version above v3 too, is refused here
            cert = load_certificate(token.certificate_der)
        except ValueError:
            raise LoginRefused("token-malformed", "the certificate cannot be parsed") from None
        verdict = self.certificates.validate(cert, "citizen-auth", at=self.clock(),
                                             revocation_source=self.revocation_source)
        if not verdict.valid:
            order = ("untrusted-issuer", "expired", "not-yet-valid", "revoked", "wrong-policy",
                     "wrong-extended-key-usage", "wrong-key-usage", "revocation-unknown")
            first = min(verdict.reasons, key=lambda r: order.index(r.code) if r.code in order else len(order))
            code = "certificate-" + first.code if not first.code.startswith("wrong-") else "certificate-wrong-purpose"
            raise LoginRefused(code, first.detail)
        if len(verdict.chain) < 2 or verdict.chain[1] not in self.citizen_cas:
            raise LoginRefused("certificate-wrong-issuer", "the certificate is not issued by the citizen CA")
        try:
            verify_token_signature(public_key_of(cert), token.algorithm, token.signature,
                                   signed_data(self.origin, nonce, token.algorithm))
        except (InvalidSignature, ValueError):
            raise LoginRefused("signature-invalid",
                               f"the signature does not cover origin {self.origin} and this challenge "
                               "with the certificate's key") from None
        national_id, pseudonym = self._citizen(cert, verdict)
        serial = format(cert.serial_number, "x")
        card = None
        if self.registry is not None:
            entry = self.registry(serial)
            if entry is None:
                raise LoginRefused("card-not-registered", "no card in the registry carries this certificate")
            card, status = entry
            if status != CardStatus.ACTIVE:
                raise LoginRefused("card-" + status, f"the registry lists card {card} as {status}")
        return CitizenLogin(national_id, holder_name(cert) or national_id, card, serial, verdict, pseudonym)

    def _citizen(self, cert: x509.Certificate, verdict: CertificateVerdict) -> tuple[str, str | None]:
        """The citizen identity number behind the certificate, and its pseudonym: the subject
        serialNumber is a pseudonym (cardsim.pseudonyms) looked up in the registry; certificates made
        before pseudonyms carry the number itself (``PNO<country>-<number>``, ETSI EN 319 412-1 5.1.3)
        and have none."""
        from cardsim.pseudonyms import subject_pseudonym

        pseudonym = subject_pseudonym(cert)
        if pseudonym is not None:
            national_id = self.citizens(pseudonym) if self.citizens is not None else None
            if not national_id:
                raise LoginRefused("certificate-unknown-citizen",
                                   "no citizen in the registry carries this certificate's pseudonym")
            return national_id, pseudonym
        if not verdict.national_id:
            raise LoginRefused("certificate-no-identity", "the certificate names no citizen")
        return verdict.national_id, None
