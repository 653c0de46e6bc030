"""The admin console and the application's own pages answer every request value with a well-formed
answer below 500 (issue 12: findings 1, 7 and 8).

Regression tests go through the real ``tessera serve`` (granian) with the admins of
tests/fixtures_admin.py; the Hypothesis fuzz test runs the same application in process
(``app.test_client()``) on the same home, logged in with the very session cookies of those admins.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from idp.governance_models import ApplicationStatus, FourEyesStatus
from idp.response_guard import response_fault
from tests.fixtures_admin import *  # noqa: F401,F403
from tests.fixtures_admin import AdminAgent, IdpServer

ROLES = ("system-admin", "security-admin", "auditor", "officer", "approver")
HUGE = "99999999999999999999999"


def _alive(idp: IdpServer) -> None:
    assert requests.get(idp.url("/healthz"), timeout=10).status_code == 200


# -- finding 1: a filter value never becomes the status --------------------------------------------
@pytest.mark.parametrize(("role", "path", "states"), [
    ("security-admin", "/admin/applications", tuple(ApplicationStatus)),
    ("officer", "/admin/applications", tuple(ApplicationStatus)),
    ("security-admin", "/admin/certificates", ("valid", "revoked", "on-hold")),
    ("security-admin", "/admin/four-eyes", tuple(FourEyesStatus)),
])
def test_status_filters_answer_and_the_service_stays_up(idp: IdpServer, admin_agents: dict[str, AdminAgent],
                                                        role: str, path: str, states: tuple[str, ...]) -> None:
    agent = admin_agents[role]
    for state in (*states, *states):  # twice: five crashed workers made granian give up
        page = agent.get(idp.url(path), params={"status": state}, headers={"Accept": "text/html"})
        assert page.status_code == 200, (state, page.text[:300])
        assert f'<option value="{state}" selected>' in page.text
    for bad in ("approved" if "approved" not in states else "valid", "200", "999 x", "a\r\nb", "\x00", "名字"):
        page = agent.get(idp.url(path), params={"status": bad}, headers={"Accept": "text/html"})
        assert page.status_code == 400 and "Unknown status" in page.text, (bad, page.status_code)
        problem = agent.get(idp.url(path), params={"status": bad}, headers={"Accept": "application/json"})
        assert problem.status_code == 400 and problem.headers["Content-Type"] == "application/problem+json"
    _alive(idp)


def test_four_eyes_filter_links_work(idp: IdpServer, admin_agents: dict[str, AdminAgent]) -> None:
    agent = admin_agents["security-admin"]
    page = agent.get(idp.url("/admin/four-eyes"), headers={"Accept": "text/html"})
    links = re.findall(r'<a href="([^"]+)" id="four-eyes-([a-z]+)"', page.text)
    assert sorted(name for _, name in links) == sorted(("any", *FourEyesStatus))
    for href, name in links:
        answer = agent.get(idp.url(href.replace("&amp;", "&")), headers={"Accept": "text/html"})
        assert answer.status_code == 200, (name, answer.status_code)


# -- finding 7: row ids out of range ---------------------------------------------------------------
@pytest.mark.parametrize(("role", "path"), [
    ("security-admin", f"/admin/applications/{HUGE}"), ("officer", f"/admin/applications/{HUGE}"),
    ("security-admin", f"/admin/four-eyes/{HUGE}"), ("auditor", f"/admin/audit/{HUGE}"),
    ("security-admin", f"/admin/applications/{2**31}"), ("auditor", f"/admin/audit/{2**63}"),
    ("security-admin", "/admin/four-eyes/0"), ("auditor", "/admin/audit/-1"),
])
def test_row_ids_out_of_range_are_404(idp: IdpServer, admin_agents: dict[str, AdminAgent], role: str, path: str) -> None:
    for accept in ("text/html", "application/json"):
        answer = admin_agents[role].get(idp.url(path), headers={"Accept": accept})
        assert answer.status_code == 404, (path, answer.status_code, answer.text[:300])
    for path_in_range in (f"/admin/applications/{2**31 - 1}", f"/admin/audit/{2**62}"):
        # in range but absent: the view's own 404 (or 403 for a role that may not look)
        assert admin_agents[role].get(idp.url(path_in_range)).status_code in (403, 404)
    _alive(idp)


# -- finding 8: the apply form only for those who may submit it -------------------------------------
@pytest.mark.parametrize("role", ROLES)
def test_apply_form_only_for_department_officers(idp: IdpServer, admin_agents: dict[str, AdminAgent], role: str) -> None:
    agent = admin_agents[role]
    may = role in ("officer", "approver")
    home = agent.get(idp.url("/admin/"), headers={"Accept": "text/html"})
    assert ('id="apply-link"' in home.text) is may
    listing = agent.get(idp.url("/admin/applications"), headers={"Accept": "text/html"})
    if listing.status_code == 200:
        assert ('id="apply-link"' in listing.text) is may
    form = agent.get(idp.url("/admin/applications/new"), headers={"Accept": "text/html"})
    assert form.status_code == (200 if may else 403), form.text[:300]
    if not may:
        assert "Administrators do not apply for accounts" in form.text


# -- fuzz, in process ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def console(idp: IdpServer) -> Iterator[Flask]:
    from idp.app import create_app
    from idp.settings import Settings

    with pytest.MonkeyPatch.context() as patch:
        for name, value in idp.directory.env.items():  # the directory settings are read from the environment
            patch.setenv(name, value)
        app = create_app(Settings.from_env(idp.home, idp.env))
        try:
            yield app
        finally:
            app.extensions["tessera"].close()


def _client(app: Flask, agent: AdminAgent) -> FlaskClient:
    client = app.test_client()
    for cookie in agent.cookies:
        client.set_cookie(cookie.name, cookie.value or "", domain="localhost")
    return client


def _get_rules(app: Flask) -> list[Any]:
    return sorted((r for r in app.url_map.iter_rules()
                   if "GET" in (r.methods or ()) and (r.endpoint.startswith("admin_console.")
                                                      or r.endpoint in ("index", "favicon", "health"))),
                  key=lambda r: r.rule)


TRICKY = ["", "0", "-1", HUGE, str(2**31), str(2**63), "9" * 5000, "1e3", " 1", "approved", "issued", "pending",
          "valid", "on-hold", "\r\n", "a\r\nSet-Cookie: x=1", "\x00", "%", "%00", "..", ".", "a/b", "名字", "\u202e",
          "\ud7ff", "2026-11-25", "2026-13-45", "Z", "//evil.example", "<script>", "'\"", "*", "(uid=*)"]
values = st.one_of(st.sampled_from(TRICKY), st.text(max_size=40),
                   st.integers(min_value=-(2**80), max_value=2**80).map(str))
names = st.one_of(st.sampled_from(["q", "status", "page", "department", "since", "until", "type", "subject",
                                   "_external", "_scheme", "_anchor", "_method", "endpoint", "filename", "next"]),
                  st.text(min_size=1, max_size=8))


def _check(response: Any, where: str) -> None:
    assert response.status_code < 500, (where, response.status_code, response.get_data(as_text=True)[:500])
    assert response_fault(response.status, response.headers.to_wsgi_list()) is None, where
    body = response.get_data()
    if response.mimetype == "application/problem+json":
        assert json.loads(body)["status"] == response.status_code, where
    if 300 <= response.status_code < 400:
        assert response.headers["Location"], where
    elif response.status_code != 204:
        assert body, where


@pytest.mark.parametrize("role", ROLES)
def test_fuzzed_get_requests_never_5xx(console: Flask, admin_agents: dict[str, AdminAgent], role: str) -> None:
    client = _client(console, admin_agents[role])
    rules = _get_rules(console)
    assert any(r.rule == "/admin/applications" for r in rules) and any(r.rule == "/" for r in rules)
    assert client.get("/admin/", headers={"Accept": "text/html"}).status_code == 200  # really logged in

    @settings(max_examples=120, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(rule=st.sampled_from(rules), segments=st.lists(values, min_size=3, max_size=3),
           query=st.lists(st.tuples(names, values), max_size=4), accept=st.sampled_from(["text/html", "application/json"]))
    def probe(rule: Any, segments: list[str], query: list[tuple[str, str]], accept: str) -> None:
        path = rule.rule
        for name, segment in zip(sorted(rule.arguments), segments, strict=False):
            path = re.sub(r"<[^>]*:?%s>" % name, urllib.parse.quote(segment, safe=""), path)
        query_string = urllib.parse.urlencode(query)
        _check(client.get(path, query_string=query_string, headers={"Accept": accept}), f"{role} {path}?{query_string}")

    probe()
    # every path with long names in each part, every time (a refusal's audit object is clipped, not a 500)
    for rule in rules:
        for long in ("9" * 5000, "名字" * 200, "a" * 300):
            path = rule.rule
            for name in rule.arguments:
                path = re.sub(r"<[^>]*:?%s>" % name, urllib.parse.quote(long, safe=""), path)
            _check(client.get(path, headers={"Accept": "text/html"}), f"{role} {path[:80]}")
    # raw query strings a form never sends: bytes that are not UTF-8, a lone percent sign
    for raw in ("status=%ff", "page=%00", "q=%E5%90", "status=%", "since=%0d%0a", "type=" + "x" * 5000):
        for rule in rules:
            if not rule.arguments:
                _check(client.get(rule.rule, query_string=raw), f"{role} {rule.rule}?{raw}")
