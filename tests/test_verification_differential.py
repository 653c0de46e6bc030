"""The fast path for Tessera's own hierarchy (:class:`verification.certificates.CertificateValidator`,
cryptography's verifier plus our status sources) against the full RFC 5280 path validation
(:func:`verification.paths.validate_path`, pyhanko-certvalidator) on the cases the fast path
handles: the same verdict (valid or not) for a service certificate for each purpose, before,
during and after its validity, and for a certificate of no known CA. The full path gets the
deployment's root as anchor, its issuing CAs as intermediates, every CA's latest CRL as the
revocation source (every certificate of the path checked) and the purpose's policies under the
deployment's arc as an explicit initial policy set (RFC 5280 section 6.1.1)."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select

from ca.models import Crl
from ca.profiles import PROFILES
from idp.citizen_blueprints import services
from tests.test_protocol_fuzz import FuzzTarget, _self_signed, target  # noqa: F401 (the fixture)
from verification.certificates import PATH_KEY_USAGE, ARCS, PURPOSES, CertificateValidator
from verification.paths import PolicyInputs, validate_path

pytestmark = pytest.mark.integration
DER = serialization.Encoding.DER


def _full(validator: CertificateValidator, cert: x509.Certificate, purpose: str, at: datetime.datetime,
          crls: list[bytes]) -> bool:
    wanted = PURPOSES[purpose]
    oids = frozenset(f"{arc}.{n}" for arc in ARCS for n in wanted.policies)
    outcome = validate_path(cert.public_bytes(DER), [c.public_bytes(DER) for c in validator.anchors.intermediates],
                            [c.public_bytes(DER) for c in validator.anchors.roots], at, crls=crls,
                            policy=PolicyInputs(oids, initial_explicit_policy=True),
                            key_usage=frozenset(PATH_KEY_USAGE[b] for b in wanted.key_usage),
                            extended_key_usage=frozenset({wanted.eku.dotted_string}) if wanted.eku else None)
    return outcome.valid


def test_fast_path_and_full_path_agree(target: FuzzTarget) -> None:  # noqa: F811
    with target.client.application.app_context():
        validator = services().certificates
        engine = services().deployment.engine
    with engine.connect() as conn:
        latest = select(Crl.authority_id, func.max(Crl.number).label("n")).group_by(Crl.authority_id).subquery()
        crls = list(conn.scalars(select(Crl.der).join(latest, (Crl.authority_id == latest.c.authority_id)
                                                      & (Crl.number == latest.c.n))))
    service = target.service.certificate
    stranger = x509.load_der_x509_certificate(_self_signed([], ec.generate_private_key(ec.SECP256R1())))
    now = datetime.datetime.now(datetime.timezone.utc)
    moments = [now, service.not_valid_before_utc - datetime.timedelta(days=1),
               service.not_valid_after_utc + datetime.timedelta(days=1)]
    cases = [(cert, purpose, at) for cert in (service, stranger) for purpose in PURPOSES for at in moments]
    verdicts = []
    for cert, purpose, at in cases:
        fast = validator.validate(cert, purpose, [], at, "crl").valid
        full = _full(validator, cert, purpose, at, crls)
        verdicts.append((cert.subject.rfc4514_string(), purpose, at.date().isoformat(), fast, full))
    disagree = [v for v in verdicts if v[3] != v[4]]
    assert not disagree, disagree
    assert sum(v[3] for v in verdicts) == 2, verdicts  # the service certificate now, for service and signing
    assert PROFILES["service"].policy_number in PURPOSES["service"].policies
