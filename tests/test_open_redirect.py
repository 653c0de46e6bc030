"""No open redirect after login (issue 12, finding 6): a corpus of known open-redirect bypasses as
``next``, through the running service's real login flow. Each ``Location`` is resolved as a
browser does (the WHATWG URL Standard, by the ada-url parser) against the login page's URL: it
always stays on the service's own origin, and never becomes a 5xx."""

from __future__ import annotations

import re

import pytest
import requests
from ada_url import URL

from idp.redirect_target import local_path
from tests.fixtures_web import *  # noqa: F401,F403
from tests.fixtures_web import PASSWORD, IdpServer, StaffAgent, csrf_of, new_uid

# known bypasses (PayloadsAllTheThings "Open Redirect", OWASP's unvalidated redirects cheat sheet,
# and the two of the penetration test), each as the raw value of ``next``
BYPASSES = [
    "//evil.example", "//evil.example/", "///evil.example", "////evil.example", "/\\evil.example",
    "\\/evil.example", "\\\\evil.example", "/\\/evil.example", "/%09/evil.example", "/\t/evil.example",
    "/\n/evil.example", "/\r/evil.example", "/%0a/evil.example", "/%0d/evil.example", "/%2F/evil.example",
    "/%2f%2fevil.example", "%2F%2Fevil.example", "%2f/evil.example", "/%5Cevil.example", "/%5c%5cevil.example",
    "https:evil.example", "https://evil.example", "http:/evil.example", "HTTPS://evil.example", "//evil.example@x",
    "java\tscript:alert(1)", "javascript:alert(1)", "JaVaScRiPt:alert(1)", "data:text/html,<script>1</script>",
    "／／evil.example", "/／evil.example", "／\\evil.example", "/.//evil.example", "/./\\evil.example",
    "/..//evil.example", "/a/../..//evil.example", "/%2e%2e//evil.example", "@evil.example", "evil.example",
    " //evil.example", "/ /evil.example", "\x00//evil.example", "/\x00/evil.example", "//%09/evil.example",
    "/%09%2F/evil.example", "/%252F/evil.example", "//evil%E3%80%82example", "/%ff/evil", "//127.0.0.1@evil.example",
    "http://127.0.0.1:1@evil.example", "/\u2028/evil.example", "/\u00a0/evil.example", "\u3002evil.example",
    "/login?next=//evil.example#", "?//evil.example", "#//evil.example", "." * 3000,
]
KEPT = {"/login?next=//evil.example", "/%252F/evil.example"}
# values that must survive unchanged: a path of this site (the authorization request a login interrupted)
LOCAL = ["/account", "/oidc/authorize?client_id=abc&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&scope=openid%20profile"]


def _same_origin_path(idp: IdpServer, location: str) -> None:
    """``location`` is a path-absolute reference that a browser resolves on the service's origin."""
    assert location.startswith("/") and not location.startswith(("//", "/\\")), location
    resolved = URL(location, base=idp.url("/login"))
    assert resolved.origin == URL(idp.base).origin, (location, resolved.href)
    assert not resolved.pathname.startswith("//"), (location, resolved.href)
    assert not re.search(r"[\x00-\x20\x7f\\]", location), location


def test_corpus_is_big_enough_and_refused_by_the_parser() -> None:
    assert len(set(BYPASSES)) >= 40
    for value in BYPASSES:
        target = local_path(value)
        # the only ones kept are paths of this site, as they stand (decoded once, "%252F" is "%2F": a
        # segment's text, no slash; the login page's own next is cleaned when that page is used)
        assert target is None or target in KEPT, (value, target)
    for value in LOCAL:
        assert local_path(value) == value


def test_every_character_outside_printable_ascii_is_refused_anywhere() -> None:
    """Each code point of the Basic Multilingual Plane (and a sample beyond), put inside a path,
    raw and percent-encoded: only printable ASCII other than space and backslash is kept raw, and
    decoded only what is printable and not white space. Judged against the per-character rule
    (``str.isspace``, ``str.isprintable``), not the string-wide checks the module makes."""
    from urllib.parse import quote

    for code in [*range(0x10000), *range(0x10000, 0x110000, 251)]:
        ch = chr(code)
        raw_ok = 0x21 <= code <= 0x7E and ch != "\\"
        if ch not in "/?#.%" and not 0xD800 <= code <= 0xDFFF:
            assert (local_path(f"/a{ch}b") is not None) == raw_ok, hex(code)
            decoded_ok = ch != "\\" and not ch.isspace() and ch.isprintable()
            assert (local_path(f"/a{quote(ch, safe='')}b") is not None) == decoded_ok, hex(code)


@pytest.fixture(scope="module")
def logged_in(idp: IdpServer, slapd) -> StaffAgent:  # type: ignore[no-untyped-def]
    uid = new_uid("redir")
    slapd.create_user(uid, PASSWORD, groups=("auditors",))
    agent = StaffAgent(idp, uid, PASSWORD)
    agent.login()
    return agent


@pytest.mark.parametrize("value", BYPASSES + LOCAL)
def test_after_login_location_stays_on_the_site(idp: IdpServer, logged_in: StaffAgent, value: str) -> None:
    """A logged-in visit to ``/login?next=...`` redirects at once: to ``next`` only if it is local."""
    response = logged_in.get(idp.url("/login"), params={"next": value}, allow_redirects=False)
    assert response.status_code == 302, (value, response.status_code)
    location = response.headers["Location"]
    _same_origin_path(idp, location)
    if value in LOCAL:
        assert location == value
    else:
        assert location in KEPT or "evil" not in location


def test_the_penetration_tests_two_values(idp: IdpServer, logged_in: StaffAgent) -> None:
    for raw in ("/login?next=%2F%09%2Fevil.example", "/login?next=/%0A/evil.example"):
        response = logged_in.get(idp.url(raw), allow_redirects=False)
        assert response.status_code == 302 and response.headers["Location"] == "/account", response.headers


def test_full_login_with_hostile_next(idp: IdpServer, slapd) -> None:  # type: ignore[no-untyped-def]
    """Password step with a hostile ``next`` posted raw (not the form's cleaned value), then the
    second factor (a recovery code, ten per person): the final redirect is the default page."""
    uid = new_uid("redir")
    slapd.create_user(uid, PASSWORD, groups=("auditors",))
    first = StaffAgent(idp, uid, PASSWORD)
    first.login()
    codes = list(first.recovery_codes)
    for value in ["/%09/evil.example", "/\n/evil.example", "//evil.example", "/\\evil.example", "https:evil.example",
                  "／／evil.example", "/.//evil.example", "/%5Cevil.example", LOCAL[0]]:
        agent = requests.Session()
        page = agent.get(idp.url("/login"), params={"next": value})
        assert page.status_code == 200
        hidden = re.search(r'name="next" value="([^"]*)"', page.text)
        assert hidden and hidden.group(1) == "/account"
        step = agent.post(idp.url("/login"), data={"username": uid, "password": PASSWORD, "next": value,
                                                   "csrf_token": csrf_of(page.text)}, allow_redirects=False)
        assert step.status_code == 200 and 'action="/login/code"' in step.text, step.status_code
        done = agent.post(idp.url("/login/code"), data={"code": codes.pop(), "csrf_token": csrf_of(step.text)},
                          allow_redirects=False)
        assert done.status_code == 302, (value, done.status_code)
        _same_origin_path(idp, done.headers["Location"])
        assert done.headers["Location"] == "/account", (value, done.headers["Location"])
