"""ldaps:// and StartTLS (RFC 4513 section 3) against a private slapd with a server certificate
from a throw-away CA: the right CA is accepted, any other CA is refused, and so is the right CA's
certificate for another name (RFC 4513 section 3.1.3): never a silent downgrade."""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from directory.client import Directory, DirectoryUnavailable
from tests.fixtures_directory import SlapdServer


def _ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def _server_files(base: Path, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate,
                  names: list[x509.GeneralName]) -> tuple[Path, Path]:
    """A server certificate for ``names`` (its chain: it, then the CA) and its key, in ``base``."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "directory")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    base.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = base / "server.pem", base / "server.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM)
                          + ca_cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_file.chmod(0o600)
    return cert_file, key_file


@pytest.fixture(scope="module")
def tls_slapd() -> Iterator[tuple[SlapdServer, Path, Path, SlapdServer]]:
    """The slapd with a certificate for 127.0.0.1 (an IP address) and localhost, its CA, another
    CA, and a second slapd whose certificate from the same CA names another host only."""
    base = Path(tempfile.mkdtemp(prefix="tessera-slapd-tls-"))
    ca_key, ca_cert = _ca("Directory Test CA")
    ca_file = base / "ca.pem"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    other_ca = base / "other-ca.pem"
    other_ca.write_bytes(_ca("Some Other CA")[1].public_bytes(serialization.Encoding.PEM))
    server = SlapdServer(base / "dir", tls=_server_files(base / "right", ca_key, ca_cert, [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]))
    elsewhere = SlapdServer(base / "dir2", tls=_server_files(base / "wrong", ca_key, ca_cert, [
        x509.DNSName("directory.example")]))
    server.start()
    elsewhere.start()
    try:
        yield server, ca_file, other_ca, elsewhere
    finally:
        server.stop()
        elsewhere.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_ldaps_with_the_right_ca(tls_slapd: tuple[SlapdServer, Path, Path, SlapdServer]) -> None:
    server, ca_file, _, _ = tls_slapd
    assert server.folder.ldaps_url is not None
    with Directory(replace(server.config, urls=(server.folder.ldaps_url,), ca_file=str(ca_file))) as directory:
        assert directory.authenticate("heguiying", server.seed_password).uid == "heguiying"


def test_start_tls_with_the_right_ca(tls_slapd: tuple[SlapdServer, Path, Path, SlapdServer]) -> None:
    server, ca_file, _, _ = tls_slapd
    with Directory(replace(server.config, start_tls=True, ca_file=str(ca_file))) as directory:
        assert directory.authenticate("wangfang", server.seed_password).uid == "wangfang"


@pytest.mark.parametrize("mode", ["ldaps", "starttls"])
@pytest.mark.parametrize("wrong", ["another CA", "another name"])
def test_a_certificate_that_does_not_verify_is_refused(tls_slapd: tuple[SlapdServer, Path, Path, SlapdServer],
                                                       mode: str, wrong: str) -> None:
    """Signed by a CA the client was not given; or by the right CA, but naming directory.example,
    not 127.0.0.1: the directory is unavailable, never reached in plain text."""
    server, ca_file, other_ca, elsewhere = tls_slapd
    target, trusted = (server, other_ca) if wrong == "another CA" else (elsewhere, ca_file)
    assert target.folder.ldaps_url is not None
    if mode == "ldaps":
        config = replace(target.config, urls=(target.folder.ldaps_url,), ca_file=str(trusted))
    else:
        config = replace(target.config, start_tls=True, ca_file=str(trusted))
    with Directory(config) as directory:
        with pytest.raises(DirectoryUnavailable):
            directory.authenticate("heguiying", target.seed_password)


def test_start_tls_against_a_server_without_tls_is_refused(slapd: SlapdServer) -> None:
    with Directory(replace(slapd.config, start_tls=True)) as directory:
        with pytest.raises(DirectoryUnavailable):
            directory.find("heguiying")
