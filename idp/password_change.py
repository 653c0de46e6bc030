"""The password change page (``/password/change``): an account whose initial password must change
(ppolicy pwdReset), or any staff member, chooses a new password under the password policy.

Authentication comes before anything else. A POST goes, in this order:

1. the form itself (every field filled in, the new password typed twice alike): nothing about the
   account is looked at;
2. the login throttle (:mod:`idp.throttle`, per account and source address, per account, per
   address), exactly as for the login page;
3. the current password, checked by a directory bind as the user (RFC 4513 section 5.1.3,
   :meth:`idp.directory.Directory.authenticate`). Any failure (wrong password, unknown or malformed
   user name, ppolicy lock, disabled account) gets one generic sentence after the same work, and
   counts in the throttle;
4. only then the policy (:func:`idp.password_policy.problems`: length, common passwords, the user
   name or name in the password; then the hashed history, ``gov_password_history``);
5. in one database transaction: the ``password.change`` success audit entry and the new history
   entry are written, then the RFC 3062 password modify is made as the user. If the directory
   refuses, the transaction rolls back (no history, no success entry) and a failure entry with its
   reason is written instead.

Every outcome after step 1 is audited with its true result and a reason code: ``password.change``
``failure`` (``throttled``, ``invalid-credentials``, ``account-locked``, ``directory-unavailable``,
...), ``refused`` (the current password was proven but the new one breaks a rule: ``policy``,
``password-rejected``) or ``success``.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, render_template, request, session, url_for
from flask_babel import gettext
from flask_login import current_user

from audit import AuditEvent
from idp import events
from idp.deployment import current_deployment
from directory.client import StaffMember
from directory.errors import (DirectoryError, DirectoryUnavailable, InvalidCredentials, PasswordExpired,
                                  PasswordMustChange, PasswordRejected)
from idp.password_policy import MAX_LENGTH, WeakPassword
from idp.i18n import shown
from translatable import N_

bp = Blueprint("password", __name__)

MAX_USERNAME = 128
#: the one answer to every failure before the current password is proven (a lock and the throttle included)
NOT_ACCEPTED = N_("The user name or current password is incorrect, or there were too many attempts.")


class ChangeRefused(Exception):
    """The change did not happen; ``reasons`` are for the page (English text it shows in its
    language, translatable), ``status`` the HTTP status."""

    def __init__(self, *reasons: str, status: int = 400) -> None:
        self.reasons = reasons
        self.status = status
        super().__init__(" ".join(reasons))


def _failure(actor: str, username: str, reason: str, result: str = "failure", **details: Any) -> None:
    """A change that did not happen, audited as such: ``failure`` (not proven, or the directory
    failed) or ``refused`` (proven, but the new password breaks a rule)."""
    events.record("password.change", actor, f"staff:{username[:64]}", result, reason=reason, **details)


def _proven_member(username: str, current: str, address: str) -> StaffMember:
    """Steps 2 and 3: the throttle, then the current password by a bind as the user."""
    d = current_deployment
    anonymous = f"address:{address}"
    if d.throttle.blocked(username, address):
        _failure(anonymous, username, "throttled")
        raise ChangeRefused(NOT_ACCEPTED, status=401)
    try:
        return d.directory.authenticate(username, current)
    except PasswordMustChange as exc:  # the right one-time password: exactly what this page is for
        assert exc.member is not None
        return exc.member
    except DirectoryUnavailable:
        _failure(anonymous, username, "directory-unavailable")
        raise
    except DirectoryError as exc:
        d.throttle.failure(username, address)
        _failure(anonymous, username, exc.kind)
        # an expired password is only reported for the right password; everything else looks alike
        raise ChangeRefused(exc.message if isinstance(exc, PasswordExpired) else NOT_ACCEPTED, status=401) from None


def change_password(username: str, current: str, new: str, address: str) -> StaffMember:
    """Steps 2 to 5 above for ``username`` (RFC 3062 password modify as the user); raises
    :class:`ChangeRefused` or :class:`DirectoryUnavailable`."""
    d = current_deployment
    member = _proven_member(username, current, address)
    actor = f"staff:{member.uid}"
    policy = current_deployment.password_policy
    try:
        policy.check(member.uid, new, [member.given_name, member.surname])
    except WeakPassword as exc:
        _failure(actor, member.uid, "policy", "refused", rules=len(exc.reasons))
        raise ChangeRefused(*exc.reasons) from None
    try:
        with d.sessions.begin() as session:
            # written first: if the trail cannot be written, the directory is never changed
            d.audit.append(session, AuditEvent("password.change", actor, "success", subject_role="staff",
                                               object=actor, source_address=address))
            policy.remember(session, member.uid, new)
            d.directory.modify_own_password(member, current, new)
    except DirectoryUnavailable:
        _failure(actor, member.uid, "directory-unavailable")
        raise
    except InvalidCredentials:  # the password changed between the two binds
        d.throttle.failure(username, address)
        _failure(actor, member.uid, "invalid-credentials")
        raise ChangeRefused(NOT_ACCEPTED, status=401) from None
    except DirectoryError as exc:
        if isinstance(exc, PasswordRejected):
            _failure(actor, member.uid, exc.kind, "refused")
        else:
            _failure(actor, member.uid, exc.kind)
        raise ChangeRefused(exc.message) from None
    return member


@bp.route("/password/change", methods=["GET", "POST"])
def change() -> Any:
    """Choose a new password: the current one proven first, then the policy, then the change."""
    min_length = current_deployment.password_policy.min_length
    if request.method == "GET":
        return render_template("admin_password.html", username=request.args.get("username", "")[:MAX_USERNAME],
                               min_length=min_length), 200
    username = (request.form.get("username") or "").strip()[:MAX_USERNAME]
    fields = ("current_password", "new_password", "new_password_again")
    current, new, again = (request.form.get(k) or "" for k in fields)
    address = request.remote_addr or "unknown"
    error: str | None = None
    status = 400
    if not username or not current or not new:
        error = gettext("Fill in every field.")
    elif new != again:
        error = gettext("The two new passwords differ.")
    elif len(current) > MAX_LENGTH or len(new) > MAX_LENGTH:
        error = gettext("Use at most %(count)s characters.", count=MAX_LENGTH)
    else:
        try:
            changed = change_password(username, current, new, address)
            if current_user.is_authenticated and current_user.uid == changed.uid:
                session.pop("password_warning", None)  # the login's expiry warning is past (idp.login)
        except ChangeRefused as exc:
            error, status = " ".join(shown(reason) for reason in exc.reasons), exc.status
        except DirectoryUnavailable as exc:
            return render_template("unavailable.html", message=shown(exc.message)), 503
    if error is not None:
        return render_template("admin_password.html", username=username, min_length=min_length, error=error), status
    return render_template("admin_password.html", username=username, min_length=min_length, done=True,
                           login_url=url_for("login.login")), 200


def register(app: Flask) -> None:
    app.register_blueprint(bp)
