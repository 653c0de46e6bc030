"""The verification API over HTTP: certificates, signed records, signatures, batches; service
authentication, rate limiting, the audit entry and the citizen's "who checked my card" log."""

from __future__ import annotations

import base64
import datetime
import time

import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from tests.fixtures_citizen import *  # noqa: F401,F403
from tests.fixtures_citizen import CitizenIdp, Credential, agent_card, card_login, foreign_citizen, start_serve
from tests.servers import free_port


def _card_certificate(idp: CitizenIdp, name: str) -> str:
    return str(agent_card(idp, idp.agents[name])["certificate"])


def test_openapi_is_3_1_and_public(citizen_idp: CitizenIdp) -> None:
    doc = requests.get(citizen_idp.url("/api/v1/openapi.json")).json()
    assert doc["openapi"] == "3.1.0"
    assert {"/certificates/verify", "/certificates/verify-batch", "/signed-records/verify",
            "/signed-records/verify-batch", "/signatures/verify", "/signatures/verify-batch"} <= set(doc["paths"])
    assert doc["servers"][0]["url"] == citizen_idp.base + "/api/v1"


def test_valid_card_certificate_from_every_revocation_source(citizen_idp: CitizenIdp) -> None:
    certificate = _card_certificate(citizen_idp, "alice")
    for source in ("ocsp", "crl", "store"):
        answer = citizen_idp.api("/certificates/verify", {"certificate": certificate, "purpose": "citizen-auth",
                                                         "revocation_source": source})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["valid"] is True and body["reasons"] == []
        assert body["profile"] == "citizen-auth"
        assert body["revocation"]["status"] == "good" and body["revocation"]["source"] == source
        assert body["revocation"]["checked_at"]
        assert len(body["chain"]) == 3 and "Citizen CA" in body["chain"][1]["subject"]
        assert body["subject"]["national_id"] and body["subject"]["common_name"]


def test_wrong_purpose_and_every_reason(citizen_idp: CitizenIdp) -> None:
    certificate = _card_certificate(citizen_idp, "alice")
    body = citizen_idp.api("/certificates/verify", {"certificate": certificate, "purpose": "signing"}).json()
    assert body["valid"] is False
    assert {r["code"] for r in body["reasons"]} == {"wrong-key-usage", "wrong-policy"}
    later = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=7 * 365)).isoformat()
    body = citizen_idp.api("/certificates/verify", {"certificate": certificate, "purpose": "staff-auth",
                                                    "at": later, "revocation_source": "store"}).json()
    assert {"expired", "wrong-policy"} <= {r["code"] for r in body["reasons"]}


def test_foreign_ca_is_untrusted(citizen_idp: CitizenIdp) -> None:
    mallory = foreign_citizen("38001010000")
    chain = [c.public_bytes(Encoding.PEM).decode() for c in mallory.chain]
    body = citizen_idp.api("/certificates/verify", {"certificate": mallory.pem, "purpose": "citizen-auth",
                                                    "chain": chain}).json()
    assert body["valid"] is False and "untrusted-issuer" in {r["code"] for r in body["reasons"]}
    assert body["chain"] == []


def test_revoked_card_certificate_names_time_reason_and_source(citizen_idp: CitizenIdp) -> None:
    citizen_idp.cli("card", "lost", citizen_idp.agents["renewed"].card.number)
    certificate = _card_certificate(citizen_idp, "renewed")
    for source in ("ocsp", "crl", "store"):
        body = citizen_idp.api("/certificates/verify", {"certificate": certificate, "purpose": "citizen-auth",
                                                        "revocation_source": source}).json()
        assert body["valid"] is False and "revoked" in {r["code"] for r in body["reasons"]}
        assert body["revocation"]["status"] == "revoked" and body["revocation"]["source"] == source
        assert body["revocation"]["reason"] == "keyCompromise" and body["revocation"]["revoked_at"]


def test_signed_record_from_the_registry(citizen_idp: CitizenIdp) -> None:
    number = citizen_idp.agents["alice"].card.number
    (der,) = citizen_idp.sql("SELECT r.der FROM card_record r JOIN card c ON c.id = r.card_id "
                             "WHERE c.number = ? AND r.record_type = 'identity' AND r.current = 1", number)[0:1][0]
    body = citizen_idp.api("/signed-records/verify", {"record": base64.b64encode(der).decode()}).json()
    assert body["valid"] is True, body
    assert body["content_json"]["card"] == number and body["content_json"]["type"] == "identity"
    assert body["signer"]["profile"] == "service" and body["signing_time"]
    # a record without the identity number in its data (tax): the log names the card's holder
    (tax,) = citizen_idp.sql("SELECT r.der FROM card_record r JOIN card c ON c.id = r.card_id "
                             "WHERE c.number = ? AND r.record_type = 'tax' AND r.current = 1", number)[0]
    tax_body = citizen_idp.api("/signed-records/verify", {"record": base64.b64encode(tax).decode()}).json()
    assert tax_body["valid"] is True and "national_id" not in tax_body["content_json"]["data"], tax_body
    logged = citizen_idp.sql("SELECT national_id FROM verification_log WHERE operation = 'signed-record' "
                             "ORDER BY id DESC LIMIT 1")
    assert logged == [(agent_card_national_id(citizen_idp, "alice"),)]
    tampered = bytearray(der)
    index = bytes(der).index(b'"address"') + 12
    tampered[index] ^= 0x01
    bad = citizen_idp.api("/signed-records/verify", {"record": base64.b64encode(bytes(tampered)).decode()}).json()
    assert bad["valid"] is False and bad["reasons"][0]["code"] == "digest-mismatch"


def test_signature_over_data_and_over_a_digest(citizen_idp: CitizenIdp) -> None:
    service = citizen_idp.service
    assert service is not None
    data = b"payment order 42"
    signature = service.key.sign(data, ec.ECDSA(hashes.SHA256()))
    good = citizen_idp.api("/signatures/verify", {"data": base64.b64encode(data).decode(), "certificate": service.pem,
                                                  "signature": base64.b64encode(signature).decode()}).json()
    assert good["valid"] is True and good["signer"]["subject"]["organization"] == "Tax Office"
    digest = hashes.Hash(hashes.SHA256())
    digest.update(data)
    by_hash = citizen_idp.api("/signatures/verify", {"digest": base64.b64encode(digest.finalize()).decode(),
                                                     "certificate": service.pem,
                                                     "signature": base64.b64encode(signature).decode()}).json()
    assert by_hash["valid"] is True
    other = citizen_idp.api("/signatures/verify", {"data": base64.b64encode(b"payment order 43").decode(),
                                                   "certificate": service.pem,
                                                   "signature": base64.b64encode(signature).decode()}).json()
    assert other["valid"] is False and other["reasons"][0]["code"] == "bad-signature"


def test_batches(citizen_idp: CitizenIdp) -> None:
    certificates = [_card_certificate(citizen_idp, n) for n in ("alice", "bob", "renewed")]
    answer = citizen_idp.api("/certificates/verify-batch", {"items": [
        {"certificate": c, "purpose": "citizen-auth", "revocation_source": "store"} for c in certificates]})
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [r["valid"] for r in results[:2]] == [True, True]
    full = citizen_idp.api("/certificates/verify-batch", {"items": [
        {"certificate": certificates[i % 3], "purpose": "citizen-auth", "revocation_source": "store"}
        for i in range(100)]})
    assert full.status_code == 200, full.text  # larger than the service's 64 KiB default: batches may be
    assert len(full.json()["results"]) == 100
    too_many = citizen_idp.api("/certificates/verify-batch", {"items": [{"certificate": "AA==",
                                                                         "purpose": "citizen-auth"}] * 101})
    assert too_many.status_code == 400 and too_many.headers["Content-Type"] == "application/problem+json"
    bad_item = citizen_idp.api("/signatures/verify-batch", {"items": [{"certificate": certificates[0]}]})
    assert bad_item.status_code == 400 and "items[0]" in bad_item.json()["detail"]


def test_bad_input_is_a_problem_never_a_500(citizen_idp: CitizenIdp) -> None:
    for body in ({}, {"certificate": "not a certificate", "purpose": "citizen-auth"},
                 {"certificate": _card_certificate(citizen_idp, "alice"), "purpose": "everything"},
                 {"certificate": _card_certificate(citizen_idp, "alice"), "purpose": "signing", "at": "yesterday"},
                 [], "text", {"certificate": 5, "purpose": "signing"}):
        answer = citizen_idp.api("/certificates/verify", body)
        assert answer.status_code == 400, (body, answer.text)
        assert answer.json()["status"] == 400 and answer.json()["detail"]
    raw = requests.post(citizen_idp.url("/api/v1/certificates/verify"), data=b"{not json",
                        headers={"Authorization": "Bearer " + citizen_idp.assertion(),
                                 "Content-Type": "application/json"})
    assert raw.status_code == 400


def test_service_authentication(citizen_idp: CitizenIdp) -> None:
    body = {"certificate": _card_certificate(citizen_idp, "alice"), "purpose": "citizen-auth"}
    url = citizen_idp.url("/api/v1/certificates/verify")

    def call(token: str | None) -> requests.Response:
        return requests.post(url, json=body, headers={"Authorization": "Bearer " + token} if token else {})

    assert call(None).status_code == 401
    assert call(None).headers["WWW-Authenticate"].startswith("Bearer")
    assert call(citizen_idp.assertion()).status_code == 200
    assert call(citizen_idp.assertion(lifetime=-120)).status_code == 401  # expired
    assert call(citizen_idp.assertion(lifetime=3600)).status_code == 401  # too long-lived
    assert call(citizen_idp.assertion(audience="https://elsewhere.example/api/v1")).status_code == 401
    staff = citizen_idp.staff
    assert staff is not None
    assert call(citizen_idp.assertion(staff)).status_code == 401  # a staff-auth certificate is no service
    service = citizen_idp.service
    assert service is not None
    impostor = Credential(ec.generate_private_key(ec.SECP256R1()), service.certificate, service.chain)
    assert call(citizen_idp.assertion(impostor)).status_code == 401  # the right certificate, the wrong key
    outsider = foreign_citizen("38001010000")
    assert call(citizen_idp.assertion(outsider)).status_code == 401


def test_every_call_is_audited_and_shown_to_the_citizen(citizen_idp: CitizenIdp) -> None:
    agent = citizen_idp.agents["bob"]
    certificate = _card_certificate(citizen_idp, "bob")
    answer = citizen_idp.api("/certificates/verify", {"certificate": certificate, "purpose": "citizen-auth"})
    assert answer.status_code == 200
    national_id = agent_card_national_id(citizen_idp, "bob")
    rows = citizen_idp.sql("SELECT service, operation, outcome FROM verification_log WHERE national_id = ?",
                           national_id)
    assert ("Tax Office/Tax Office verifier", "certificate", "valid") in rows
    audit = citizen_idp.sql("SELECT subject, details FROM audit_entry WHERE event_type = 'api.verify' "
                            "AND details LIKE ?", f"%{national_id}%")
    assert audit and audit[-1][0] == "service:Tax Office/Tax Office verifier"
    answer, session = card_login(citizen_idp, agent.url, agent.card.pin)
    assert answer.status_code == 200
    portal = session.get(citizen_idp.url("/citizen/")).text
    assert "<td data-service>Tax Office/Tax Office verifier</td>" in portal


def agent_card_national_id(idp: CitizenIdp, name: str) -> str:
    return str(idp.sql("SELECT national_id FROM card WHERE number = ?", idp.agents[name].card.number)[0][0])


def test_services_are_rate_limited(citizen_idp: CitizenIdp) -> None:
    """A second server on the same home with 2 requests/s and a burst of 3, one worker."""
    port = free_port()
    proc = start_serve(citizen_idp, port, {"TESSERA_API_RATE_PER_SECOND": "2", "TESSERA_API_RATE_BURST": "3"},
                       workers=1)
    try:
        url = f"http://127.0.0.1:{port}/api/v1/certificates/verify"
        token = citizen_idp.assertion(audience=f"http://127.0.0.1:{port}/api/v1")
        body = {"certificate": _card_certificate(citizen_idp, "alice"), "purpose": "citizen-auth",
                "revocation_source": "store"}
        codes = [requests.post(url, json=body, headers={"Authorization": "Bearer " + token}).status_code
                 for _ in range(6)]
        assert codes[:3] == [200, 200, 200] and 429 in codes[3:]
        limited = requests.post(url, json=body, headers={"Authorization": "Bearer " + token})
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
        assert limited.json()["type"].endswith("api/rate-limited")
        time.sleep(1.1)
        assert requests.post(url, json=body, headers={"Authorization": "Bearer " + token}).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=15)
