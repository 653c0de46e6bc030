"""OpenID Connect Back-Channel Logout 1.0: the applications a session took part in are told, server
to server, when it ends.

A client registers ``backchannel_logout_uri`` (``tessera client add --backchannel-logout-uri``,
section 2.2). When sessions end (:meth:`idp.sessions.SessionStore.on_ended`: logout, RP-initiated
logout, log out everywhere, a leaver, the help desk, a timeout), every client that got tokens in
one of them is sent a *logout token* (section 2.4): a JWT signed with the provider's key for the
client's id_token algorithm, ``typ`` logout+jwt, with ``iss``, ``aud``, ``iat``, ``exp``, ``jti``,
``sub``, ``sid`` and the back-channel logout event, never a ``nonce``; POSTed as the form parameter
``logout_token`` (section 2.5). Each delivery has a short timeout and is audited
(``oidc.backchannel_logout``, ``failure`` with the answer or the error); none holds up or fails
the logout itself: the web service delivers on a few threads of its own after the session is gone
(a purge of timed-out sessions may tell many clients at once), the command line delivers in
parallel before it exits.
"""

from __future__ import annotations

import logging
import secrets
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import requests
from joserfc import jwt
from sqlalchemy import Engine, select

from idp import events
from idp.models import OAuthToken
from idp.oidc.clients import ClientRegistry, RegisteredClient
from idp.oidc.keys import SigningKeys
from idp.oidc.revocation import token_subject
from idp.sessions import EndedSession

if TYPE_CHECKING:
    from idp.deployment import Deployment

log = logging.getLogger(__name__)

#: the event a logout token carries (section 2.4)
LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
#: a logout token is valid this long (section 2.4 recommends at most two minutes)
LOGOUT_TOKEN_SECONDS = 120
#: each client has this long to answer (connect and read)
DELIVERY_TIMEOUT_SECONDS = 2.0
#: clients told at once
_PARALLEL = 4


class BackChannelLogout:
    """The listener of ended sessions (:meth:`idp.sessions.SessionStore.on_ended`) of one provider.
    ``background``: deliver on threads of its own and return at once (the web service), else
    deliver before returning (the command line, whose process ends after the command)."""

    def __init__(self, issuer: str, keys: SigningKeys, clients: ClientRegistry, engine: Engine,
                 background: bool = True) -> None:
        self.issuer = issuer
        self.keys = keys
        self.clients = clients
        self.engine = engine
        self.background = background
        self._pool: ThreadPoolExecutor | None = None  # made at first use: in the worker, after any fork

    @classmethod
    def of(cls, deployment: Deployment) -> BackChannelLogout:
        """The back-channel logout of ``deployment``'s provider where no web service runs (the command
        line): delivered before the call returns."""
        return cls(deployment.settings.public_url, deployment.signing_keys, deployment.clients, deployment.engine,
                   background=False)

    def __eq__(self, other: object) -> bool:  # one listener per provider and database
        return isinstance(other, BackChannelLogout) and (other.issuer, other.engine.url) == (self.issuer, self.engine.url)

    def __hash__(self) -> int:
        return hash((self.issuer, str(self.engine.url)))

    def __call__(self, ended: list[EndedSession]) -> None:
        """Tell every client of the ``ended`` sessions that registered a back-channel logout URI."""
        sids = [e.sid for e in ended if e.sid]
        if not sids:
            return
        with self.engine.connect() as conn:
            rows = conn.execute(select(OAuthToken.client_id, OAuthToken.uid, OAuthToken.sid).distinct()
                                .where(OAuthToken.sid.in_(sids))).all()
        deliveries: list[tuple[RegisteredClient, str, str]] = []
        for client_id, uid, sid in rows:
            client = self.clients.get(client_id)
            if client is not None and client.backchannel_logout_uri and sid:  # sid: one of ``sids``
                deliveries.append((client, uid, sid))
        if not deliveries:
            return
        if not self.background:
            with ThreadPoolExecutor(max_workers=min(_PARALLEL, len(deliveries))) as pool:
                list(pool.map(lambda d: self.deliver(*d), deliveries))
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=_PARALLEL, thread_name_prefix="backchannel-logout")
        for client, uid, sid in deliveries:
            self._pool.submit(self.deliver, client, uid, sid).add_done_callback(_log_failure)

    def logout_token(self, client: RegisteredClient, sub: str, sid: str) -> str:
        """The logout token for ``client`` about ``sub``'s session ``sid`` (section 2.4)."""
        alg = client.id_token_signed_response_alg
        kid, key = self.keys.signing_key(alg)
        now = int(time.time())
        claims: dict[str, Any] = {"iss": self.issuer, "aud": client.get_client_id(), "iat": now,
                                  "exp": now + LOGOUT_TOKEN_SECONDS, "jti": secrets.token_urlsafe(16), "sub": sub,
                                  "sid": sid, "events": {LOGOUT_EVENT: {}}}
        return jwt.encode({"alg": alg, "kid": kid, "typ": "logout+jwt"}, claims, key)

    def deliver(self, client: RegisteredClient, sub: str, sid: str) -> bool:
        """POST the logout token to the client (section 2.5); whether it answered 200 or 204."""
        uri = client.backchannel_logout_uri
        assert uri is not None
        try:
            response = requests.post(uri, data={"logout_token": self.logout_token(client, sub, sid)},
                                     timeout=DELIVERY_TIMEOUT_SECONDS, allow_redirects=False)
            status: int | str = response.status_code
        except requests.RequestException as exc:  # the logout goes on: the client is told it failed in the trail
            status = type(exc).__name__
        delivered = status in (200, 204)
        events.record("oidc.backchannel_logout", f"client:{client.get_client_id()}", token_subject(sub),
                      "success" if delivered else "failure", answer=status)
        return delivered


def _log_failure(done: Future[bool]) -> None:
    """A delivery on the web service's threads that raised (its audit entry could not be written):
    logged, since no request is there to fail."""
    error = done.exception()
    if error is not None:
        log.error("back-channel logout delivery failed: %r", error)
