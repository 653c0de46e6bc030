"""The OpenID Connect provider, on Authlib's server side: one module per specification.

- :mod:`idp.oidc.keys`       JWKS and id_token signing keys, rotation (RFC 7517, RFC 7518)
- :mod:`idp.oidc.clients`    the client registry (OIDC Registration metadata, RFC 7591 names)
- :mod:`idp.oidc.tokens`     access and refresh tokens: rotation, reuse detection, per-user revoke,
                             the end of the session they were issued in
- :mod:`idp.oidc.revocation` token revocation (RFC 7009)
- :mod:`idp.oidc.introspection` token introspection (RFC 7662)
- :mod:`idp.oidc.session_end` a person's sessions ended everywhere, with their tokens
- :mod:`idp.oidc.backchannel` OpenID Connect Back-Channel Logout 1.0
- :mod:`idp.oidc.grants`     authorization code + PKCE (RFC 6749 4.1, RFC 7636), refresh (RFC 6749 6),
                             OpenID Connect Core 3.1, private_key_jwt (RFC 7523 2.2)
- :mod:`idp.oidc.discovery`  /.well-known/openid-configuration (OIDC Discovery 1.0)
- :mod:`idp.oidc.provider`   the Authlib AuthorizationServer wired to the stores, userinfo, end session
- :mod:`idp.oidc.endpoints`  the HTTP endpoints (blueprint)
"""
