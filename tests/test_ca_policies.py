"""Issue 15, items 4 and 6, in process: the policy arc setting, the policies CA certificates name,
and the one issuance path (every certificate through CertificateAuthority, each with its event)."""

from __future__ import annotations

import ast
import datetime
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from ca.authority import CertificateAuthority
from ca.errors import InvalidRequest
from ca.events import CaEvent
from ca.hierarchy import HierarchyPlan
from ca.keyring import Keyring
from ca.models import Authority, Certificate
from ca.profiles import ANY_POLICY, EXAMPLE_POLICY_ARC, PROFILES, check_policy_arc
from ca.subjects import SubjectRequest
from ca.urls import PublicUrls
from idp.settings import ConfigurationError, Settings
from store import schema
from store.engine import make_engine, make_session_factory

REPO = Path(__file__).resolve().parent.parent
ARC = "1.3.6.1.4.1.99999.1"
#: a subject each profile accepts
SUBJECTS = {"staff-auth": "CN=Pat", "staff-sign": "CN=Pat", "service": "CN=Svc,O=Tax Office",
            "citizen-auth": "CN=Cit,serialNumber=P-1", "citizen-sign": "CN=Cit,serialNumber=P-1",
            "ocsp": "CN=Responder", "tsa": "CN=Stamps"}


@pytest.fixture()
def make_ca(tmp_path: Path) -> Callable[..., CertificateAuthority]:
    """A CA on a fresh SQLite store with file keys; ``initialise=False`` opens the same store again."""
    engine = make_engine(f"sqlite:///{tmp_path / 'ca.db'}")
    schema.upgrade(engine)
    keyring = Keyring(None, lambda _path: b"correct horse battery staple")

    def make(arc: str = EXAMPLE_POLICY_ARC, events: list[CaEvent] | None = None,
             initialise: bool = True) -> CertificateAuthority:
        ca = CertificateAuthority(make_session_factory(engine), keyring, PublicUrls("https://pki.gov.example"),
                                  events=(lambda _s, e: events.append(e)) if events is not None else None,
                                  policy_arc=arc)
        if initialise:
            ca.initialise(HierarchyPlan(backend="file", key_dir=tmp_path / "keys"))
        return ca

    return make


def _policies(cert: x509.Certificate) -> list[str]:
    return [p.policy_identifier.dotted_string
            for p in cert.extensions.get_extension_for_class(x509.CertificatePolicies).value]


def _key() -> ec.EllipticCurvePublicKey:
    return ec.generate_private_key(ec.SECP256R1()).public_key()


@pytest.mark.parametrize("arc", ["1.2.156.1", "2.999.1863.1", "0.39.7", ARC])
def test_a_dotted_oid_is_a_policy_arc(arc: str) -> None:
    assert check_policy_arc(arc) == arc
    assert Settings.from_env("/tmp/tessera-unused", {"TESSERA_POLICY_ARC": arc}).policy_arc == arc


@pytest.mark.parametrize("arc", ["", "1", "1.2.", ".1.2", "1.02.3", "3.1", "1.40.1", "1.2.a", "1 .2", "1.2.-3",
                                 "1." + "2" * 100])
def test_anything_else_stops_with_a_configuration_error(arc: str) -> None:
    with pytest.raises(ValueError):
        check_policy_arc(arc)
    if arc.strip():  # an empty value is the default
        with pytest.raises(ConfigurationError, match="TESSERA_POLICY_ARC"):
            Settings.from_env("/tmp/tessera-unused", {"TESSERA_POLICY_ARC": arc})


def test_the_example_arc_is_the_default_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    default = Settings.from_env("/tmp/tessera-unused", {})
    assert default.policy_arc == EXAMPLE_POLICY_ARC
    with caplog.at_level(logging.WARNING, logger="tessera.ca"):
        assert default.warn_if_example_policy_arc()
    assert "example policy arc" in caplog.text and "TESSERA_POLICY_ARC" in caplog.text
    caplog.clear()
    assert not Settings.from_env("/tmp/tessera-unused", {"TESSERA_POLICY_ARC": ARC}).warn_if_example_policy_arc()
    assert caplog.text == ""


def test_ca_certificates_name_the_policies_of_their_certificates(make_ca: Callable[..., CertificateAuthority]) -> None:
    ca = make_ca(ARC)
    assert _policies(ca.authority_certificate("root")) == [ANY_POLICY.dotted_string]
    assert _policies(ca.authority_certificate("staff")) == [f"{ARC}.{n}" for n in (1, 2, 5, 6, 7)]
    assert _policies(ca.authority_certificate("citizen")) == [f"{ARC}.{n}" for n in (3, 4, 6)]
    for name, profile in PROFILES.items():
        for issuer in profile.issuers:
            with ca.sessions.begin() as session:
                row = ca.issue_for_key(session, name, _key(), SubjectRequest.parse(SUBJECTS[name]), "test",
                                       issuer=issuer)
            (policy,) = _policies(x509.load_der_x509_certificate(row.der))
            assert policy == f"{ARC}.{profile.policy_number}" and policy in _policies(ca.authority_certificate(issuer))


def test_a_changed_arc_is_refused_rather_than_issued(make_ca: Callable[..., CertificateAuthority]) -> None:
    make_ca(ARC)
    changed = make_ca("1.3.6.1.4.1.99999.2", initialise=False)
    with pytest.raises(InvalidRequest, match="not certified for policy 1.3.6.1.4.1.99999.2.3"):
        changed.sign("citizen-auth", _key(), SubjectRequest.parse(SUBJECTS["citizen-auth"]))


def test_an_expired_issuing_ca_signs_nothing(make_ca: Callable[..., CertificateAuthority]) -> None:
    ca = make_ca()
    ends = ca.authority_certificate("citizen").not_valid_after_utc
    ca.clock = lambda: ends + datetime.timedelta(days=1)
    with pytest.raises(InvalidRequest, match="the issuing CA citizen has expired"):
        ca.sign("citizen-auth", _key(), SubjectRequest.parse(SUBJECTS["citizen-auth"]))


def test_every_certificate_made_and_revoked_is_an_event(make_ca: Callable[..., CertificateAuthority]) -> None:
    events: list[CaEvent] = []
    ca = make_ca(events=events)
    with ca.sessions.begin() as session:
        ca.issue_for_key(session, "service", _key(), SubjectRequest.parse(SUBJECTS["service"]), "tessera init")
    signed = [ca.sign(label, _key(), SubjectRequest.parse(SUBJECTS[label]))
              for label in ("citizen-auth", "citizen-sign")]
    with ca.sessions.begin() as session:
        card = [ca.register(session, s, "card:9000", actor="cli:operator") for s in signed]
    with ca.sessions.begin() as session:
        ca.revoke_in(session, [session.merge(c) for c in card], x509.ReasonFlags.key_compromise, "cli:operator")
        serials = set(session.scalars(select(Certificate.serial_hex)))
        serials |= set(session.scalars(select(Authority.serial_hex)))
    issued = {e.object.removeprefix("cert:"): e for e in events if e.type == "cert.issue"}
    assert serials == set(issued)
    assert {issued[c.serial_hex].actor for c in card} == {"cli:operator"}
    assert {issued[c.serial_hex].details["requester"] for c in card} == {"card:9000"}
    revoked = {e.object.removeprefix("cert:"): e for e in events if e.type == "cert.revoke"}
    assert set(revoked) == {c.serial_hex for c in card}
    assert {e.details["reason"] for e in revoked.values()} == {"keyCompromise"}


def test_only_the_ca_reaches_the_issuance_internals() -> None:
    """ca.issuance's underscore names are for ca/authority.py and ca/hierarchy.py; everything else
    issues through CertificateAuthority (and may only parse CSRs and look certificates up here)."""
    public = {"load_csr", "find_certificate", "MAX_CSR_BYTES"}
    offenders = []
    tops = [top for top in REPO.iterdir() if top.is_dir() and not top.name.startswith(".") and top.name != "var"]
    for path in [p for top in tops for p in top.rglob("*.py")]:
        relative, text = path.relative_to(REPO).as_posix(), path.read_text(encoding="utf-8")
        if "issuance" not in text:
            continue
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom) and node.module == "ca.issuance":
                names = {alias.name for alias in node.names}
                allowed = names if relative in ("ca/authority.py", "ca/hierarchy.py") else public
                if names - allowed:
                    offenders.append(f"{relative}: {sorted(names - allowed)}")
            elif (isinstance(node, ast.Import) and any(a.name == "ca.issuance" for a in node.names)) or (
                    isinstance(node, ast.ImportFrom) and node.module == "ca"
                    and any(a.name == "issuance" for a in node.names)):
                offenders.append(f"{relative}: the whole module")
    assert offenders == []
