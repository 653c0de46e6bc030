"""The staff member's own page: who the directory says they are, their sessions (log out
everywhere), their password (a link to the change page, and the directory's expiry warning of this
login), their authenticator (re-enrolment, the current code first) and recovery codes, and their
staff certificates (request from a CSR, revoke).

Re-enrolling the authenticator (RFC 6238) takes a fresh code of the present one first (counted by
the login throttle like a login's code, :mod:`idp.throttle`), then a new secret is shown and
becomes the one in force only when a code of it is entered; the old secret works until then, and
ten new recovery codes replace the old ones.
"""

from __future__ import annotations

import time
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from flask import Blueprint, Response, redirect, render_template, request, session, url_for
from flask_babel import gettext
from flask_login import current_user, login_required
from markupsafe import Markup

from ca.errors import CaError
from ca.models import CertificateStatus
from idp import events
from idp.deployment import current_deployment
from idp.login import WRONG_CODE, password_warning
from idp.sessions import StaffSession
from idp.totp import qr_svg
from idp.staff_certificates import OWN_REVOCATION_REASONS, StaffCertificates, own_revocation_reason

bp = Blueprint("account", __name__)
MAX_CSR_BYTES = 16 * 1024
#: how long after the present code was proven the new authenticator may be confirmed
RE_ENROL_SECONDS = 300


def certificates() -> StaffCertificates:
    d = current_deployment
    return StaffCertificates(d.ca, d.sessions)


def _overview(status: int = 200, **extra: Any) -> tuple[str, int]:
    d = current_deployment
    uid = current_user.uid
    return render_template(
        "account.html", user=current_user, sessions=d.web_sessions.list_for(uid),
        this_session=session.id_hash if isinstance(session, StaffSession) else None,
        certificates=certificates().list_for(uid), reasons=OWN_REVOCATION_REASONS,
        recovery_left=d.second_factor.recovery_codes_left(uid), warning=password_warning(), **extra), status


@bp.get("/account")
@login_required
def overview() -> Any:
    return _overview()


@bp.post("/account/logout-everywhere")
@login_required
def logout_everywhere() -> Any:
    uid = current_user.uid
    ended, tokens = current_deployment.end_staff_access(uid)
    if isinstance(session, StaffSession):
        session.end()
    events.record("logout.everywhere", f"staff:{uid}", f"staff:{uid}", "success", sessions=ended, tokens=tokens)
    return render_template("logged_out.html", everywhere=True, sessions=ended)


@bp.post("/account/recovery-codes")
@login_required
def new_recovery_codes() -> Any:
    uid = current_user.uid
    codes = current_deployment.second_factor.new_recovery_codes(uid)
    events.record("totp.recovery_codes_replaced", f"staff:{uid}", f"staff:{uid}", "success")
    return render_template("recovery_codes.html", codes=codes, next=url_for("account.overview"))


@bp.route("/account/authenticator", methods=["GET", "POST"])
@login_required
def authenticator() -> Any:
    """Re-enrolment, step 1: a fresh code of the authenticator in force; then the new secret's page."""
    if request.method == "GET":
        return render_template("totp.html", action=url_for("account.authenticator"), replacing=True)
    d = current_deployment
    uid, address = current_user.uid, request.remote_addr or "unknown"
    code = (request.form.get("code") or "").strip().replace(" ", "")
    # only an authenticator code proves the authenticator: a recovery code is for its loss (the help desk)
    if d.throttle.blocked(uid, address) or not code.isdigit() or d.second_factor.verify(uid, code) != "otp":
        d.throttle.failure(uid, address)
        events.record("totp.re-enrol", f"staff:{uid}", f"staff:{uid}", "failure", reason="wrong-code")
        return render_template("totp.html", action=url_for("account.authenticator"), replacing=True,
                               error=WRONG_CODE), 401
    session["re_enrol_at"] = time.time()
    return _new_authenticator(fresh=True)


def _new_authenticator(fresh: bool, status: int = 200, error: str | None = None) -> tuple[str, int]:
    """The new secret's page (a new secret when ``fresh``, else the one shown before)."""
    enrolment = current_deployment.second_factor.begin_enrolment(current_user.uid, fresh=fresh)
    return render_template("enrol.html", secret=enrolment.secret, qr=Markup(qr_svg(enrolment.uri)), uri=enrolment.uri,
                           action=url_for("account.confirm_authenticator"), replacing=True, error=error), status


@bp.post("/account/authenticator/confirm")
@login_required
def confirm_authenticator() -> Any:
    """Re-enrolment, step 2: a code of the new secret makes it the one in force; new recovery codes."""
    d = current_deployment
    uid, address = current_user.uid, request.remote_addr or "unknown"
    proven_at = session.get("re_enrol_at")
    if not isinstance(proven_at, float) or time.time() - proven_at > RE_ENROL_SECONDS:
        return redirect(url_for("account.authenticator"))
    codes = d.second_factor.confirm_enrolment(uid, request.form.get("code") or "")
    if codes is None:
        d.throttle.failure(uid, address)
        events.record("totp.re-enrol", f"staff:{uid}", f"staff:{uid}", "failure", reason="wrong-new-code")
        return _new_authenticator(False, 401, str(WRONG_CODE))
    session.pop("re_enrol_at", None)
    events.record("totp.re-enrol", f"staff:{uid}", f"staff:{uid}", "success")
    return render_template("recovery_codes.html", codes=codes, next=url_for("account.overview"))


@bp.post("/account/certificates")
@login_required
def request_certificate() -> Any:
    uid = current_user.uid
    upload = request.files.get("csr_file")
    data = upload.read(MAX_CSR_BYTES + 1) if upload and upload.filename else (request.form.get("csr") or "").encode()
    if not data.strip():
        return _overview(400, error=gettext("Paste a certificate signing request (PKCS#10, PEM) or choose a file."))
    if len(data) > MAX_CSR_BYTES:
        return _overview(413, error=gettext("That file is too large for a certificate signing request."))
    try:
        row = certificates().issue(uid, current_user.claims, data)
    except CaError as exc:
        events.record("cert.issue", f"staff:{uid}", None, "failure", reason=exc.kind)
        return _overview(400, error=gettext("The request was refused: %(reason)s", reason=str(exc)))
    events.record("cert.issue", f"staff:{uid}", f"cert:{row.serial_hex}", "success", profile=row.profile)
    return _overview(201, issued=row)


@bp.get("/account/certificates/<serial>.pem")
@login_required
def download_certificate(serial: str) -> Any:
    own = {c.serial_hex: c for c in certificates().list_for(current_user.uid)}
    row = own.get(serial.lower()) or own.get(serial.upper())
    if row is None:
        return _overview(404, error=gettext("You have no certificate with that serial number."))
    pem = x509.load_der_x509_certificate(row.der).public_bytes(Encoding.PEM)
    return Response(pem, mimetype="application/x-pem-file",
                    headers={"Content-Disposition": f'attachment; filename="{row.serial_hex}.pem"'})


@bp.post("/account/certificates/<serial>/revoke")
@login_required
def revoke_certificate(serial: str) -> Any:
    """Revoke one of one's own certificates in two steps: a page saying what will happen (a POST
    without ``confirm=yes``), then the act (RFC 5280 section 5.3.1 reason) and a page of next steps."""
    uid = current_user.uid
    reason = own_revocation_reason(request.form.get("reason"))
    confirmed = request.form.get("confirm") == "yes"
    try:
        if not confirmed:
            row = certificates().own(uid, serial)
            if row.status == CertificateStatus.REVOKED:
                return _overview(409, error=gettext("This certificate is revoked already."))
            return render_template("account_revoke_confirm.html", certificate=row, reason=reason)
        row = certificates().revoke_own(uid, serial, reason)
    except CaError as exc:
        if confirmed:  # only an attempt to revoke is an event
            events.record("cert.revoke", f"staff:{uid}", f"cert:{serial[:64]}", "failure", reason=exc.kind)
        return _overview(404 if exc.kind == "not-found" else 409,
                         error=gettext("The certificate was not revoked: %(reason)s", reason=str(exc)))
    events.record("cert.revoke", f"staff:{uid}", f"cert:{row.serial_hex}", "success", reason=row.revocation_reason)
    return render_template("account_revoke_done.html", certificate=row)
