"""The password change page (``/password/change``): an account whose initial password must change
(ppolicy pwdReset), or any staff member, chooses a new password under the password policy.

The change is an RFC 3062 password modify made as the user (the directory checks the current
password); the policy of :mod:`idp.password_policy` applies on top of the directory's.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, current_app, render_template, request, url_for

from idp.account_lifecycle import Lifecycle
from idp.deployment import Deployment
from idp.directory import valid_username
from idp.directory_errors import InvalidCredentials, PasswordRejected
from idp.password_policy import MIN_LENGTH, WeakPassword

bp = Blueprint("password", __name__)


def deployment() -> Deployment:
    return current_app.extensions["tessera"]  # type: ignore[no-any-return]


def lifecycle() -> Lifecycle:
    lc = current_app.extensions.get("tessera.lifecycle")
    if lc is None:
        lc = Lifecycle(deployment())
        current_app.extensions["tessera.lifecycle"] = lc
    return lc  # type: ignore[no-any-return]


@bp.route("/password/change", methods=["GET", "POST"])
def change() -> Any:
    """Choose a new password (RFC 3062 password modify as the user), under the password policy."""
    # the runtime minimum (never below the policy's MIN_LENGTH of 12, see idp/runtime_settings.py)
    min_length = max(MIN_LENGTH, deployment().runtime.get("password.min_length"))
    if request.method == "GET":
        return render_template("admin_password.html", username=request.args.get("username", "")[:128],
                               min_length=min_length), 200
    username = (request.form.get("username") or "").strip()[:128]
    old, new, again = (request.form.get(k) or "" for k in ("current_password", "new_password", "new_password_again"))
    error: str | None = None
    throttle = deployment().throttle
    address = request.remote_addr
    if not username or not old or not new:
        error = "Fill in every field."
    elif not valid_username(username) or throttle.blocked(username, address):
        # the same words as a wrong password: this page is no oracle and no way around the login throttle
        error = "The user name or current password is incorrect, or there were too many attempts."
    elif new != again:
        error = "The two new passwords differ."
    elif len(new) < min_length:
        error = f"Use at least {min_length} characters."
    if error is None:
        try:
            lifecycle().change_initial_password(username, old, new, address)
        except WeakPassword as exc:
            error = " ".join(exc.reasons)
        except InvalidCredentials:
            throttle.failure(username, address)
            error = "The user name or current password is incorrect, or there were too many attempts."
        except PasswordRejected as exc:
            error = exc.message
    if error is not None:
        return render_template("admin_password.html", username=username, min_length=min_length, error=error), 400
    return render_template("admin_password.html", username=username, min_length=min_length, done=True,
                           login_url=url_for("login.login")), 200


def register(app: Flask) -> None:
    app.register_blueprint(bp)
