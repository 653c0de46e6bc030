"""Four eyes for revoking an issuing CA (on a home of its own: the CA is really revoked), judged
by openssl on the root's CRL and by `tessera audit verify`; the command line's operators proven by
`tessera admin login` (one shell is not two people; forged, expired, ended and other people's
tokens refused; removing an administrator is four eyes); and bad input to the console answered
with clear 4xx pages, never a 500."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures_admin import *  # noqa: F401,F403
from tests.fixtures_admin import PASSWORD, AdminAgent, IdpServer, new_uid
from tests.fixtures_operators import Operator, enrol, login, token_of
from tests.servers import run_tessera, tessera_env

#: uid -> operator token on ``own_home`` (filled by the ``operators`` fixture)
TOKENS: dict[str, str] = {}


@pytest.fixture(scope="module")
def own_home(slapd) -> Iterator[dict[str, str]]:  # type: ignore[no-untyped-def]
    """`tessera init` on a fresh home that uses the test directory; the environment to run the CLI."""
    base = Path(tempfile.mkdtemp(prefix="tessera-4eyes-"))
    env = tessera_env(base / "home", "http://127.0.0.1:9", **slapd.env)
    run_tessera(env, "init")
    try:
        yield env
    finally:
        shutil.rmtree(base, ignore_errors=True)


def tessera(env: dict[str, str], *args: str, token: str | None = None,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
    """`tessera *args`, presenting ``token`` or else the logged-in token of the uid after --as."""
    if token is None and "--as" in args:
        token = TOKENS.get(args[list(args).index("--as") + 1])
    if token:
        env = env | {"TESSERA_OPERATOR_TOKEN": token}
    done = run_tessera(env, *args, check=False, input=input.encode() if input is not None else None)
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(), done.stderr.decode())


@pytest.fixture(scope="module")
def operators(own_home: dict[str, str], admins: dict[str, str]) -> dict[str, Operator]:
    """The administrators with TOTP enrolled on this home and logged in (TOKENS)."""
    made = {}
    for name in ("security-admin", "security-admin-2", "system-admin", "auditor"):
        made[name] = enrol(own_home, admins[name], PASSWORD)
        TOKENS[admins[name]] = token_of(own_home, made[name])
    return made


def _rows(env: dict[str, str], query: str, *args: object) -> list[tuple[object, ...]]:
    db = sqlite3.connect(Path(env["TESSERA_HOME"]) / "tessera.db")
    try:
        return db.execute(query, args).fetchall()
    finally:
        db.close()


def test_revoking_an_issuing_ca_needs_a_second_security_administrator(own_home: dict[str, str], admins: dict[str, str],
                                                                      operators: dict[str, Operator],
                                                                      tmp_path: Path) -> None:
    cas = json.loads(tessera(own_home, "ca", "list", "--profile", "issuing-ca", "--json").stdout)
    citizen = next(c for c in cas if "Citizen" in c["subject"])
    asked = tessera(own_home, "admin", "four-eyes", "request", "revoke-issuing-ca", "citizen",
                    "--as", admins["security-admin"], "--json")
    assert asked.returncode == 0, asked.stderr
    request_id = str(json.loads(asked.stdout)["id"])
    # one pair of eyes changes nothing
    assert json.loads(tessera(own_home, "ca", "show", citizen["serial"], "--json").stdout)["status"] == "valid"
    own = tessera(own_home, "admin", "four-eyes", "approve", request_id, "--as", admins["security-admin"])
    assert own.returncode == 1 and "second administrator" in own.stderr
    auditor = tessera(own_home, "admin", "four-eyes", "approve", request_id, "--as", admins["auditor"])
    assert auditor.returncode == 3 and "refused" in auditor.stderr
    system = tessera(own_home, "admin", "four-eyes", "approve", request_id, "--as", admins["system-admin"])
    assert system.returncode == 3
    assert json.loads(tessera(own_home, "ca", "show", citizen["serial"], "--json").stdout)["status"] == "valid"
    done = tessera(own_home, "admin", "four-eyes", "approve", request_id, "--as", admins["security-admin-2"])
    assert done.returncode == 0 and "executed" in done.stdout, done.stderr
    shown = json.loads(tessera(own_home, "ca", "show", citizen["serial"], "--json").stdout)
    assert shown["status"] == "revoked" and shown["revocation_reason"] == "cACompromise"
    # openssl reads the root's CRL: the citizen CA's serial is on it, with its reason
    crl = tmp_path / "root.crl"
    crl.write_bytes(run_tessera(own_home, "ca", "crl", "--ca", "root").stdout)
    text = subprocess.run(["openssl", "crl", "-inform", "DER", "-in", str(crl), "-noout", "-text"],
                          capture_output=True, text=True, check=True).stdout
    assert citizen["serial"].upper().lstrip("0") in text.replace(":", "").upper()
    assert "CA Compromise" in text
    # a second approval of the same request is refused
    again = tessera(own_home, "admin", "four-eyes", "approve", request_id, "--as", admins["security-admin-2"])
    assert again.returncode == 1 and "executed" in again.stderr
    # the trail holds the request, the refusals and the approval, and verifies
    db = sqlite3.connect(Path(own_home["TESSERA_HOME"]) / "tessera.db")
    rows = db.execute("SELECT event_type, result, subject FROM audit_entry WHERE event_type LIKE 'admin.four-eyes.%' "
                      "ORDER BY seq").fetchall()
    db.close()
    assert rows[0] == ("admin.four-eyes.request", "success", f"staff:{admins['security-admin']}")
    assert ("admin.four-eyes.approve", "refused", f"staff:{admins['security-admin']}") in rows
    assert ("admin.four-eyes.approve", "refused", f"staff:{admins['auditor']}") in rows
    assert ("admin.four-eyes.approve", "success", f"staff:{admins['security-admin-2']}") in rows
    verify = tessera(own_home, "audit", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_one_shell_is_not_two_people(own_home: dict[str, str], admins: dict[str, str],  # type: ignore[no-untyped-def]
                                     operators: dict[str, Operator], slapd) -> None:
    """The finding: `request ... --as A` then `approve N --as B` from one shell. With only A's
    proof, acting as B is refused (exit 4, audited), and A cannot approve A's own request."""
    first, second = admins["security-admin"], admins["security-admin-2"]
    target = new_uid("pair")
    slapd.create_user(target, PASSWORD, department="finance", title="Clerk")
    asked = tessera(own_home, "admin", "four-eyes", "request", "add-administrator", target, "--group", "auditors",
                    "--as", first, "--json")
    assert asked.returncode == 0, asked.stderr
    request_id = str(json.loads(asked.stdout)["id"])
    claimed = tessera(own_home, "admin", "four-eyes", "approve", request_id, "--as", second, token=TOKENS[first])
    assert claimed.returncode == 4 and f"not {second}'s" in claimed.stderr, claimed.stderr
    # one line for the person (the security log on stderr carries the event as JSON besides)
    assert [line for line in claimed.stderr.splitlines() if not line.startswith("{")] == [
        f"Error: the operator token is not {second}'s: run `tessera admin login --as {second}` to act as {second}"]
    own = tessera(own_home, "admin", "four-eyes", "approve", request_id, "--as", first)
    assert own.returncode == 1 and "second administrator" in own.stderr
    assert _rows(own_home, "SELECT status FROM gov_four_eyes_request WHERE id = ?", int(request_id)) == [("pending",)]
    refused = _rows(own_home, "SELECT subject, object, result, details FROM audit_entry WHERE event_type = "
                    "'operator.token' ORDER BY seq")
    assert refused and refused[-1][1:3] == (f"staff:{second}", "refused")
    assert json.loads(str(refused[-1][3]))["reason"] == "other-person"
    # the second person, proven, rejects it (nobody ends up with two roles in this test)
    rejected = tessera(own_home, "admin", "four-eyes", "approve", request_id, "--reject", "--as", second)
    assert rejected.returncode == 0 and "rejected" in rejected.stdout, rejected.stderr


@pytest.mark.parametrize("how", ["none", "forged", "revoked", "expired", "wrong-code", "wrong-password"])
def test_acting_without_a_live_proof_is_refused(own_home: dict[str, str], admins: dict[str, str],
                                                operators: dict[str, Operator], how: str) -> None:
    uid = admins["system-admin"]
    token: str | None = None
    if how == "forged":
        token = "tso_" + "A" * 43
    elif how in ("revoked", "expired"):
        token = token_of(own_home, operators["system-admin"])
        if how == "revoked":
            out = tessera(own_home, "admin", "logout", token=token)
            assert out.returncode == 0 and f"logged out {uid}" in out.stderr
        else:
            db = sqlite3.connect(Path(own_home["TESSERA_HOME"]) / "tessera.db")
            db.execute("UPDATE gov_operator_token SET expires_at = '2020-01-01 00:00:00.000000' WHERE id = "
                       "(SELECT max(id) FROM gov_operator_token WHERE uid = ?)", (uid,))
            db.commit()
            db.close()
    elif how in ("wrong-code", "wrong-password"):
        before = _rows(own_home, "SELECT coalesce(max(failures), 0) FROM idp_login_throttle WHERE key = ?",
                       f"account:{uid}")[0][0]
        operator = operators["system-admin"]
        bad = Operator(uid, "not the password", operator.secret) if how == "wrong-password" else operator
        done = login(own_home, bad, code="000000" if how == "wrong-code" else None)
        assert done.returncode == 4 and b"incorrect" in done.stderr and not done.stdout.strip()
        after = _rows(own_home, "SELECT failures FROM idp_login_throttle WHERE key = ?", f"account:{uid}")[0][0]
        assert int(after) == int(before) + 1  # type: ignore[call-overload]
        kind = "login.otp" if how == "wrong-code" else "login.password"
        assert _rows(own_home, "SELECT result FROM audit_entry WHERE event_type = ? AND object = ? ORDER BY seq DESC "
                     "LIMIT 1", kind, f"staff:{uid}") == [("failure",)]
        return
    shown = tessera(own_home, "config", "show", "--as", uid, token=token or "")
    words = {"none": "not logged in", "forged": "not valid", "revoked": "ended by logout", "expired": "expired"}[how]
    assert shown.returncode == 4 and words in shown.stderr and "Traceback" not in shown.stderr, shown.stderr
    assert not shown.stdout
    [(details,)] = _rows(own_home, "SELECT details FROM audit_entry WHERE event_type = 'operator.token' AND result = "
                         "'refused' ORDER BY seq DESC LIMIT 1")
    assert json.loads(str(details))["reason"] == {"none": "no-token", "forged": "unknown-token"}.get(how, how)


def test_odd_names_after_as_are_refused_in_one_line(own_home: dict[str, str], admins: dict[str, str],
                                                    operators: dict[str, Operator]) -> None:
    for uid in ("ü", "a" * 300, "x)(uid=*", " "):
        out = tessera(own_home, "config", "show", "--as", uid, token=TOKENS[admins["system-admin"]])
        assert out.returncode == 4 and "Traceback" not in out.stderr and not out.stdout, out.stderr


def test_the_token_file_is_private_and_logout_ends_it(own_home: dict[str, str], admins: dict[str, str],
                                                      operators: dict[str, Operator], tmp_path: Path) -> None:
    uid, operator = admins["auditor"], operators["auditor"]
    env = own_home | {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    done = tessera(env, "admin", "login", "--as", uid, "--password-stdin", input=f"{PASSWORD}\n{operator.code()}\n")
    assert done.returncode == 0 and "logged in as" in done.stderr and not done.stdout, done.stderr
    [path] = list((tmp_path / "config" / "tessera" / "operator-tokens").iterdir())
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    token = path.read_text().strip()
    assert len(token) >= 43 and token not in done.stderr
    # only the hash is stored
    assert _rows(own_home, "SELECT count(*) FROM gov_operator_token WHERE token_hash = ?", token) == [(0,)]
    assert tessera(env, "audit", "verify").returncode == 0
    out = tessera(env, "admin", "logout")
    assert out.returncode == 0 and not path.exists()
    again = tessera(env, "card", "records", "read", "96000000000", "--as", uid, token=token)
    assert again.returncode == 4 and "ended by logout" in again.stderr


def test_personal_data_needs_the_role(own_home: dict[str, str], admins: dict[str, str],
                                      operators: dict[str, Operator]) -> None:
    """`card records read` prints a citizen's identity record: a logged-in security administrator
    only; the auditor and the system administrator are refused (exit 3), and the refusal audited."""
    for name in ("auditor", "system-admin"):
        read = tessera(own_home, "card", "records", "read", "96000000000", "--as", admins[name])
        assert read.returncode == 3 and "refused" in read.stderr and "card.read" in read.stderr, read.stderr
    assert ("refused",) in _rows(own_home, "SELECT result FROM audit_entry WHERE event_type = 'admin.card.read' AND "
                                 "subject = ?", f"staff:{admins['auditor']}")
    nobody = tessera(own_home, "card", "records", "read", "96000000000", "--as", "nobody-logged-in")
    assert nobody.returncode == 4
    missing = tessera(own_home, "card", "records", "read", "96000000000")
    assert missing.returncode == 2 and "--as" in missing.stderr


@pytest.mark.parametrize("target", ["root", "../x", "ca:root", "no-such-ca", "staff", ""])
def test_four_eyes_targets_are_checked_when_asked_for(own_home: dict[str, str], admins: dict[str, str],
                                                      operators: dict[str, Operator], target: str) -> None:
    before = _rows(own_home, "SELECT count(*) FROM gov_four_eyes_request")[0][0]
    asked = tessera(own_home, "admin", "four-eyes", "request", "revoke-issuing-ca", target,
                    "--as", admins["security-admin"])
    if target == "staff":  # a real issuing CA: asked for, then rejected by the second person
        assert asked.returncode == 0, asked.stderr
        request_id = asked.stdout.split("#")[1].split(":")[0]
        assert tessera(own_home, "admin", "four-eyes", "approve", request_id, "--reject",
                       "--as", admins["security-admin-2"]).returncode == 0
        return
    assert asked.returncode == 1 and "is not an issuing certificate authority" in asked.stderr, asked.stderr
    assert "Traceback" not in asked.stderr
    assert _rows(own_home, "SELECT count(*) FROM gov_four_eyes_request")[0][0] == before


def test_removing_an_administrator_needs_a_second_person(own_home: dict[str, str], admins: dict[str, str],  # type: ignore[no-untyped-def]
                                                         operators: dict[str, Operator], slapd) -> None:
    uid = new_uid("rmsys")
    slapd.create_user(uid, PASSWORD, department="finance", title="Clerk", groups=("system-administrators",))
    first, second = admins["security-admin"], admins["security-admin-2"]
    asked = tessera(own_home, "admin", "remove-role", uid, "system-administrators", "--as", first)
    assert asked.returncode == 0 and "four-eyes request #" in asked.stdout, asked.stderr
    request_id = asked.stdout.split("#")[1].split(":")[0]
    with slapd.directory() as directory:
        assert "system-administrators" in directory.find(uid).groups  # one pair of eyes changes nothing
    assert tessera(own_home, "admin", "four-eyes", "approve", request_id, "--as", first).returncode == 1
    done = tessera(own_home, "admin", "four-eyes", "approve", request_id, "--as", second)
    assert done.returncode == 0 and "executed" in done.stdout, done.stderr
    with slapd.directory() as directory:
        assert "system-administrators" not in directory.find(uid).groups


@pytest.mark.parametrize("method,path,form,status", [
    ("GET", "/admin/applications/999999", None, 404),
    ("GET", "/admin/applications/not-a-number", None, 404),
    ("GET", "/admin/certificates/zz-not-hex", None, 400),
    ("GET", "/admin/certificates/abcdef0123", None, 404),
    ("GET", "/admin/cards/0000000000", None, 404),
    ("GET", "/admin/people/no-such-person", None, 404),
    ("GET", "/admin/four-eyes/999999", None, 404),
    ("GET", "/admin/clients/no-such-client", None, 404),
    ("POST", "/admin/cards/0000000000/block", {}, 404),
    ("POST", "/admin/people/{officer}/grant", {"group": "root-of-all"}, 400),
    ("POST", "/admin/people/no-such-person/leaver", {}, 404),
    ("POST", "/admin/certificates/zz/revoke", {"reason": "no-such-reason"}, 400),
    ("POST", "/admin/applications/999999/issue", {}, 404),
    ("POST", "/admin/four-eyes/999999/approve", {}, 400),
    ("POST", "/admin/people/{officer}/change-post", {"post": ""}, 400),
])
def test_bad_input_is_a_clear_4xx(idp: IdpServer, admins: dict[str, str], admin_agents: dict[str, AdminAgent],
                                  method: str, path: str, form: dict[str, str] | None, status: int) -> None:
    agent = admin_agents["system-admin" if path.startswith("/admin/clients") else "security-admin"]
    url = path.format(officer=admins["officer"])
    if method == "GET":
        response = agent.get(idp.url(url), headers={"Accept": "application/json"})
        assert response.status_code == status, response.text[:300]
        assert response.headers["Content-Type"].startswith("application/problem+json")
        assert response.json()["status"] == status and response.json()["title"]
    else:
        response = agent.act(url, **(form or {}))
        assert response.status_code == status, response.text[:300]
        assert "Traceback" not in response.text and 'role="alert"' in response.text


def test_the_console_needs_a_login_and_csrf(idp: IdpServer, admin_agents: dict[str, AdminAgent],
                                            admins: dict[str, str]) -> None:
    import requests

    anonymous = requests.get(idp.url("/admin/people"), allow_redirects=False, timeout=10)
    assert anonymous.status_code == 302 and "/login?next=" in anonymous.headers["Location"]
    forged = admin_agents["security-admin"].post(idp.url(f"/admin/people/{admins['officer']}/leaver"),
                                                 data={"confirmed": "yes"}, allow_redirects=False)
    assert forged.status_code == 400
    # an unconfirmed action only shows the confirmation page and changes nothing
    page = admin_agents["security-admin"].act(f"/admin/people/{admins['officer']}/leaver", confirmed=False)
    assert page.status_code == 200 and 'id="confirm"' in page.text
    person = admin_agents["security-admin"].get(idp.url(f"/admin/people/{admins['officer']}"))
    assert 'id="enabled" data-state="enabled">enabled<' in person.text


def test_tables_search_and_page(idp: IdpServer, admins: dict[str, str], admin_agents: dict[str, AdminAgent]) -> None:
    import re

    security, auditor = admin_agents["security-admin"], admin_agents["auditor"]
    first = security.get(idp.url("/admin/people"))
    assert first.status_code == 200 and "page 1 of" in first.text and 'rel="next"' in first.text
    following = re.search(r'rel="next" href="([^"]+)"', first.text).group(1).replace("&amp;", "&")
    second = security.get(idp.url(following))
    assert "page 2 of" in second.text and 'rel="prev"' in second.text
    assert set(re.findall(r'/admin/people/([^"]+)"', first.text)).isdisjoint(re.findall(r'/admin/people/([^"]+)"', second.text))
    found = security.get(idp.url("/admin/people"), params={"q": admins["officer"]})
    assert re.findall(r'href="/admin/people/([^"]+)"', found.text) == [admins["officer"]]
    assert auditor.get(idp.url("/admin/people")).status_code == 403  # at least one admin.* entry
    trail = auditor.get(idp.url("/admin/audit"), params={"type": "admin.*"})
    types = re.findall(r"<td>(admin\.[a-z.-]+)</td>", trail.text)
    assert types and all(t.startswith("admin.") for t in types)
    assert "page 1 of" in trail.text
    mine = auditor.get(idp.url("/admin/audit"), params={"subject": f"staff:{admins['auditor']}"})
    subjects = set(re.findall(r"<td>(staff:[^<]+)</td>", mine.text))
    assert subjects == {f"staff:{admins['auditor']}"}
    export = auditor.post(idp.url("/admin/audit/export"), data={"csrf_token": auditor.csrf(), "format": "csv",
                                                              "type": "admin.*"})
    assert export.status_code == 200 and export.headers["Content-Type"].startswith("text/csv")
    lines = export.text.splitlines()
    assert lines[0].startswith("seq,time,type") and all(",admin." in line for line in lines[1:])
