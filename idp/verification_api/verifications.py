"""The three verifications of the API, one item each: a certificate for a purpose, a signed record
(CMS SignedData, RFC 5652, with id-data content, opened by :mod:`verification.cms`) and a signature
over data or its hash; each :class:`Outcome` carries the verdict and what the verification log keeps of it."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from sqlalchemy import select

from idp.citizen_blueprints import services
from idp.json_input import parse_json
from idp.verification_api.inputs import (HASHES, POLICY_FIELDS, PURPOSES, SOURCES, BadInput, base64_field,
                                         certificate_field, chain_field, choice_field, json_object, policy_field,
                                         time_field)
from verification.certificates import MALFORMED, CertificateVerdict, Reason
from verification.cms import open_signed_data
from verification.signatures import public_key_of
from verification.signatures import verify_signature as check_signature


@dataclass
class Outcome:
    body: dict[str, Any]
    national_id: str | None
    subject: str
    serial: str | None
    valid: bool


def _citizen_of(subject: dict[str, Any] | None, national_id: str | None) -> str | None:
    """The citizen behind a subject: the identity number a certificate carries (older card
    certificates), else the one its pseudonymous serialNumber maps to in the citizen registry
    (cardsim.pseudonyms: card certificates do not carry the number). Written into the subject
    for the authenticated service that asked."""
    from cardsim.pseudonyms import citizen_of, is_pseudonym

    if national_id is None and subject and is_pseudonym(subject.get("serial_number")):
        with services().deployment.sessions() as session:
            national_id = citizen_of(session, str(subject["serial_number"]))
        if national_id is not None:
            subject["national_id"] = national_id
    return national_id


def _verdict_outcome(verdict: CertificateVerdict) -> Outcome:
    body = verdict.as_dict()
    subject = body["subject"]["dn"][:255] if body["subject"] else ""
    national_id = _citizen_of(body["subject"], verdict.national_id)
    return Outcome(body, national_id, subject, body["serial"], verdict.valid)


def verify_certificate(item: Any) -> Outcome:
    item = json_object(item, {"certificate", "chain", "at", "purpose", "revocation_source", *POLICY_FIELDS},
                       {"certificate", "purpose"})
    cert = certificate_field(item["certificate"], "certificate")
    purpose = choice_field(item, "purpose", PURPOSES, None)
    source = choice_field(item, "revocation_source", SOURCES, "ocsp")
    verdict = services().certificates.validate(cert, purpose, chain_field(item), time_field(item), source,
                                               policy=policy_field(item))
    return _verdict_outcome(verdict)


def verify_signed_record(item: Any) -> Outcome:
    item = json_object(item, {"record", "at", "revocation_source"}, {"record"})
    der = base64_field(item, "record", 262144)
    source = choice_field(item, "revocation_source", SOURCES, "ocsp")
    signed, refusal = open_signed_data(der)
    if signed is None:
        assert refusal is not None
        body = {"valid": False, "reasons": [refusal.as_dict()], "signer": None,
                "content": None, "content_json": None, "signing_time": None}
        return Outcome(body, None, "unparsed record", None, False)
    at = time_field(item) or signed.signing_time
    verdict = services().certificates.validate(signed.signer, "signing", list(signed.intermediates), at, source)
    content_json = None
    national_id = None
    try:
        content_json = parse_json(signed.content)
        if isinstance(content_json, dict):
            data = content_json.get("data")
            if isinstance(data, dict) and isinstance(data.get("national_id"), str):
                national_id = data["national_id"][:32]
            elif isinstance(content_json.get("card"), str):
                national_id = _card_holder(content_json["card"])
    except ValueError:
        content_json = None
    signer = verdict.as_dict()
    body = {"valid": verdict.valid, "reasons": [r.as_dict() for r in verdict.reasons],
            "signer": signer, "content": base64.b64encode(signed.content).decode(),
            "content_json": content_json if isinstance(content_json, (dict, list)) else None,
            "signing_time": signed.signing_time.isoformat() if signed.signing_time else None}
    return Outcome(body, national_id, _subject_text(signer), format(signed.signer.serial_number, "x"), verdict.valid)


def _subject_text(verdict: dict[str, Any]) -> str:
    """The signer's DN for the verification log, from its verdict (none for a malformed certificate)."""
    subject = verdict.get("subject")
    return str(subject["dn"])[:255] if subject else "malformed certificate"


def _card_holder(number: str) -> str | None:
    """The identity number of the card a record names (``card``), for a record whose content does
    not carry it (the tax and insurance records), or None for a card this store does not know."""
    from cardsim.models import Card

    with services().deployment.engine.connect() as conn:
        holder = conn.scalar(select(Card.national_id).where(Card.number == number[:16]))
    return str(holder) if holder is not None else None


def verify_signature(item: Any) -> Outcome:
    item = json_object(item, {"data", "digest", "hash_algorithm", "signature", "certificate", "chain", "at", "purpose",
                          "revocation_source"}, {"signature", "certificate"})
    if ("data" in item) == ("digest" in item):
        raise BadInput("give exactly one of data and digest")
    hash_name = choice_field(item, "hash_algorithm", tuple(HASHES), "sha256")
    algorithm = HASHES[hash_name]()
    cert = certificate_field(item["certificate"], "certificate")
    signature = base64_field(item, "signature", 4096)
    purpose = choice_field(item, "purpose", PURPOSES, "signing")
    source = choice_field(item, "revocation_source", SOURCES, "ocsp")
    if "data" in item:
        message, prehashed = base64_field(item, "data", 262144), False
    else:
        message, prehashed = base64_field(item, "digest", 128), True
        if len(message) != algorithm.digest_size:
            raise BadInput(f"digest must be {algorithm.digest_size} bytes for {hash_name}")
    reasons: list[Reason] = []
    try:
        check_signature(public_key_of(cert), signature, message, algorithm, prehashed=prehashed, raw_ecdsa=None)
    except (InvalidSignature, *MALFORMED):
        reasons.append(Reason("bad-signature", "the signature does not verify with the certificate's key"))
    verdict = services().certificates.validate(cert, purpose, chain_field(item), time_field(item), source)
    reasons += list(verdict.reasons)
    signer = verdict.as_dict()
    body = {"valid": not reasons, "reasons": [r.as_dict() for r in reasons], "signer": signer}
    national_id = _citizen_of(signer.get("subject"), verdict.national_id)
    return Outcome(body, national_id, _subject_text(signer), format(cert.serial_number, "x"), not reasons)

