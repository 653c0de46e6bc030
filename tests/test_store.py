"""The certificate store on SQLite and on a private PostgreSQL cluster: issuance, uniqueness,
revocation, CRLs and OCSP status, each operation all-or-nothing. Keys here are encrypted
PKCS#8 files (the second key backend); the PKCS#11 backend runs in the server tests."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID
from sqlalchemy import MetaData, func, select, text

from ca.authority import CertificateAuthority, utc_now
from store.engine import make_engine, make_session_factory
from ca.errors import InvalidCsr, InvalidStateTransition, KeyPolicyViolation, SubjectPolicyViolation, UnknownProfile
from ca.hierarchy import HierarchyPlan
from ca.keyring import Keyring
from ca.keys import KeyType
from ca.models import Certificate, Crl, OcspResponse
from ca.profiles import PROFILES
from ca.ocsp import OcspResponder
from ca.urls import PublicUrls
from store import schema
from store.base import Base


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = utc_now()

    def __call__(self) -> datetime.datetime:
        return self.now


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[CertificateAuthority, OcspResponder, Clock]]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    if request.param == "postgres":
        with engine.begin() as conn:  # a clean schema per test
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    schema.upgrade(engine)
    clock = Clock()
    keyring = Keyring(None, lambda _path: b"correct horse battery staple")
    ca = CertificateAuthority(make_session_factory(engine), keyring, PublicUrls("https://pki.gov.example"), clock)
    ca.initialise(HierarchyPlan(backend="file", key_dir=tmp_path / "keys"))
    yield ca, OcspResponder(engine, keyring, clock), clock
    engine.dispose()


def csr_for(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, cn: str = "Jane Doe", extensions: list[x509.ExtensionType] | None = None) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Ministry of Finance"),
        x509.NameAttribute(NameOID.COUNTRY_NAME, "EE"),
    ]))
    for ext in extensions or []:
        builder = builder.add_extension(ext, critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def count(ca: CertificateAuthority) -> int:
    with ca.sessions() as s:
        return s.scalar(select(func.count()).select_from(Certificate)) or 0


def ocsp_status(ca: CertificateAuthority, responder: OcspResponder, row: Certificate, nonce: bool = False) -> ocsp.OCSPResponse:
    cert = x509.load_der_x509_certificate(row.der)
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, ca.authority_certificate("staff"), hashes.SHA1())
    if nonce:
        builder = builder.add_extension(x509.OCSPNonce(b"0123456789abcdef"), critical=False)
    reply = responder.respond(builder.build().public_bytes(serialization.Encoding.DER))
    return ocsp.load_der_ocsp_response(reply.der)


def every_table() -> MetaData:
    """The whole schema: every package's tables, all on :class:`store.base.Base`."""
    import audit.models  # noqa: F401
    import cardsim.models  # noqa: F401
    import idp.citizen_models  # noqa: F401
    import idp.governance_models  # noqa: F401
    import idp.models  # noqa: F401
    import idp.runtime_settings  # noqa: F401

    return Base.metadata


def test_migrations_match_the_models(store: tuple[CertificateAuthority, OcspResponder, Clock]) -> None:
    ca, _, _ = store
    with ca.sessions() as session:
        diff = compare_metadata(MigrationContext.configure(session.connection()), every_table())
    assert diff == []


def test_issue_store_and_chain(store: tuple[CertificateAuthority, OcspResponder, Clock]) -> None:
    ca, _, clock = store
    row = ca.issue("staff-auth", csr_for(ec.generate_private_key(ec.SECP256R1())), "officer:alice",
                   alt_names=["email:jane@fin.gov.example"])
    cert = x509.load_der_x509_certificate(row.der)
    cert.verify_directly_issued_by(ca.authority_certificate("staff"))
    ca.authority_certificate("staff").verify_directly_issued_by(ca.authority_certificate("root"))
    assert row.status == "valid" and row.requester == "officer:alice" and row.profile == "staff-auth"
    assert row.issued_at == clock.now
    assert cert.serial_number.bit_length() >= 64
    aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    assert {d.access_location.value for d in aia} == {"https://pki.gov.example/ocsp/staff", "https://pki.gov.example/ca/staff.crt"}
    assert ca.get(row.serial_hex.upper()).id == row.id


def test_serials_are_unique_and_random(store: tuple[CertificateAuthority, OcspResponder, Clock]) -> None:
    ca, _, _ = store
    key = ec.generate_private_key(ec.SECP256R1())
    serials = {ca.issue("staff-auth", csr_for(key, f"User {i}"), "t").serial_hex for i in range(20)}
    assert len(serials) == 20
    with ca.sessions() as s:
        s.add(Certificate(**{c.key: getattr(s.scalars(select(Certificate)).first(), c.key)
                             for c in Certificate.__table__.columns if c.key != "id"}))
        with pytest.raises(Exception, match="(?i)unique|duplicate"):
            s.flush()


@pytest.mark.parametrize("bad, error", [
    (b"not a csr at all", InvalidCsr),
    (b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", InvalidCsr),
])
def test_garbage_csr_refused_and_nothing_stored(store: tuple[CertificateAuthority, OcspResponder, Clock], bad: bytes, error: type[Exception]) -> None:
    ca, _, _ = store
    before = count(ca)
    with pytest.raises(error):
        ca.issue("staff-auth", bad, "t")
    assert count(ca) == before


def test_policy_refusals_store_nothing(store: tuple[CertificateAuthority, OcspResponder, Clock]) -> None:
    ca, _, _ = store
    before = count(ca)
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(KeyPolicyViolation, match="RSA-1024"):
        ca.issue("staff-auth", csr_for(weak), "t")
    with pytest.raises(UnknownProfile):
        ca.issue("root-ca", csr_for(ec.generate_private_key(ec.SECP256R1())), "t")
    with pytest.raises(SubjectPolicyViolation, match="serialNumber"):
        ca.issue("citizen-auth", csr_for(ec.generate_private_key(ec.SECP256R1())), "t", subject="CN=Jaan Tamm,C=EE")
    with pytest.raises(SubjectPolicyViolation, match="dns"):
        ca.issue("staff-auth", csr_for(ec.generate_private_key(ec.SECP256R1())), "t", alt_names=["dns:evil.example.com"])
    assert count(ca) == before


def test_csr_cannot_widen_the_profile(store: tuple[CertificateAuthority, OcspResponder, Clock]) -> None:
    ca, _, _ = store
    wide = csr_for(ec.generate_private_key(ec.SECP256R1()), extensions=[
        x509.BasicConstraints(ca=True, path_length=None),
        x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH, x509.oid.ExtendedKeyUsageOID.CODE_SIGNING]),
    ])
    cert = x509.load_der_x509_certificate(ca.issue("staff-auth", wide, "t").der)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]


def test_revocation_is_visible_to_ocsp_and_next_crl(store: tuple[CertificateAuthority, OcspResponder, Clock]) -> None:
    ca, responder, clock = store
    row = ca.issue("staff-auth", csr_for(ec.generate_private_key(ec.SECP256R1())), "t")
    assert ocsp_status(ca, responder, row).certificate_status == ocsp.OCSPCertStatus.GOOD
    with ca.sessions() as s:  # the nonce-less answer was pre-produced and kept
        assert s.scalar(select(func.count()).select_from(OcspResponse).where(OcspResponse.certificate_id == row.id)) == 1
    crl_before = ca.current_crl("staff")

    clock.now += datetime.timedelta(seconds=5)
    ca.revoke(row.serial_hex, "keyCompromise")
    answer = ocsp_status(ca, responder, row)
    assert answer.certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert answer.revocation_reason == x509.ReasonFlags.key_compromise
    crl_after = ca.current_crl("staff")
    assert crl_after.number == crl_before.number + 1
    parsed = x509.load_der_x509_crl(crl_after.der)
    assert parsed.is_signature_valid(ca.authority_certificate("staff").public_key())  # type: ignore[arg-type]
    assert parsed.get_revoked_certificate_by_serial_number(int(row.serial_hex, 16)) is not None
    with pytest.raises(InvalidStateTransition):
        ca.revoke(row.serial_hex, "superseded")


def test_hold_release_and_nonce(store: tuple[CertificateAuthority, OcspResponder, Clock]) -> None:
    ca, responder, _ = store
    row = ca.issue("staff-auth", csr_for(ec.generate_private_key(ec.SECP256R1())), "t")
    ca.revoke(row.serial_hex, "certificate-hold")
    held = ocsp_status(ca, responder, row, nonce=True)
    assert held.revocation_reason == x509.ReasonFlags.certificate_hold
    assert held.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == b"0123456789abcdef"
    ca.release_hold(row.serial_hex)
    assert ocsp_status(ca, responder, row).certificate_status == ocsp.OCSPCertStatus.GOOD
    crl = x509.load_der_x509_crl(ca.current_crl("staff").der)
    assert crl.get_revoked_certificate_by_serial_number(int(row.serial_hex, 16)) is None


def test_crl_is_resigned_before_next_update(store: tuple[CertificateAuthority, OcspResponder, Clock]) -> None:
    ca, _, clock = store
    first = ca.current_crl("citizen")
    assert ca.current_crl("citizen").number == first.number  # fresh: served as is
    clock.now = first.next_update - datetime.timedelta(hours=1)
    second = ca.current_crl("citizen")
    assert second.number == first.number + 1 and second.next_update > first.next_update
    with ca.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Crl)) >= 4


def test_rsa_and_p384_keys_accepted_where_allowed(store: tuple[CertificateAuthority, OcspResponder, Clock]) -> None:
    ca, _, _ = store
    for key in (rsa.generate_private_key(public_exponent=65537, key_size=2048), ec.generate_private_key(ec.SECP384R1())):
        cert = x509.load_der_x509_certificate(ca.issue("service", csr_for(key), "t").der)
        assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    assert KeyType.RSA_4096 not in PROFILES["citizen-auth"].key_types
    with pytest.raises(KeyPolicyViolation, match="rsa-4096"):
        ca.issue("citizen-auth", csr_for(rsa.generate_private_key(public_exponent=65537, key_size=4096)), "t",
                 subject="CN=Jaan Tamm,serialNumber=PNOEE-38001085718,C=EE")


def test_pre_produced_answer_is_reused_and_never_outlives_a_revocation_elsewhere(
        store: tuple[CertificateAuthority, OcspResponder, Clock]) -> None:
    ca, responder, clock = store
    row = ca.issue("staff-auth", csr_for(ec.generate_private_key(ec.SECP256R1())), "t")
    cert = x509.load_der_x509_certificate(row.der)
    request = ocsp.OCSPRequestBuilder().add_certificate(cert, ca.authority_certificate("staff"), hashes.SHA1()).build()
    first = responder.respond(request.public_bytes(serialization.Encoding.DER))
    clock.now += datetime.timedelta(seconds=30)
    second = responder.respond(request.public_bytes(serialization.Encoding.DER))
    assert first.cert_status == "good" and second.der == first.der  # ECDSA is randomised: same bytes = stored answer
    # another process (its own engine and connections) revokes: the next answer must say so
    other_engine = make_engine(ca.sessions.kw["bind"].url.render_as_string(hide_password=False))
    try:
        other = CertificateAuthority(make_session_factory(other_engine), ca.keyring, ca.urls, clock)
        other.revoke(row.serial_hex, "keyCompromise")
    finally:
        other_engine.dispose()
    third = ocsp_status(ca, responder, row)
    assert third.certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert third.revocation_reason == x509.ReasonFlags.key_compromise
