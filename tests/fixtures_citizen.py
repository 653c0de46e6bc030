"""Fixtures of the citizen login, portal and verification API tests.

One session-wide deployment: `tessera init`, cards issued with the real CLI (SoftHSM2 tokens),
a `service` certificate and a staff-auth certificate issued by the real CA from CSRs, one card
agent per card (`tessera card agent`, real subprocesses signing through PKCS#11), and
`tessera serve` (gunicorn, 2 workers). Everything on free ports in a private folder, stopped by PID.

Import at the top of a test module: ``from tests.fixtures_citizen import *``.
"""

from __future__ import annotations

import base64
import datetime
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.fixtures_cards import IssuedCard, issue_card
from tests.servers import TESSERA, free_port, run_tessera, start_server, stop_server, tessera_env, wait_healthy

__all__ = ["CitizenIdp", "Agent", "Credential", "citizen_idp", "card_login", "software_token", "csrf_from",
           "TESSERA", "PYTHON", "REPO"]

PYTHON = sys.executable
REPO = Path(__file__).resolve().parent.parent
CARDS = {"alice": 501, "bob": 502, "lost": 503, "pin": 504, "renewed": 505}


@dataclass
class Agent:
    name: str
    card: IssuedCard
    url: str
    proc: subprocess.Popen[bytes]


@dataclass
class Credential:
    """A software key with a certificate from our CA (for services and for forged-login tests)."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    chain: list[x509.Certificate] = field(default_factory=list)

    @property
    def b64(self) -> str:
        return base64.b64encode(self.certificate.public_bytes(serialization.Encoding.DER)).decode()

    @property
    def pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()


@dataclass
class CitizenIdp:
    path: Path
    port: int
    agents: dict[str, Agent] = field(default_factory=dict)
    service: Credential | None = None
    staff: Credential | None = None
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def public_url(self) -> str:  # tests.fixtures_cards helpers expect a Home
        return self.base

    def url(self, path: str) -> str:
        return self.base + path

    @property
    def env(self) -> dict[str, str]:
        return tessera_env(self.path, self.base)

    def cli(self, *args: str, check: bool = True, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return run_tessera(self.env, *args, check=check, input=input)

    def assertion(self, credential: Credential | None = None, lifetime: int = 300, audience: str | None = None,
                  **claims: Any) -> str:
        """A service assertion: JWT signed by the service key, certificate chain in x5c."""
        credential = credential or self.service
        assert credential is not None
        now = int(time.time())
        body = {"iss": "test-service", "sub": "test-service", "aud": audience or self.base + "/api/v1",
                "iat": now, "exp": now + lifetime, **claims}
        x5c = [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode()
               for c in [credential.certificate, *credential.chain]]
        return jwt.encode(body, credential.key, algorithm="ES256", headers={"x5c": x5c})

    def api(self, path: str, body: Any, credential: Credential | None = None) -> requests.Response:
        return requests.post(self.url("/api/v1" + path), json=body, timeout=30,
                             headers={"Authorization": "Bearer " + self.assertion(credential)})

    def start_agent(self, name: str, card: IssuedCard, origin: str | None = None) -> Agent:
        port = free_port()
        args = [TESSERA, "card", "agent", "--port", str(port), "--card", card.number]
        if origin:
            args += ["--origin", origin]
        proc = start_server(args, port, self.path.parent / f"agent-{name}.log", env=self.env, timeout=20)
        self.procs.append(proc)
        agent = Agent(name, card, f"http://127.0.0.1:{port}", proc)
        self.agents[name] = agent
        return agent

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        import sqlite3

        with sqlite3.connect(self.path / "tessera.db") as db:
            return list(db.execute(query, params).fetchall())


def csrf_from(html: str) -> str:
    match = re.search(r'data-csrf="([^"]+)"', html)
    assert match, "no CSRF token on the card login page"
    return match.group(1)


def card_login(idp: CitizenIdp, agent_url: str, pin: str, session: requests.Session | None = None,
               tamper: Any = None, origin: str | None = None) -> tuple[requests.Response, requests.Session]:
    """The login page's steps without a browser: page, challenge, agent signs, token to the IdP.
    ``tamper(token, nonce)`` may change the token before it is sent; returns the IdP's answer."""
    s = session or requests.Session()
    page = s.get(idp.url("/citizen/login"), timeout=30)
    csrf = csrf_from(page.text)
    challenge = s.post(idp.url("/citizen/login/challenge"), json={}, headers={"X-CSRF-Token": csrf}, timeout=30)
    assert challenge.status_code == 200, challenge.text
    nonce = challenge.json()["nonce"]
    signed = requests.post(agent_url + "/authenticate", json={"nonce": nonce, "pin": pin},
                           headers={"Origin": origin or idp.base}, timeout=30)
    if signed.status_code != 200:
        return signed, s
    token = signed.json()
    if tamper is not None:
        token = tamper(token, nonce)
    answer = s.post(idp.url("/citizen/login/token"), json={"token": token, "nonce": nonce},
                    headers={"X-CSRF-Token": csrf}, timeout=30)
    return answer, s


def software_token(credential: Credential, origin: str, nonce: str) -> dict[str, str]:
    """A web-eid:1.0 token made with a software key (for certificates that are not on a card)."""
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    h = hashes.Hash(hashes.SHA256())
    h.update(origin.encode())
    o = h.finalize()
    h = hashes.Hash(hashes.SHA256())
    h.update(nonce.encode())
    der = credential.key.sign(o + h.finalize(), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    return {"unverifiedCertificate": credential.b64, "algorithm": "ES256",
            "signature": base64.b64encode(r.to_bytes(32, "big") + s.to_bytes(32, "big")).decode(),
            "format": "web-eid:1.0", "appVersion": "test"}


def _issue_from_csr(idp: CitizenIdp, profile: str, subject: x509.Name, tmp: Path) -> Credential:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    csr_path, out = tmp / f"{profile}.csr", tmp / f"{profile}.pem"
    csr_path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    idp.cli("ca", "issue", "--profile", profile, "--csr", str(csr_path), "--out", str(out))
    chain_pem = idp.cli("ca", "export-chain", "--ca", "staff").stdout
    chain = x509.load_pem_x509_certificates(chain_pem)
    return Credential(key, x509.load_pem_x509_certificate(out.read_bytes()), [c for c in chain if not
                                                                              c.subject == c.issuer])


def foreign_citizen(national_id: str) -> Credential:
    """A citizen-looking certificate from an unrelated CA (same names, same policy OID)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Tessera Government PKI Citizen CA"),
                         x509.NameAttribute(NameOID.COUNTRY_NAME, "EE")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=365))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "EE"), x509.NameAttribute(NameOID.SURNAME, "Tamm"),
                         x509.NameAttribute(NameOID.GIVEN_NAME, "Mallory"),
                         x509.NameAttribute(NameOID.SERIAL_NUMBER, f"PNOEE-{national_id}"),
                         x509.NameAttribute(NameOID.COMMON_NAME, f"Tamm,Mallory,{national_id}")])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.CertificatePolicies([x509.PolicyInformation(x509.ObjectIdentifier("2.999.1863.1.3"), None)]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    return Credential(key, cert, [ca])


def start_serve(idp: CitizenIdp, port: int, extra_env: dict[str, str], workers: int = 2) -> subprocess.Popen[bytes]:
    env = {**idp.env, "TESSERA_PUBLIC_URL": f"http://127.0.0.1:{port}", **extra_env}
    proc = start_server([TESSERA, "serve", "--port", str(port), "--workers", str(workers)], port,
                        idp.path.parent / f"serve-{port}.log", env=env)
    idp.procs.append(proc)
    wait_healthy(f"http://127.0.0.1:{port}/healthz")
    return proc


@pytest.fixture(scope="session")
def citizen_idp() -> Iterator[CitizenIdp]:
    base = Path(tempfile.mkdtemp(prefix="tessera-citizen-"))
    idp = CitizenIdp(base / "home", free_port())
    try:
        idp.cli("init")
        work = base / "work"
        work.mkdir()
        cards = {name: issue_card(idp, i, work) for name, i in CARDS.items()}
        idp.service = _issue_from_csr(idp, "service", x509.Name([
            x509.NameAttribute(NameOID.COUNTRY_NAME, "EE"), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Tax Office"),
            x509.NameAttribute(NameOID.COMMON_NAME, "Tax Office verifier")]), work)
        idp.staff = _issue_from_csr(idp, "staff-auth", x509.Name([
            x509.NameAttribute(NameOID.COUNTRY_NAME, "EE"), x509.NameAttribute(NameOID.COMMON_NAME, "Jane Staff"),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, "PNOEE-38001010000")]), work)
        for name, card in cards.items():
            idp.start_agent(name, card)
        start_serve(idp, idp.port, {"TESSERA_CARD_AGENT_URL": idp.agents["alice"].url,
                                    "TESSERA_API_RATE_PER_SECOND": "100000"})
        yield idp
    finally:
        for proc in reversed(idp.procs):
            stop_server(proc)
        shutil.rmtree(base, ignore_errors=True)


def agent_card(idp: CitizenIdp, agent: Agent) -> dict[str, Any]:
    """What the agent tells the page about its card (number, holder, certificate)."""
    answer = requests.get(agent.url + "/card", headers={"Origin": idp.base}, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


__all__ += ["agent_card", "foreign_citizen", "start_serve"]
