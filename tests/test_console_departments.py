"""The admin console names departments only as the directory's organisation has them (issue 17,
item 5): the change of post, the new-account application and the people search pick one from a
<select> of the directory's departments (id and name); a department the directory does not have
is refused with a page that says why, and nothing is stored.

Against the running service and its directory (tests.fixtures_admin), without a browser.
"""

from __future__ import annotations

import json
import re
import sqlite3

import requests

from tests.fixtures_admin import *  # noqa: F401,F403
from tests.fixtures_admin import PASSWORD, AdminAgent, IdpServer, audit_entries, audit_tip, new_uid

EN = {"Accept-Language": "en", "Accept": "text/html"}


def _options(page: requests.Response, select_name: str) -> dict[str, str]:
    """The options of the <select name=...> of a page: value -> shown text."""
    found = re.search(r'<select name="%s"[^>]*>(.*?)</select>' % select_name, page.text, re.S)
    assert found, page.text[:400]
    return dict(re.findall(r'<option value="([^"]*)"[^>]*>([^<]*)</option>', found.group(1)))


def _applications_of(idp: IdpServer, uid: str) -> list[tuple[str, str]]:
    conn = sqlite3.connect(f"file:{idp.home / 'tessera.db'}?mode=ro", uri=True, timeout=30)
    try:
        return list(conn.execute("SELECT kind, department FROM gov_account_application WHERE uid = ?", (uid,)))
    finally:
        conn.close()


def test_change_of_post_picks_a_department_of_the_directory(idp: IdpServer, slapd,  # type: ignore[no-untyped-def]
                                                            admin_agents: dict[str, AdminAgent]) -> None:
    security = admin_agents["security-admin"]
    uid = new_uid("movdep")
    slapd.create_user(uid, PASSWORD, department="finance", title="Clerk", groups=("approvers",))
    page = security.get(idp.url(f"/admin/people/{uid}"), headers=EN)
    options = _options(page, "department")
    assert options[""].startswith("the same (")  # the present department stays unless another is chosen
    assert "tax" in options and "(tax)" in options["tax"]
    assert '<input type="text" name="department"' not in page.text  # no free text anywhere on the page

    before = audit_tip(idp)
    typo = security.act(f"/admin/people/{uid}/change-post", confirmed=False, post="Inspector", department="taxx")
    assert typo.status_code == 400, typo.text[:400]  # refused before the confirmation
    assert "is not a department of the directory" in typo.text and "tax" in typo.text
    confirmed_typo = security.act(f"/admin/people/{uid}/change-post", post="Inspector", department="taxx")
    assert confirmed_typo.status_code == 400
    assert _applications_of(idp, uid) == []  # nothing stored
    with slapd.directory() as directory:
        assert "approvers" in directory.find(uid).groups  # nothing removed either
    refused = [e for e in audit_entries(idp, f"staff:{security.uid}", before)
               if e["event_type"] == "admin.account.change-post"]
    assert refused and {e["result"] for e in refused} == {"refused"}
    assert "not a department" in json.loads(refused[0]["details"])["reason"]

    moved = security.act(f"/admin/people/{uid}/change-post", post="Inspector", department="tax")
    assert moved.status_code == 302, moved.text[:400]
    assert _applications_of(idp, uid) == [("change-of-post", "tax")]


def test_the_application_form_offers_the_officers_own_department(idp: IdpServer,
                                                                 admin_agents: dict[str, AdminAgent]) -> None:
    officer = admin_agents["officer"]  # of finance
    form = officer.get(idp.url("/admin/applications/new"), headers=EN)
    assert form.status_code == 200
    options = _options(form, "department")
    assert list(options) == ["finance"] and options["finance"].endswith("(finance)")
    assert '<input type="text" name="department"' not in form.text


def test_people_search_filters_by_department(idp: IdpServer, slapd,  # type: ignore[no-untyped-def]
                                             admin_agents: dict[str, AdminAgent]) -> None:
    security = admin_agents["security-admin"]
    stem = new_uid("depq")
    slapd.create_user(stem + "f", PASSWORD, department="finance", title="Clerk")
    slapd.create_user(stem + "t", PASSWORD, department="tax", title="Clerk")
    every = security.get(idp.url("/admin/people"), params={"q": stem}, headers=EN)
    assert stem + "f" in every.text and stem + "t" in every.text
    tax = security.get(idp.url("/admin/people"), params={"q": stem, "department": "tax"}, headers=EN)
    assert tax.status_code == 200 and stem + "t" in tax.text and stem + "f" not in tax.text
    assert '<option value="tax" selected>' in tax.text
    only_tax = security.get(idp.url("/admin/people"), params={"department": "tax"}, headers=EN)
    assert stem + "t" in only_tax.text and stem + "f" not in only_tax.text
    unknown = security.get(idp.url("/admin/people"), params={"q": stem, "department": "taxx"}, headers=EN)
    assert unknown.status_code == 400
    assert 'id="search-error"' in unknown.text and "is not a department of the directory" in unknown.text
    assert '<select name="department"' in unknown.text  # the search form stays
