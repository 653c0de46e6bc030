"""The four-eyes page of the admin console (issue 17, item 5): it leads with the requests waiting
for a decision, with links to decide; the forms that ask for a request follow: adding any
administrator (as ``tessera admin four-eyes request add-administrator`` does) and revoking an
issuing CA chosen from the deployment's issuing CAs, never typed.

Against the running service and its directory (tests.fixtures_admin), without a browser.
"""

from __future__ import annotations

import re

import pytest

from tests.fixtures_admin import *  # noqa: F401,F403
from tests.fixtures_admin import PASSWORD, AdminAgent, IdpServer, audit_entries, audit_tip, new_uid

EN = {"Accept-Language": "en", "Accept": "text/html"}


def test_the_page_leads_with_the_pending_requests(idp: IdpServer, admin_agents: dict[str, AdminAgent]) -> None:
    first, second = admin_agents["security-admin"], admin_agents["security-admin-2"]
    page = first.get(idp.url("/admin/four-eyes"), headers=EN)
    assert page.status_code == 200
    cas = dict(re.findall(r'<option value="([^"]+)">([^<]+)</option>',
                          re.search(r'<select name="ca"[^>]*>(.*?)</select>', page.text, re.S).group(1)))
    assert {"staff", "citizen"} <= set(cas) and '<input type="text" name="ca"' not in page.text
    asked = first.act("/admin/four-eyes/revoke-issuing-ca", ca="citizen", reason="superseded")
    assert asked.status_code == 302, asked.text[:400]
    request_id = int(asked.headers["Location"].rsplit("/", 1)[-1])
    try:
        text = second.get(idp.url("/admin/four-eyes"), headers=EN).text
        order = [text.index(marker) for marker in ('id="pending"', 'id="add-administrator-title"',
                                                   'id="revoke-ca-title"', 'id="four-eyes"')]
        assert order == sorted(order), order  # pending first, then the forms, then every request
        assert 'id="sole-security-administrator"' not in text  # two or more: requests can be approved
        pending = text[order[0]:order[1]]
        assert f'id="decide-{request_id}"' in pending and "revoke-issuing-ca" in pending
        own = first.get(idp.url("/admin/four-eyes"), headers=EN).text
        assert f'id="decide-{request_id}"' not in own and "yours: a second administrator decides" in own
    finally:
        assert second.act(f"/admin/four-eyes/{request_id}/reject").status_code == 302
    after = second.get(idp.url("/admin/four-eyes"), headers=EN).text
    assert f'id="decide-{request_id}"' not in after


def test_adding_an_administrator_from_the_four_eyes_page(idp: IdpServer, slapd,  # type: ignore[no-untyped-def]
                                                         admin_agents: dict[str, AdminAgent]) -> None:
    first, second = admin_agents["security-admin"], admin_agents["security-admin-2"]
    uid = new_uid("newaud")
    slapd.create_user(uid, PASSWORD, department="it-centre", title="Auditor")
    confirm = first.act("/admin/four-eyes/add-administrator", confirmed=False, uid=uid, group="auditors")
    assert confirm.status_code == 200 and 'id="confirm"' in confirm.text and "four eyes" in confirm.text
    asked = first.act("/admin/four-eyes/add-administrator", uid=uid, group="auditors")
    assert asked.status_code == 302 and "/admin/four-eyes/" in asked.headers["Location"], asked.text[:400]
    request_path = asked.headers["Location"].replace(idp.base, "")
    with slapd.directory() as directory:
        assert "auditors" not in directory.find(uid).groups  # one pair of eyes does nothing
    assert second.act(request_path + "/approve").status_code == 302
    with slapd.directory() as directory:
        assert "auditors" in directory.find(uid).groups
    assert 'id="four-eyes-status">executed<' in second.get(idp.url(request_path), headers=EN).text


@pytest.mark.parametrize(("form", "status", "words"), [
    ({"uid": "nobody-here-at-all", "group": "auditors"}, 404, "no staff member"),
    ({"uid": "x(uid=*)", "group": "auditors"}, 404, "no staff member"),
    ({"uid": "{officer}", "group": "approvers"}, 400, "is not an administrator role"),
    ({"uid": "{officer}", "group": ""}, 400, "is not an administrator role"),
    ({"uid": "{security-admin}", "group": "auditors"}, 409, "already a security administrator"),
])
def test_a_wrong_add_administrator_request_is_refused_and_audited(
        idp: IdpServer, admins: dict[str, str], admin_agents: dict[str, AdminAgent],
        form: dict[str, str], status: int, words: str) -> None:
    first = admin_agents["security-admin"]
    before = audit_tip(idp)
    form = {k: admins.get(v.strip("{}"), v) for k, v in form.items()}  # "{officer}": that admin's user name
    answer = first.act("/admin/four-eyes/add-administrator", **form)
    assert answer.status_code == status and words in answer.text, (answer.status_code, answer.text[-800:])
    refused = [e for e in audit_entries(idp, f"staff:{admins['security-admin']}", before) if e["result"] == "refused"]
    assert refused, "the refusal is on the trail"
    assert not [e for e in audit_entries(idp, since_seq=before) if e["event_type"] == "admin.four-eyes.request"]


@pytest.mark.parametrize("role", ["system-admin", "auditor", "officer", "approver"])
def test_only_a_security_administrator_adds_administrators(idp: IdpServer, admins: dict[str, str],
                                                           admin_agents: dict[str, AdminAgent], role: str) -> None:
    answer = admin_agents[role].act("/admin/four-eyes/add-administrator", uid=admins["officer"], group="auditors")
    assert answer.status_code == 403, answer.status_code
    assert admin_agents[role].get(idp.url("/admin/four-eyes"), headers=EN).status_code == 403
