"""Every public protocol endpoint, fuzzed in process (``app.test_client()``): no input gives a 5xx,
and every answer is well-formed for its media type (RFC 9457 problem details, JSON, an OCSP
response, a time-stamp reply, an HTML page).

Binary protocols are fuzzed by mutating a valid request (bytes flipped, inserted, deleted, cut);
JSON by random documents, random nesting (past the depth limit) and mutated certificates and
records. Each test is bounded (``max_examples``); the totals are printed (``-s``) as
``fuzz: <endpoint> <inputs>`` lines. Plus a regression test per finding of the outside test
(issue 12 finding 7 and 8, issue 15 item 1): nested JSON, malformed certificate extensions (single,
batch, x5c), CRLF in redirect_uri, non-UTF-8 Basic credentials, a negative OCSP serial.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from asn1crypto import keys as asn1_keys
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import tsp as asn1_tsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtensionOID, NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Home
from tests.servers import run_tessera

#: inputs tried per endpoint and kind (printed at the end of the module)
TRIED: Counter[str] = Counter()
FUZZ = settings(max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
API = "/api/v1"


@dataclass
class Service:
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    chain: list[x509.Certificate]

    def pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()


@dataclass
class FuzzTarget:
    client: Any
    audience: str
    service: Service
    issuer: x509.Certificate  # the staff CA: the service certificate's issuer
    oidc_client: dict[str, Any]
    record: bytes  # a valid CMS SignedData (id-data, JSON content) signed by the service key

    def assertion(self, key: ec.EllipticCurvePrivateKey | None = None, certs: list[bytes] | None = None) -> str:
        now = int(time.time())
        x5c = [base64.b64encode(c).decode() for c in (certs or [
            c.public_bytes(serialization.Encoding.DER) for c in [self.service.certificate, *self.service.chain]])]
        return jwt.encode({"iss": "fuzz", "aud": self.audience, "iat": now, "exp": now + 300},
                          key or self.service.key, algorithm="ES256", headers={"x5c": x5c})

    def api(self, path: str, body: bytes, content_type: str = "application/json", token: str | None = None) -> Any:
        return self.client.post(API + path, data=body, content_type=content_type,
                                headers={"Authorization": "Bearer " + (token or self.assertion())})


@pytest.fixture(scope="module")
def target(home: Home) -> Iterator[FuzzTarget]:
    """The session's `tessera init` home with a service certificate and an OIDC client; the app
    built in this process."""
    public = home.public_url
    env = {**home.env, "TESSERA_API_RATE_PER_SECOND": "10000"}
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "EE"), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Fuzz Office"),
        x509.NameAttribute(NameOID.COMMON_NAME, "Fuzz verifier")])).sign(key, hashes.SHA256())
    work = Path(tempfile.mkdtemp(prefix="fuzz-"))
    (work / "s.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    run_tessera(env, "ca", "issue", "--profile", "service", "--csr", str(work / "s.csr"), "--out", str(work / "s.pem"))
    certificate = x509.load_pem_x509_certificate((work / "s.pem").read_bytes())
    shutil.rmtree(work)
    chain = [c for c in x509.load_pem_x509_certificates(run_tessera(env, "ca", "export-chain", "--ca", "staff").stdout)
             if c.subject != c.issuer]
    oidc_client = json.loads(run_tessera(env, "client", "add", f"fuzz-app-{os.getpid()}", "--redirect-uri",
                                         "http://127.0.0.1:7000/cb", "--json").stdout)
    record = pkcs7.PKCS7SignatureBuilder().set_data(json.dumps({"data": {"national_id": "38001010000"}}).encode()) \
        .add_signer(certificate, key, hashes.SHA256()).add_certificate(chain[0]).sign(serialization.Encoding.DER, [])
    saved = {k: v for k, v in os.environ.items() if k.startswith(("TESSERA_", "SOFTHSM2_"))}
    for name in saved:  # another module's home (its SOFTHSM2_CONF above all) must not be this one's
        del os.environ[name]
    os.environ.update({k: v for k, v in env.items() if k.startswith(("TESSERA_", "SOFTHSM2_"))})
    from idp.app import create_app
    from idp.settings import Settings

    app = create_app(Settings.from_env(home.path, env))
    try:
        yield FuzzTarget(app.test_client(), public + API, Service(key, certificate, chain), chain[0], oidc_client,
                         record)
    finally:
        app.extensions["tessera"].close()
        for name in [k for k in os.environ if k.startswith(("TESSERA_", "SOFTHSM2_"))]:
            del os.environ[name]
        os.environ.update(saved)
        print("\nfuzz: " + ", ".join(f"{k} {v}" for k, v in sorted(TRIED.items())) + f"; total {sum(TRIED.values())}")


# --- what a well-formed answer is -------------------------------------------------------------
def assert_well_formed(response: Any, label: str) -> None:
    """Status below 500 and a body that parses as what its media type says."""
    TRIED[label] += 1
    body = response.get_data()
    assert response.status_code < 500, (label, response.status_code, body[:500])
    mimetype = response.mimetype
    if mimetype == "application/problem+json":
        problem = json.loads(body)
        assert problem["status"] == response.status_code and problem["title"], problem
    elif mimetype == "application/json":
        json.loads(body)
    elif mimetype == "application/ocsp-response":
        assert response.status_code == 200
        ocsp.load_der_ocsp_response(body)
    elif mimetype == "application/timestamp-reply":
        from ca.tsa import TimeStampResp  # timeStampToken OPTIONAL, as RFC 3161 section 2.4.2 has it

        reply = TimeStampResp.load(body, strict=True)
        assert reply["status"]["status"].native in ("granted", "granted_with_mods", "rejection")
        assert (reply["status"]["status"].native == "rejection") == (response.status_code != 200)
    elif mimetype == "text/html":
        assert b"<html" in body.lower() or response.status_code in (301, 302, 303, 307, 308)
    elif mimetype in ("application/pkix-cert",):
        x509.load_der_x509_certificate(body)
    elif mimetype in ("application/pkix-crl",):
        x509.load_der_x509_crl(body)
    elif mimetype == "application/pem-certificate-chain":
        x509.load_pem_x509_certificates(body)
    elif response.status_code not in (204, 301, 302, 303, 307, 308, 405):
        pytest.fail(f"{label}: unexpected media type {mimetype!r} with status {response.status_code}")


def api_answer(response: Any, label: str) -> None:
    assert_well_formed(response, label)
    assert response.headers.get("Cache-Control") == "no-store", (label, response.headers)


# --- mutations of valid binary inputs ---------------------------------------------------------
@st.composite
def mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    """``seed`` with 1-4 edits: a byte flipped, inserted, deleted or the tail cut off."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "cut", "set"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[at] = draw(st.sampled_from([0x00, 0x80, 0x81, 0x84, 0xFF, 0x30, 0xA0, 0x02]))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete" and data:
            del data[at:at + draw(st.integers(1, 4))]
        elif kind == "cut":
            del data[at:]
    return bytes(data)


def json_values(max_leaves: int = 30) -> st.SearchStrategy[Any]:
    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                                             max_size=4),
                        max_leaves=max_leaves)


def nested(depth: int, leaf: str = "1") -> bytes:
    """``depth`` levels of alternating arrays and objects around ``leaf``."""
    text = leaf
    for i in range(depth):
        text = f"[{text}]" if i % 2 else f'{{"a":{text}}}'
    return text.encode()


# --- the verification API ----------------------------------------------------------------------
ENDPOINTS = [f"/{kind}/{form}" for kind in ("certificates", "signed-records", "signatures")
             for form in ("verify", "verify-batch")]


@FUZZ
@given(path=st.sampled_from(ENDPOINTS), body=st.one_of(
    json_values().map(lambda v: json.dumps(v).encode()),
    st.integers(1, 400).map(nested),
    st.binary(max_size=200),
    st.sampled_from([b"", b"{", b'{"items": [', b"\xff\xfe{}", b'{"a":1,"a":2}', b"NaN", b"[" * 5000, b"\x00"])))
def test_api_random_bodies(target: FuzzTarget, path: str, body: bytes) -> None:
    api_answer(target.api(path, body), "api-random")


@FUZZ
@given(der=st.data())
def test_api_mutated_certificates(target: FuzzTarget, der: st.DataObject) -> None:
    seed = target.service.certificate.public_bytes(serialization.Encoding.DER)
    cert = base64.b64encode(der.draw(mutated(seed))).decode()
    item = {"certificate": cert, "purpose": "service", "revocation_source": "store"}
    api_answer(target.api("/certificates/verify", json.dumps(item).encode()), "api-certificate")
    good = {"certificate": target.service.pem(), "purpose": "service", "revocation_source": "store"}
    api_answer(target.api("/certificates/verify-batch", json.dumps({"items": [good, item]}).encode()), "api-batch")
    signature = {"data": "eA==", "signature": base64.b64encode(target.service.key.sign(b"x", ec.ECDSA(hashes.SHA256()))).decode(),
                 "certificate": cert, "revocation_source": "store"}
    api_answer(target.api("/signatures/verify", json.dumps(signature).encode()), "api-signature")


@FUZZ
@given(der=st.data())
def test_api_mutated_signed_records(target: FuzzTarget, der: st.DataObject) -> None:
    record = base64.b64encode(der.draw(mutated(target.record))).decode()
    api_answer(target.api("/signed-records/verify", json.dumps({"record": record, "revocation_source": "store"}).encode()),
               "api-signed-record")


@FUZZ
@given(token=st.one_of(st.text(max_size=300), st.binary(max_size=200).map(lambda b: base64.urlsafe_b64encode(b).decode()),
                       st.data()))
def test_api_bad_credentials(target: FuzzTarget, token: Any) -> None:
    if isinstance(token, st.DataObject):  # a real assertion, mutated
        raw = token.draw(mutated(target.assertion().encode()))
        token = raw.decode("latin-1")
    response = target.client.post(API + "/certificates/verify", data=b"{}", content_type="application/json",
                                  headers={"Authorization": "Bearer " + token.replace("\n", "").replace("\r", "")})
    api_answer(response, "api-credentials")
    assert response.status_code in (400, 401, 403), response.status_code


# --- OCSP (POST and GET) and the TSA -----------------------------------------------------------
def ocsp_request(target: FuzzTarget, serial: int, nonce: bytes | None = None) -> bytes:
    issuer = target.issuer
    spki = asn1_keys.PublicKeyInfo.load(issuer.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
    request: dict[str, Any] = {"request_list": [{"req_cert": {
        "hash_algorithm": {"algorithm": "sha256"},
        "issuer_name_hash": hashlib.sha256(issuer.subject.public_bytes()).digest(),
        "issuer_key_hash": hashlib.sha256(spki["public_key"].contents[1:]).digest(), "serial_number": serial}}]}
    if nonce is not None:
        request["request_extensions"] = [{"extn_id": "nonce", "extn_value": nonce}]
    return asn1_ocsp.OCSPRequest({"tbs_request": request}).dump()


def assert_ocsp(response: Any, label: str) -> ocsp.OCSPResponse | None:
    assert_well_formed(response, label)
    if response.status_code != 200:
        assert response.status_code in (404, 413, 415), response.status_code
        return None
    assert response.mimetype == "application/ocsp-response"
    return ocsp.load_der_ocsp_response(response.get_data())


@FUZZ
@given(data=st.data(), nonce=st.booleans())
def test_ocsp_mutated_requests(target: FuzzTarget, data: st.DataObject, nonce: bool) -> None:
    seed = ocsp_request(target, target.service.certificate.serial_number, os.urandom(16) if nonce else None)
    der = data.draw(mutated(seed))
    assert_ocsp(target.client.post("/ocsp/staff", data=der, content_type="application/ocsp-request"), "ocsp-post")
    encoded = base64.b64encode(der).decode()
    path = data.draw(st.sampled_from([encoded, encoded.replace("/", "%2F").replace("+", "%2B"), encoded[:-1]]))
    assert_ocsp(target.client.get("/ocsp/staff/" + path), "ocsp-get")


@FUZZ
@given(serial=st.integers(min_value=-(2 ** 200), max_value=2 ** 200))
def test_ocsp_any_serial(target: FuzzTarget, serial: int) -> None:
    answer = assert_ocsp(target.client.post("/ocsp/staff", data=ocsp_request(target, serial),
                                            content_type="application/ocsp-request"), "ocsp-serial")
    assert answer is not None
    expected = ocsp.OCSPResponseStatus.MALFORMED_REQUEST if serial < 0 else ocsp.OCSPResponseStatus.SUCCESSFUL
    assert answer.response_status == expected


def timestamp_query(nonce: int | None = 7) -> bytes:
    return asn1_tsp.TimeStampReq({"version": "v1", "message_imprint": {
        "hash_algorithm": {"algorithm": "sha256"}, "hashed_message": hashlib.sha256(b"fuzz").digest()},
        "nonce": nonce, "cert_req": True}).dump()


@FUZZ
@given(data=st.data())
def test_tsa_mutated_queries(target: FuzzTarget, data: st.DataObject) -> None:
    response = target.client.post("/tsa", data=data.draw(mutated(timestamp_query())),
                                  content_type="application/timestamp-query")
    assert_well_formed(response, "tsa")
    assert response.mimetype in ("application/timestamp-reply", "application/problem+json")


# --- OpenID Connect ------------------------------------------------------------------------------
printable_or_not = st.text(st.characters(codec="utf-8"), max_size=60)


@FUZZ
@given(params=st.dictionaries(st.sampled_from(["client_id", "redirect_uri", "response_type", "scope", "state", "nonce",
                                               "prompt", "max_age", "code_challenge", "code_challenge_method",
                                               "acr_values", "request", "login_hint"]),
                              printable_or_not, max_size=8),
       registered=st.booleans(), crlf=st.sampled_from(["", "\r\n", "\n", "\x00", "\t", "\x7f", "\x85"]))
def test_oidc_authorize(target: FuzzTarget, params: dict[str, str], registered: bool, crlf: str) -> None:
    if registered:
        params = {"client_id": target.oidc_client["client_id"], "response_type": "code", "scope": "openid",
                  "code_challenge": "a" * 43, "code_challenge_method": "S256",
                  "redirect_uri": "http://127.0.0.1:7000/cb" + crlf + params.get("redirect_uri", ""), **{
                      k: v for k, v in params.items() if k not in ("client_id", "redirect_uri")}}
    response = target.client.get("/oidc/authorize", query_string=params)
    assert_well_formed(response, "oidc-authorize")
    location = response.headers.get("Location")
    if location is not None:
        assert not any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in location), location
        assert location.startswith(("http://127.0.0.1:7000/cb", "/")), location


@FUZZ
@given(params=st.dictionaries(st.sampled_from(["id_token_hint", "post_logout_redirect_uri", "state", "client_id",
                                               "logout_hint", "ui_locales"]), printable_or_not, max_size=5),
       method=st.sampled_from(["GET", "POST"]))
def test_oidc_logout(target: FuzzTarget, params: dict[str, str], method: str) -> None:
    if method == "GET":
        response = target.client.get("/oidc/logout", query_string=params)
    else:
        response = target.client.post("/oidc/logout", data=params)
    assert_well_formed(response, "oidc-logout")
    location = response.headers.get("Location")
    if location is not None:
        assert not any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in location), location


@FUZZ
@given(credentials=st.one_of(st.binary(max_size=60), printable_or_not.map(str.encode)),
       form=st.dictionaries(st.sampled_from(["grant_type", "code", "redirect_uri", "client_id", "client_secret",
                                             "code_verifier", "scope", "refresh_token", "client_assertion",
                                             "client_assertion_type"]), printable_or_not, max_size=6),
       scheme=st.sampled_from(["Basic ", "basic ", "Bearer ", ""]), raw=st.booleans())
def test_oidc_token(target: FuzzTarget, credentials: bytes, form: dict[str, str], scheme: str, raw: bool) -> None:
    value = credentials.decode("latin-1") if raw else base64.b64encode(credentials).decode()
    header = (scheme + value).replace("\r", "").replace("\n", "")
    response = target.client.post("/oidc/token", data=form, headers={"Authorization": header} if header else {})
    assert_well_formed(response, "oidc-token")
    assert response.mimetype == "application/json", response.mimetype


@FUZZ
@given(token=printable_or_not, method=st.sampled_from(["GET", "POST"]), where=st.sampled_from(["header", "form", "query"]))
def test_oidc_userinfo(target: FuzzTarget, token: str, method: str, where: str) -> None:
    token = token.replace("\r", "").replace("\n", "")
    kwargs: dict[str, Any] = {}
    if where == "header":
        kwargs["headers"] = {"Authorization": "Bearer " + token.encode("utf-8").decode("latin-1")}
    elif where == "form" and method == "POST":
        kwargs["data"] = {"access_token": token}
    else:
        kwargs["query_string"] = {"access_token": token}
    response = target.client.open("/oidc/userinfo", method=method, **kwargs)
    assert_well_formed(response, "oidc-userinfo")
    assert response.status_code in (400, 401, 403), response.status_code


@FUZZ
@given(path=st.one_of(
    st.sampled_from(["/.well-known/openid-configuration", "/oidc/jwks.json", "/ca/root.crt", "/ca/staff.crt",
                     "/ca/citizen/chain.pem", "/crl/staff.crl", "/api/v1/openapi.json"]),
    st.tuples(st.sampled_from(["/ca/{}.crt", "/ca/{}/chain.pem", "/crl/{}.crl"]),
              st.text(st.characters(codec="utf-8", exclude_characters="/?#"), min_size=1, max_size=40))
    .map(lambda t: t[0].format(t[1]))))
def test_public_downloads(target: FuzzTarget, path: str) -> None:
    response = target.client.get(path)
    assert_well_formed(response, "downloads")


# --- regressions for the outside test's findings ---------------------------------------------------
def _self_signed(extensions: list[x509.ExtensionType], key: ec.EllipticCurvePrivateKey) -> bytes:
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Malformed")])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
               .not_valid_after(now + datetime.timedelta(days=1)))
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def malformed_certificates(key: ec.EllipticCurvePrivateKey) -> dict[str, tuple[bytes, str]]:
    """Certificates whose extensions do not parse, and the part the verdict must name."""
    raw = x509.UnrecognizedExtension
    duplicate = _self_signed([x509.SubjectAlternativeName([x509.DNSName("a.example")]),
                              x509.IssuerAlternativeName([x509.DNSName("a.example")])], key)
    return {
        "empty-eku": (_self_signed([raw(ExtensionOID.EXTENDED_KEY_USAGE, b"\x30\x00")], key), "extendedKeyUsage"),
        "malformed-san": (_self_signed([raw(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, b"\x30\x03\x88\x01")], key),
                          "subjectAltName"),
        "x400-san": (_self_signed([raw(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, b"\x30\x03\xa5\x01\x00")], key),
                     "subjectAltName"),
        "malformed-aia": (_self_signed([raw(ExtensionOID.AUTHORITY_INFORMATION_ACCESS, b"\x30\x05\x30\x03\x06\x01")], key),
                          "authorityInfoAccess"),
        # the issuerAltName OID rewritten to subjectAltName's (the signature no longer matters here)
        "duplicate": (duplicate.replace(b"\x06\x03\x55\x1d\x12", b"\x06\x03\x55\x1d\x11"), "duplicate subjectAltName"),
    }


def test_malformed_certificates_are_verdicts(target: FuzzTarget) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    good = {"certificate": target.service.pem(), "purpose": "service", "revocation_source": "store"}
    for name, (der, part) in malformed_certificates(key).items():
        cert = base64.b64encode(der).decode()
        item = {"certificate": cert, "purpose": "signing", "revocation_source": "store"}
        single = target.api("/certificates/verify", json.dumps(item).encode())
        api_answer(single, name)
        verdict = single.get_json()
        assert single.status_code == 200 and verdict["valid"] is False, (name, verdict)
        assert [r["code"] for r in verdict["reasons"]] == ["malformed-certificate"], (name, verdict)
        assert part in verdict["reasons"][0]["detail"], (name, verdict)
        # one bad item fails that item only
        batch = target.api("/certificates/verify-batch", json.dumps({"items": [good, item, good]}).encode())
        api_answer(batch, name)
        results = batch.get_json()["results"]
        assert [r["valid"] for r in results] == [True, False, True], (name, results)
        # as an intermediate of someone else's chain
        chained = target.api("/certificates/verify", json.dumps({**good, "chain": [cert]}).encode())
        assert chained.status_code == 200 and chained.get_json()["reasons"][0]["code"] == "malformed-certificate"
        signature = {"data": "eA==", "signature": base64.b64encode(key.sign(b"x", ec.ECDSA(hashes.SHA256()))).decode(),
                     "certificate": cert, "revocation_source": "store"}
        signed = target.api("/signatures/verify", json.dumps(signature).encode())
        api_answer(signed, name)
        assert "malformed-certificate" in [r["code"] for r in signed.get_json()["reasons"]]
        # in a service assertion's x5c: 401, and the JWT's signature is checked first
        forged = target.assertion(ec.generate_private_key(ec.SECP256R1()), [der])
        answer = target.api("/certificates/verify", json.dumps(good).encode(), token=forged)
        assert answer.status_code == 401 and "does not verify" in answer.get_json()["detail"], answer.get_json()
        signed_by_holder = target.assertion(key, [der])
        answer = target.api("/certificates/verify", json.dumps(good).encode(), token=signed_by_holder)
        assert answer.status_code == 401 and "malformed-certificate" in answer.get_json()["detail"], answer.get_json()
        assert answer.headers["Cache-Control"] == "no-store"


def test_deep_json_is_400_and_shallow_is_answered(target: FuzzTarget) -> None:
    good = json.dumps({"certificate": target.service.pem(), "purpose": "service", "revocation_source": "store"})
    for path in ("/certificates/verify", "/certificates/verify-batch"):
        for depth in (33, 1000, 10_000):
            response = target.api(path, nested(depth))
            api_answer(response, "deep-json")
            assert response.status_code == 400 and "nested more than 32" in response.get_json()["detail"]
    duplicate = target.api("/certificates/verify", good[:-1].encode() + b', "purpose": "signing"}')
    assert duplicate.status_code == 400 and "appears twice" in duplicate.get_json()["detail"]
    assert target.api("/certificates/verify", "\u00e9".encode("latin-1")).status_code == 400
    answer = target.api("/certificates/verify", good.encode())
    assert answer.status_code == 200 and answer.get_json()["valid"] is True, answer.get_json()


def test_signed_record_with_deep_content(target: FuzzTarget) -> None:
    content = nested(8_000)
    record = pkcs7.PKCS7SignatureBuilder().set_data(content).add_signer(
        target.service.certificate, target.service.key, hashes.SHA256()).add_certificate(target.issuer).sign(
        serialization.Encoding.DER, [])
    response = target.api("/signed-records/verify", json.dumps({"record": base64.b64encode(record).decode(),
                                                                "revocation_source": "store"}).encode())
    api_answer(response, "deep-record")
    body = response.get_json()
    assert response.status_code == 200 and body["content_json"] is None
    assert base64.b64decode(body["content"]) == content
    shallow = target.api("/signed-records/verify", json.dumps({"record": base64.b64encode(target.record).decode(),
                                                                "revocation_source": "store"}).encode())
    assert shallow.get_json()["content_json"] == {"data": {"national_id": "38001010000"}}


def test_crlf_redirect_uri_is_an_error_page(target: FuzzTarget) -> None:
    for bad in ("\r\nSet-Cookie: x=1", "\n", "\x00", "%0d%0a"):
        response = target.client.get("/oidc/authorize", query_string={
            "client_id": target.oidc_client["client_id"], "redirect_uri": "http://127.0.0.1:7000/cb" + bad,
            "response_type": "code", "scope": "openid", "state": "s", "code_challenge": "a" * 43,
            "code_challenge_method": "S256"}, headers={"Accept": "text/html"})
        assert response.status_code == 400 and "Location" not in response.headers, (bad, response.status_code)
        assert "invalid_request" in response.get_data(as_text=True)


def test_non_utf8_basic_credentials_are_invalid_client(target: FuzzTarget) -> None:
    for raw in (b"\xff\xfe:\xff", b"no-colon", b"caf\xe9:secret"):
        response = target.client.post("/oidc/token", data={"grant_type": "client_credentials"},
                                      headers={"Authorization": "Basic " + base64.b64encode(raw).decode()})
        assert response.status_code == 401 and response.get_json()["error"] == "invalid_client", response.get_data()
        assert response.headers["WWW-Authenticate"].startswith("Basic")
    response = target.client.post("/oidc/token", data={"grant_type": "client_credentials"},
                                  headers={"Authorization": "Basic %%%"})
    assert response.status_code == 401 and response.get_json()["error"] == "invalid_client"


def test_negative_ocsp_serial_is_malformed_request(target: FuzzTarget) -> None:
    one = asn1_ocsp.OCSPRequest.load(ocsp_request(target, 5))["tbs_request"]["request_list"][0]
    two = asn1_ocsp.OCSPRequest({"tbs_request": {"request_list": [one, one]}}).dump()  # RFC 5019: one only
    for der in (ocsp_request(target, -1), ocsp_request(target, -(2 ** 159)), two):
        for response in (target.client.post("/ocsp/staff", data=der, content_type="application/ocsp-request"),
                         target.client.get("/ocsp/staff/" + base64.b64encode(der).decode())):
            answer = assert_ocsp(response, "ocsp-negative")
            assert answer is not None and answer.response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_api_answers_are_not_stored_by_caches(target: FuzzTarget) -> None:
    good = json.dumps({"certificate": target.service.pem(), "purpose": "service", "revocation_source": "store"})
    for response in (target.api("/certificates/verify", good.encode()),
                     target.api("/signed-records/verify", json.dumps({"record": base64.b64encode(target.record).decode()}).encode()),
                     target.api("/certificates/verify", b"{}"),
                     target.api("/certificates/verify", b" " * (128 * 1024)),  # 413
                     target.client.post(API + "/certificates/verify", data=good)):  # no credentials: 401
        assert response.headers["Cache-Control"] == "no-store", response.headers
    assert target.client.get(API + "/openapi.json").headers["Cache-Control"].startswith("public")
