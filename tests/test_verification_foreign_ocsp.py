"""A foreign anchor whose revocation is learnt by OCSP (``revocation = "ocsp"``, issue 15 item 3)
against a real RFC 6960 responder on 127.0.0.1: a second Tessera home made by `tessera init` and
served by `tessera serve` (started here, stopped by PID), whose root is the foreign anchor. Its
service certificates name the responder in their AIA (RFC 5280 section 4.2.2.1); pyhanko-
certvalidator asks it for the end entity and takes the issuing CA's status from the root's CRL
(its distribution point, on the same server).

Good is valid, revoked (`tessera ca revoke`) is revoked; with the server stopped the verdict fails
closed (``revocation-unknown``) unless the anchor says ``fail_open``; a server that accepts the
connection and never answers costs at most about the anchor's ``timeout`` per fetch."""

from __future__ import annotations

import datetime
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import create_engine

from tests.servers import TESSERA, free_port, run_tessera, start_server, stop_server, tessera_env, wait_healthy
from verification.certificates import Anchors, CertificateValidator, RevocationChecker
from verification.trust_list import ForeignAnchor

pytestmark = pytest.mark.integration

#: seconds per fetch the anchor allows (pyhanko-certvalidator takes whole seconds)
TIMEOUT = 1.0


@dataclass
class SecondHome:
    """The other Tessera deployment: its root, staff CA, a good and a revoked service certificate."""

    env: dict[str, str]
    port: int
    log: Path
    server: subprocess.Popen[bytes] | None
    root: x509.Certificate
    staff_ca: x509.Certificate
    good: x509.Certificate
    revoked: x509.Certificate

    def validator(self, **anchor: object) -> CertificateValidator:
        entry = ForeignAnchor(**{"name": "Second Tessera", "certificate": self.root, "purposes": frozenset({"service"}),
                                 "policies": frozenset(), "revocation": "ocsp", "timeout": TIMEOUT,
                                 **anchor})  # type: ignore[arg-type]
        return CertificateValidator(Anchors([], [], {}, [entry]), RevocationChecker(create_engine("sqlite://")))

    def stop(self) -> None:
        if self.server is not None:
            stop_server(self.server)
            self.server = None


def _service_certificate(env: dict[str, str], work: Path, name: str) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "EE"), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Second Office"),
        x509.NameAttribute(NameOID.COMMON_NAME, name)])).sign(key, hashes.SHA256())
    (work / f"{name}.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    run_tessera(env, "ca", "issue", "--profile", "service", "--csr", str(work / f"{name}.csr"),
                "--out", str(work / f"{name}.pem"))
    return x509.load_pem_x509_certificate((work / f"{name}.pem").read_bytes())


@pytest.fixture(scope="module")
def second(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecondHome]:
    work = tmp_path_factory.mktemp("second-tessera")
    port = free_port()
    env = tessera_env(work / "home", f"http://127.0.0.1:{port}")
    run_tessera(env, "init")
    good, revoked = (_service_certificate(env, work, name) for name in ("good", "revoked"))
    run_tessera(env, "ca", "revoke", format(revoked.serial_number, "x"), "--reason", "keyCompromise")
    chain = x509.load_pem_x509_certificates(run_tessera(env, "ca", "export-chain", "--ca", "staff").stdout)
    [root] = [c for c in chain if c.subject == c.issuer]
    [staff_ca] = [c for c in chain if c.subject != c.issuer]
    server = start_server([TESSERA, "serve", "--port", str(port), "--workers", "1"], port, work / "serve.log", env=env)
    home = SecondHome(env, port, work / "serve.log", server, root, staff_ca, good, revoked)
    try:
        wait_healthy(f"http://127.0.0.1:{port}/healthz")
        yield home
    finally:
        home.stop()


def _ocsp_url(cert: x509.Certificate) -> str:
    aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    return next(str(d.access_location.value) for d in aia
                if d.access_method == x509.oid.AuthorityInformationAccessOID.OCSP)


def test_good_and_revoked_from_the_responder(second: SecondHome) -> None:
    assert _ocsp_url(second.good).startswith(f"http://127.0.0.1:{second.port}/")
    validator = second.validator()
    verdict = validator.validate(second.good, "service", [second.staff_ca])
    assert verdict.valid, verdict.reasons
    assert verdict.anchor == "Second Tessera" and verdict.revocation.source == "ocsp"
    assert verdict.revocation.status == "good"
    revoked = validator.validate(second.revoked, "service", [second.staff_ca])
    assert not revoked.valid and revoked.codes == {"revoked"}, revoked.reasons
    assert revoked.reasons[0].detail.startswith("OCSP response indicates"), revoked.reasons  # not the CRL
    assert revoked.revocation.status == "revoked" and revoked.revocation.source == "ocsp"


def test_responder_down_fails_closed_then_silent_responder_is_bounded(second: SecondHome) -> None:
    second.stop()  # nothing listens on the responder's port now: the connection is refused
    started = time.monotonic()
    closed = second.validator().validate(second.good, "service", [second.staff_ca])
    assert not closed.valid and closed.codes == {"revocation-unknown"}, closed.reasons
    assert closed.revocation.status == "unknown"
    assert second.validator(fail_open=True).validate(second.good, "service", [second.staff_ca]).valid
    assert time.monotonic() - started < 10
    # a responder that takes the connection and never answers: each fetch ends at the timeout
    with socket.socket() as silent:
        silent.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        silent.bind(("127.0.0.1", second.port))
        silent.listen(16)
        started = time.monotonic()
        hung = second.validator().validate(second.good, "service", [second.staff_ca],
                                           at=datetime.datetime.now(datetime.timezone.utc))
        elapsed = time.monotonic() - started
    assert not hung.valid and hung.codes == {"revocation-unknown"}, hung.reasons
    print(f"\nforeign OCSP: a silent responder cost {elapsed:.1f} s with a {TIMEOUT:g} s timeout per fetch")
    assert elapsed < 8 * TIMEOUT + 2  # a handful of fetches (OCSP, then the CRLs), each bounded
