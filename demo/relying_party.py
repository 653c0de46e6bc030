"""The relying party's side of OpenID Connect Core 1.0, with requests-oauthlib and PyJWT.

Authorization code flow with PKCE S256 (RFC 7636), state and nonce; the id_token is validated as
OIDC Core 3.1.3.7 says: signature against the provider's JWKS, iss, aud, exp, iat, nonce and
at_hash (3.1.3.8). Logout goes to the provider's end_session_endpoint (RP-Initiated Logout 1.0); the provider's logout
tokens are validated as Back-Channel Logout 1.0 section 2.6 says (:meth:`RelyingParty.verify_logout_token`).
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import jwt
import requests
from requests_oauthlib import OAuth2Session

from demo.config import DemoConfig

ALGORITHMS = ["ES256", "RS256"]
#: the event of a logout token (Back-Channel Logout 1.0 section 2.4)
LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"


class LoginFailed(Exception):
    """The provider's answer did not pass validation; the message says which check failed."""


@dataclass(frozen=True)
class AuthorizationRequest:
    url: str
    state: str
    nonce: str
    code_verifier: str


class RelyingParty:
    def __init__(self, config: DemoConfig) -> None:
        self.config = config
        self._metadata: dict[str, Any] | None = None
        self._metadata_at = 0.0
        self._jwks: jwt.PyJWKClient | None = None
        if config.redirect_uri.startswith(("http://127.0.0.1", "http://localhost")):
            os.environ.setdefault("OAUTHLIB_INSECURE_TRANSPORT", "1")  # loopback demo only

    def metadata(self) -> dict[str, Any]:
        """OpenID Provider metadata (Discovery 1.0 section 4), cached for five minutes."""
        if self._metadata is None or time.monotonic() - self._metadata_at > 300:
            response = requests.get(self.config.issuer + "/.well-known/openid-configuration", timeout=5)
            response.raise_for_status()
            data = response.json()
            if data.get("issuer") != self.config.issuer:
                raise LoginFailed(f"discovery issuer {data.get('issuer')!r} is not {self.config.issuer!r}")
            self._metadata, self._metadata_at = data, time.monotonic()
            self._jwks = jwt.PyJWKClient(data["jwks_uri"], cache_keys=True, lifespan=300)
        return self._metadata

    def _session(self, state: str | None = None) -> OAuth2Session:
        return OAuth2Session(self.config.client_id, redirect_uri=self.config.redirect_uri, scope=self.config.scope.split(),
                             state=state)

    def begin(self, acr_values: str | None = None) -> AuthorizationRequest:
        """Start a login; ``acr_values`` asks for a kind of login (``urn:tessera:acr:card``: the ID card)."""
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        nonce = secrets.token_urlsafe(16)
        extra = {"acr_values": acr_values} if acr_values else {}
        url, state = self._session().authorization_url(self.metadata()["authorization_endpoint"], nonce=nonce,
                                                       code_challenge=challenge, code_challenge_method="S256", **extra)
        return AuthorizationRequest(url, state, nonce, verifier)

    def finish(self, callback_url: str, request: AuthorizationRequest) -> dict[str, Any]:
        """Exchange the code and validate everything; the verified id_token claims and userinfo."""
        meta = self.metadata()
        session = self._session(state=request.state)
        try:
            token = session.fetch_token(meta["token_endpoint"], authorization_response=callback_url,
                                        client_secret=self.config.client_secret, code_verifier=request.code_verifier,
                                        include_client_id=False)
        except Exception as exc:  # noqa: BLE001  (oauthlib raises many kinds; all mean the same here)
            raise LoginFailed(f"token request failed: {exc}") from None
        claims = self.verify_id_token(token.get("id_token", ""), request.nonce, token.get("access_token"))
        info = session.get(meta["userinfo_endpoint"], timeout=5)
        if info.status_code != 200:
            raise LoginFailed(f"userinfo answered {info.status_code}")
        userinfo = info.json()
        if userinfo.get("sub") != claims["sub"]:
            raise LoginFailed("userinfo is about another subject (OIDC Core 5.3.2)")
        return {"id_token": token["id_token"], "claims": claims, "userinfo": userinfo}

    def verify_id_token(self, id_token: str, nonce: str, access_token: str | None) -> dict[str, Any]:
        self.metadata()
        assert self._jwks is not None
        try:
            key = self._jwks.get_signing_key_from_jwt(id_token)
            claims = jwt.decode(id_token, key.key, algorithms=ALGORITHMS, audience=self.config.client_id,
                                issuer=self.config.issuer, options={"require": ["exp", "iat", "sub", "aud", "iss"]})
        except jwt.PyJWTError as exc:
            raise LoginFailed(f"id_token rejected: {exc}") from None
        if claims.get("nonce") != nonce:
            raise LoginFailed("id_token nonce does not match this login")
        if access_token and "at_hash" in claims:
            alg = jwt.get_unverified_header(id_token)["alg"]
            digest = hashlib.sha256(access_token.encode()).digest() if alg.endswith("256") else b""
            expected = base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode()
            if claims["at_hash"] != expected:
                raise LoginFailed("id_token at_hash does not match the access token")
        return claims  # type: ignore[no-any-return]

    def verify_logout_token(self, logout_token: str) -> dict[str, Any]:
        """The claims of a logout token the provider POSTed (Back-Channel Logout 1.0 section 2.6):
        signature against the JWKS, ``typ`` logout+jwt, iss, aud, iat, exp, jti, the logout event,
        a ``sid`` or ``sub``, and no ``nonce``. Raises :class:`LoginFailed` naming the failed check."""
        self.metadata()
        assert self._jwks is not None
        try:
            if jwt.get_unverified_header(logout_token).get("typ", "logout+jwt") != "logout+jwt":
                raise LoginFailed("logout token: typ is not logout+jwt")
            key = self._jwks.get_signing_key_from_jwt(logout_token)
            claims: dict[str, Any] = jwt.decode(
                logout_token, key.key, algorithms=ALGORITHMS, audience=self.config.client_id, issuer=self.config.issuer,
                leeway=30, options={"require": ["iat", "exp", "jti", "events", "aud", "iss"]})
        except jwt.PyJWTError as exc:
            raise LoginFailed(f"logout token rejected: {exc}") from None
        events = claims.get("events")
        if not isinstance(events, dict) or not isinstance(events.get(LOGOUT_EVENT), dict):
            raise LoginFailed("logout token: no back-channel logout event")
        if "nonce" in claims:
            raise LoginFailed("logout token: a nonce is not allowed")
        if not (isinstance(claims.get("sid"), str) or isinstance(claims.get("sub"), str)):
            raise LoginFailed("logout token: neither sid nor sub")
        return claims

    def logout_url(self, id_token: str, state: str) -> str:
        query = urlencode({"id_token_hint": id_token, "post_logout_redirect_uri": self.config.base_url + "/",
                           "client_id": self.config.client_id, "state": state})
        return f"{self.metadata()['end_session_endpoint']}?{query}"
