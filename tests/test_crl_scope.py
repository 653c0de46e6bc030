"""The card reader's CRL checks (verification.crl_status) against RFC 5280 section 6.3, judged by
OpenSSL (`openssl verify -crl_check_all`) and by pyhanko-certvalidator (verification.paths) on
the same certificates and CRLs: the status of every certificate of the path (a revoked CA too),
the CRL issuer's cRLSign, the issuingDistributionPoint's scope (distribution point names,
onlyContainsUserCerts, onlyContainsCACerts, onlySomeReasons, indirectCRL), delta CRLs, unknown
critical extensions and stale CRLs; SM2-with-SM3 CRLs through GmSSL; mutated CRL DER is a
status, never an exception."""

from __future__ import annotations

import datetime
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_protocol_fuzz import mutated
from tests.test_sm_suite import SUBJECTS, Sm2Home, sm2_csr, sm2_home
from verification.crl_status import CrlStatus, load_crl
from verification.paths import validate_path

NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
CDP_URL = "http://crl.example/citizen.crl"
KEYS = {name: ec.generate_private_key(ec.SECP256R1()) for name in ("root", "ca", "leaf", "other")}


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"), x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _usage(ca: bool, crl_sign: bool = True) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=not ca, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca and crl_sign,
                         encipher_only=False, decipher_only=False)


def certificate(cn: str, key: str, issuer: tuple[str, str] | None, ca: bool, crl_sign: bool = True,
                cdp: bool = True) -> x509.Certificate:
    """A certificate of ``cn`` with ``KEYS[key]``, issued by (issuer cn, issuer key) or self-signed."""
    issuer_cn, issuer_key = issuer or (cn, key)
    builder = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(issuer_cn))
               .public_key(KEYS[key].public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(NOW - datetime.timedelta(days=1)).not_valid_after(NOW + datetime.timedelta(days=365))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(_usage(ca, crl_sign), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(KEYS[key].public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(KEYS[issuer_key].public_key()),
                              critical=False))
    if issuer is not None and cdp:
        url = CDP_URL if not ca else "http://crl.example/root.crl"
        builder = builder.add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
            [x509.UniformResourceIdentifier(url)], None, None, None)]), critical=False)
    if not ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return builder.sign(KEYS[issuer_key], hashes.SHA256())


ROOT = certificate("Root", "root", None, True)
CA = certificate("Citizen CA", "ca", ("Root", "root"), True)
LEAF = certificate("Li Na", "leaf", ("Citizen CA", "ca"), False)


def crl(issuer: x509.Certificate, key: str, revoked: Sequence[tuple[x509.Certificate, x509.ReasonFlags | None]] = (),
        extensions: Sequence[tuple[x509.ExtensionType, bool]] = (), next_update: datetime.timedelta | None = None,
        number: int = 1) -> bytes:
    builder = (x509.CertificateRevocationListBuilder().issuer_name(issuer.subject)
               .last_update(NOW - datetime.timedelta(hours=2))
               .next_update(NOW + (next_update if next_update is not None else datetime.timedelta(days=1)))
               .add_extension(x509.CRLNumber(number), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(KEYS[key].public_key()),
                              critical=False))
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    for cert, reason in revoked:
        entry = (x509.RevokedCertificateBuilder().serial_number(cert.serial_number)
                 .revocation_date(NOW - datetime.timedelta(hours=3)))
        if reason is not None:
            entry = entry.add_extension(x509.CRLReason(reason), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    return builder.sign(KEYS[key], hashes.SHA256()).public_bytes(Encoding.DER)


def idp(names: Sequence[str] | None = None, user: bool = False, ca: bool = False,
        reasons: frozenset[x509.ReasonFlags] | None = None, indirect: bool = False) -> tuple[x509.ExtensionType, bool]:
    full = [x509.UniformResourceIdentifier(n) for n in names] if names else None
    return x509.IssuingDistributionPoint(full, None, user, ca, reasons, indirect, False), True


ROOT_CRL = crl(ROOT, "root")


@dataclass(frozen=True)
class Case:
    """A path's CRLs and the verdict the reader must give (good, revoked, status-unknown, status-stale)."""

    name: str
    crls: tuple[bytes, ...]
    expected: str
    #: whether OpenSSL is asked, and with which further options (-extended_crl: CRLs partitioned by reasons)
    openssl: tuple[str, ...] | None = ()
    #: pyhanko-certvalidator's verdict where it differs on purpose (the reader fails closed)
    full_path: str | None = None
    ca: x509.Certificate = CA
    leaf: x509.Certificate = LEAF


NO_CRL_SIGN_CA = certificate("Citizen CA", "ca", ("Root", "root"), True, crl_sign=False)
LEAF_NO_CDP = certificate("Wang Fang", "leaf", ("Citizen CA", "ca"), False, cdp=False)
CASES = [
    Case("good", (ROOT_CRL, crl(CA, "ca")), "good"),
    Case("leaf revoked", (ROOT_CRL, crl(CA, "ca", [(LEAF, x509.ReasonFlags.key_compromise)])), "revoked"),
    Case("leaf revoked without a reason", (ROOT_CRL, crl(CA, "ca", [(LEAF, None)])), "revoked"),
    Case("intermediate CA revoked", (crl(ROOT, "root", [(CA, x509.ReasonFlags.ca_compromise)]), crl(CA, "ca")),
         "revoked"),
    Case("no CRL for the intermediate CA", (crl(CA, "ca"),), "status-unknown"),
    Case("no CRL for the leaf", (ROOT_CRL,), "status-unknown"),
    Case("CRL issuer without cRLSign", (ROOT_CRL, crl(NO_CRL_SIGN_CA, "ca")), "status-unknown", ca=NO_CRL_SIGN_CA),
    Case("CRL signed by another key", (ROOT_CRL, crl(CA, "other")), "status-unknown"),
    Case("IDP onlyContainsCACerts does not cover a leaf", (ROOT_CRL, crl(CA, "ca", extensions=[idp(ca=True)])),
         "status-unknown"),
    Case("IDP onlyContainsUserCerts covers a leaf", (ROOT_CRL, crl(CA, "ca", extensions=[idp(user=True)])), "good"),
    Case("IDP onlyContainsUserCerts does not cover a CA", (crl(ROOT, "root", extensions=[idp(user=True)]),
                                                          crl(CA, "ca")), "status-unknown"),
    Case("IDP onlyContainsCACerts covers a CA", (crl(ROOT, "root", extensions=[idp(ca=True)]), crl(CA, "ca")),
         "good"),
    Case("IDP onlySomeReasons covers some reasons only",
         (ROOT_CRL, crl(CA, "ca", extensions=[idp(reasons=frozenset({x509.ReasonFlags.key_compromise}))])),
         "status-unknown"),
    Case("two onlySomeReasons CRLs covering every reason",
         (ROOT_CRL, crl(CA, "ca", extensions=[idp(reasons=frozenset({x509.ReasonFlags.key_compromise}))]),
          crl(CA, "ca", number=2, extensions=[idp(reasons=frozenset(
              set(x509.ReasonFlags) - {x509.ReasonFlags.unspecified, x509.ReasonFlags.remove_from_crl,
                                       x509.ReasonFlags.key_compromise}))])), "good", openssl=("-extended_crl",)),
    Case("IDP naming the leaf's distribution point", (ROOT_CRL, crl(CA, "ca", extensions=[idp([CDP_URL])])), "good"),
    Case("IDP naming another distribution point",
         (ROOT_CRL, crl(CA, "ca", extensions=[idp(["http://crl.example/other.crl"])])), "status-unknown"),
    Case("IDP with a point name, leaf without a CDP", (ROOT_CRL, crl(CA, "ca", extensions=[idp([CDP_URL])])),
         "status-unknown", leaf=LEAF_NO_CDP),
    Case("leaf without a CDP, CRL without IDP", (ROOT_CRL, crl(CA, "ca")), "good", leaf=LEAF_NO_CDP),
    # pyhanko-certvalidator processes indirect CRLs (here the CA's own): the reader refuses them
    Case("indirect CRL", (ROOT_CRL, crl(CA, "ca", extensions=[idp(indirect=True)])), "status-unknown",
         full_path="good"),
    # OpenSSL sets deltas aside only with -extended_crl (without it, it takes a delta for a complete CRL)
    Case("delta CRL alone", (ROOT_CRL, crl(CA, "ca", number=2, extensions=[(x509.DeltaCRLIndicator(1), True)])),
         "status-unknown", openssl=("-extended_crl",)),
    Case("a delta CRL beside the complete one is set aside",
         (ROOT_CRL, crl(CA, "ca"), crl(CA, "ca", number=2, extensions=[(x509.DeltaCRLIndicator(1), True)])), "good",
         openssl=("-extended_crl",)),
    Case("unknown critical CRL extension",
         (ROOT_CRL, crl(CA, "ca", extensions=[(x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"),
                                                                          b"\x05\x00"), True)])), "status-unknown"),
    Case("stale CRL", (ROOT_CRL, crl(CA, "ca", next_update=-datetime.timedelta(hours=1))), "status-stale"),
    Case("removeFromCRL is not a revocation",
         (ROOT_CRL, crl(CA, "ca", [(LEAF, x509.ReasonFlags.remove_from_crl)])), "good"),
]


def reader_verdict(case: Case, at: datetime.datetime = NOW) -> str:
    status = CrlStatus(list(case.crls), [ROOT, case.ca])
    check = status.path_status([case.leaf, case.ca, ROOT], at)
    assert check.ok == (check.reason == "good")
    return check.reason


def pem(der: bytes, label: str) -> str:
    import base64

    body = base64.encodebytes(der).decode().replace("\n", "")
    return f"-----BEGIN {label}-----\n" + "\n".join(body[i:i + 64] for i in range(0, len(body), 64)) + \
        f"\n-----END {label}-----\n"


def openssl_accepts(case: Case, folder: Path, options: tuple[str, ...]) -> tuple[bool, str]:
    (folder / "root.pem").write_text(pem(ROOT.public_bytes(Encoding.DER), "CERTIFICATE"))
    (folder / "ca.pem").write_text(pem(case.ca.public_bytes(Encoding.DER), "CERTIFICATE"))
    (folder / "leaf.pem").write_text(pem(case.leaf.public_bytes(Encoding.DER), "CERTIFICATE"))
    (folder / "crls.pem").write_text("".join(pem(der, "X509 CRL") for der in case.crls))
    out = subprocess.run(["openssl", "verify", "-crl_check_all", *options, "-attime", str(int(NOW.timestamp())),
                          "-CAfile", "root.pem", "-untrusted", "ca.pem", "-CRLfile", "crls.pem", "leaf.pem"],
                         cwd=folder, capture_output=True, text=True, timeout=60)
    return out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_reader_crl_verdict_and_openssl_agree(case: Case, tmp_path: Path) -> None:
    assert reader_verdict(case) == case.expected
    if case.openssl is not None:
        accepted, said = openssl_accepts(case, tmp_path, case.openssl)
        assert accepted == (case.expected == "good"), said
        if case.expected == "revoked":
            assert "revoked" in said


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_reader_crl_verdict_and_pyhanko_certvalidator_agree(case: Case) -> None:
    """verification.paths (the full path) on the same path and CRLs gives the same verdict:
    valid where the reader says good, revoked where it says revoked, invalid otherwise (save
    where ``full_path`` says it differs on purpose)."""
    outcome = validate_path(case.leaf.public_bytes(Encoding.DER), [case.ca.public_bytes(Encoding.DER)],
                            [ROOT.public_bytes(Encoding.DER)], NOW, crls=case.crls)
    codes = {r.code for r in outcome.reasons}
    expected = case.full_path or case.expected
    if expected == "good":
        assert outcome.valid, outcome.reasons
    elif expected == "revoked":
        assert "revoked" in codes, outcome.reasons
    else:
        assert not outcome.valid and "revoked" not in codes, outcome.reasons


def test_a_revoked_ca_names_the_ca() -> None:
    status = CrlStatus([crl(ROOT, "root", [(CA, x509.ReasonFlags.ca_compromise)]), crl(CA, "ca")], [ROOT, CA])
    check = status.path_status([LEAF, CA, ROOT], NOW, "certificate:citizen-auth")
    assert (check.name, check.reason) == ("certificate:citizen-auth", "revoked")
    assert "Citizen CA" in check.detail and "cACompromise" in check.detail


def test_a_ca_answer_is_kept_until_its_crl_is_replaced() -> None:
    """A long-running reader asks about its CAs once per generation of CRLs: a CA revoked in the
    next CRLs read is seen at once."""
    crls: list[bytes] = [ROOT_CRL, crl(CA, "ca")]
    status = CrlStatus(crls, [ROOT, CA], source=lambda: crls, max_age=0)
    assert status.path_status([LEAF, CA, ROOT], NOW).ok
    crls[0] = crl(ROOT, "root", [(CA, x509.ReasonFlags.ca_compromise)], number=2)
    assert status.path_status([LEAF, CA, ROOT], NOW).reason == "revoked"


@settings(max_examples=300, deadline=None, database=None)
@given(mutated(crl(CA, "ca", [(LEAF, x509.ReasonFlags.key_compromise)], extensions=[idp([CDP_URL])])))
def test_mutated_crl_der_is_a_status_never_an_exception(der: bytes) -> None:
    """Bytes flipped, inserted, deleted or cut anywhere in a CRL's DER, through the reader's CRL
    loader: a status, never an exception, and never good (the only CRL of the CA lists the leaf)."""
    check = CrlStatus([ROOT_CRL, der], [ROOT, CA]).path_status([LEAF, CA, ROOT], NOW)
    assert check.reason in ("revoked", "status-unknown", "status-stale"), check


# --- SM2-with-SM3 CRLs (issue 18), beside the ECDSA hierarchy ------------------------------------
@pytest.fixture(scope="module", params=[b"1234567812345678", b""], ids=["standard-identity", "empty-identity"])
def mixed_home(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sm2Home]:
    """An ECDSA hierarchy with the SM2 one beside it, signing with either signer identity."""
    home, engine = sm2_home(tmp_path_factory.mktemp("crl-sm2"), request.param, with_ecdsa=True)
    yield home
    engine.dispose()


def _home_status(home: Sm2Home) -> tuple[CrlStatus, dict[str, x509.Certificate]]:
    names = [a.name for a in home.ca.authorities()]
    certs = {name: home.ca.authority_certificate(name) for name in names}
    return CrlStatus([home.ca.current_crl(name).der for name in names], list(certs.values())), certs


def test_sm2_crls_are_verified_through_gmssl_beside_ecdsa_ones(mixed_home: Sm2Home, tmp_path: Path) -> None:
    """The CRLs of both hierarchies load together (no public_key() on an SM2 certificate); SM2 CRL
    signatures are checked with ca.sm2 under the identity the CA signs with; an SM2 certificate
    and its CA are good, then revoked; the ECDSA hierarchy's statuses are unaffected."""
    status, certs = _home_status(mixed_home)
    assert status.path_status([certs["citizen"], certs["root"]], NOW).reason == "good"
    assert status.path_status([certs["sm2-citizen"], certs["sm2-root"]], NOW).reason == "good"
    row = mixed_home.ca.issue("staff-auth", sm2_csr(tmp_path, "jane", SUBJECTS["staff-auth"]), "test")
    jane = x509.load_der_x509_certificate(row.der)
    path = [jane, certs["sm2-staff"], certs["sm2-root"]]
    status, _ = _home_status(mixed_home)
    good = status.path_status(path, NOW)
    assert good.reason == "good", good
    mixed_home.ca.revoke(row.serial_hex, "keyCompromise", actor="test")
    status, _ = _home_status(mixed_home)
    revoked = status.path_status(path, NOW)
    assert revoked.reason == "revoked" and "keyCompromise" in revoked.detail
    # a tampered SM2 CRL is no status
    der = bytearray(mixed_home.ca.current_crl("sm2-staff").der)
    der[40] ^= 1
    tampered = CrlStatus([mixed_home.ca.current_crl("sm2-root").der, bytes(der)], list(certs.values()))
    assert tampered.path_status(path, NOW).reason == "status-unknown"


def test_an_ecdsa_crl_claiming_an_sm2_issuer_is_refused(mixed_home: Sm2Home) -> None:
    """A CRL signed ECDSA in the name of an SM2 CA is never checked with the SM2 certificate's key
    through cryptography (which cannot load it): it is refused, not an exception."""
    _, certs = _home_status(mixed_home)
    sm2_ca = certs["sm2-citizen"]
    forged = (x509.CertificateRevocationListBuilder().issuer_name(sm2_ca.subject)
              .last_update(NOW - datetime.timedelta(hours=1)).next_update(NOW + datetime.timedelta(days=1))
              .sign(KEYS["other"], hashes.SHA256()).public_bytes(Encoding.DER))
    card = (x509.CertificateBuilder().subject_name(_name("Li Na")).issuer_name(sm2_ca.subject)
            .public_key(KEYS["leaf"].public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(days=1)).not_valid_after(NOW + datetime.timedelta(days=30))
            .sign(KEYS["other"], hashes.SHA256()))
    status = CrlStatus([mixed_home.ca.current_crl("sm2-root").der, forged], list(certs.values()))
    check = status.path_status([card, sm2_ca, certs["sm2-root"]], NOW)
    assert check.reason == "status-unknown" and "does not verify" in check.detail, check


# --- the reader's fast path against the full path --------------------------------------------------
def _leaf(cn: str, key: str = "ca", days: tuple[int, int] = (-1, 300)) -> x509.Certificate:
    return (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(CA.subject)
            .public_key(KEYS["leaf"].public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW + datetime.timedelta(days=days[0])).not_valid_after(NOW + datetime.timedelta(days=days[1]))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_usage(False), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(KEYS["ca"].public_key()), critical=False)
            .sign(KEYS[key], hashes.SHA256()))


CHAIN_CASES = {
    "valid": (_leaf("valid"), NOW),
    "forged signature": (_leaf("forged", key="other"), NOW),
    "expired": (_leaf("expired", days=(-10, -5)), NOW),
    "not yet valid": (_leaf("not yet", days=(5, 10)), NOW),
    "outlives its CA": (_leaf("outlives", days=(-1, 900)), NOW + datetime.timedelta(days=400)),
    "issued by an unknown CA": (certificate("Stranger", "leaf", ("Other CA", "other"), False), NOW),
}


@pytest.mark.parametrize("name", CHAIN_CASES)
def test_the_reader_fast_path_and_the_full_path_agree(name: str) -> None:
    """verification.chain (cryptography's verifier, the CA part kept between cards) with
    verification.crl_status gives the verdict verification.paths (pyhanko-certvalidator) gives,
    with CRLs valid at the time asked, on every case the reader meets: valid, a forged signature,
    expired, not yet valid, a leaf outliving its CA, an unknown CA."""
    from verification.chain import ChainValidator

    leaf, at = CHAIN_CASES[name]
    crls = [crl(ROOT, "root", next_update=at - NOW + datetime.timedelta(days=1)),
            crl(CA, "ca", next_update=at - NOW + datetime.timedelta(days=1))]
    kept = ChainValidator([ROOT])
    assert kept.validate_path(_leaf("warm-up"), [CA], NOW)[0].ok  # the CA part is kept from now on
    check, path = kept.validate_path(leaf, [CA], at)
    reader_ok = check.ok and path is not None and CrlStatus(crls, [ROOT, CA]).path_status(path, at).ok
    full = validate_path(leaf.public_bytes(Encoding.DER), [CA.public_bytes(Encoding.DER)],
                         [ROOT.public_bytes(Encoding.DER)], at, crls=crls)
    assert reader_ok == full.valid == (name == "valid"), (check, full.reasons)


def test_online_status_checks_the_cas_against_their_crls() -> None:
    """Online (OCSP for the end entity), a revoked CA is found in its issuer's CRL before any
    responder is asked; with every CA good, the end entity is asked about."""
    from verification.ocsp_status import OcspStatus

    asked: list[str] = []

    def fetch(url: str, body: bytes) -> bytes:
        asked.append(url)
        raise OSError("no responder here")

    revoked_ca = OcspStatus(fetch=fetch, authorities=CrlStatus(
        [crl(ROOT, "root", [(CA, x509.ReasonFlags.ca_compromise)]), crl(CA, "ca")], [ROOT, CA]))
    check = revoked_ca.path_status([LEAF, CA, ROOT], NOW)
    assert check.reason == "revoked" and "Citizen CA" in check.detail and asked == []
    good_cas = OcspStatus(fetch=fetch, authorities=CrlStatus([ROOT_CRL, crl(CA, "ca")], [ROOT, CA]))
    assert good_cas.path_status([LEAF, CA, ROOT], NOW).reason == "status-unknown"  # LEAF names no responder


@settings(max_examples=150, deadline=None, database=None)
@given(data=st.data())
def test_mutated_sm2_crl_der_is_a_status_never_an_exception(mixed_home: Sm2Home, data: st.DataObject) -> None:
    """The same for an SM2-with-SM3 CRL, whose signature GmSSL checks: a status, never an exception."""
    _, certs = _home_status(mixed_home)
    original = mixed_home.ca.current_crl("sm2-root").der
    der = data.draw(mutated(original))
    check = CrlStatus([der], list(certs.values())).path_status([certs["sm2-citizen"], certs["sm2-root"]], NOW)
    assert check.reason in ("revoked", "status-unknown", "status-stale") or der == original, check


@pytest.mark.unit
def test_a_signature_with_unused_bits_is_no_crl() -> None:
    """The one mutation of a CRL that kept its signature valid (a Hypothesis run found it on an SM2
    CRL): the signature BIT STRING's unused-bits octet set to 1, the signature bytes unchanged."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Unused bits CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    signature = b"\x01"
    while signature[-1] & 1:  # a last bit of 0 may be a padding bit (X.690 section 11.2.1): ECDSA is random
        der = (x509.CertificateRevocationListBuilder().issuer_name(name).last_update(now)
               .next_update(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()).public_bytes(Encoding.DER))
        signature = x509.load_der_x509_crl(der).signature
    assert not isinstance(load_crl(der), str)
    at = len(der) - len(signature) - 1
    mutated = der[:at] + b"\x01" + der[at + 1:]
    assert x509.load_der_x509_crl(mutated).is_signature_valid(key.public_key())  # what cryptography lets by
    assert load_crl(mutated) == "the CRL cannot be parsed: its signature has unused bits"
