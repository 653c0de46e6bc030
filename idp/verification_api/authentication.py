"""Who calls the verification API: ``Authorization: Bearer <JWT>``, either a service assertion or a
service account's access token (:class:`ServiceAuthenticator`).

A service assertion is a short-lived JWS (RFC 7515/7519; ES256/ES384/RS256/PS256) signed by the
service's key with its ``service`` certificate in the ``x5c`` header (RFC 7515 section 4.1.6),
``aud`` the API's URL, ``exp`` at most ten minutes after ``iat``; the certificate is validated for
the ``service`` purpose like any other. An access token comes from the IdP's token endpoint
(client credentials, RFC 6749 section 4.4; RFC 9068) and must carry the :data:`SCOPE` scope.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from joserfc.jws import JWSRegistry

from idp.citizen_blueprints import services
from verification.certificates import MALFORMED, load_certificate


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
#: the longest a service assertion may live (``exp`` - ``iat``), in seconds
MAX_ASSERTION_LIFETIME = 600


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
            why = getattr(exc, "error", type(exc).__name__)
            raise PermissionError(f"the access token does not verify: {why}") from None
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
        from joserfc.jwk import ECKey, RSAKey, import_key

        chain = head.get("x5c")
        try:
            if not isinstance(chain, list) or not chain or not all(isinstance(c, str) for c in chain) or len(chain) > 4:
                raise PermissionError("the assertion has no x5c certificate chain")
            # load_certificate: any certificate that does not load (a version above v3 too) is a ValueError
            certs = [load_certificate(base64.b64decode(c, validate=True)) for c in chain]
        except (ValueError, binascii.Error) as exc:
            raise PermissionError(f"the assertion cannot be read: {type(exc).__name__}") from None
        # the JWT's signature first (with the key the assertion names), so an unauthenticated caller
        # gets no deep examination of the certificates it sends
        try:
            public = certs[0].public_key()
            if not isinstance(public, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
                raise PermissionError("the assertion does not verify: its certificate's key is neither RSA nor EC")
            pem = public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
            key: RSAKey | ECKey = (import_key(pem, "RSA") if isinstance(public, rsa.RSAPublicKey)
                                   else import_key(pem, "EC"))
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

