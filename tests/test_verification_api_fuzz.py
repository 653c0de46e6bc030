"""The verification API fuzzed with schemathesis against its own OpenAPI 3.1 description (served
at /api/v1/openapi.json by the running service): no 5xx, every response (status, content type,
headers, body) matching the description. Authenticated as a real service (certificate + JWT).

Each operation is driven through schemathesis' Hypothesis strategy directly (its pytest plugin
does not load under this pytest), with schemathesis' own response checks."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_headers_conformance,
                                               response_schema_conformance, status_code_conformance)

from tests.fixtures_citizen import *  # noqa: F401,F403
from tests.fixtures_citizen import CitizenIdp

EXAMPLES = 60
#: "no 5xx, every response matching the schema"; not positive_data_acceptance: a schema-valid string
#: that is no certificate is rightly a 400 (JSON Schema cannot say "a certificate")
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]


def test_api_conforms_to_its_openapi_description(citizen_idp: CitizenIdp) -> None:
    schema = schemathesis.openapi.from_url(citizen_idp.url("/api/v1/openapi.json"))
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = {operation.label for operation in operations}
    assert {f"POST /{kind}/{form}" for kind in ("certificates", "signed-records", "signatures")
            for form in ("verify", "verify-batch")} <= labels, labels
    statuses: dict[str, set[int]] = {}
    for operation in operations:
        seen = statuses.setdefault(operation.label, set())

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case: schemathesis.Case) -> None:
            response = case.call_and_validate(headers={"Authorization": "Bearer " + citizen_idp.assertion()},
                                              checks=CHECKS)
            seen.add(response.status_code)  # noqa: B023 (run() is called at once, in this iteration)

        run()
    # the fuzzing reached the service (not only the authentication in front of it)
    for label, seen in statuses.items():
        assert seen and all(code < 500 for code in seen), (label, seen)
    assert any(400 in seen for seen in statuses.values())


def test_real_verdicts_match_the_description(citizen_idp: CitizenIdp) -> None:
    """Fuzzed data is rarely a real certificate: the 200 answers (valid and invalid verdicts of all
    three kinds, single and batch) are checked against the description with real inputs."""
    import base64

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    from tests.fixtures_citizen import agent_card

    schema = schemathesis.openapi.from_url(citizen_idp.url("/api/v1/openapi.json"))
    operations = {result.ok().label: result.ok() for result in schema.get_all_operations()}
    certificate = agent_card(citizen_idp, citizen_idp.agents["alice"])["certificate"]
    number = citizen_idp.agents["alice"].card.number
    record = citizen_idp.sql("SELECT r.der FROM card_record r JOIN card c ON c.id = r.card_id "
                             "WHERE c.number = ? AND r.record_type = 'tax' AND r.current = 1", number)[0][0]
    service = citizen_idp.service
    assert service is not None
    signature = base64.b64encode(service.key.sign(b"x", ec.ECDSA(hashes.SHA256()))).decode()
    bodies = {
        "POST /certificates/verify": [{"certificate": certificate, "purpose": p} for p in ("citizen-auth", "signing")],
        "POST /signed-records/verify": [{"record": base64.b64encode(record).decode()}, {"record": "MAA="}],
        "POST /signatures/verify": [{"data": "eA==", "signature": signature, "certificate": service.pem},
                                    {"data": "eQ==", "signature": signature, "certificate": service.pem}],
    }
    for label, items in bodies.items():
        for body in [*items, {"items": items}]:
            target = operations[label if "items" not in body else label + "-batch"]
            case = target.Case(body=body, media_type="application/json")
            response = case.call_and_validate(headers={"Authorization": "Bearer " + citizen_idp.assertion()},
                                              checks=CHECKS)
            assert response.status_code == 200, response.text
