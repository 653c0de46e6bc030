"""No page reachable without logging in shows personal information (issue 13 item 3; PIPL art. 28:
an identity number is sensitive personal information; GB/T 35273-2020 section 5).

Against a service with citizens, cards and certificates issued (tests.fixtures_citizen): every GET
route of the application that takes no argument (read from the application's own url_map), the
well-known pages, and every link of this site those pages show, fetched without a session, with and
without ``?lang=``, in both languages. None may contain an 18-character identity number
(GB 11643-1999), an 11-digit Estonian personal code (EVS 585), the name or identity number of a
citizen in the registry, or an e-mail address (staff e-mail addresses above all).
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
import requests

from tests.fixtures_citizen import *
from tests.fixtures_citizen import CitizenIdp

REPO = Path(__file__).resolve().parent.parent
GB11643 = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")
EVS585 = re.compile(r"(?<![0-9A-Za-z])[1-8]\d{10}(?![0-9A-Za-z])")
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
WELL_KNOWN = ("/", "/.well-known/openid-configuration", "/oidc/jwks.json", "/login", "/citizen/login", "/healthz")
VARIANTS = ({}, {"lang": "en"}, {"lang": "zh-CN"})
LANGUAGES = ("zh-CN", "en")


def _routes(idp: CitizenIdp, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every GET rule of the application without required arguments (its own url_map)."""
    from idp.app import create_app
    from idp.settings import Settings

    for name, value in idp.env.items():
        if name.startswith(("TESSERA_", "SOFTHSM2_")):
            monkeypatch.setenv(name, value)
    app = create_app(Settings.from_env(idp.path, idp.env))
    rules = [r.rule for r in app.url_map.iter_rules()
             if "GET" in (r.methods or ()) and not r.arguments and r.endpoint != "static"]
    assert "/" in rules and "/citizen/login" in rules, rules
    return sorted(set(rules))


def _forbidden(idp: CitizenIdp) -> dict[str, str]:
    """Personal data the service holds: citizens' names and numbers, staff e-mail addresses."""
    found: dict[str, str] = {}
    for national_id, holder in idp.sql("SELECT national_id, holder FROM card"):
        found[national_id] = "a citizen's identity number"
        found[holder] = "a citizen's name"
    for ldif in (REPO / "ldap").glob("*.ldif"):
        for mail in re.findall(r"^mail: *(\S+)", ldif.read_text(encoding="utf-8"), re.MULTILINE):
            found[mail] = "a staff e-mail address"
    assert any(v == "a citizen's name" for v in found.values()), "the fixture issued no cards: nothing to look for"
    assert any(v == "a staff e-mail address" for v in found.values()), "no seed staff e-mail: nothing to look for"
    return found


def _links(base: str, page: requests.Response) -> set[str]:
    if "html" not in page.headers.get("Content-Type", ""):
        return set()
    out = set()
    for href in re.findall(r'href="([^"]+)"', page.text):
        url = urljoin(page.url, html.unescape(href))
        if url.startswith(base + "/") and "/language" not in urlsplit(url).path:
            out.add(url.split("#")[0])
    return out


def _problems(body: str, forbidden: dict[str, str]) -> list[str]:
    problems = [f"{what}: {value}" for value, what in forbidden.items() if value and value in body]
    problems += [f"an 18-character identity number: {m.group(0)}" for m in GB11643.finditer(body)]
    problems += [f"an 11-digit personal code: {m.group(0)}" for m in EVS585.finditer(body)]
    problems += [f"an e-mail address: {m.group(0)}" for m in EMAIL.finditer(body)]
    return problems


def test_the_checks_can_fail() -> None:
    """The patterns find what they are for, and not a serial number or a date."""
    body = "<td>433101199001011234</td> 4331011990010112 3X 43310119900101123X 38001010000 wangfang@finance.tessera.example"
    found = _problems(body, {"张伟": "a citizen's name"})
    assert found == ["an 18-character identity number: 433101199001011234",
                     "an 18-character identity number: 43310119900101123X",
                     "an 11-digit personal code: 38001010000",
                     "an e-mail address: wangfang@finance.tessera.example"]
    assert _problems("张伟", {"张伟": "a citizen's name"}) == ["a citizen's name: 张伟"]
    assert not _problems("serial 0x4f3a9b12c0d1e2f3a4b5c6d7e8f9 2026-12-02 20:15", {})


def test_no_anonymous_page_shows_personal_information(citizen_idp: CitizenIdp,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    forbidden = _forbidden(citizen_idp)
    base = citizen_idp.base
    start = sorted(set(_routes(citizen_idp, monkeypatch)) | set(WELL_KNOWN))
    seen: dict[str, list[str]] = {}
    fetched = 0
    frontier = [base + path for path in start]
    for depth in range(2):  # the routes and well-known pages, then every link they show
        found: set[str] = set()
        for url in frontier:
            for language in LANGUAGES:
                for params in VARIANTS if depth == 0 else ({},):
                    page = requests.get(url, params=params, headers={"Accept-Language": language},
                                        allow_redirects=True, timeout=30)
                    fetched += 1
                    assert page.status_code < 500, (url, page.status_code, page.text[:300])
                    body = page.content.decode("utf-8", "replace")
                    problems = _problems(body, forbidden)
                    if problems:
                        seen[f"{url} {params} {language}"] = problems
                    found |= _links(base, page)
        frontier = sorted(found - set(frontier) - {base + p for p in start})
    assert fetched > 40
    assert not seen, f"personal information on pages anyone can open: {seen}"
