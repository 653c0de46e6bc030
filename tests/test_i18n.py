"""Languages of the web service (idp/i18n.py, docs/i18n.md).

Without servers: the catalogues against what Babel extracts from the code, a scan of every template
for English text left outside the catalogue, how language tags are read, how times are shown.
With the web service (tests.fixtures_web): which language a page comes in (Accept-Language, ?lang=,
the language switch's cookie, OIDC ui_locales), ``<html lang>``, and what discovery advertises.
"""

from __future__ import annotations

import datetime
import html.parser
import re
from pathlib import Path

import pytest
import requests
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from flask import Flask
from flask_babel import Babel
from hypothesis import given, settings
from hypothesis import strategies as st

from idp import i18n

REPO = Path(__file__).resolve().parent.parent
IDP = REPO / "idp"
TEMPLATES = IDP / "templates"
TRANSLATIONS = IDP / "translations"
#: Babel's name of the Simplified Chinese catalogue (zh-CN, zh-Hans-CN and zh resolve to it)
ZH = TRANSLATIONS / "zh_Hans_CN" / "LC_MESSAGES" / "messages.po"
EN = TRANSLATIONS / "en" / "LC_MESSAGES" / "messages.po"

#: words that stay as they are in every language: names of standards, formats and programs
UNTRANSLATED_WORDS = frozenset({
    "TESSERA", "DER", "PEM", "CRL", "OCSP", "POST", "Content-Type", "PKCS#10", "SHA-1", "SHA-256", "TOTP", "PIN", "QR",
    "CSV",
})


def _catalogue(path: Path):  # type: ignore[no-untyped-def]
    with path.open("rb") as f:
        return read_po(f)


def _extracted() -> dict[str, tuple[str, int]]:
    """msgid -> (file, line) of every string the code marks for translation (babel.cfg's map)."""
    method_map = [("**.py", "python"), ("templates/**.html", "jinja2")]
    found: dict[str, tuple[str, int]] = {}
    for package in (IDP, IDP.parent / "directory"):  # the packages babel.cfg's extraction reads
        for filename, lineno, message, _comments, _context in extract_from_dir(
                str(package), method_map=method_map, keywords={"_": None, "gettext": None, "lazy_gettext": None,
                                                              "ngettext": (1, 2), "N_": None}):
            key = message[0] if isinstance(message, tuple) else message
            found.setdefault(key, (f"{package.name}/{filename}", lineno))
    return found


def test_every_marked_string_is_translated_to_chinese() -> None:
    zh = _catalogue(ZH)
    extracted = _extracted()
    assert len(extracted) > 150, "extraction found too little: is babel.cfg's map still right?"
    missing = {k: v for k, v in extracted.items() if k not in zh}
    assert not missing, f"not in {ZH.relative_to(REPO)} (run the update of docs/i18n.md): {missing}"
    empty = [m.id for m in zh if m.id and (not any(m.string) if isinstance(m.string, tuple) else not m.string)]
    assert not empty, f"empty Chinese translations: {empty}"
    fuzzy = [m.id for m in zh if m.id and m.fuzzy]
    assert not fuzzy, f"fuzzy Chinese translations (not used until checked): {fuzzy}"
    for message in zh:  # placeholders survive translation (a lost one raises KeyError at render time)
        if not message.id:
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        wanted = set(re.findall(r"%\((\w+)\)", ids[0]))
        for s in strings:
            assert set(re.findall(r"%\((\w+)\)", s)) == wanted, (message.id, s)
    stale = [m.id for m in zh if m.id and (m.id[0] if isinstance(m.id, tuple) else m.id) not in extracted]
    assert not stale, f"translations no code uses any more (delete them): {stale}"


def test_english_catalogue_has_the_same_messages() -> None:
    zh = {m.id for m in _catalogue(ZH) if m.id}
    en = {m.id for m in _catalogue(EN) if m.id}
    assert zh == en


class _TextNodes(html.parser.HTMLParser):
    """Text nodes and people-facing attributes of HTML, outside <script>, <style> and <code>."""

    ATTRIBUTES = ("placeholder", "aria-label", "title", "alt")

    def __init__(self) -> None:
        super().__init__()
        self.skip = 0
        self.texts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "code"):
            self.skip += 1
        self.texts += [v for k, v in attrs if k in self.ATTRIBUTES and v]

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "code"):
            self.skip = max(0, self.skip - 1)

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.texts.append(data)


def untranslated_text(source: str) -> list[str]:
    """English words of a template's source that no ``_()``/``{% trans %}`` carries: the source with
    translation blocks and every Jinja tag, expression and comment taken out, parsed as HTML."""
    source = re.sub(r"{%-?\s*trans\b.*?{%-?\s*endtrans\s*-?%}", " ", source, flags=re.DOTALL)
    source = re.sub(r"{#.*?#}|{%.*?%}|{{.*?}}", " ", source, flags=re.DOTALL)
    parser = _TextNodes()
    parser.feed(source)
    found = []
    for text in parser.texts:
        text = re.sub(r"-----(BEGIN|END) [A-Z0-9 ]+-----", " ", text)  # PEM armour (RFC 7468) is no prose
        words = [w for w in re.findall(r"[A-Za-z][A-Za-z#0-9-]*", text) if w.upper() not in UNTRANSLATED_WORDS]
        if any(len(w) > 1 for w in words):
            found.append(" ".join(text.split()))
    return found


def test_no_template_shows_english_outside_the_catalogue() -> None:
    leftovers = {t.name: untranslated_text(t.read_text()) for t in sorted(TEMPLATES.glob("*.html"))}
    offending = {name: texts for name, texts in leftovers.items() if texts}
    assert not offending, f"English text outside _() / {{% trans %}}: {offending}"


def test_the_scan_finds_untranslated_text() -> None:
    """The scan itself can fail: plain text and a placeholder are found, wrapped text is not."""
    assert untranslated_text("<p>Log out</p>") == ["Log out"]
    assert untranslated_text('<input placeholder="Your name">') == ["Your name"]
    assert untranslated_text("<p>{{ _('Log out') }} <code>tessera init</code> {% trans %}Hi there{% endtrans %}</p>") == []


def test_every_card_login_refusal_has_words() -> None:
    """Each code a card login can be refused with (idp/webeid.py) has a sentence on the login page
    saying what happened and what to do, rather than the code itself."""
    source = (IDP / "webeid.py").read_text()
    codes = set(re.findall(r'LoginRefused\("([a-z-]*[a-z])"', source))  # "card-" + status: below
    codes |= {"card-" + s for s in ("lost", "renewed", "expired", "blocked", "revoked")}
    codes |= {"certificate-" + c for c in ("untrusted-issuer", "expired", "not-yet-valid", "revoked",
                                           "revocation-unknown", "wrong-purpose")}
    assert "card-not-registered" in codes and "nonce-invalid" in codes
    page = (TEMPLATES / "citizen_login.html").read_text()
    worded = set(re.findall(r'data-refusal="([a-z-]+)">{{ _\(', page))
    assert not codes - worded, f"card login refusals without words: {sorted(codes - worded)}"


@pytest.mark.parametrize(("tag", "locale"), [
    ("zh-CN", "zh_CN"), ("zh-Hans-CN", "zh_CN"), ("zh", "zh_CN"), ("zh_CN", "zh_CN"), ("zh-Hans", "zh_CN"),
    ("zh-SG", "zh_CN"), ("en", "en"), ("en-US", "en"), ("en-GB", "en"), ("EN", "en"),
    ("zh-TW", None), ("zh-Hant", None), ("zh-Hant-HK", None), ("fr", None), ("", None), ("x" * 80, None),
    ("zh-CN-<script>", None), ("../../etc", None),
])
def test_language_tags(tag: str, locale: str | None) -> None:
    assert i18n.supported_locale(tag) == locale


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_any_language_tag_is_read_without_error(tag: str) -> None:
    assert i18n.supported_locale(tag) in (None, "zh_CN", "en")


def _time_app(zone: str, locale: str) -> Flask:
    app = Flask("idp", root_path=str(IDP))
    app.config.update(TESSERA_TIMEZONE=zone, TESSERA_DEFAULT_LOCALE=locale, BABEL_TRANSLATION_DIRECTORIES="translations")
    Babel(app, locale_selector=lambda: locale)
    return app


@pytest.mark.parametrize(("zone", "locale", "shown"), [
    ("Asia/Shanghai", "zh_CN", "2026-12-02 20:15 (北京时间)"),
    ("Asia/Shanghai", "en", "2026-12-02 20:15 (China Standard Time, UTC+8)"),
    ("America/New_York", "en", "2026-12-02 07:15 (Eastern Standard Time, UTC-5)"),
    ("Asia/Kolkata", "en", "2026-12-02 17:45 (India Standard Time, UTC+5:30)"),
    ("UTC", "en", "2026-12-02 12:15 (Coordinated Universal Time, UTC+0)"),
])
def test_times_in_the_deployment_zone_with_the_zone_named(zone: str, locale: str, shown: str) -> None:
    stored = datetime.datetime(2026, 12, 2, 12, 15, 30)  # naive: UTC, as the database keeps it
    with _time_app(zone, locale).test_request_context("/"):
        assert i18n.localtime(stored) == shown
        assert i18n.localtime(stored.replace(tzinfo=datetime.UTC)) == shown
        assert i18n.localtime(stored.isoformat() + "+00:00") == shown
        assert i18n.localtime(stored, "seconds").startswith(shown[:16] + ":30 (")
        assert i18n.localtime(None) == "—"


def test_the_day_is_the_day_in_the_deployment_zone() -> None:
    late = datetime.datetime(2026, 12, 2, 17, 0)  # 01:00 on the 3rd in Beijing
    with _time_app("Asia/Shanghai", "zh_CN").test_request_context("/"):
        assert i18n.localtime(late, "date") == "2026-12-03"


@pytest.mark.parametrize(("locale", "zone", "named"), [
    ("fr_FR", "Asia/Shanghai", "TESSERA_DEFAULT_LOCALE"), ("zh_TW", "Asia/Shanghai", "TESSERA_DEFAULT_LOCALE"),
    ("zh_CN", "Beijing", "TESSERA_TIMEZONE"), ("en", "../../etc/passwd", "TESSERA_TIMEZONE"),
])
def test_a_wrong_setting_stops_the_service_naming_it(locale: str, zone: str, named: str) -> None:
    from types import SimpleNamespace

    from idp.settings import ConfigurationError

    app = Flask("idp", root_path=str(IDP))
    app.extensions["tessera"] = SimpleNamespace(settings=SimpleNamespace(default_locale=locale, timezone=zone))
    with pytest.raises(ConfigurationError, match=named):
        i18n.init_app(app)


def test_values_in_translated_text_are_escaped() -> None:
    app = _time_app("Asia/Shanghai", "zh_CN")
    app.jinja_env.globals["claim_words"] = i18n.claim_words
    with app.test_request_context("/"):
        from flask import render_template_string

        shown = render_template_string(
            "{{ _('Logged in as %(name)s (%(uid)s).', name=n, uid=u) }}|"
            "{% trans serial=n, subject=u %}Certificate <code>{{ serial }}</code> issued for {{ subject }}.{% endtrans %}",
            n="<script>x</script>", u="a&b")
    assert shown == ("当前登录：&lt;script&gt;x&lt;/script&gt;（a&amp;b）。|"
                     "已为 a&amp;b 签发证书 <code>&lt;script&gt;x&lt;/script&gt;</code>。")


def test_claims_in_words_each_once() -> None:
    from idp.oidc.provider import SCOPE_CLAIMS

    with _time_app("Asia/Shanghai", "zh_CN").test_request_context("/"):
        lines = i18n.claim_words(["openid", "profile", "email", "offline_access"], SCOPE_CLAIMS)
    assert lines[0].startswith("确认是您本人") and lines.count("您的姓名") == 1 and "您的公民身份号码" in lines
    assert "您的电子邮箱" in lines and lines[-1] == "在您离开期间保持对该应用的登录状态"
    assert not [line for line in lines if re.search(r"[A-Za-z_]{3,}", line)]  # no claim names, no English


# -- the web service -------------------------------------------------------------------------------

from tests.fixtures_web import *
from tests.fixtures_web import IdpServer, StaffAgent, csrf_of


def _lang_of(page: requests.Response) -> str:
    match = re.search(r'<html lang="([^"]+)"', page.text)
    assert match, page.text[:200]
    return match.group(1)


@pytest.mark.parametrize("header", ["zh-CN", "zh-Hans-CN", "zh", "zh-Hans-CN,zh;q=0.9,en;q=0.8",
                                    "fr-FR,zh-CN;q=0.7,en;q=0.5", None])
def test_chinese_by_accept_language_and_by_default(idp: IdpServer, header: str | None) -> None:
    headers = {"Accept-Language": header} if header else {}
    page = requests.get(idp.url("/"), headers=headers, timeout=30)
    assert page.status_code == 200
    assert _lang_of(page) == "zh-CN" and page.headers["Content-Language"] == "zh-CN"
    assert "证书认证中心" in page.text and "Certificate authorities" not in page.text
    assert "Accept-Language" in page.headers["Vary"]


@pytest.mark.parametrize("header", ["en", "en-US,en;q=0.9", "fr,en-GB;q=0.5,zh;q=0.1", "zh-TW,en;q=0.5"])
def test_english_by_accept_language(idp: IdpServer, header: str) -> None:
    page = requests.get(idp.url("/"), headers={"Accept-Language": header}, timeout=30)
    assert _lang_of(page) == "en" and "Certificate authorities" in page.text and "证书" not in page.text


def test_lang_parameter_then_the_switch_cookie(idp: IdpServer) -> None:
    browser = requests.Session()
    browser.headers["Accept-Language"] = "zh-CN"
    assert _lang_of(browser.get(idp.url("/?lang=en"), timeout=30)) == "en"
    assert _lang_of(browser.get(idp.url("/"), timeout=30)) == "zh-CN"  # ?lang= alone is not remembered
    page = browser.get(idp.url("/"), timeout=30)
    switch = re.search(r'<a href="([^"]+)" lang="en" hreflang="en" id="lang-en">English</a>', page.text)
    assert switch, "no language switch on the page"
    chosen = browser.get(idp.url(switch.group(1).replace("&amp;", "&")), allow_redirects=False, timeout=30)
    assert chosen.status_code == 303 and chosen.headers["Location"] == "/"
    cookie = chosen.headers["Set-Cookie"]
    assert cookie.startswith("tessera_lang=en;") and "SameSite=Lax" in cookie and "Max-Age=31536000" in cookie
    for path in ("/", "/?lang=zh-CN", "/login"):  # remembered, and it wins over ?lang= and Accept-Language
        assert _lang_of(browser.get(idp.url(path), timeout=30)) == "en", path
    back = browser.get(idp.url("/language?lang=zh-Hans-CN&next=/login"), allow_redirects=False, timeout=30)
    assert back.headers["Location"] == "/login"
    assert _lang_of(browser.get(idp.url("/"), timeout=30)) == "zh-CN"


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)"])
def test_the_switch_goes_back_only_to_this_site(idp: IdpServer, target: str) -> None:
    response = requests.get(idp.url("/language"), params={"lang": "en", "next": target}, allow_redirects=False,
                            timeout=30)
    assert response.status_code == 303 and response.headers["Location"] == "/"


def test_an_unknown_choice_changes_nothing(idp: IdpServer) -> None:
    response = requests.get(idp.url("/language?lang=xx&next=/"), allow_redirects=False, timeout=30)
    assert response.status_code == 303 and "Set-Cookie" not in response.headers


def test_discovery_advertises_the_languages(idp: IdpServer) -> None:
    metadata = requests.get(idp.url("/.well-known/openid-configuration"), timeout=30).json()
    assert metadata["ui_locales_supported"] == ["zh-CN", "en"]
    assert metadata["claims_locales_supported"] == ["zh-CN", "en"]


def _authorize_url(idp: IdpServer, client: dict, redirect_uri: str, **extra: str) -> str:
    from urllib.parse import urlencode

    query = {"response_type": "code", "client_id": client["client_id"], "redirect_uri": redirect_uri,
             "scope": "openid profile email department", "state": "s1", "nonce": "n1",
             "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuz-tLNHjbM", "code_challenge_method": "S256", **extra}
    return idp.url("/oidc/authorize?" + urlencode(query))


def test_ui_locales_carries_into_the_login_and_consent_pages(idp: IdpServer, staff_user: tuple[str, str]) -> None:
    """OIDC Core 3.1.2.1 ui_locales: the login form, the second factor and the consent page of that
    authorization are in its language, whatever Accept-Language says; the next authorization
    without ui_locales is in the browser's language again."""
    redirect_uri = "https://rp.i18n.example/cb"
    client = idp.add_client("Leave requests", redirect_uri)
    uid, password = staff_user
    browser = StaffAgent(idp, uid, password)
    browser.headers["Accept-Language"] = "zh-CN"
    browser.login()
    assert _lang_of(browser.get(idp.url("/account"), timeout=30)) == "zh-CN"
    consent = browser.get(_authorize_url(idp, client, redirect_uri, ui_locales="fr en"), timeout=30)
    assert consent.status_code == 200 and _lang_of(consent) == "en"
    assert "Allow Leave requests to know who you are?" in consent.text
    for words in ("your name", "your e-mail address", "your department", "that it is you"):
        assert words in consent.text
    assert "openid" not in consent.text.split('id="consent-scopes"')[1].split("</ul>")[0]
    assert _lang_of(browser.get(idp.url("/account"), timeout=30)) == "en"  # kept for that authorization
    again = browser.get(_authorize_url(idp, client, redirect_uri, state="s2"), timeout=30)
    assert _lang_of(again) == "zh-CN" and "您的姓名" in again.text and "您所在的部门" in again.text
    assert _lang_of(browser.get(idp.url("/account"), timeout=30)) == "zh-CN"
    # once the authorization ends (back to the application), its ui_locales is forgotten
    third = browser.get(_authorize_url(idp, client, redirect_uri, state="s3", ui_locales="en"), timeout=30)
    assert _lang_of(third) == "en" and _lang_of(browser.get(idp.url("/account"), timeout=30)) == "en"
    action = re.search(r'<form method="post" action="([^"]+)" class="actions">', third.text).group(1).replace("&amp;", "&")
    done = browser.post(idp.url(action), data={"decision": "allow", "csrf_token": csrf_of(third.text)},
                        allow_redirects=False, timeout=30)
    assert done.status_code == 302 and done.headers["Location"].startswith(redirect_uri + "?code=")
    assert _lang_of(browser.get(idp.url("/account"), timeout=30)) == "zh-CN"


def test_ui_locales_before_login(idp: IdpServer, staff_user: tuple[str, str]) -> None:
    redirect_uri = "https://rp2.i18n.example/cb"
    client = idp.add_client("Payroll", redirect_uri)
    browser = requests.Session()
    browser.headers["Accept-Language"] = "en"
    form = browser.get(_authorize_url(idp, client, redirect_uri, ui_locales="zh-Hans-CN"), timeout=30)
    assert form.status_code == 200 and _lang_of(form) == "zh-CN"
    uid, password = staff_user
    back = re.search(r'name="next" value="([^"]+)"', form.text).group(1).replace("&amp;", "&")
    second = browser.post(idp.url("/login"), data={"username": uid, "password": password, "next": back,
                                                   "csrf_token": csrf_of(form.text)}, timeout=30)
    assert second.status_code == 200 and _lang_of(second) == "zh-CN"
    assert "设置身份验证器应用" in second.text and "Set up your authenticator" not in second.text
