"""A demo departmental application: logs staff in through Tessera's OpenID Connect provider.

It deliberately uses a different OAuth/OIDC stack from the server (requests-oauthlib for the
protocol, PyJWT for the id_token), as any department's own application would.
"""
