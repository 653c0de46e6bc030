"""Validation at a past time (a signed record's signing time): the status answer was made after it.

An OCSP answer made twenty minutes after the time asked still speaks for it (the certificate was
good then as it is now); only an answer from the future against the validator's own clock is
refused (RFC 6960 section 3.2, item 5: thisUpdate sufficiently recent; 5 minutes of skew). Before
this was judged against the time asked, a record checked more than five minutes after it was
signed got ``revocation-unknown``."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from ca import sm2
from ca.ocsp import OcspResponder
from tests.test_sm_suite import Sm2Home, sm2_csr, sm2_home
from verification.certificates import CertificateValidator

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def issued(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sm2Home, x509.Certificate]]:
    folder: Path = tmp_path_factory.mktemp("past-time")
    made, engine = sm2_home(folder, sm2.DEFAULT_SIGNER_ID, with_ecdsa=False)
    row = made.ca.issue("citizen-auth", sm2_csr(folder, "record-signer", "/C=CN/serialNumber=11010519491231002X/CN=王芳"), "test")
    yield made, x509.load_der_x509_certificate(row.der)
    engine.dispose()


def _validator(made: Sm2Home, responder_ahead: datetime.timedelta,
               clock_ahead: datetime.timedelta) -> CertificateValidator:
    engine = made.ca.sessions.kw["bind"]
    responder = OcspResponder(engine, made.ocsp.keyring, lambda: made.ca.clock() + responder_ahead)
    return CertificateValidator.for_deployment(engine, responder, lambda: made.ca.clock() + clock_ahead)


def test_an_answer_made_after_the_time_asked_speaks_for_it(issued: tuple[Sm2Home, x509.Certificate]) -> None:
    made, cert = issued
    signed_at = made.ca.clock()
    later = datetime.timedelta(minutes=20)
    verdict = _validator(made, later, later).validate(cert, "citizen-auth", at=signed_at, revocation_source="ocsp")
    assert verdict.valid and verdict.revocation.status == "good", verdict.reasons


def test_an_answer_from_the_future_is_still_refused(issued: tuple[Sm2Home, x509.Certificate]) -> None:
    made, cert = issued
    verdict = _validator(made, datetime.timedelta(minutes=20), datetime.timedelta(0)).validate(
        cert, "citizen-auth", revocation_source="ocsp")
    assert not verdict.valid and verdict.codes == {"revocation-unknown"}
    assert "not current" in verdict.revocation.detail
