"""Staff login: user name and password against the directory, then a TOTP code.

The first login enrols TOTP (QR code rendered locally as SVG, the secret as text, a confirming
code) and shows ten recovery codes once. The session id is rotated when the password is accepted
and again when the login completes. Failures are counted per account and per address on top of
the directory's ppolicy (:mod:`idp.throttle`: per account and address, per account, per address),
and answered with one generic sentence, a lock included; an unreachable directory is a 503 page and
never a failure. After the login the browser goes on to ``next`` only if it is a path of this site
(:mod:`idp.redirect_target`).
"""

from __future__ import annotations

import datetime
import time
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, redirect, render_template, request, session, url_for
from flask_babel import lazy_gettext
from flask_login import LoginManager, current_user, login_user
from markupsafe import Markup
from werkzeug.wrappers import Response

from idp import events
from idp.deployment import current_deployment
from directory.errors import DirectoryError, DirectoryUnavailable, PasswordExpired, PasswordMustChange
from idp.oidc.authorization import resume
from idp.redirect_target import local_path
from idp.roles import login_refusal
from idp.sessions import StaffSession
from idp.staff import StaffUser, claims_of
from idp.totp import qr_svg
from idp.i18n import shown

bp = Blueprint("login", __name__)

#: the one sentence every refused password is answered with (in the page's language when shown)
GENERIC_FAILURE = lazy_gettext("The user name or password is incorrect, or there were too many attempts. "
                               "Check them, or wait a few minutes and try again.")
WRONG_CODE = lazy_gettext("That code is not correct or was already used. Wait for the next code and try again.")
SECOND_FACTOR_SECONDS = 300
MAX_USERNAME = 256

login_manager = LoginManager()
login_manager.login_view = "login.login"
#: Flask-Login's session protection (its documented setting) is off: the session id itself is rotated at
#: login and revocable server-side (idp.sessions)
login_manager.session_protection = None


@login_manager.user_loader
def _load_user(uid: str) -> StaffUser | None:
    staff = session.get("staff")
    if not staff or staff.get("sub") != uid:
        return None
    return StaffUser(staff, int(session.get("auth_time", 0)), tuple(session.get("amr", ())))


def safe_next(value: object) -> str:
    """A path of this site rebuilt from ``value`` (:func:`idp.redirect_target.local_path`), else the
    account page: an open redirect would hand the login to anyone's page."""
    return local_path(value) or url_for("account.overview")


def _address() -> str:
    return request.remote_addr or "unknown"


def _page(template: str, status: int = 200, **context: Any) -> tuple[str, int]:
    return render_template(template, **context), status


def _pending() -> dict[str, Any] | None:
    pending = session.get("pending")
    if not pending or time.time() - float(pending.get("at", 0)) > SECOND_FACTOR_SECONDS:
        return None
    return pending


def login_form(nxt: str) -> tuple[str, int]:
    """The password form, answered in place (the authorization endpoint shows it without a redirect,
    as Keycloak does: one round trip fewer for every login)."""
    return _page("login.html", next=safe_next(nxt))


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    nxt = safe_next(request.values.get("next"))
    if request.method == "GET":
        if current_user.is_authenticated and not request.args.get("reauth"):
            return redirect(nxt)
        return login_form(nxt)
    username = (request.form.get("username") or "").strip()
    password = request.form.get("password") or ""
    d = current_deployment
    if not username or not password or len(username) > MAX_USERNAME or len(password) > 1024:
        return _page("login.html", 401, next=nxt, error=GENERIC_FAILURE, username=username[:MAX_USERNAME])
    if d.throttle.blocked(username, _address()):
        events.record("login.password", f"address:{_address()}", f"staff:{username[:64]}", "failure", reason="throttled")
        return _page("login.html", 401, next=nxt, error=GENERIC_FAILURE, username=username)
    try:
        member = d.directory.authenticate(username, password)
    except DirectoryUnavailable as exc:
        events.record("login.password", f"address:{_address()}", f"staff:{username[:64]}", "error", reason=exc.kind)
        return _page("unavailable.html", 503, message=shown(exc.message))
    except PasswordMustChange:
        # the right password, but a one-time one (or reset by an administrator): change it first
        events.record("login.password", f"address:{_address()}", f"staff:{username[:64]}", "failure",
                      reason="password-must-change")
        return redirect(url_for("password.change", username=username))
    except DirectoryError as exc:
        d.throttle.failure(username, _address())
        events.record("login.password", f"address:{_address()}", f"staff:{username[:64]}", "failure", reason=exc.kind)
        # only a password the directory accepted may hear more than the generic sentence: a ppolicy
        # lock or an administrator's one is answered whatever the password, and unknown names never get it
        message = shown(exc.message) if isinstance(exc, PasswordExpired) else GENERIC_FAILURE
        return _page("login.html", 401, next=nxt, error=message, username=username)
    if not member.enabled:
        d.throttle.failure(username, _address())
        events.record("login.password", f"address:{_address()}", f"staff:{member.uid}", "failure", reason="account-disabled")
        return _page("login.html", 401, next=nxt, error=GENERIC_FAILURE, username=username)
    refusal = login_refusal(member.groups)
    if refusal:  # the directory gives this account two administrator roles: no one person combines them
        events.record("login.password", f"address:{_address()}", f"staff:{member.uid}", "refused",
                      reason="conflicting-roles")
        return _page("login.html", 403, next=nxt, error=shown(refusal), username=username)
    claims = claims_of(member)
    enrolled = d.second_factor.remember(member.uid, claims)
    session.clear()
    if isinstance(session, StaffSession):
        session.rotate()
    session["pending"] = {"uid": member.uid, "at": time.time(), "next": nxt, "enrolled": enrolled, "claims": claims,
                          "expires_in": member.password_expires_in, "grace": member.grace_logins_remaining}
    events.record("login.password", f"address:{_address()}", f"staff:{member.uid}", "success")
    if enrolled:  # the code form in place: GET /login/code still shows it after a reload
        return _page("totp.html")
    return redirect(url_for("login.enrol"))


@bp.route("/login/code", methods=["GET", "POST"])
def second_factor() -> Any:
    pending = _pending()
    if pending is None or not pending.get("enrolled"):
        return redirect(url_for("login.login"))
    if request.method == "GET":
        return _page("totp.html")
    d = current_deployment
    uid = pending["uid"]
    if d.throttle.blocked(uid, _address()):
        session.pop("pending", None)
        events.record("login.otp", f"address:{_address()}", f"staff:{uid}", "failure", reason="throttled")
        return _page("login.html", 401, next=pending.get("next"), error=GENERIC_FAILURE)
    method = d.second_factor.verify(uid, request.form.get("code") or "")
    if method is None:
        d.throttle.failure(uid, _address())
        events.record("login.otp", f"address:{_address()}", f"staff:{uid}", "failure", reason="wrong-code")
        return _page("totp.html", 401, error=WRONG_CODE)
    if method == "recovery":
        events.record("totp.recovery_code_used", f"staff:{uid}", f"staff:{uid}", "success",
                      left=d.second_factor.recovery_codes_left(uid))
    nxt = _complete(uid, pending, method)
    if password_warning() is not None:
        return _page("password_expiring.html", next=nxt, warning=password_warning())
    return _continue(nxt)


@bp.route("/login/enrol", methods=["GET", "POST"])
def enrol() -> Any:
    pending = _pending()
    if pending is None or pending.get("enrolled"):
        return redirect(url_for("login.login"))
    d = current_deployment
    uid = pending["uid"]
    enrolment = d.second_factor.begin_enrolment(uid)
    context: dict[str, Any] = {"secret": enrolment.secret, "qr": Markup(qr_svg(enrolment.uri)), "uri": enrolment.uri}
    if request.method == "GET":
        return _page("enrol.html", **context)
    codes = d.second_factor.confirm_enrolment(uid, request.form.get("code") or "")
    if codes is None:
        d.throttle.failure(uid, _address())
        events.record("totp.enrol", f"staff:{uid}", f"staff:{uid}", "failure", reason="wrong-code")
        return _page("enrol.html", 401, error=WRONG_CODE, **context)
    events.record("totp.enrol", f"staff:{uid}", f"staff:{uid}", "success")
    session["after_codes"] = _complete(uid, pending, "otp")
    session["recovery_codes"] = codes
    return redirect(url_for("login.recovery_codes"))


@bp.get("/login/recovery-codes")
def recovery_codes() -> Any:
    codes = session.pop("recovery_codes", None)
    nxt = safe_next(session.pop("after_codes", None))
    if not codes or not current_user.is_authenticated:
        return redirect(nxt)
    return _page("recovery_codes.html", codes=codes, next=nxt)


def _complete(uid: str, pending: dict[str, Any], method: str) -> str:
    """Both factors passed: a new session id, the user logged in (RFC 8176 amr: pwd, otp); the
    local path the login goes on to."""
    d = current_deployment
    claims = pending.get("claims") or d.second_factor.claims(uid) or {"sub": uid}
    nxt = safe_next(pending.get("next"))
    session.clear()
    if isinstance(session, StaffSession):
        session.rotate()
    session["staff"] = claims
    session["auth_time"] = int(time.time())
    session["amr"] = ["pwd", "otp"]
    if pending.get("expires_in") is not None or pending.get("grace") is not None:
        session["password_warning"] = {"expires_at": int(time.time()) + int(pending.get("expires_in") or 0),
                                       "grace": pending.get("grace")}
    login_user(StaffUser(claims, session["auth_time"], ("pwd", "otp")))
    d.throttle.success(uid, _address())
    events.record("login", f"staff:{uid}", f"staff:{uid}", "success", factors=["pwd", method], address=_address())
    return nxt


def password_warning() -> dict[str, Any] | None:
    """The ppolicy warning of this session's login (draft-behera section 6.2), for the page after the
    login and the account page: ``days`` left (rounded down), the ``expires_at`` epoch, or ``grace``
    logins left after expiry; None when the directory gave none. ``expires_at`` is a UTC datetime."""
    warning = session.get("password_warning")
    if not isinstance(warning, dict):
        return None
    if warning.get("grace") is not None:
        return {"grace": int(warning["grace"]), "days": None, "expires_at": None}
    expires_at = int(warning.get("expires_at", 0))
    return {"grace": None, "days": max(0, expires_at - int(time.time())) // 86400,
            "expires_at": datetime.datetime.fromtimestamp(expires_at, datetime.UTC)}


def _continue(nxt: str) -> Response:
    """Go on to ``nxt`` after a login. The authorization request the login interrupted (OIDC Core
    3.1.2.1) is answered in this request, with this session (:func:`idp.oidc.authorization.resume`):
    the browser gets the redirect to the application with a code at once instead of a redirect back
    to the authorization endpoint first, one round trip fewer per login. Anything else, and an
    authorization that needs a page (consent), is a redirect to ``nxt``."""
    target = urlsplit(nxt)
    if target.path == url_for("oidc.authorize"):
        answer = resume(target.query)
        if answer is not None:
            return answer
    return redirect(nxt)


@bp.post("/logout")
def logout() -> Any:
    uid = current_user.uid if current_user.is_authenticated else None
    if isinstance(session, StaffSession):
        session.end()
    if uid:
        events.record("logout", f"staff:{uid}", f"staff:{uid}", "success")
    return _page("logged_out.html")
