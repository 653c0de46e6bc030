"""The citizen portal: own identity, tax and insurance records, own cards, lost card, who checked me.

Only for a citizen logged in with the card (:func:`idp.citizen_login.current_citizen`). The
records shown are the registry's current signed versions, opened and their signatures checked
(RFC 5652 section 5.6) before display. "Report lost" revokes the card's certificates at once
through :meth:`cardsim.issuance.CardIssuer.report_lost` (certificates, CRL and card state in one
transaction) and is audited. The verification log lists every call of the verification API that
concerned this citizen (:class:`idp.citizen_models.VerificationLog`).
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, abort, jsonify, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as HttpResponse
from sqlalchemy import select

from cardsim.identity_schemes import mask_any
from idp.citizen_blueprints import services
from idp.citizen_login import current_citizen

bp = Blueprint("portal", __name__)
#: record fields that hold a citizen identity number (the tax and social security numbers of a
#: person are their identity number)
IDENTITY_NUMBER_FIELDS = frozenset({"national_id", "taxpayer_number", "social_security_number"})


def _require_citizen() -> dict[str, Any] | HttpResponse:
    citizen = current_citizen()
    if citizen is None:
        return redirect(url_for("citizen_login.login_page", next=request.full_path.rstrip("?")))
    return citizen


def _records(card_id: int) -> dict[str, dict[str, Any]]:
    from cardsim.models import CardRecord
    from cardsim.records import RECORD_TYPES
    from verification.signed_data import open_signed_data

    out: dict[str, dict[str, Any]] = {}
    with services().deployment.sessions() as session:
        rows = list(session.scalars(select(CardRecord).where(CardRecord.card_id == card_id,
                                                             CardRecord.current.is_(True))))
    for row in rows:
        if row.record_type not in RECORD_TYPES:
            continue
        signed, check = open_signed_data(row.der)
        if signed is None:
            out[row.record_type] = {"_problem": check.detail}
            continue
        content = json.loads(signed.content)
        out[row.record_type] = {"data": content.get("data", {}), "version": row.version,
                                "issued_at": content.get("issued_at"), "signer": content.get("department")}
    return out


def _masked_records(records: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The records with every copy of the identity number masked (PIPL article 28: sensitive
    personal information; GB/T 35273-2020 section 6.2 de-identified display)."""
    out: dict[str, dict[str, Any]] = {}
    for kind, record in records.items():
        data = record.get("data")
        if isinstance(data, dict):
            data = {k: mask_any(v) if k in IDENTITY_NUMBER_FIELDS and isinstance(v, str) else v for k, v in data.items()}
            record = {**record, "data": data}
        out[kind] = record
    return out


@bp.get("/citizen/")
def overview() -> Any:
    citizen = _require_citizen()
    if isinstance(citizen, HttpResponse):
        return citizen
    from cardsim.models import Card
    from idp.citizen_models import VerificationLog

    deployment = services().deployment
    with deployment.sessions() as session:
        cards = list(session.scalars(select(Card).where(Card.national_id == citizen["national_id"])
                                     .order_by(Card.issued_at.desc())))
        log = list(session.scalars(select(VerificationLog).where(VerificationLog.national_id == citizen["national_id"])
                                   .order_by(VerificationLog.at.desc()).limit(100)))
    current = next((c for c in cards if c.number == citizen.get("card")), cards[0] if cards else None)
    records = _masked_records(_records(current.id) if current is not None else {})
    shown = {**citizen, "national_id": mask_any(citizen["national_id"])}
    return render_template("portal.html", citizen=shown, cards=cards, records=records, log=log)


@bp.post("/citizen/identity-number")
def reveal_identity_number() -> Response:
    """The citizen's own whole identity number, on explicit request (pages show it masked). Showing
    it is an audited event (``pii.reveal``, GB/T 35273-2020 section 9.3: access to personal
    information is recorded), written before the answer; never cached."""
    from audit.trail import AuditEvent
    from idp.problems import problem

    citizen = current_citizen()
    if citizen is None:
        return problem(401, "Not logged in", "Log in with your ID card first.", "not-logged-in")
    services().trail.record(AuditEvent("pii.reveal", citizen["sub"], "success", subject_role="citizen",
                                       object=citizen["sub"], source_address=(request.remote_addr or "")[:64] or None,
                                       details={"field": "national_id"}))
    response = jsonify(national_id=citizen["national_id"])
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/citizen/cards/<number>/lost", methods=["GET", "POST"])
def report_lost(number: str) -> Any:
    """Report a card lost, in two steps: a page saying exactly what will happen (GET, or a POST
    without ``confirm=yes``), then the act and a page of next steps. Only the holder's own card,
    only while it is in use; the act is irreversible (its certificates are revoked)."""
    citizen = _require_citizen()
    if isinstance(citizen, HttpResponse):
        return citizen
    from flask_babel import gettext

    from audit.trail import AuditEvent
    from cardsim.config import CardSettings
    from cardsim.errors import InvalidCardState
    from cardsim.issuance import CardIssuer
    from cardsim.models import Card, CardStatus

    deployment = services().deployment
    with deployment.sessions() as session:
        card = session.scalar(select(Card).where(Card.number == number[:16]))
        if card is None or card.national_id != citizen["national_id"]:
            abort(404, description=gettext("You have no card with that number."))
        status = card.status
    not_in_use = gettext("This card is not in use any more, so it cannot be reported lost.")
    if status != CardStatus.ACTIVE:
        abort(409, description=not_in_use)
    if request.method == "GET" or request.form.get("confirm") != "yes":
        return render_template("portal_lost_confirm.html", card={"number": number[:16]})
    issuer = CardIssuer(deployment.ca, CardSettings.from_env(deployment.settings.home), actor=citizen["sub"])
    try:
        summary = issuer.report_lost(number)
    except InvalidCardState:  # reported from another window in between
        abort(409, description=not_in_use)
    finally:
        issuer.close()
    services().trail.record(AuditEvent("card.lost", citizen["sub"], "success", subject_role="citizen",
                                       object=f"card:{summary.number}",
                                       source_address=(request.remote_addr or "")[:64] or None,
                                       details={"certificates": [summary.auth_serial, summary.sign_serial]}))
    return render_template("portal_lost_done.html", card={"number": summary.number}, reported_at=deployment.ca.clock())
