"""Four eyes for revoking an issuing CA (on a home of its own: the CA is really revoked), judged
by openssl on the root's CRL and by `tessera audit verify`; and bad input to the console answered
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
from tests.fixtures_admin import AdminAgent, IdpServer
from tests.fixtures_web import TESSERA
from tests.servers import tessera_env


@pytest.fixture(scope="module")
def own_home(slapd) -> Iterator[dict[str, str]]:  # type: ignore[no-untyped-def]
    """`tessera init` on a fresh home that uses the test directory; the environment to run the CLI."""
    base = Path(tempfile.mkdtemp(prefix="tessera-4eyes-"))
    env = tessera_env(base / "home", "http://127.0.0.1:9", **slapd.env)
    subprocess.run([TESSERA, "init"], env=env, check=True, capture_output=True, timeout=180)
    try:
        yield env
    finally:
        shutil.rmtree(base, ignore_errors=True)


def tessera(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TESSERA, *args], env=env, capture_output=True, text=True, timeout=120)


def test_revoking_an_issuing_ca_needs_a_second_security_administrator(own_home: dict[str, str], admins: dict[str, str],
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
    crl.write_bytes(subprocess.run([TESSERA, "ca", "crl", "--ca", "root"], env=own_home, capture_output=True,
                                   check=True).stdout)
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
    assert 'id="enabled">yes<' in person.text


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
