"""Token introspection (RFC 7662) on Authlib's :class:`IntrospectionEndpoint`.

Only clients registered for it (``tessera client add --introspection``, resource servers) may ask
(section 2.1: the endpoint requires authorisation, against token scanning): they authenticate as
registered (never with a client_id alone); a client that fails to is ``invalid_client`` 401, one
that is not registered for introspection is 403 (section 2.3), audited ``oidc.introspect``. A
resource server learns about any access token and about its own refresh tokens; anything unknown,
expired, revoked or not its to see is ``{"active": false}`` (section 2.2).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from authlib.oauth2.rfc6749 import UnauthorizedClientError
from authlib.oauth2.rfc7662 import IntrospectionEndpoint

from idp import events
from idp.oidc.clients import SERVICE_AUTH_METHODS
from idp.oidc.revocation import require_token_parameter
from idp.oidc.tokens import ACCESS, IssuedToken

if TYPE_CHECKING:
    from idp.oidc.provider import Provider


class Introspection(IntrospectionEndpoint):
    """``/oidc/introspect``."""

    CLIENT_AUTH_METHODS = list(SERVICE_AUTH_METHODS)

    def __init__(self, provider: "Provider") -> None:
        super().__init__()
        self.provider = provider

    def authenticate_endpoint_client(self, request: Any) -> Any:
        client = super().authenticate_endpoint_client(request)
        if not client.may_introspect:
            events.record("oidc.introspect", f"client:{client.get_client_id()}", None, "refused",
                          reason="not-registered-for-introspection")
            raise UnauthorizedClientError("this client is not registered for token introspection", status_code=403)
        return client

    def check_params(self, request: Any, client: Any) -> None:
        require_token_parameter(request)

    def query_token(self, token_string: str, token_type_hint: str | None) -> IssuedToken | None:
        return self.provider.tokens.find(token_string, token_type_hint)

    def check_permission(self, token: IssuedToken, client: Any, request: Any) -> bool:
        return token.presented == ACCESS or token.check_client(client)

    def introspect_token(self, token: IssuedToken) -> dict[str, Any]:
        """Section 2.2: what the token stands for."""
        service = token.uid == f"service:{token.client_id}"
        expires = token.expires_at()
        claims: dict[str, Any] = {
            "active": True, "scope": token.get_scope(), "client_id": token.client_id,
            "token_type": "Bearer" if token.presented == ACCESS else "refresh_token",
            "iat": int(token.issued_at.timestamp()), "iss": self.provider.issuer,
            "sub": token.client_id if service else token.uid,
            "aud": self.provider.service_audience if service else token.client_id,
        }
        if expires is not None:
            claims["exp"] = int(expires.timestamp())
        return claims
