"""SM2 chains and signatures in verification (issue 18, item 3): verification.sm2_paths judged
against `openssl verify` over valid and broken SM2-with-SM3 chains, the API's validator and the
card reader's chain and status over a real SM2 hierarchy (CRL, OCSP and store status), SM2
signatures, and Hypothesis-mutated SM2 DER never raising nor read as valid."""

from __future__ import annotations

import datetime
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from ca import sm2
from ca.keys import KeyType
from ca.profiles import ANY_POLICY, EXAMPLE_POLICY_ARC, PROFILES
from ca.signing import builder_public_key, sign_certificate
from tests.test_protocol_fuzz import mutated
from tests.test_sm_suite import Sm2Home, pem, sm2_csr, sm2_home
from verification.certificates import Anchors, CertificateValidator, RevocationChecker, load_certificate
from verification.chain import ChainValidator
from verification.crl_status import CrlStatus
from verification.ocsp_status import OcspStatus
from verification.signatures import public_key_of, verify_signature, verify_signed_by
from verification.sm2_paths import validate_sm2_path

NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
DAY = datetime.timedelta(days=1)
#: the citizen-auth policy under the example arc, asserted by the leaves and required by openssl
POLICY = f"{EXAMPLE_POLICY_ARC}.{PROFILES['citizen-auth'].policy_number}"


class SoftSm2:
    """An SM2 key in memory, as a :class:`ca.keys.SigningKey` (the empty identity, which OpenSSL
    3.0 verifies with throughout a chain)."""

    key_type = KeyType.SM2
    reference = "memory"

    def __init__(self, signer_id: bytes = b"") -> None:
        self.private, self.public = sm2.generate()
        self.signer_id = signer_id

    def public_key(self) -> sm2.Sm2PublicKey:
        return self.public

    def sign(self, data: bytes, hash_algorithm: hashes.HashAlgorithm) -> bytes:
        return sm2.sign(self.private, self.public, data, self.signer_id)


def build(cn: str, key: SoftSm2, issuer: tuple[x509.Certificate, SoftSm2] | None = None, *, ca: bool = True,
          path_length: int | None = None, days: tuple[int, int] = (-1, 365), cert_sign: bool = True,
          extra: x509.ExtensionType | None = None, issuer_name: str | None = None) -> x509.Certificate:
    """An SM2 certificate signed SM2-with-SM3 by ``issuer`` (self-signed without): a CA, or a
    citizen-auth end entity (digitalSignature, clientAuth, the citizen-auth policy)."""
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"), x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    signer_cert, signer = issuer if issuer is not None else (None, key)
    issued_by = (x509.Name.from_rfc4514_string(issuer_name) if issuer_name else
                 signer_cert.subject if signer_cert is not None else name)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issued_by)
               .public_key(builder_public_key(key.public)).serial_number(x509.random_serial_number())
               .not_valid_before(NOW + days[0] * DAY).not_valid_after(NOW + days[1] * DAY)
               .add_extension(x509.SubjectKeyIdentifier(key.public.key_identifier()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier(signer.public.key_identifier(), None, None), critical=False))
    usage = dict.fromkeys(("content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
                           "encipher_only", "decipher_only"), False)
    if ca:
        builder = (builder.add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=False, key_cert_sign=cert_sign, crl_sign=True,
                                                **usage), critical=True)
                   .add_extension(x509.CertificatePolicies([x509.PolicyInformation(ANY_POLICY, None)]), critical=False))
    else:
        builder = (builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False, **usage),
                                  critical=True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                   .add_extension(x509.CertificatePolicies([x509.PolicyInformation(x509.ObjectIdentifier(POLICY), None)]),
                                  critical=False))
    if extra is not None:
        builder = builder.add_extension(extra, critical=True)
    return sign_certificate(builder, signer, key.public)


def broken_signature(certificate: x509.Certificate) -> x509.Certificate:
    der = bytearray(certificate.public_bytes(Encoding.DER))
    der[-5] ^= 0x01  # inside s of the signature
    return x509.load_der_x509_certificate(bytes(der))


KEYS = {name: SoftSm2() for name in ("root", "ca", "ca2", "leaf", "other", "root0")}
ROOT = build("SM2 Test Root", KEYS["root"])
CA = build("SM2 Test Citizen CA", KEYS["ca"], (ROOT, KEYS["root"]), path_length=0)
CA_WIDE = build("SM2 Test Wide CA", KEYS["ca"], (ROOT, KEYS["root"]))
SUB_CA = build("SM2 Test Sub CA", KEYS["ca2"], (CA, KEYS["ca"]))
SUB_CA_WIDE = build("SM2 Test Sub CA of the wide CA", KEYS["ca2"], (CA_WIDE, KEYS["ca"]))
ROOT0 = build("SM2 Test Root pathLen 0", KEYS["root0"], path_length=0)
CA_UNDER_ROOT0 = build("SM2 Test CA under pathLen 0", KEYS["ca"], (ROOT0, KEYS["root0"]))


def leaf(cn: str, issuer: x509.Certificate = CA, key: str = "ca", **options: object) -> x509.Certificate:
    return build(cn, KEYS["leaf"], (issuer, KEYS[key]), ca=False, **options)  # type: ignore[arg-type]


#: case -> (leaf, the chain given, the root trusted, valid)
CASES: dict[str, tuple[x509.Certificate, list[x509.Certificate], x509.Certificate, bool]] = {
    "valid": (leaf("李娜"), [CA], ROOT, True),
    "valid through a sub-CA": (leaf("sub", SUB_CA_WIDE, "ca2"), [CA_WIDE, SUB_CA_WIDE], ROOT, True),
    "expired": (leaf("expired", days=(-30, -1)), [CA], ROOT, False),
    "not yet valid": (leaf("not yet", days=(2, 30)), [CA], ROOT, False),
    "expired CA": (leaf("under expired CA", build("SM2 Test Old CA", KEYS["ca"], (ROOT, KEYS["root"]),
                                                   days=(-30, -1))), [], ROOT, False),
    "wrong issuer key": (leaf("forged", key="other"), [CA], ROOT, False),
    "wrong issuer name": (leaf("stranger", issuer_name="C=CN,CN=SM2 Somebody Else"), [CA], ROOT, False),
    "bad signature": (broken_signature(leaf("tampered")), [CA], ROOT, False),
    "CA not a CA": (leaf("under an end entity", build("SM2 Test Not A CA", KEYS["ca"], (ROOT, KEYS["root"]),
                                                      ca=False)), [], ROOT, False),
    "CA without keyCertSign": (leaf("no cert sign", build("SM2 Test No keyCertSign", KEYS["ca"], (ROOT, KEYS["root"]),
                                                          cert_sign=False)), [], ROOT, False),
    "pathLen exceeded": (leaf("too deep", SUB_CA, "ca2"), [CA, SUB_CA], ROOT, False),
    "root pathLen exceeded": (leaf("too deep for the root", CA_UNDER_ROOT0), [CA_UNDER_ROOT0], ROOT0, False),
    "unknown critical extension": (leaf("critical", extra=x509.UnrecognizedExtension(
        x509.ObjectIdentifier("1.2.156.10197.6.1.4.2.99"), b"\x05\x00")), [CA], ROOT, False),
    "untrusted root": (leaf("other root"), [CA], ROOT0, False),
}


def openssl_verdict(folder: Path, leaf_cert: x509.Certificate, chain: list[x509.Certificate],
                    root: x509.Certificate) -> bool:
    (folder / "root.pem").write_bytes(pem(root.public_bytes(Encoding.DER)))
    (folder / "chain.pem").write_bytes(b"".join(pem(c.public_bytes(Encoding.DER)) for c in chain) or b"")
    (folder / "leaf.pem").write_bytes(pem(leaf_cert.public_bytes(Encoding.DER)))
    untrusted = ("-untrusted", "chain.pem") if chain else ()
    out = subprocess.run(["openssl", "verify", "-purpose", "sslclient", "-policy", POLICY, "-explicit_policy",
                          "-CAfile", "root.pem", *untrusted, "leaf.pem"], cwd=folder, capture_output=True,
                         text=True, timeout=60)
    return out.returncode == 0 and out.stdout.strip() == "leaf.pem: OK"


def api_validator(root: x509.Certificate) -> CertificateValidator:
    """The API's validator with ``root`` as the deployment's SM2 root and no store behind it."""
    return CertificateValidator(Anchors([], [], {}, sm2_roots=[root]), RevocationChecker(None), lambda: NOW)  # type: ignore[arg-type]


def test_sm2_paths_agree_with_openssl_verify(tmp_path: Path) -> None:
    """verification.sm2_paths (through the API's validator, purpose citizen-auth) and `openssl verify
    -purpose sslclient -policy <citizen-auth> -explicit_policy` give the same verdict on every case;
    revocation is not asked of a root the store does not know, so it is left out here."""
    disagreements = []
    for name, (leaf_cert, chain, root, expected) in CASES.items():
        verdict = api_validator(root).validate(leaf_cert, "citizen-auth", chain, NOW)
        ours = not (verdict.codes - {"revocation-unknown"})
        theirs = openssl_verdict(tmp_path, leaf_cert, chain, root)
        if not ours == theirs == expected:
            disagreements.append((name, ours, theirs, expected, [r.detail for r in verdict.reasons]))
    assert not disagreements, disagreements


def test_the_reasons_name_what_is_wrong() -> None:
    expected = {"expired": "expired", "not yet valid": "not-yet-valid"}
    for name, (leaf_cert, chain, root, valid) in CASES.items():
        outcome = validate_sm2_path(leaf_cert, chain, [root], NOW)
        assert outcome.valid == valid, (name, outcome.reasons)
        if not valid:
            assert [r.code for r in outcome.reasons] == [expected.get(name, "untrusted-issuer")], (name, outcome)
    assert "pathLenConstraint" in validate_sm2_path(*CASES["pathLen exceeded"][:2], [ROOT], NOW).reasons[0].detail
    assert "1.2.156.10197.6.1.4.2.99" in validate_sm2_path(*CASES["unknown critical extension"][:2], [ROOT],
                                                           NOW).reasons[0].detail
    # an expired end entity still shows its path (as the ECDSA fast path does)
    verdict = api_validator(ROOT).validate(CASES["expired"][0], "citizen-auth", [CA], NOW)
    assert "expired" in verdict.codes and len(verdict.chain) == 3


def test_the_standard_identity_verifies_too() -> None:
    """A hierarchy of the standard's identity (1234567812345678, GmSSL's default) validates the same."""
    root_key, ca_key, leaf_key = SoftSm2(sm2.DEFAULT_SIGNER_ID), SoftSm2(sm2.DEFAULT_SIGNER_ID), SoftSm2()
    root = build("SM2 Standard Root", root_key)
    ca = build("SM2 Standard CA", ca_key, (root, root_key))
    assert validate_sm2_path(build("x", leaf_key, (ca, ca_key), ca=False), [ca], [root], NOW).valid
    foreign = SoftSm2(b"ALICE123@YAHOO.COM")  # another identity is not one a Tessera CA signs with
    assert not validate_sm2_path(build("y", leaf_key, (ca, foreign), ca=False), [ca], [root], NOW).valid


def test_an_sm2_certificate_is_not_validated_by_an_ecdsa_root_nor_the_reverse() -> None:
    validator = CertificateValidator(Anchors([], [], {}), RevocationChecker(None), lambda: NOW)  # type: ignore[arg-type]
    verdict = validator.validate(CASES["valid"][0], "citizen-auth", [CA], NOW)
    assert not verdict.valid and "untrusted-issuer" in verdict.codes


def test_sm2_signatures_through_the_one_signature_check() -> None:
    key = SoftSm2(sm2.DEFAULT_SIGNER_ID)
    certificate = build("signer", key, (ROOT, KEYS["root"]), ca=False)
    public = public_key_of(certificate)
    assert public == key.public
    message = "电子公文".encode()
    signature = key.sign(message, hashes.SM3())
    verify_signature(public, signature, message, hashes.SM3())
    digest = sm2.sm3(key.public.z() + message)  # e = SM3(Z || M), the signer's own hashing
    verify_signature(public, signature, digest, hashes.SM3(), prehashed=True)
    r, s = (int.from_bytes(v, "big") for v in _r_s(signature))
    verify_signature(public, r.to_bytes(32, "big") + s.to_bytes(32, "big"), message, hashes.SM3(), raw_ecdsa=None)
    for bad in ((public, signature, message + b"!", hashes.SM3()), (public, signature, message, hashes.SHA256()),
                (public, b"\x30\x00", message, hashes.SM3())):
        with pytest.raises(InvalidSignature):
            verify_signature(*bad)
    with pytest.raises(InvalidSignature):  # an SM2 key signs SM2-with-SM3 only
        verify_signed_by(certificate, signature, message, x509.ObjectIdentifier("1.2.840.10045.4.3.2"),
                         lambda: hashes.SHA256())


def _r_s(signature: bytes) -> tuple[bytes, bytes]:
    from asn1crypto.algos import DSASignature

    value = DSASignature.load(signature).native
    return value["r"].to_bytes(32, "big"), value["s"].to_bytes(32, "big")


# --- a real SM2 hierarchy: the API's validator and the card reader, with status ---------------------
@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sm2Home, Path]]:
    """Both hierarchies (the standard SM2 identity), an SM2 citizen-auth certificate issued from an
    `openssl req -newkey sm2` CSR and another one revoked."""
    folder = tmp_path_factory.mktemp("sm2-verification")
    made, engine = sm2_home(folder, sm2.DEFAULT_SIGNER_ID, with_ecdsa=True)
    subject = "/C=CN/serialNumber=430000199001011234/CN=李娜"
    for name in ("good", "revoked"):
        row = made.ca.issue("citizen-auth", sm2_csr(folder, name, subject), "test")
        (folder / f"{name}.der").write_bytes(row.der)
    revoked = x509.load_der_x509_certificate((folder / "revoked.der").read_bytes())
    made.ca.revoke(format(revoked.serial_number, "x"), "keyCompromise", actor="test")
    yield made, folder
    engine.dispose()


def test_the_api_validates_sm2_certificates_with_every_revocation_source(home: tuple[Sm2Home, Path]) -> None:
    made, folder = home
    engine = made.ca.sessions.kw["bind"]
    validator = CertificateValidator.for_deployment(engine, made.ocsp)
    assert validator.anchors.sm2_roots and all(r.signature_algorithm_oid.dotted_string != sm2.SM2_WITH_SM3_OID
                                               for r in validator.anchors.roots)
    good = load_certificate((folder / "good.der").read_bytes())
    revoked = load_certificate((folder / "revoked.der").read_bytes())
    for source in ("ocsp", "crl", "store"):
        verdict = validator.validate(good, "citizen-auth", revocation_source=source)
        assert verdict.valid and verdict.revocation.source == source, (source, verdict.reasons)
        assert [c.subject.rfc4514_string() for c in verdict.chain][1:] == [
            made.ca.authority_certificate(n).subject.rfc4514_string() for n in ("sm2-citizen", "sm2-root")]
        assert verdict.profile == "citizen-auth" and verdict.national_id is None  # serialNumber without PNO
        bad = validator.validate(revoked, "citizen-auth", revocation_source=source)
        assert bad.codes == {"revoked"} and bad.revocation.reason == "keyCompromise", (source, bad.reasons)
        wrong = validator.validate(good, "signing", revocation_source=source)
        assert not wrong.valid and "wrong-key-usage" in wrong.codes
    # an ECDSA certificate still validates beside the SM2 hierarchy
    staff = made.ca.list_certificates(issuer="sm2-staff")  # the SM2 OCSP responder and TSA, made by add-sm2
    assert staff and all(validator.validate(load_certificate(c.der), "service").certificate is not None for c in staff)


def test_the_card_reader_validates_an_sm2_chain_and_its_status(home: tuple[Sm2Home, Path]) -> None:
    made, folder = home
    now = made.ca.clock()  # after the module's hierarchy was made (NOW is taken at import)
    certs = {a.name: made.ca.authority_certificate(a.name) for a in made.ca.authorities()}
    chains = ChainValidator([certs["root"], certs["sm2-root"]])
    intermediates = [c for n, c in certs.items() if n not in ("root", "sm2-root")]
    crls = CrlStatus([made.ca.current_crl(n).der for n in certs], list(certs.values()))
    good = x509.load_der_x509_certificate((folder / "good.der").read_bytes())
    revoked = x509.load_der_x509_certificate((folder / "revoked.der").read_bytes())
    check, path = chains.validate_path(good, intermediates, now, eku=ExtendedKeyUsageOID.CLIENT_AUTH)
    assert check.ok and path is not None and path[-1] == certs["sm2-root"], check
    assert crls.path_status(path, now).reason == "good"
    check, path = chains.validate_path(revoked, intermediates, now)
    assert path is not None and crls.path_status(path, now).reason == "revoked"
    expired = chains.validate_path(good, intermediates, good.not_valid_after_utc + DAY)[0]
    assert expired.reason == "expired"

    def fetch(_url: str, body: bytes) -> bytes:
        return made.ocsp.respond(body).der

    online = OcspStatus(fetch=fetch, authorities=crls)
    assert online.path_status(path, now).reason == "revoked"
    good_path = chains.validate_path(good, intermediates, now)[1]
    assert good_path is not None and online.path_status(good_path, now).reason == "good"
    assert online.kept_status(good, certs["sm2-citizen"], now).reason == "good"


@settings(max_examples=150, deadline=None, database=None)
@given(data=st.data())
def test_mutated_sm2_der_is_a_verdict_never_an_exception_nor_valid(data: st.DataObject) -> None:
    """A mutated SM2 certificate (or chain certificate) either fails to load with ValueError (the
    API's 400) or gets a verdict; it is valid only when its signed part is unchanged."""
    leaf_cert, chain, root, _ = CASES["valid"]
    which = data.draw(st.sampled_from(["leaf", "chain"]))
    original = (leaf_cert if which == "leaf" else chain[0]).public_bytes(Encoding.DER)
    der = data.draw(mutated(original))
    try:
        certificate = load_certificate(der)
    except ValueError:
        return
    given_leaf, given_chain = (certificate, chain) if which == "leaf" else (leaf_cert, [certificate])
    verdict = api_validator(root).validate(given_leaf, "citizen-auth", given_chain, NOW)
    if not (verdict.codes - {"revocation-unknown"}):
        assert certificate.tbs_certificate_bytes == x509.load_der_x509_certificate(original).tbs_certificate_bytes
    outcome = ChainValidator([root]).validate_path(given_leaf, given_chain, NOW)[0]
    assert not outcome.ok or certificate.tbs_certificate_bytes == \
        x509.load_der_x509_certificate(original).tbs_certificate_bytes


def test_a_der_certificate_ending_in_a_white_space_byte_loads() -> None:
    """load_certificate strips text (PEM, base64), never DER: a signature may end in 0x20 or 0x0a."""
    for attempt in range(2000):
        certificate = build(f"white space {attempt}", KEYS["leaf"], (CA, KEYS["ca"]), ca=False)
        der = certificate.public_bytes(Encoding.DER)
        if der[-1:].isspace():
            assert load_certificate(der) == certificate
            return
    pytest.fail("no certificate ended in a white space byte")


def test_an_sm2_login_signature_of_a_software_card_key_verifies(home: tuple[Sm2Home, Path]) -> None:
    """What citizen login needs of verification for an SM2 card (the login endpoint itself:
    tests/test_sm2_signatures_api.py): the citizen-auth certificate valid, and the key's signature
    over SM3(origin) || SM3(nonce) (the Web eID construction with SM3), made by OpenSSL with the
    certificate's key and the standard identity, verified with the certificate's key."""
    made, folder = home
    validator = CertificateValidator.for_deployment(made.ca.sessions.kw["bind"], made.ocsp)
    certificate = load_certificate((folder / "good.der").read_bytes())
    assert validator.validate(certificate, "citizen-auth").valid
    signed = sm2.sm3(b"https://tessera-login.example") + sm2.sm3(b"a fresh nonce from /citizen/login/challenge")
    (folder / "login.bin").write_bytes(signed)
    made_by = subprocess.run(["openssl", "pkeyutl", "-sign", "-inkey", "good.key", "-rawin", "-digest", "sm3",
                              "-pkeyopt", "distid:1234567812345678", "-in", "login.bin", "-out", "login.sig"],
                             cwd=folder, capture_output=True, text=True, timeout=60)
    assert made_by.returncode == 0, made_by.stderr
    signature = (folder / "login.sig").read_bytes()
    verify_signature(public_key_of(certificate), signature, signed, hashes.SM3())
    with pytest.raises(InvalidSignature):
        verify_signature(public_key_of(certificate), signature, signed[:32] + sm2.sm3(b"another nonce"), hashes.SM3())


#: 1-4 edits of bytes whose length is known only when they are made (a fresh OCSP answer): each a
#: kind, a place as a fraction of the length, a bit, and bytes to insert or set
EDITS = st.lists(st.tuples(st.sampled_from(["flip", "insert", "delete", "cut", "set"]), st.floats(0, 1),
                           st.integers(0, 7), st.binary(min_size=1, max_size=8)), min_size=1, max_size=4)


def edited(original: bytes, edits: list[tuple[str, float, int, bytes]]) -> bytes:
    """``original`` with ``edits`` (as :func:`tests.test_protocol_fuzz.mutated` makes them)."""
    data = bytearray(original)
    for kind, where, bit, value in edits:
        at = min(int(where * len(data)), max(0, len(data) - 1))
        if kind == "flip" and data:
            data[at] ^= 1 << bit
        elif kind == "set" and data:
            data[at] = value[0]
        elif kind == "insert":
            data[at:at] = value
        elif kind == "delete" and data:
            del data[at:at + 1 + bit % 4]
        elif kind == "cut":
            del data[at:]
    return bytes(data)


@settings(max_examples=100, deadline=None, database=None)
@given(edits=EDITS)
def test_mutated_sm2_ocsp_answers_are_a_status_never_an_exception(home: tuple[Sm2Home, Path],
                                                                  edits: list[tuple[str, float, int, bytes]]) -> None:
    """A mutated answer of the SM2 OCSP responder, to the reader (online) and to the API's
    checker: a status, never an exception, and good only when the signed response is unchanged."""
    from cryptography.x509 import ocsp

    made, folder = home
    issuer = made.ca.authority_certificate("sm2-citizen")
    good = x509.load_der_x509_certificate((folder / "good.der").read_bytes())
    answers: list[tuple[bytes, bytes]] = []

    def mutate(body: bytes) -> bytes:
        original = made.ocsp.respond(body).der
        answers.append((original, edited(original, edits)))
        return answers[-1][1]

    def unchanged() -> bool:
        original, changed = answers[-1]
        try:
            return ocsp.load_der_ocsp_response(changed).tbs_response_bytes == \
                ocsp.load_der_ocsp_response(original).tbs_response_bytes
        except ValueError:
            return False

    check = OcspStatus(fetch=lambda _url, body: mutate(body)).status(good, issuer, NOW)
    assert not check.ok or unchanged(), check

    class Responder:
        def respond(self, body: bytes) -> object:
            return type("Reply", (), {"der": mutate(body)})()

    status = RevocationChecker(made.ca.sessions.kw["bind"], Responder())._ocsp(good, issuer, NOW)  # noqa: SLF001
    assert status.status != "good" or unchanged(), status


def test_certificates_sharing_one_name_cannot_make_path_building_explode(monkeypatch: pytest.MonkeyPatch) -> None:
    """Eight self-signed certificates all named like the leaf's issuer (anyone can make them and
    send them as the chain) were tried in every order: 492,347 DER encodings and 4.4 s of CPU for one
    request. Path building now looks at a bounded number of partial paths; a real path given
    beside such junk is still found."""
    import verification.sm2_paths as sm2_paths

    encoded = []
    der = sm2_paths._der  # noqa: SLF001
    monkeypatch.setattr(sm2_paths, "_der", lambda c: encoded.append(1) or der(c))
    loops = [build("SM2 Test Citizen CA", SoftSm2()) for _ in range(8)]  # the real CA's name, self-signed
    leaf = CASES["valid"][0]
    outcome = validate_sm2_path(leaf, loops, [ROOT], NOW)
    assert not outcome.valid and len(encoded) < 2 * (len(loops) + 2)
    assert validate_sm2_path(leaf, [CA, *loops], [ROOT], NOW).valid
