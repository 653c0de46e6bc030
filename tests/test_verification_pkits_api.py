"""NIST PKITS sections 4.1-4.16 through the verification API (issue 15, "How it is judged"): every
test of tests/test_verification_pkits.py, and the 30 further runs with other initial policy inputs,
as ``POST /api/v1/certificates/verify`` calls (the Flask test client, one app for every case) to an
IdP whose trust list holds the PKITS trust anchor with the PKITS CRLs as its local revocation source
(``crls``, :mod:`verification.trust_list`) and the initial policy inputs of each run in the request
(``policies``, ``explicit_policy``, ``policy_mapping_inhibit``, ``any_policy_inhibit``).

Each certificate is sent with the CA certificates the suite's directory gives for it as ``chain``,
purpose ``signing`` (every PKITS end entity has nonRepudiation and no extendedKeyUsage), at a time
inside every PKITS validity period. The disagreements allowed are :data:`API_EXPLAINED`, listed with
their reasons in docs/verification.md."""

from __future__ import annotations

import base64
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import Home
from tests.servers import run_tessera
from tests.test_verification_pkits import AT, DATA, DEFAULT, EXPLAINED, VARIANTS, Pkits, expected
from verification.paths import ANY_POLICY, PolicyInputs

pytestmark = pytest.mark.integration

API = "/api/v1"
#: the disagreements through the API and why (docs/verification.md): those of the direct run
#: (1024-bit DSA: refused by the algorithm policy; 4.1.5's end entity inherits its DSA parameters
#: from its issuer, so its key does not parse alone and the API answers 400, not a certificate)
API_EXPLAINED = EXPLAINED


@dataclass
class PkitsApi:
    client: Any
    assertion: str
    service: str  # the caller's own service certificate (Tessera's hierarchy), base64 DER
    pkits: Pkits

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.client.post(API + path, data=json.dumps(body), content_type="application/json",
                                headers={"Authorization": "Bearer " + self.assertion})

    def verify(self, name: str, inputs: PolicyInputs) -> dict[str, Any]:
        der = self.pkits.certs[name]
        cas, _ = self.pkits.directory_for(der)
        body: dict[str, Any] = {"certificate": base64.b64encode(der).decode(), "purpose": "signing",
                                "chain": [base64.b64encode(c).decode() for c in cas],
                                "at": AT.isoformat().replace("+00:00", "Z")}
        if inputs != DEFAULT:
            body.update(_policy_fields(inputs))
        answer = self.post("/certificates/verify", body)
        if answer.status_code == 400:  # refused as no certificate at all (4.1.5: :data:`API_EXPLAINED`)
            return {"valid": False, "reasons": [{"code": "400 " + answer.get_json()["detail"]}]}
        assert answer.status_code == 200, (name, answer.status_code, answer.get_data(as_text=True)[:500])
        return dict(answer.get_json())


def _policy_fields(inputs: PolicyInputs) -> dict[str, Any]:
    """The API's fields for ``inputs`` (idp.verification_api.inputs.policy_field)."""
    policies = sorted(inputs.initial_policy_set - {ANY_POLICY})
    return {"policies": policies, "explicit_policy": inputs.initial_explicit_policy,
            "policy_mapping_inhibit": inputs.initial_policy_mapping_inhibit,
            "any_policy_inhibit": inputs.initial_any_policy_inhibit}


def _service_assertion(home: Home, env: dict[str, str], tmp: Path) -> tuple[str, str]:
    """A service assertion (JWT with the service certificate in x5c) for the API's audience, and
    the certificate (base64 DER)."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "EE"), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "PKITS Office"),
        x509.NameAttribute(NameOID.COMMON_NAME, "PKITS verifier")])).sign(key, hashes.SHA256())
    (tmp / "s.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    run_tessera(env, "ca", "issue", "--profile", "service", "--csr", str(tmp / "s.csr"), "--out", str(tmp / "s.pem"))
    certificate = x509.load_pem_x509_certificate((tmp / "s.pem").read_bytes())
    chain = [c for c in x509.load_pem_x509_certificates(run_tessera(env, "ca", "export-chain", "--ca", "staff").stdout)
             if c.subject != c.issuer]
    now = int(time.time())
    x5c = [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode() for c in [certificate, *chain]]
    return jwt.encode({"iss": "pkits", "aud": home.public_url + API, "iat": now, "exp": now + 600}, key,
                      algorithm="ES256", headers={"x5c": x5c}), x5c[0]


@pytest.fixture(scope="module")
def pkits_api(home: Home, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PkitsApi]:
    """The session's home served in this process with a trust list: the PKITS trust anchor for
    ``signing``, any policy, the PKITS CRL folder as its revocation source."""
    tmp = tmp_path_factory.mktemp("pkits-api")
    (tmp / "trust.toml").write_text(
        '[[anchor]]\nname = "NIST PKITS"\ncertificate = "anchor.crt"\npurposes = ["signing"]\n'
        f'revocation = "crl"\ncrls = ["{DATA / "crls"}"]\n')
    (tmp / "anchor.crt").write_bytes((DATA / "certs" / "TrustAnchorRootCertificate.crt").read_bytes())
    env = {**home.env, "TESSERA_API_RATE_PER_SECOND": "100000", "TESSERA_TRUST_LIST": str(tmp / "trust.toml")}
    assertion, service = _service_assertion(home, env, tmp)
    saved = {k: v for k, v in os.environ.items() if k.startswith(("TESSERA_", "SOFTHSM2_"))}
    for name in saved:
        del os.environ[name]
    os.environ.update({k: v for k, v in env.items() if k.startswith(("TESSERA_", "SOFTHSM2_"))})
    from idp.app import create_app
    from idp.settings import Settings

    app = create_app(Settings.from_env(home.path, env))
    logging.disable(logging.CRITICAL)  # pyhanko-certvalidator logs every refused candidate path at ERROR
    try:
        yield PkitsApi(app.test_client(), assertion, service, Pkits())
    finally:
        logging.disable(logging.NOTSET)
        app.extensions["tessera"].close()
        for name in [k for k in os.environ if k.startswith(("TESSERA_", "SOFTHSM2_"))]:
            del os.environ[name]
        os.environ.update(saved)


def test_pkits_through_the_verification_api(pkits_api: PkitsApi) -> None:
    start = time.perf_counter()
    runs = [(name, DEFAULT, expected(name)) for name in pkits_api.pkits.tests] + VARIANTS
    disagreements = []
    for name, inputs, want in runs:
        verdict = pkits_api.verify(name, inputs)
        if verdict["valid"] != want:
            disagreements.append((name, inputs, want, [r["code"] for r in verdict["reasons"]]))
        elif want:
            assert verdict["anchor"] == "NIST PKITS" and verdict["revocation"]["source"] == "crl", verdict
            assert verdict["revocation"]["status"] == "good" and "local CRL" in verdict["revocation"]["detail"]
    elapsed = time.perf_counter() - start
    agreement = 1 - len(disagreements) / len(runs)
    print(f"\nPKITS through the API: {len(runs)} runs ({len(pkits_api.pkits.tests)} tests), "
          f"{len(runs) - len(disagreements)} agree ({agreement:.1%}) in {elapsed:.1f} s; disagreements: "
          + "; ".join(f"{name} (PKITS {'valid' if want else 'invalid'}; {', '.join(codes) or 'valid'})"
                      for name, _, want, codes in disagreements))
    assert {name for name, _, _, _ in disagreements} <= API_EXPLAINED, disagreements
    assert agreement >= 0.95


def test_policy_inputs_are_checked(pkits_api: PkitsApi) -> None:
    """A bad OID or flag is a 400 problem; batch items carry their own inputs; on Tessera's own
    hierarchy an explicit policy set must meet the certificate's policies."""
    der = pkits_api.pkits.certs["ValidCertificatePathTest1EE"]
    cas, _ = pkits_api.pkits.directory_for(der)
    base = {"certificate": base64.b64encode(der).decode(), "purpose": "signing",
            "chain": [base64.b64encode(c).decode() for c in cas], "at": AT.isoformat().replace("+00:00", "Z")}
    for bad in ({"policies": ["1.2.x"]}, {"policies": "2.16.840.1.101.3.2.1.48.1"}, {"policies": [7]},
                {"policies": ["3.1"]}, {"policies": ["1." + "9" * 200]}, {"explicit_policy": "yes"},
                {"any_policy_inhibit": 1}, {"policy_mapping_inhibit": None}, {"policies": ["1.2.3"] * 33}):
        answer = pkits_api.post("/certificates/verify", {**base, **bad})
        assert answer.status_code == 400 and answer.mimetype == "application/problem+json", (bad, answer.status_code)
        assert pkits_api.post("/certificates/verify-batch", {"items": [base, {**base, **bad}]}).status_code == 400
    batch = {"items": [{**base, "policies": ["2.16.840.1.101.3.2.1.48.1"], "explicit_policy": True},
                       {**base, "policies": ["2.16.840.1.101.3.2.1.48.2"], "explicit_policy": True},
                       {**base, "policies": ["2.5.29.32.0"], "explicit_policy": True}, base]}
    answer = pkits_api.post("/certificates/verify-batch", batch)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert [r["valid"] for r in answer.get_json()["results"]] == [True, False, True, True]
    own = {"certificate": pkits_api.service, "purpose": "service", "revocation_source": "store"}
    assert pkits_api.post("/certificates/verify", {**own, "policies": ["1.2.3"]}).get_json()["valid"]
    refused = pkits_api.post("/certificates/verify", {**own, "policies": ["1.2.3"], "explicit_policy": True}).get_json()
    assert not refused["valid"] and [r["code"] for r in refused["reasons"]] == ["wrong-policy"], refused
    doc = pkits_api.client.get(API + "/openapi.json").get_json()
    assert {"policies", "explicit_policy", "policy_mapping_inhibit", "any_policy_inhibit"} <= set(
        doc["components"]["schemas"]["CertificateRequest"]["properties"])


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                     max_leaves=12)
_OIDS = st.lists(st.from_regex(r"\A[0-3](\.[0-9]{1,12}){0,6}\Z") | st.text(max_size=30), max_size=5)


@settings(max_examples=120, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(fields=st.dictionaries(st.sampled_from(["policies", "explicit_policy", "policy_mapping_inhibit",
                                                "any_policy_inhibit"]), _JSON | _OIDS | st.booleans(), min_size=1))
def test_any_policy_input_is_a_verdict_or_a_400(pkits_api: PkitsApi, fields: dict[str, Any]) -> None:
    der = pkits_api.pkits.certs["ValidPolicyMappingTest1EE"]
    cas, _ = pkits_api.pkits.directory_for(der)
    body = {"certificate": base64.b64encode(der).decode(), "purpose": "signing",
            "chain": [base64.b64encode(c).decode() for c in cas], "at": AT.isoformat().replace("+00:00", "Z"), **fields}
    answer = pkits_api.post("/certificates/verify", body)
    assert answer.status_code in (200, 400), (fields, answer.status_code, answer.get_data(as_text=True)[:300])
