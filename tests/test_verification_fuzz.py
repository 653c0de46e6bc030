"""Mutated DER against the verification package and the parts of the API the protocol fuzzing
(tests/test_protocol_fuzz.py) does not reach (issue 15 item 1): no input raises out of a verdict
and none gives a 5xx.

* package: the end-entity certificate, a chain certificate, the anchor and a CRL of a foreign
  hierarchy (tests/test_verification_trust_list.py) mutated, through the validator's fast path and
  the full RFC 5280 path (:func:`verification.paths.validate_path`); signatures mutated through
  :func:`verification.signatures.verify_signature` (InvalidSignature only);
* API: a mutated certificate as a chain element of /certificates/verify and /signatures/verify,
  and as the certificate in a service assertion's ``x5c`` (signed by the holder's key, so the
  certificate itself is examined): 200 verdicts and 401s, never a 5xx.

The number of inputs tried is printed (``-s``) as ``verification fuzz: ...``."""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_protocol_fuzz import FuzzTarget, api_answer, mutated, target  # noqa: F401 (the fixture)
from tests.test_verification_trust_list import NOW, Foreign
from verification.certificates import load_certificate
from verification.paths import validate_path
from verification.signatures import verify_signature

TRIED: Counter[str] = Counter()
FUZZ = settings(max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
DER = serialization.Encoding.DER
KEY = ec.derive_private_key(7, ec.SECP256R1())
MESSAGE = b"x" * 32
SIGNATURE = KEY.sign(MESSAGE, ec.ECDSA(hashes.SHA256()))  # once: ECDSA signatures vary in length


@pytest.fixture(scope="module")
def foreign() -> Iterator[Foreign]:
    hierarchy = Foreign()
    try:
        yield hierarchy
    finally:
        hierarchy.server.shutdown()
        print("\nverification fuzz: " + ", ".join(f"{k} {v}" for k, v in sorted(TRIED.items()))
              + f"; total {sum(TRIED.values())}")


def _loaded(der: bytes) -> x509.Certificate | None:
    try:
        return load_certificate(der)
    except ValueError:
        return None  # the API's 400: not a certificate at all


@pytest.mark.unit
@FUZZ
@given(data=st.data(), which=st.sampled_from(["ee", "ca"]), purpose=st.sampled_from(["signing", "service"]))
def test_validator_gives_a_verdict_for_any_mutated_certificate(foreign: Foreign, data: st.DataObject, which: str,
                                                               purpose: str) -> None:
    ee, ca = foreign.ee.public_bytes(DER), foreign.ca.public_bytes(DER)
    if which == "ee":
        ee = data.draw(mutated(ee))
    else:
        ca = data.draw(mutated(ca))
    cert, chain = _loaded(ee), _loaded(ca)
    TRIED[f"validator-{which}"] += 1
    if cert is None or chain is None:
        return
    verdict = foreign.validator().validate(cert, purpose, [chain])
    json.dumps(verdict.as_dict())
    assert verdict.valid is False or (which, purpose) != ("ee", "service")


@pytest.mark.unit
@FUZZ
@given(data=st.data(), which=st.sampled_from(["ee", "ca", "anchor", "crl"]))
def test_full_path_gives_an_outcome_for_any_mutated_input(foreign: Foreign, data: st.DataObject, which: str) -> None:
    inputs = {"ee": foreign.ee.public_bytes(DER), "ca": foreign.ca.public_bytes(DER),
              "anchor": foreign.root.public_bytes(DER), "crl": foreign.served["/ca.crl"]}
    inputs[which] = data.draw(mutated(inputs[which]))
    TRIED[f"path-{which}"] += 1
    outcome = validate_path(inputs["ee"], [inputs["ca"]], [inputs["anchor"]], NOW,
                            crls=[inputs["crl"], foreign.served["/root.crl"]])
    assert outcome.valid or outcome.reasons


@pytest.mark.unit
@FUZZ
@given(data=st.data(), prehashed=st.booleans(), raw=st.sampled_from([False, True, None]))
def test_signature_check_raises_only_invalid_signature(data: st.DataObject, prehashed: bool, raw: bool | None) -> None:
    signature = data.draw(mutated(SIGNATURE))
    TRIED["signature"] += 1
    try:
        verify_signature(KEY.public_key(), signature, MESSAGE, hashes.SHA256(), prehashed=prehashed, raw_ecdsa=raw)
    except InvalidSignature:
        pass


@pytest.mark.integration
@FUZZ
@given(data=st.data())
def test_api_mutated_chain_and_x5c(target: FuzzTarget, data: st.DataObject) -> None:  # noqa: F811
    service = target.service.certificate.public_bytes(DER)
    chain = base64.b64encode(data.draw(mutated(target.issuer.public_bytes(DER)))).decode()
    good = {"certificate": target.service.pem(), "purpose": "service", "revocation_source": "store"}
    answer = target.api("/certificates/verify", json.dumps({**good, "chain": [chain]}).encode())
    api_answer(answer, "api-chain")
    TRIED["api-chain"] += 1
    signature = base64.b64encode(target.service.key.sign(b"x", ec.ECDSA(hashes.SHA256()))).decode()
    signed = target.api("/signatures/verify", json.dumps({"data": "eA==", "signature": signature,
                                                           "certificate": target.service.pem(), "chain": [chain],
                                                           "revocation_source": "store"}).encode())
    api_answer(signed, "api-signature-chain")
    TRIED["api-signature-chain"] += 1
    x5c = data.draw(mutated(service))
    answer = target.api("/certificates/verify", json.dumps(good).encode(),
                        token=target.assertion(target.service.key, [x5c]))
    api_answer(answer, "api-x5c")
    TRIED["api-x5c"] += 1
    assert answer.status_code in (200, 401), answer.get_json()






@pytest.mark.unit
@pytest.mark.parametrize("which", ["ee", "ca", "anchor"])
def test_full_path_with_a_key_of_an_unknown_algorithm_is_an_outcome(foreign: Foreign, which: str) -> None:
    """A certificate whose key is id-ecPublicKey changed to an arc no library knows: pyhanko loads
    the key through cryptography, which raises UnsupportedAlgorithm (not a ValueError)."""
    inputs = {"ee": foreign.ee.public_bytes(DER), "ca": foreign.ca.public_bytes(DER),
              "anchor": foreign.root.public_bytes(DER)}
    ec_public_key = bytes.fromhex("2a8648ce3d0201")  # 1.2.840.10045.2.1
    assert ec_public_key in inputs[which]
    inputs[which] = inputs[which].replace(ec_public_key, bytes.fromhex("2a8648ce3d027f"), 1)
    outcome = validate_path(inputs["ee"], [inputs["ca"]], [inputs["anchor"]], NOW,
                            crls=[foreign.served["/ca.crl"], foreign.served["/root.crl"]])
    assert not outcome.valid and outcome.reasons


def test_many_certificates_of_one_name_reach_path_building_a_few_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """pyhanko-certvalidator tries every order of candidates that share a name: eight self-signed
    certificates named like the end entity's issuer, sent as its chain, cost 9.4 s of CPU for one
    answer. Only the first four of a name reach path building (as many as a CA key update makes)."""
    import datetime

    from cryptography.x509.oid import NameOID

    import verification.paths as paths

    def certificate(subject: str, issuer: str, key: ec.EllipticCurvePrivateKey,
                    signer: ec.EllipticCurvePrivateKey) -> bytes:
        name = lambda cn: x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])  # noqa: E731
        return (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(NOW - datetime.timedelta(days=1)).not_valid_after(NOW + datetime.timedelta(days=30))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(signer, hashes.SHA256()).public_bytes(DER))

    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(9)]
    loops = [certificate("Loop", "Loop", key, key) for key in keys[:8]]
    root = certificate("Root", "Root", keys[8], keys[8])
    handed: list[int] = []
    context = paths.ValidationContext

    def counting(*args: object, **kwargs: object) -> object:
        handed.append(len(kwargs["other_certs"]))  # type: ignore[arg-type]
        return context(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(paths, "ValidationContext", counting)
    outcome = validate_path(certificate("leaf", "Loop", KEY, keys[0]), loops, [root], NOW, require_revocation=False)
    assert not outcome.valid and handed == [paths.MAX_SAME_SUBJECT]
