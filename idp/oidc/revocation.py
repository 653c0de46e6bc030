"""Token revocation (RFC 7009) on Authlib's :class:`RevocationEndpoint`.

A client revokes one of its own tokens, authenticated as at the token endpoint (section 2.1): a
refresh token ends every token of its grant (the family), an access token only itself. A token
that is unknown, already revoked or expired is answered 200 all the same (section 2.2); another
client's token is refused (``invalid_grant``, Authlib's answer). Each revocation is audited
(``oidc.revoke``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from authlib.oauth2.rfc6749 import InvalidRequestError
from authlib.oauth2.rfc7009 import RevocationEndpoint

from idp import events
from idp.oidc.clients import AUTH_METHODS
from idp.oidc.tokens import IssuedToken

if TYPE_CHECKING:
    from idp.oidc.provider import Provider


def require_token_parameter(request: Any) -> None:
    """RFC 7009 and RFC 7662 section 2.1: ``token`` is required; ``token_type_hint`` only orders the
    search (an unknown hint is ignored, where Authlib's own check would refuse it)."""
    if not request.form.get("token"):
        raise InvalidRequestError("the token parameter is required")


def token_subject(uid: str) -> str:
    """The audit subject of a token's owner: ``citizen:``/``service:`` as they are, staff as ``staff:<uid>``."""
    return uid if ":" in uid else f"staff:{uid}"


class Revocation(RevocationEndpoint):
    """``/oidc/revoke``: the client authentication methods of the token endpoint (public clients
    with their client_id, RFC 7009 section 5)."""

    CLIENT_AUTH_METHODS = list(AUTH_METHODS)

    def __init__(self, provider: "Provider") -> None:
        super().__init__()
        self.provider = provider

    def check_params(self, request: Any, client: Any) -> None:
        require_token_parameter(request)

    def query_token(self, token_string: str, token_type_hint: str | None) -> IssuedToken | None:
        return self.provider.tokens.find(token_string, token_type_hint)

    def revoke_token(self, token: IssuedToken, request: Any) -> None:
        ended = self.provider.tokens.revoke(token)
        events.record("oidc.revoke", f"client:{token.client_id}", token_subject(token.uid), "success",
                      token_type=token.presented, tokens_revoked=ended)
