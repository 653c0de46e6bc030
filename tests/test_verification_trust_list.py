"""Foreign trust anchors (issue 15 item 3): a second CA hierarchy built here, its CRLs served by a
tiny HTTP server on 127.0.0.1; the trust list (TOML) names its root with purposes, policies and
CRL revocation. A certificate of the listed CA is valid, the verdict names the anchor and the
revocation source; revoked, unreachable (fail closed), wrong policy and unlisted purpose are not.
CRLs are fetched once and kept until their nextUpdate. Local CRL files (``crls``) are read, indexed
by issuer and cRLIssuer and used as the revocation source; a caller's initial policy inputs stay
within the anchor's policies."""

from __future__ import annotations

import datetime
import http.server
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import create_engine

from verification.certificates import Anchors, CertificateValidator, RevocationChecker
from verification.paths import ANY_POLICY, PolicyInputs
from verification.trust_list import CrlCache, ForeignAnchor, LocalCrls, TrustListError, load_trust_list

pytestmark = pytest.mark.unit

NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
POLICY = "1.3.6.1.4.1.99999.7.1"
OTHER_POLICY = "1.3.6.1.4.1.99999.7.2"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "NL"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Northland"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str, issuer_key: ec.EllipticCurvePrivateKey,
          ca: bool, crl_url: str | None) -> x509.Certificate:
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(NOW - datetime.timedelta(days=1)).not_valid_after(NOW + datetime.timedelta(days=365))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=not ca, content_commitment=not ca, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False, key_cert_sign=ca,
                                            crl_sign=ca, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                              critical=False)
               .add_extension(x509.CertificatePolicies([x509.PolicyInformation(x509.ObjectIdentifier(POLICY), None)]),
                              critical=False))
    if crl_url:
        builder = builder.add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
            [x509.UniformResourceIdentifier(crl_url)], None, None, None)]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _crl(issuer: str, key: ec.EllipticCurvePrivateKey, revoked: list[int]) -> bytes:
    builder = (x509.CertificateRevocationListBuilder().issuer_name(_name(issuer))
               .last_update(NOW - datetime.timedelta(hours=1)).next_update(NOW + datetime.timedelta(days=1))
               .add_extension(x509.CRLNumber(1), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False))
    for serial in revoked:
        builder = builder.add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(serial)
                                                  .revocation_date(NOW - datetime.timedelta(minutes=30)).build())
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


class Foreign:
    """The foreign hierarchy and its CRL server (paths -> DER; hits counted)."""

    def __init__(self) -> None:
        self.served: dict[str, bytes] = {}
        self.hits: Counter[str] = Counter()
        served, hits = self.served, self.hits

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                hits[self.path] += 1
                body = served.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "application/pkix-crl")
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.root_key, self.ca_key, self.ee_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
        self.root = _cert("Northland Root", self.root_key, "Northland Root", self.root_key, True, None)
        self.ca = _cert("Northland Signing CA", self.ca_key, "Northland Root", self.root_key, True, base + "/root.crl")
        self.ee = _cert("Anna Signer", self.ee_key, "Northland Signing CA", self.ca_key, False, base + "/ca.crl")
        self.revoked = _cert("Revoked Signer", self.ee_key, "Northland Signing CA", self.ca_key, False,
                             base + "/ca.crl")
        self.served["/root.crl"] = _crl("Northland Root", self.root_key, [])
        self.served["/ca.crl"] = _crl("Northland Signing CA", self.ca_key, [self.revoked.serial_number])

    def write_crls(self, folder: Path) -> None:
        """Both CRLs as files: the root's DER, the signing CA's PEM (twice in one file)."""
        folder.mkdir(exist_ok=True)
        (folder / "root.crl").write_bytes(self.served["/root.crl"])
        pem = x509.load_der_x509_crl(self.served["/ca.crl"]).public_bytes(serialization.Encoding.PEM)
        (folder / "ca.pem").write_bytes(pem + b"\n" + pem)

    def validator(self, **anchor: object) -> CertificateValidator:
        entry = ForeignAnchor(**{"name": "Northland", "certificate": self.root, "purposes": frozenset({"signing"}),
                                 "policies": frozenset({POLICY}), "timeout": 2.0, **anchor})  # type: ignore[arg-type]
        engine = create_engine("sqlite://")
        return CertificateValidator(Anchors([], [], {}, [entry]), RevocationChecker(engine), lambda: NOW)


@pytest.fixture(scope="module")
def foreign() -> Iterator[Foreign]:
    hierarchy = Foreign()
    try:
        yield hierarchy
    finally:
        hierarchy.server.shutdown()


def test_a_listed_foreign_certificate_is_valid_and_names_anchor_and_source(foreign: Foreign) -> None:
    verdict = foreign.validator().validate(foreign.ee, "signing", [foreign.ca])
    assert verdict.valid, verdict.reasons
    body = verdict.as_dict()
    assert body["anchor"] == "Northland" and body["revocation"]["source"] == "crl"
    assert body["revocation"]["status"] == "good" and "anchor Northland" in body["revocation"]["detail"]
    assert [c["subject"].split(",")[0] for c in body["chain"]] == ["CN=Anna Signer", "CN=Northland Signing CA",
                                                                    "CN=Northland Root"]


def test_revoked_unreachable_wrong_policy_and_unlisted_purpose(foreign: Foreign) -> None:
    revoked = foreign.validator().validate(foreign.revoked, "signing", [foreign.ca])
    assert not revoked.valid and revoked.codes == {"revoked"}, revoked.reasons
    assert revoked.revocation.status == "revoked"
    saved = foreign.served.pop("/ca.crl")
    try:  # no CRL to be had (404): fail closed, unless the list says fail_open
        closed = foreign.validator().validate(foreign.ee, "signing", [foreign.ca])
        assert not closed.valid and closed.codes == {"revocation-unknown"}, closed.reasons
        assert foreign.validator(fail_open=True).validate(foreign.ee, "signing", [foreign.ca]).valid
    finally:
        foreign.served["/ca.crl"] = saved
    other_policy = foreign.validator(policies=frozenset({"1.3.6.1.4.1.99999.7.2"}))
    refused = other_policy.validate(foreign.ee, "signing", [foreign.ca])
    assert not refused.valid and refused.codes == {"path-invalid"}, refused.reasons
    unlisted = foreign.validator().validate(foreign.ee, "citizen-auth", [foreign.ca])
    assert not unlisted.valid and "untrusted-issuer" in unlisted.codes and unlisted.anchor is None


def test_crls_are_kept_until_next_update(foreign: Foreign) -> None:
    validator = foreign.validator()
    before = foreign.hits["/ca.crl"]
    for _ in range(3):
        assert validator.validate(foreign.ee, "signing", [foreign.ca]).valid
    assert foreign.hits["/ca.crl"] == before + 1


def test_trust_list_file(foreign: Foreign, tmp_path: Path) -> None:
    (tmp_path / "root.pem").write_bytes(foreign.root.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "list.toml").write_text(f'[[anchor]]\nname = "Northland"\ncertificate = "root.pem"\n'
                                        f'purposes = ["signing"]\npolicies = ["{POLICY}"]\ntimeout = 3\n')
    [anchor] = load_trust_list(tmp_path / "list.toml", ("signing", "service"))
    assert anchor.name == "Northland" and anchor.revocation == "crl" and not anchor.fail_open
    assert anchor.certificate == foreign.root and anchor.policies == {POLICY} and anchor.timeout == 3
    for bad in ('[[anchor]]\nname = "x"\ncertificate = "root.pem"\npurposes = ["flying"]\n',
                '[[anchor]]\nname = "x"\ncertificate = "missing.pem"\npurposes = ["signing"]\n',
                '[[anchor]]\nname = "x"\ncertificate = "root.pem"\npurposes = ["signing"]\nrevocation = "hope"\n',
                "[[anchor]\n"):
        (tmp_path / "bad.toml").write_text(bad)
        with pytest.raises(TrustListError):
            load_trust_list(tmp_path / "bad.toml", ("signing",))


def test_a_bad_trust_list_stops_the_service_at_start(tmp_path: Path) -> None:
    from idp.settings import ConfigurationError, Settings

    (tmp_path / "list.toml").write_text('[[anchor]]\nname = "x"\ncertificate = "missing.pem"\npurposes = ["signing"]\n')
    with pytest.raises(ConfigurationError, match="TESSERA_TRUST_LIST"):
        Settings.from_env(tmp_path, {"TESSERA_TRUST_LIST": str(tmp_path / "list.toml")})


def test_local_crls_are_read_and_chosen_by_issuer_and_crl_issuer(foreign: Foreign, tmp_path: Path) -> None:
    foreign.write_crls(tmp_path / "crls")
    crls = LocalCrls.read([tmp_path / "crls"])
    assert len(crls) == 3  # a folder: every file; a PEM file: every CRL block
    ca_crl = foreign.served["/ca.crl"]
    assert crls.for_path([foreign.ee]) == [ca_crl, ca_crl]
    assert crls.for_path([foreign.ca]) == [foreign.served["/root.crl"]]
    assert sorted(crls.for_path([foreign.ee, foreign.ca])) == sorted([ca_crl, ca_crl, foreign.served["/root.crl"]])
    assert LocalCrls.read([tmp_path / "crls" / "root.crl"]).for_path([foreign.ee]) == []
    # an indirect CRL: a distribution point naming the root as cRLIssuer (RFC 5280 section 4.2.1.13)
    indirect = (x509.CertificateBuilder().subject_name(_name("Indirect")).issuer_name(_name("Northland Signing CA"))
                .public_key(foreign.ee_key.public_key()).serial_number(7).not_valid_before(NOW)
                .not_valid_after(NOW + datetime.timedelta(days=1))
                .add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
                    None, None, None, [x509.DirectoryName(_name("Northland Root"))])]), critical=False)
                .sign(foreign.ca_key, hashes.SHA256()))
    assert foreign.served["/root.crl"] in crls.for_path([indirect])
    assert LocalCrls().for_path([foreign.ee]) == []


def test_crls_in_the_trust_list_file(foreign: Foreign, tmp_path: Path) -> None:
    foreign.write_crls(tmp_path / "crls")
    (tmp_path / "root.pem").write_bytes(foreign.root.public_bytes(serialization.Encoding.PEM))
    entry = '[[anchor]]\nname = "Northland"\ncertificate = "root.pem"\npurposes = ["signing"]\n'
    (tmp_path / "list.toml").write_text(entry + 'crls = ["crls/", "crls/root.crl"]\n')
    [anchor] = load_trust_list(tmp_path / "list.toml", ("signing",))
    assert len(anchor.crls) == 4
    (tmp_path / "crls" / "notes.txt").write_text("not a CRL")
    for bad in ('crls = ["crls/"]\n', 'crls = ["missing.crl"]\n', 'crls = "crls/"\n'):
        (tmp_path / "bad.toml").write_text(entry + bad)
        with pytest.raises(TrustListError):
            load_trust_list(tmp_path / "bad.toml", ("signing",))


def test_caller_policy_inputs_stay_within_the_anchors() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    root = _cert("R", key, "R", key, True, None)
    bounded = ForeignAnchor("A", root, frozenset({"signing"}), frozenset({POLICY, OTHER_POLICY}))
    free = ForeignAnchor("B", root, frozenset({"signing"}), frozenset())
    assert bounded.policy_inputs() == PolicyInputs(frozenset({POLICY, OTHER_POLICY}), True)
    assert bounded.policy_inputs(PolicyInputs.of([POLICY, "1.2.3"], mapping_inhibit=True)) == \
        PolicyInputs(frozenset({POLICY}), True, True, False)
    assert bounded.policy_inputs(PolicyInputs.of(["1.2.3"])).initial_policy_set == frozenset()
    assert bounded.policy_inputs(PolicyInputs.of(["2.5.29.32.0"], any_inhibit=True)) == \
        PolicyInputs(frozenset({POLICY, OTHER_POLICY}), True, False, True)
    assert free.policy_inputs() == PolicyInputs()
    asked = PolicyInputs.of([POLICY], explicit=True)
    assert free.policy_inputs(asked) == asked and PolicyInputs.of().initial_policy_set == {ANY_POLICY}
    assert asked.admits({POLICY, "1.2.3"}) and not asked.admits({"1.2.3"}) and PolicyInputs().admits(set())
    assert PolicyInputs.of(["1.2.3"]).admits({POLICY})  # nothing explicit: RFC 5280 section 6.1.5 (g)


def test_local_crls_are_the_revocation_source(foreign: Foreign, tmp_path: Path) -> None:
    foreign.write_crls(tmp_path / "crls")
    local = LocalCrls.read([tmp_path / "crls"])
    saved = dict(foreign.served)
    foreign.served.clear()  # nothing to fetch: the local CRLs alone
    try:
        verdict = foreign.validator(crls=local).validate(foreign.ee, "signing", [foreign.ca])
        assert verdict.valid, verdict.reasons
        assert verdict.revocation.source == "crl" and "3 local CRLs, 0 CRLs fetched" in verdict.revocation.detail
        revoked = foreign.validator(crls=local).validate(foreign.revoked, "signing", [foreign.ca])
        assert revoked.codes == {"revoked"}, revoked.reasons
        assert foreign.validator().validate(foreign.ee, "signing", [foreign.ca]).codes == {"revocation-unknown"}
    finally:
        foreign.served.update(saved)


def test_caller_policy_inputs_in_a_validation(foreign: Foreign) -> None:
    validator = foreign.validator(policies=frozenset({POLICY, OTHER_POLICY}))
    assert validator.validate(foreign.ee, "signing", [foreign.ca], policy=PolicyInputs.of([POLICY])).valid
    refused = validator.validate(foreign.ee, "signing", [foreign.ca], policy=PolicyInputs.of([OTHER_POLICY]))
    assert not refused.valid and refused.codes == {"path-invalid"}, refused.reasons
    outside = validator.validate(foreign.ee, "signing", [foreign.ca], policy=PolicyInputs.of(["1.2.3"]))
    assert not outside.valid  # the anchor's policies are the outer bound
    free = foreign.validator(policies=frozenset())
    assert free.validate(foreign.ee, "signing", [foreign.ca], policy=PolicyInputs.of([POLICY], explicit=True)).valid
    assert not free.validate(foreign.ee, "signing", [foreign.ca], policy=PolicyInputs.of(["1.2.3"], explicit=True)).valid
    # RFC 5280 section 6.1.5 (g): without explicit policy an empty valid_policy_tree is no failure
    assert free.validate(foreign.ee, "signing", [foreign.ca], policy=PolicyInputs.of(["1.2.3"])).valid


@pytest.mark.parametrize("url", ["http://127.0.0.1:3;969/root.crl", "http://127.0.0.1:99999/root.crl",
                                 "http://[::1/root.crl", "http://127.0.0.1:0/root.crl", "http://\u00e9x\u00e4mple.invalid/"])
def test_a_distribution_point_that_cannot_be_fetched_gives_no_crl(url: str) -> None:
    """A certificate's cRLDistributionPoints URI is outside input: one http.client refuses (a
    non-numeric port, which Hypothesis made of a trust-list chain in CI) is no CRL, never an
    exception out of the validator."""
    assert CrlCache().get(url, NOW, time.monotonic() + 0.5) is None


def test_a_path_fetches_a_few_distribution_points_of_what_the_anchor_signed() -> None:
    """The certificates are the caller's: their cRLDistributionPoints are fetches this service
    would make for anyone. Only certificates that verify under the anchor count; of one with
    twenty URIs two are fetched, all within the anchor's timeout; one the anchor did not sign
    (same issuer name, another key) is fetched from not at all."""
    root_key, key, stranger = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = _cert("R", root_key, "R", root_key, True, None)

    def with_points(subject: str, signer: ec.EllipticCurvePrivateKey, prefix: str) -> x509.Certificate:
        return (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name("R"))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(NOW - datetime.timedelta(days=1)).not_valid_after(NOW + datetime.timedelta(days=1))
                .add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
                    [x509.UniformResourceIdentifier(f"http://127.0.0.1:9/{prefix}{i}.crl")], None, None, None)
                    for i in range(20)]), critical=False)
                .sign(signer, hashes.SHA256()))

    signed, forged = with_points("signed", root_key, "s"), with_points("forged", stranger, "f")
    asked: list[tuple[str, float]] = []

    class Recording(CrlCache):
        def get(self, url: str, at: datetime.datetime, deadline: float) -> bytes | None:
            asked.append((url, deadline))
            return None

    anchor = ForeignAnchor("A", root, frozenset({"signing"}), frozenset(), timeout=3.0)
    assert anchor.signed_under([forged, signed, forged]) == [signed]
    before = time.monotonic()
    anchor.revocation_crls([forged, signed, signed, forged], NOW, Recording())
    assert [url for url, _ in asked] == ["http://127.0.0.1:9/s0.crl", "http://127.0.0.1:9/s1.crl"]
    assert all(before + 3.0 <= deadline <= time.monotonic() + 3.0 for _, deadline in asked)


def test_a_distribution_point_that_answers_a_byte_at_a_time_is_given_up_at_the_deadline() -> None:
    """urllib's timeout is per socket operation: a server sending one byte every 0.1 s would hold
    the fetch for hours. The whole body must arrive before the deadline."""
    class Dripping(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                for _ in range(100):
                    self.wfile.write(b"0")
                    self.wfile.flush()
                    time.sleep(0.1)
            except OSError:
                pass

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Dripping)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        started = time.monotonic()
        assert CrlCache().get(f"http://127.0.0.1:{server.server_port}/slow.crl", NOW, started + 1.0) is None
        assert time.monotonic() - started < 5.0  # one deadline of 1 s (and a read), not 10 s of drip
    finally:
        server.shutdown()
        server.server_close()
