"""Ending a person's sessions everywhere, with the tokens issued in them (issue 17: sessions and
tokens that end everywhere).

:func:`end_sessions_of` is the one call for the help desk, the command line (``tessera sessions
end``) and anything else that must log a person out of everything: every browser session of the
person goes, with every access token issued in them and every refresh token but those of
``offline_access`` grants (OpenID Connect Core 1.0 section 11: those outlive the session until
revoked), unless ``offline_too`` (a leaver: nothing of theirs may go on). The audit entry
``session.end_all`` is written in the same transaction: if it cannot be written, nothing ends.
The applications the sessions touched are told afterwards (:meth:`idp.sessions.SessionStore.announce`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from audit.trail import AuditEvent
from idp.oidc.backchannel import BackChannelLogout
from idp.oidc.tokens import revoke_user_tokens
from idp.sessions import EndedSession

if TYPE_CHECKING:
    from idp.deployment import Deployment

#: the audit subject roles of the actors that end sessions (as idp.audit_bridge names them)
_ROLES = {"staff": "staff", "cli": "operator"}


@dataclass(frozen=True)
class SessionsEnded:
    """What :func:`end_sessions_of` ended."""

    uid: str
    sessions: int
    #: access tokens revoked (of the sessions, and with ``offline_too`` every other one of the person)
    access_tokens: int


def tell_applications(deployment: Deployment, ended: list[EndedSession]) -> None:
    """Tell the applications of ``ended`` sessions (committed) by back-channel logout: through the web
    service's listener where it runs in this process, else delivered before returning (the command
    line, whose process ends after the command)."""
    deployment.web_sessions.on_ended(BackChannelLogout.of(deployment))  # unless the web service's runs here
    deployment.web_sessions.announce(ended)


def end_sessions_of(deployment: Deployment, uid: str, reason: str, *, actor: str, role: str | None = None,
                    offline_too: bool = False) -> SessionsEnded:
    """End every session of the staff member ``uid`` and revoke the tokens issued in them (offline
    grants' refresh tokens excepted unless ``offline_too``), audited ``session.end_all`` by
    ``actor`` (``staff:<uid>``, ``cli:<user>``; ``role``: its audit role, else the actor's kind)
    with ``reason`` in the same transaction; then the applications are told (back-channel logout,
    also where no web service runs: the command line)."""
    now = deployment.now()
    with deployment.sessions.begin() as session:
        ended, access_tokens = deployment.web_sessions.end_all_in(session.connection(), uid)
        if offline_too:
            access_tokens += revoke_user_tokens(session.connection(), uid, now)
        deployment.audit.append(session, AuditEvent(
            "session.end_all", actor[:255], "success", subject_role=role or _ROLES.get(actor.partition(":")[0]),
            object=f"staff:{uid}"[:255],
            details={"reason": reason[:200], "sessions": len(ended), "access_tokens_revoked": access_tokens,
                     "offline_too": offline_too}))
    tell_applications(deployment, ended)
    return SessionsEnded(uid, len(ended), access_tokens)
