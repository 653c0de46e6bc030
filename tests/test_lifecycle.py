"""The staff account lifecycle against the running service, its directory and its CA:
application -> approval -> issue -> forced password change under the policy -> first login with
TOTP enrolment; a change of post; a leaver after one operation (cannot log in, refresh token
refused, session gone, certificates revoked per `openssl ocsp`); the password policy rules."""

from __future__ import annotations

import base64
import datetime
import hashlib
import re
import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from idp.password_policy import PasswordPolicy, WeakPassword, problems
from tests.fixtures_admin import *  # noqa: F401,F403
from tests.fixtures_admin import PASSWORD, AdminAgent, IdpServer, audit_entries, audit_tip, csrf_of, new_uid
from tests.fixtures_operators import operator_tokens, run_as  # noqa: F401
from tests.fixtures_web import TESSERA, StaffAgent, query_of

REDIRECT = "http://127.0.0.1:9/callback"
NEW_PASSWORD = "Lantern-orbit-4-quiet-meadow"


def english(agent: StaffAgent) -> StaffAgent:
    """The agent reads the pages in English (the default language is Chinese; the words asserted here are English)."""
    agent.headers["Accept-Language"] = "en"
    return agent


def issue_through_the_console(idp: IdpServer, agents: dict[str, AdminAgent], uid: str) -> str:
    """officer applies -> approver approves -> security admin issues; returns the initial password."""
    applied = agents["officer"].act("/admin/applications/new", uid=uid, given_name="Pille", surname="Puu",
                                    department="finance", post="Budget Analyst")
    assert applied.status_code == 302, applied.text[:500]
    path = applied.headers["Location"].replace(idp.base, "")
    app_id = path.rsplit("/", 1)[-1]
    # not yet issuable: the approver has not approved it
    early = agents["security-admin"].act(f"/admin/applications/{app_id}/issue")
    assert early.status_code == 409 and "only an approved one" in early.text
    # the officer cannot approve (not an approver), the approver can
    assert agents["officer"].act(f"/admin/applications/{app_id}/approve").status_code == 403
    approved = agents["approver"].act(f"/admin/applications/{app_id}/approve")
    assert approved.status_code == 302, approved.text[:500]
    assert 'id="app-status">approved<' in agents["approver"].get(idp.url(path)).text
    issued = agents["security-admin"].act(f"/admin/applications/{app_id}/issue")
    assert issued.status_code == 200, issued.text[:500]
    password = re.search(r'id="initial-password">([^<]+)<', issued.text).group(1)
    assert len(password) >= 20
    return password


def test_application_approval_issue_password_change_first_login(idp: IdpServer, slapd, admins: dict[str, str],  # type: ignore[no-untyped-def]
                                                                 admin_agents: dict[str, AdminAgent]) -> None:
    uid = new_uid("pp")
    before = audit_tip(idp)
    initial = issue_through_the_console(idp, admin_agents, uid)
    with slapd.directory() as directory:
        member = directory.find(uid)
        assert member is not None and member.department == "finance" and member.title == "Budget Analyst"
    # the initial password works only to change it (ppolicy pwdReset)
    agent = StaffAgent(idp, uid, initial)
    refused = agent.password_step()
    # either the login page says so, or (login flow wired to it) it sends the person to the change page
    assert (refused.status_code == 401 and "choose a new password" in refused.text) or (
        refused.status_code == 302 and "/password/change" in refused.headers["Location"]), refused.text[:300]
    page = agent.get(idp.url(f"/password/change?username={uid}"))
    form = {"csrf_token": csrf_of(page.text), "username": uid, "current_password": initial}
    for weak, reason in (("short-one", "at least 12"), ("Password123!Password123!", None),
                         (f"xx-{uid}-yy-zz-1", "user name"), ("qwertyuiop1234", "common")):
        response = agent.post(idp.url("/password/change"), data=form | {"new_password": weak, "new_password_again": weak})
        assert response.status_code == 400 and 'id="password-error"' in response.text, weak
        if reason:
            assert reason in response.text, (weak, response.text[-800:])
    done = agent.post(idp.url("/password/change"),
                      data=form | {"new_password": NEW_PASSWORD, "new_password_again": NEW_PASSWORD})
    assert done.status_code == 200 and 'id="password-changed"' in done.text, done.text[-800:]
    # first login: new password, then TOTP enrolment
    agent.password = NEW_PASSWORD
    first = agent.password_step()
    assert first.status_code == 302 and first.headers["Location"].endswith("/login/enrol")
    landed = agent.finish(first)
    assert landed.status_code == 200 and agent.secret and len(agent.recovery_codes) == 10
    # and the same password cannot come back (history, hashed)
    again = agent.get(idp.url(f"/password/change?username={uid}"))
    reuse = agent.post(idp.url("/password/change"), data={
        "csrf_token": csrf_of(again.text), "username": uid, "current_password": NEW_PASSWORD,
        "new_password": NEW_PASSWORD, "new_password_again": NEW_PASSWORD})
    assert reuse.status_code == 400 and "last 5" in reuse.text
    trail = [(e["event_type"], e["result"], e["subject"]) for e in audit_entries(idp, since_seq=before)
             if e["event_type"].startswith(("admin.account", "password.change"))]
    assert ("admin.account.apply", "success", f"staff:{admins['officer']}") in trail
    assert ("admin.account.approve", "success", f"staff:{admins['approver']}") in trail
    assert ("admin.account.issue", "success", f"staff:{admins['security-admin']}") in trail
    assert ("password.change", "success", f"staff:{uid}") in trail
    assert ("password.change", "refused", f"staff:{uid}") in trail
    assert not [e for e in audit_entries(idp, since_seq=before) if initial in e["details"] or NEW_PASSWORD in e["details"]]


def test_change_of_post_removes_old_privileges_until_the_new_ones_are_approved(  # type: ignore[no-untyped-def]
        idp: IdpServer, slapd, admins: dict[str, str], admin_agents: dict[str, AdminAgent]) -> None:
    uid = new_uid("mover")
    slapd.create_user(uid, PASSWORD, department="finance", title="Head of Unit", groups=("approvers",))
    recorded = admin_agents["security-admin"].act(f"/admin/people/{uid}/change-post", post="Senior Adviser",
                                                  groups="approvers")
    assert recorded.status_code == 302, recorded.text[:500]
    app_path = recorded.headers["Location"].replace(idp.base, "")
    with slapd.directory() as directory:
        assert "approvers" not in directory.find(uid).groups  # the old post's privileges went at once
    app_id = app_path.rsplit("/", 1)[-1]
    assert admin_agents["security-admin"].act(f"/admin/applications/{app_id}/issue").status_code == 409
    assert admin_agents["approver"].act(f"/admin/applications/{app_id}/approve").status_code == 302
    issued = admin_agents["security-admin"].act(f"/admin/applications/{app_id}/issue")
    assert issued.status_code == 302
    with slapd.directory() as directory:
        member = directory.find(uid)
        assert member.title == "Senior Adviser" and "approvers" in member.groups


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    return verifier, base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def refresh_token_of(idp: IdpServer, agent: StaffAgent, client: dict[str, Any]) -> str:
    verifier, challenge = pkce()
    auth = agent.get(idp.url("/oidc/authorize"), allow_redirects=False, params={
        "response_type": "code", "client_id": client["client_id"], "redirect_uri": REDIRECT, "scope": "openid profile",
        "state": "s", "nonce": "n", "code_challenge": challenge, "code_challenge_method": "S256"})
    assert auth.status_code == 302, auth.text[:400]
    code = query_of(auth.headers["Location"])["code"]
    tokens = requests.post(idp.url("/oidc/token"), data={"grant_type": "authorization_code", "code": code,
                                                         "redirect_uri": REDIRECT, "code_verifier": verifier},
                           auth=(client["client_id"], client["client_secret"]), timeout=10).json()
    return str(tokens["refresh_token"])


def staff_certificate(idp: IdpServer, agent: StaffAgent, folder: Path, name: str) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
           .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    page = agent.get(idp.url("/account"))
    issued = agent.post(idp.url("/account/certificates"), data={"csr": csr.decode(), "csrf_token": csrf_of(page.text)})
    assert issued.status_code == 201, issued.text[:400]
    serial = re.search(r'id="issued">Certificate <code>([0-9a-fA-F]+)</code>', issued.text).group(1)
    path = folder / f"{name}.pem"
    path.write_bytes(agent.get(idp.url(f"/account/certificates/{serial}.pem")).content)
    return path


def ocsp_status(idp: IdpServer, folder: Path, cert: Path) -> str:
    """`openssl ocsp` against the OCSP URL in the certificate's AIA, verified up to the root."""
    parsed = x509.load_pem_x509_certificate(cert.read_bytes())
    aia = parsed.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    url = next(d.access_location.value for d in aia if d.access_method == AuthorityInformationAccessOID.OCSP)
    assert url.startswith(idp.base)
    chain = requests.get(idp.url("/ca/staff/chain.pem"), timeout=10).content.split(b"-----END CERTIFICATE-----")
    (folder / "staff.pem").write_bytes(chain[0] + b"-----END CERTIFICATE-----\n")
    (folder / "root.pem").write_bytes(chain[-2].strip() + b"\n-----END CERTIFICATE-----\n")
    out = subprocess.run(["openssl", "ocsp", "-issuer", "staff.pem", "-cert", str(cert), "-url", url,
                          "-CAfile", "root.pem", "-verify_other", "staff.pem"],
                         cwd=folder, capture_output=True, text=True, timeout=30)
    assert "Response verify OK" in out.stderr + out.stdout, out.stderr + out.stdout
    return out.stdout


def test_leaver_after_one_operation(idp: IdpServer, slapd, admins: dict[str, str],  # type: ignore[no-untyped-def]
                                    admin_agents: dict[str, AdminAgent], tmp_path: Path) -> None:
    uid = new_uid("leaver")
    slapd.create_user(uid, PASSWORD, department="finance", title="Clerk", groups=("approvers",))
    client = idp.add_client("Leaver test client", REDIRECT, "--trusted")
    agent = english(StaffAgent(idp, uid, PASSWORD))
    agent.login()
    refresh = refresh_token_of(idp, agent, client)
    certs = [staff_certificate(idp, agent, tmp_path, f"c{i}") for i in range(2)]
    assert all(f"{c}: good" in ocsp_status(idp, tmp_path, c) for c in certs)
    assert agent.get(idp.url("/account"), allow_redirects=False).status_code == 200
    before = audit_tip(idp)

    done = admin_agents["security-admin"].act(f"/admin/people/{uid}/leaver")  # ONE operation

    assert done.status_code == 200 and 'id="done"' in done.text, done.text[:500]
    # cannot log in
    again = StaffAgent(idp, uid, PASSWORD).password_step()
    assert again.status_code == 401
    with slapd.directory() as directory:
        member = directory.find(uid)
        assert not member.enabled and "approvers" not in member.groups
    # refresh token refused
    refused = requests.post(idp.url("/oidc/token"), data={"grant_type": "refresh_token", "refresh_token": refresh},
                            auth=(client["client_id"], client["client_secret"]), timeout=10)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    # session gone
    gone = agent.get(idp.url("/account"), allow_redirects=False)
    assert gone.status_code == 302 and "/login" in gone.headers["Location"]
    # every certificate revoked, says openssl
    for cert in certs:
        assert f"{cert}: revoked" in ocsp_status(idp, tmp_path, cert)
    entries = [e for e in audit_entries(idp, since_seq=before) if e["event_type"] == "admin.account.leaver"]
    assert len(entries) == 1 and entries[0]["result"] == "success" and entries[0]["object"] == f"staff:{uid}"
    assert entries[0]["subject"] == f"staff:{admins['security-admin']}"


def test_leaver_is_all_or_nothing_when_the_directory_refuses(idp: IdpServer, slapd, admins: dict[str, str],  # type: ignore[no-untyped-def]
                                                             tmp_path: Path, operator_tokens: dict[str, str]) -> None:
    """The directory refuses the disable (here: Tessera may only read it): no certificate is
    revoked, the account stays enabled, and the trail has a refusal and no success."""
    uid = new_uid("ghost")
    slapd.create_user(uid, PASSWORD)
    agent = english(StaffAgent(idp, uid, PASSWORD))
    agent.login()
    cert = staff_certificate(idp, agent, tmp_path, "ghost")
    before = audit_tip(idp)
    token = {"TESSERA_OPERATOR_TOKEN": operator_tokens[admins["security-admin"]]}
    result = subprocess.run([TESSERA, "admin", "leaver", uid, "--as", admins["security-admin"], "--yes"],
                            env=idp.env | token | {"TESSERA_LDAP_READ_ONLY": "true"}, capture_output=True, timeout=60)
    assert result.returncode == 1 and b"read-only" in result.stderr and b"Traceback" not in result.stderr
    assert f"{cert}: good" in ocsp_status(idp, tmp_path, cert)
    entries = [e for e in audit_entries(idp, since_seq=before) if e["event_type"] == "admin.account.leaver"]
    assert [e["result"] for e in entries] == ["refused"]
    with slapd.directory() as directory:
        assert directory.find(uid).enabled
    # the same operation with a writable directory goes through
    done = subprocess.run([TESSERA, "admin", "leaver", uid, "--as", admins["security-admin"], "--yes", "--json"],
                          env=idp.env | token, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"{cert}: revoked" in ocsp_status(idp, tmp_path, cert)


def test_password_policy_rules(tmp_path: Path) -> None:
    assert problems("Correct-horse-7-battery", "jdoe") == []
    assert any("12" in p for p in problems("Sh0rt!pass", "jdoe"))
    assert any("common" in p for p in problems("Password123!", "jdoe"))
    assert any("common" in p for p in problems("1qaz2wsx3edc", "jdoe"))
    assert any("user name" in p for p in problems("my-JDoe-is-long-enough", "jdoe"))
    assert any("user name" in p for p in problems("Guiying-long-password-9", "hgy", ["Guiying", "He"]))
    import idp.governance_models  # noqa: F401
    from store.base import Base

    engine = create_engine(f"sqlite:///{tmp_path / 'p.db'}")
    Base.metadata.create_all(engine, tables=[Base.metadata.tables["gov_password_history"]])
    sessions = sessionmaker(engine, expire_on_commit=False)
    policy = PasswordPolicy(sessions, lambda: datetime.datetime.now(datetime.timezone.utc), history=3)
    words = [f"Unusual-river-{i}-stone-path" for i in range(5)]
    for w in words:
        policy.check("jdoe", w)
        with sessions.begin() as s:
            policy.remember(s, "jdoe", w)
    with pytest.raises(WeakPassword, match="last 3"):
        policy.check("jdoe", words[-1])
    policy.check("jdoe", words[0])  # older than the history: allowed again
    policy.check("other", words[-1])  # history is per person
    with engine.connect() as conn:
        stored = [r[0] for r in conn.exec_driver_sql("SELECT password_hash FROM gov_password_history")]
    assert len(stored) == 3 and all(h.startswith("$argon2id$") for h in stored)
    assert not any(w in h for w in words for h in stored)


def test_the_whole_lifecycle_from_the_command_line(idp: IdpServer, slapd, admins: dict[str, str],  # type: ignore[no-untyped-def]
                                                   operator_tokens: dict[str, str]) -> None:
    import json

    uid = new_uid("cli")
    applied = json.loads(run_as(idp, operator_tokens, "admin", "apply", "--as", admins["officer"], "--uid", uid, "--given-name", "Kati",
                                 "--surname", "Maasik", "--post", "Registry Officer", "--json").stdout)
    assert applied["status"] == "applied" and applied["department"] == "finance"
    listed = json.loads(run_as(idp, operator_tokens, "admin", "applications", "--as", admins["security-admin"], "--status", "applied",
                                "--search", uid, "--json").stdout)
    assert [a["uid"] for a in listed["applications"]] == [uid]
    not_theirs = run_as(idp, operator_tokens, "admin", "approve", str(applied["id"]), "--as", admins["security-admin"], check=False)
    assert not_theirs.returncode == 3  # administrators do not approve a department's applications
    approved = json.loads(run_as(idp, operator_tokens, "admin", "approve", str(applied["id"]), "--as", admins["approver"], "--json").stdout)
    assert approved["status"] == "approved" and approved["decided_by"] == admins["approver"]
    issued = json.loads(run_as(idp, operator_tokens, "admin", "issue", str(applied["id"]), "--as", admins["security-admin"], "--json").stdout)
    assert issued["uid"] == uid and len(issued["initial_password"]) >= 20
    before = audit_tip(idp)
    twice = run_as(idp, operator_tokens, "admin", "issue", str(applied["id"]), "--as", admins["security-admin"], check=False)
    assert twice.returncode == 1 and b"issued" in twice.stderr
    nobody = run_as(idp, operator_tokens, "admin", "leaver", "no-such-person", "--as", admins["security-admin"], "--yes", check=False)
    assert nobody.returncode == 1 and b"no staff member" in nobody.stderr
    refusals = [(e["event_type"], e["result"]) for e in audit_entries(idp, f"staff:{admins['security-admin']}", before)]
    assert refusals == [("admin.account.issue", "refused"), ("admin.account.leaver", "refused")]
    with slapd.directory() as directory:
        assert directory.find(uid).title == "Registry Officer"
    granted = run_as(idp, operator_tokens, "admin", "grant", uid, "approvers", "--as", admins["security-admin"])
    assert b"now in approvers" in granted.stdout
    removed = run_as(idp, operator_tokens, "admin", "remove-role", uid, "approvers", "--as", admins["security-admin"])
    assert removed.returncode == 0
    with slapd.directory() as directory:
        assert "approvers" not in directory.find(uid).groups
