"""Two `tessera serve` nodes of one deployment behind no balancer and no sticky sessions (issue 16
item 6; docs/multi-node.md), driven with requests against each node in turn.

The deployment is set up as docs/multi-node.md says: one PostgreSQL database (a fresh one in the
private cluster), one directory (the private slapd), one public URL on every node (the balancer's
name; here node 1's address, which both nodes write into certificates and OpenID Connect
metadata), and a home per node. Node 1's home is made by `tessera init`; node 2 joins by getting
node 1's secrets and CA token folder (in production: a secrets store and a network HSM) and
running `tessera init` on its own home, which finds the database, the CA and the keys made already
and creates nothing shared. Each node keeps its own audit witness file. Both serve with two workers
each and are stopped by PID.

Checked across the nodes: a staff login begun on one and finished on the other (both ways); an
authorization code issued by node 1 redeemed at node 2's token endpoint, and only once; a
certificate revoked through node 1 answered "revoked" by node 2's OCSP at once (the documented
time: a status change deletes the pre-produced answers in its own transaction) and listed in its
CRL; a runtime setting changed on node 1 in force on every worker of node 2 within its cache's TTL;
the verification API's rate limit held once for both nodes' four workers, not once per worker;
and concurrent audit appends from both nodes, with automatic checkpoints, after which
`tessera audit verify` says OK on each node.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import jwt
import pyotp
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID
from sqlalchemy import create_engine, text

from idp.runtime_settings import DEFAULT_TTL
from tests.fixtures_admin import AdminAgent
from tests.fixtures_directory import SlapdServer, new_uid, slapd  # noqa: F401  (slapd is a fixture)
from tests.fixtures_web import PASSWORD, IdpServer, StaffAgent, csrf_of
from tests.servers import TESSERA, free_port, running_server, tessera_env, wait_healthy
from tests.test_oidc import REDIRECT, authorize, code_of, exchange, pkce, verify_id_token

#: the API's limit on both nodes: 5 calls/s per service with a burst of 30 (one for the deployment)
RATE, BURST = 5, 30
#: the same on every node, as a deployment's configuration is
NODE_ENV = {"TESSERA_API_RATE_PER_SECOND": str(RATE), "TESSERA_API_RATE_BURST": str(BURST),
            "TESSERA_AUDIT_CHECKPOINT_EVERY": "10"}


@dataclass
class Node(IdpServer):
    """One node: its own home and port; the deployment's public URL, database and directory."""

    public_url: str = ""
    database_url: str = ""

    @property
    def env(self) -> dict[str, str]:
        return tessera_env(self.home, self.public_url, TESSERA_DATABASE_URL=self.database_url,
                           **self.directory.env, **NODE_ENV)


def _fresh_database(cluster_url: str) -> str:
    """A database of its own in the private cluster (other tests reset the cluster's ``tessera``)."""
    name = f"nodes_{uuid.uuid4().hex[:12]}"
    engine = create_engine(cluster_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return cluster_url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="module")
def nodes(postgres_url: str, slapd: SlapdServer,  # noqa: F811
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, Node]]:
    base = tmp_path_factory.mktemp("two-nodes")
    database = _fresh_database(postgres_url)
    ports = free_port(), free_port()
    public = f"http://127.0.0.1:{ports[0]}"
    one, two = (Node(base / f"node{i + 1}", port, slapd, base / f"node{i + 1}.log", public_url=public,
                     database_url=database) for i, port in enumerate(ports))
    one.cli("init")
    # node 2 joins: the deployment's secrets and CA token, then `tessera init` on its own home
    shutil.copytree(one.home / "secrets", two.home / "secrets")
    shutil.copytree(one.home / "softhsm" / "tokens", two.home / "softhsm" / "tokens")
    joined = two.cli("init").stdout.decode()
    for shared in ("created CA", "initialised SoftHSM2", "created the data key", "signing key", "card signer"):
        assert shared not in joined, joined
    with running_server([TESSERA, "serve", "--port", str(one.port), "--workers", "2"], one.port, one.log,
                        env=one.env), \
         running_server([TESSERA, "serve", "--port", str(two.port), "--workers", "2"], two.port, two.log,
                        env=two.env):
        for node in (one, two):
            wait_healthy(node.url("/healthz"))
            ready = requests.get(node.url("/readyz"), timeout=10)
            assert ready.status_code == 200, ready.text
        yield one, two


def _staff(slapd: SlapdServer, *groups: str) -> str:  # noqa: F811
    uid = new_uid("n")
    slapd.create_user(uid, PASSWORD, department="finance", title="Analyst", groups=groups, given_name="Nora",
                      surname=f"Node{uid[-4:]}")
    return uid


def _logged_in(first: Node, second: Node, uid: str, secret: str | None = None, last_step: int = -1) -> StaffAgent:
    """The password step on ``first``, the second factor (enrolment or a code) on ``second``."""
    agent = StaffAgent(first, uid, PASSWORD, secret)
    agent.last_step = last_step
    response = agent.password_step()
    agent.idp = second
    agent.finish(response)
    return agent


def _account_of(agent: StaffAgent, node: Node) -> str:
    page = agent.get(node.url("/account"), allow_redirects=False)
    assert page.status_code == 200, (page.status_code, page.headers.get("Location"))
    return page.text


def test_a_login_begun_on_one_node_finishes_on_the_other(nodes: tuple[Node, Node],
                                                         slapd: SlapdServer) -> None:  # noqa: F811
    one, two = nodes
    uid = _staff(slapd)
    enrolled = _logged_in(one, two, uid)  # first login: TOTP enrolment on node 2
    assert enrolled.secret and uid in _account_of(enrolled, one) and uid in _account_of(enrolled, two)
    again = _logged_in(two, one, uid, enrolled.secret, enrolled.last_step)  # a code, the other way round
    assert uid in _account_of(again, two) and uid in _account_of(again, one)
    # the code node 1 has just accepted is refused by node 2 (RFC 6238 section 5.2: once only)
    replayed = StaffAgent(one, uid, PASSWORD, enrolled.secret)
    form = replayed.password_step()
    if form.status_code == 302:
        form = replayed.get(one.url(form.headers["Location"]))
    assert 'action="/login/code"' in form.text
    used = pyotp.TOTP(enrolled.secret).generate_otp(again.last_step)
    refused = replayed.post(two.url("/login/code"), data={"code": used, "csrf_token": csrf_of(form.text)},
                            allow_redirects=False)
    assert refused.status_code != 302 and replayed.get(two.url("/account"), allow_redirects=False).status_code == 302


def test_a_code_issued_by_one_node_is_redeemed_at_the_other_once(nodes: tuple[Node, Node],
                                                                 slapd: SlapdServer) -> None:  # noqa: F811
    one, two = nodes
    client = json.loads(one.cli("client", "add", "Payroll", "--redirect-uri", REDIRECT, "--trusted", "--json").stdout)
    uid = _staff(slapd)
    agent = _logged_in(one, one, uid)
    verifier, challenge = pkce()
    code = code_of(authorize(agent, one, client["client_id"], challenge))
    token = exchange(two, client, code, verifier)
    assert token.status_code == 200, token.text
    claims = verify_id_token(two, token.json()["id_token"], client["client_id"])
    assert claims["sub"] == uid and claims["iss"] == one.public_url
    userinfo = requests.get(one.url("/oidc/userinfo"), timeout=10,
                            headers={"Authorization": "Bearer " + token.json()["access_token"]})
    assert userinfo.status_code == 200 and userinfo.json()["sub"] == uid
    replay = exchange(one, client, code, verifier)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"


def _ocsp_status(node: Node, certificate: x509.Certificate, issuer: x509.Certificate) -> ocsp.OCSPCertStatus:
    request = ocsp.OCSPRequestBuilder().add_certificate(certificate, issuer, hashes.SHA1()).build()
    answer = requests.post(node.url("/ocsp/staff"), data=request.public_bytes(serialization.Encoding.DER),
                           headers={"Content-Type": "application/ocsp-request"}, timeout=10)
    assert answer.status_code == 200
    reply = ocsp.load_der_ocsp_response(answer.content)
    assert reply.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    return reply.certificate_status


def test_a_revocation_through_one_node_is_seen_by_the_others_ocsp_at_once(nodes: tuple[Node, Node],
                                                                          slapd: SlapdServer) -> None:  # noqa: F811
    one, two = nodes
    agent = _logged_in(two, two, _staff(slapd))
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ignored")])).sign(key, hashes.SHA256())
    issued = agent.post(two.url("/account/certificates"), data={
        "csr": csr.public_bytes(serialization.Encoding.PEM).decode(), "csrf_token": csrf_of(_account_of(agent, two))})
    assert issued.status_code == 201, issued.text[:400]
    match = re.search(r'id="issued">Certificate <code>([0-9a-fA-F]+)</code>', issued.text)
    assert match
    serial = match.group(1)
    certificate = x509.load_pem_x509_certificate(agent.get(two.url(f"/account/certificates/{serial}.pem")).content)
    issuer = x509.load_der_x509_certificate(requests.get(two.url("/ca/staff.crt"), timeout=10).content)
    assert _ocsp_status(two, certificate, issuer) == ocsp.OCSPCertStatus.GOOD  # and pre-produced now

    where = one.url(f"/account/certificates/{serial}/revoke")
    revoked = agent.post(where, data={"reason": "keyCompromise", "confirm": "yes",
                                      "csrf_token": csrf_of(_account_of(agent, one))})
    assert revoked.status_code == 200 and 'id="revoke-done"' in revoked.text
    assert _ocsp_status(two, certificate, issuer) == ocsp.OCSPCertStatus.REVOKED
    crl = x509.load_der_x509_crl(requests.get(two.url("/crl/staff.crl"), timeout=10).content)
    assert crl.get_revoked_certificate_by_serial_number(certificate.serial_number) is not None


def _min_length_shown(node: Node) -> int:
    """The password policy's minimum length as a worker of ``node`` shows it (a new connection each
    time, so that every worker answers in turn)."""
    page = requests.get(node.url("/password/change"), headers={"Accept-Language": "en"}, timeout=10).text
    match = re.search(r"at least (\d+) characters", page)
    assert match, page[:600]
    return int(match.group(1))


def test_a_setting_changed_on_one_node_is_in_force_on_the_other_within_its_ttl(
        nodes: tuple[Node, Node], slapd: SlapdServer) -> None:  # noqa: F811
    one, two = nodes
    sysadmin = AdminAgent(one, _staff(slapd, "system-administrators"), PASSWORD)
    sysadmin.login("/admin/")
    assert {_min_length_shown(two) for _ in range(6)} == {12}
    done = sysadmin.act("/admin/config/password.min_length", value="14")
    changed = time.monotonic()
    assert done.status_code == 200 and "12 -&gt; 14" in done.text, done.text[:600]
    # every request node 2 begins once the TTL has passed since the change shows the new value, on
    # whichever worker answers it (a new connection per request)
    in_force = changed + DEFAULT_TTL + 0.5
    late: list[int] = []
    while len(late) < 8:
        began = time.monotonic()
        shown = _min_length_shown(two)
        if began > in_force:
            late.append(shown)
        else:
            time.sleep(0.1)
    assert late == [14] * 8


def _service_assertion(node: Node, audience: str) -> str:
    """A service's bearer assertion (a JWT signed with its key, its certificate chain in x5c), the
    certificate issued by the deployment's CA through node 1's command line."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Tax Office"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"verifier {uuid.uuid4().hex[:8]}")])).sign(key, hashes.SHA256())
    work = node.home.parent
    (work / "service.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    node.cli("ca", "issue", "--profile", "service", "--csr", str(work / "service.csr"), "--out", str(work / "service.pem"))
    chain = [x509.load_pem_x509_certificate((work / "service.pem").read_bytes()),
             *[c for c in x509.load_pem_x509_certificates(node.cli("ca", "export-chain", "--ca", "staff").stdout)
               if c.subject != c.issuer]]
    now = int(time.time())
    return jwt.encode({"iss": "tax", "sub": "tax", "aud": audience, "iat": now, "exp": now + 600}, key,
                      algorithm="ES256", headers={"x5c": [base64.b64encode(c.public_bytes(serialization.Encoding.DER))
                                                          .decode() for c in chain]})


def _count(database_url: str, query: str) -> int:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(text(query)).scalar_one())
    finally:
        engine.dispose()


def test_both_nodes_share_one_rate_limit_and_their_concurrent_audit_appends_verify(
        nodes: tuple[Node, Node]) -> None:
    """Four threads, two per node, call the API 120 times as fast as they can for one service: the
    burst and the rate are spent once for the deployment (a bucket per worker would have let all
    120 through); every call answered 200 is in the verification log and the audit trail, which
    verifies on each node after the appends (and automatic checkpoints) of both."""
    one, two = nodes
    token = _service_assertion(one, one.public_url + "/api/v1")
    body = {"certificate": base64.b64encode(x509.load_pem_x509_certificate(
        (one.home.parent / "service.pem").read_bytes()).public_bytes(serialization.Encoding.DER)).decode(),
        "purpose": "service", "revocation_source": "store"}
    entries_before = _count(one.database_url, "SELECT count(*) FROM audit_entry")
    checkpoints_before = _count(one.database_url, "SELECT count(*) FROM audit_checkpoint")
    codes: list[int] = []
    lock = threading.Lock()

    def call(node: Node) -> None:
        with requests.Session() as session:
            for _ in range(30):
                answer = session.post(node.url("/api/v1/certificates/verify"), json=body, timeout=30,
                                      headers={"Authorization": "Bearer " + token})
                with lock:
                    codes.append(answer.status_code)

    threads = [threading.Thread(target=call, args=(node,)) for node in (one, two, one, two)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    took = time.monotonic() - began
    admitted = codes.count(200)
    assert len(codes) == 120 and set(codes) <= {200, 429}, sorted(set(codes))
    assert BURST <= admitted <= BURST + RATE * took + 4, (admitted, took)  # + one token held per worker
    assert _count(one.database_url, "SELECT count(*) FROM verification_log") == admitted
    assert _count(one.database_url, "SELECT count(*) FROM audit_entry") > entries_before

    two.cli("audit", "checkpoint")
    assert _count(one.database_url, "SELECT count(*) FROM audit_checkpoint") > checkpoints_before + 1
    for node in (one, two):  # each against its own witness file
        verified = node.cli("audit", "verify", check=False)
        assert verified.returncode == 0 and b"OK:" in verified.stderr, verified.stdout + verified.stderr
