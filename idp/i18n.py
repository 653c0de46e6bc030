"""Languages and time zones of the web service.

Pages are in Simplified Chinese (``zh_CN``) or English (``en``), from Babel catalogues (domain
``messages``) under ``idp/translations/``, compiled at install by ``scripts/bootstrap.sh``. The
locale of a request is, in order (docs/i18n.md):

1. the person's own choice, made with the language switch of every page and kept in the
   ``tessera_lang`` cookie (SameSite=Lax, one year);
2. ``?lang=`` on the request;
3. OpenID Connect ``ui_locales`` (OIDC Core 3.1.2.1) of the authorization under way: read on
   /oidc/authorize and kept for the login, second-factor and consent pages of that authorization
   in the browser-session cookie ``tessera_ui_locales``;
4. ``Accept-Language`` (RFC 9110 section 12.5.4), language tags of BCP 47 (RFC 5646) read by Babel;
5. ``TESSERA_DEFAULT_LOCALE`` (default ``zh_CN``).

Times are stored in UTC and shown in ``TESSERA_TIMEZONE`` (an IANA zone, default Asia/Shanghai)
with the zone named, by the ``localtime`` template filter.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.dates import get_timezone_name
from flask import Blueprint, Flask, Response, current_app, redirect, request, url_for
from werkzeug.wrappers import Response as HttpResponse
from flask_babel import Babel, get_locale, gettext, lazy_gettext

from idp.settings import ConfigurationError
from translatable import Text

#: the locales with a catalogue, as Babel names them (the first is the fallback of Chinese tags)
SUPPORTED = ("zh_CN", "en")
#: the same, as BCP 47 language tags (html lang, Content-Language, discovery's ui_locales_supported)
LANGUAGE_TAGS = {"zh_CN": "zh-CN", "en": "en"}
#: the language switch's choice
LANG_COOKIE = "tessera_lang"
LANG_COOKIE_SECONDS = 365 * 24 * 3600
#: the ui_locales of the authorization under way
UI_LOCALES_COOKIE = "tessera_ui_locales"
#: the time zone shown with times in Asia/Shanghai, as people in China name it
_BEIJING = {"zh_CN": "北京时间"}

bp = Blueprint("i18n", __name__)

#: what a person is told an application will learn, per claim (OIDC Core 5.1) or scope; claims
#: with the same words (name, given_name, family_name) are told once
CLAIM_WORDS: dict[str, Any] = {
    "sub": lazy_gettext("that it is you (a number for you that stays the same for this application)"),
    "name": lazy_gettext("your name"),
    "given_name": lazy_gettext("your name"),
    "family_name": lazy_gettext("your name"),
    "preferred_username": lazy_gettext("your user name"),
    "title": lazy_gettext("your job title"),
    "national_id": lazy_gettext("your citizen identity number"),
    "email": lazy_gettext("your e-mail address"),
    "email_verified": lazy_gettext("your e-mail address"),
    "department": lazy_gettext("your department"),
    "department_name": lazy_gettext("your department"),
    "roles": lazy_gettext("your roles in Tessera"),
    "offline_access": lazy_gettext("to keep you logged in to it while you are away"),
}


def claim_words(scopes: Iterable[str], scope_claims: Mapping[str, Iterable[str]]) -> list[str]:
    """The plain-language lines of a consent page for ``scopes``, each said once, in this request's
    language (OIDC Core 3.1.2.4: the end user is told what is shared)."""
    lines: list[str] = []
    for scope in scopes:
        for claim in (*scope_claims.get(scope, ()), scope):
            words = CLAIM_WORDS.get(claim)
            if words is not None and str(words) not in lines:
                lines.append(str(words))
    return lines



def supported_locale(tag: str | None) -> str | None:
    """The supported locale a BCP 47 tag (``zh-CN``, ``zh-Hans-CN``, ``zh``, ``en-GB``) or Babel name
    (``zh_CN``) asks for, or None. Chinese in Traditional script (``zh-Hant``, ``zh-TW``) has no
    catalogue here and is not taken for Simplified Chinese."""
    if not tag or len(tag) > 35:  # RFC 5646 section 4.4.1: 35 characters suffice for any sensible tag
        return None
    return _supported(tag)


@functools.lru_cache(maxsize=512)  # every request asks again for its cookie's and header's tags
def _supported(tag: str) -> str | None:
    try:
        locale = Locale.parse(tag.strip().replace("-", "_"))
    except (ValueError, TypeError, UnknownLocaleError):
        return None
    if locale.language == "en":
        return "en"
    if locale.language == "zh":
        if locale.script == "Hant" or (locale.script is None and locale.territory in ("TW", "HK", "MO")):
            return None
        return "zh_CN"
    return None


def first_supported(tags: Iterable[str]) -> str | None:
    """The first of ``tags`` (in the order of preference) that a catalogue serves."""
    for tag in tags:
        found = supported_locale(tag)
        if found:
            return found
    return None


def _ui_locales() -> str | None:
    """OIDC ``ui_locales``: on the authorization request itself, else the one kept for it."""
    if request.endpoint == "oidc.authorize":
        return first_supported((request.values.get("ui_locales") or "").split())
    return supported_locale(request.cookies.get(UI_LOCALES_COOKIE))


def select_locale() -> str:
    """The locale of this request (the order of the module docstring)."""
    chosen = (supported_locale(request.cookies.get(LANG_COOKIE)) or supported_locale(request.args.get("lang"))
              or _ui_locales())
    if chosen:
        return chosen
    # Accept-Language in order of q (werkzeug parses the header; Babel judges each tag)
    chosen = first_supported(tag for tag, _q in request.accept_languages)
    return chosen or current_app.config["TESSERA_DEFAULT_LOCALE"]


def select_timezone() -> str:
    return current_app.config["TESSERA_TIMEZONE"]


def locale_name() -> str:
    """The Babel name of this request's locale (``zh_CN`` or ``en``)."""
    locale = get_locale()
    return "en" if locale is None or locale.language == "en" else "zh_CN"


def html_lang() -> str:
    """The BCP 47 tag of this request's language, for ``<html lang>``."""
    return LANGUAGE_TAGS[locale_name()]


def localtime(value: datetime.datetime | str | None, show: str = "minutes") -> str:
    """A UTC time (naive values are UTC, as the database stores them) in TESSERA_TIMEZONE with the
    zone named: ``2026-12-02 20:15 (北京时间)``, ``2026-12-02 20:15 (China Standard Time, UTC+8)``.
    ``show``: ``minutes``, ``seconds`` or ``date`` (the day only, in that zone, no zone name)."""
    if value is None or value == "":
        return "—"
    if isinstance(value, str):  # ISO 8601, as signed records carry it
        try:
            parsed = datetime.datetime.fromisoformat(value)
        except ValueError:
            return value
        value = parsed
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.UTC)
    zone = ZoneInfo(current_app.config["TESSERA_TIMEZONE"])
    local = value.astimezone(zone)
    if show == "date":
        return local.strftime("%Y-%m-%d")
    shown = local.strftime("%Y-%m-%d %H:%M:%S" if show == "seconds" else "%Y-%m-%d %H:%M")
    name = locale_name()
    if zone.key == "Asia/Shanghai" and name in _BEIJING:
        return f"{shown} ({_BEIJING[name]})"
    offset = int((local.utcoffset() or datetime.timedelta()).total_seconds()) // 60
    hours, minutes = divmod(abs(offset), 60)
    utc = f"UTC{'-' if offset < 0 else '+'}{hours}" + (f":{minutes:02d}" if minutes else "")
    zone_name = get_timezone_name(local, width="long", locale=name)
    return f"{shown} ({zone_name}, {utc})"


def _local_path(value: str | None) -> str:
    """Only a path of this site (no scheme, no host): the switch must not be an open redirect."""
    from idp.redirect_target import local_path

    return local_path(value) or "/"


@bp.get("/language")
def choose_language() -> HttpResponse:
    """The language switch: remembers the choice in ``tessera_lang`` and goes back to the page."""
    chosen = supported_locale(request.args.get("lang"))
    response = redirect(_local_path(request.args.get("next")), 303)
    if chosen:
        response.set_cookie(LANG_COOKIE, chosen, max_age=LANG_COOKIE_SECONDS, path="/", samesite="Lax",
                            secure=current_app.config["SESSION_COOKIE_SECURE"], httponly=True)
    return response


def _after(response: Response) -> Response:
    if request.endpoint == "oidc.authorize":
        # the ui_locales of this authorization, for its login and consent pages; none: forget an old
        # one; and forgotten when the authorization ends (the browser is sent back to the application)
        wanted = first_supported((request.values.get("ui_locales") or "").split())
        leaving = response.status_code in (301, 302, 303, 307, 308) and \
            urlsplit(response.location or "").netloc not in ("", request.host)
        if wanted and not leaving:
            response.set_cookie(UI_LOCALES_COOKIE, wanted, path="/", samesite="Lax", httponly=True,
                                secure=current_app.config["SESSION_COOKIE_SECURE"])
        elif UI_LOCALES_COOKIE in request.cookies:
            response.delete_cookie(UI_LOCALES_COOKIE, path="/")
    if response.mimetype == "text/html":
        response.headers.setdefault("Content-Language", html_lang())
        response.vary.update(("Accept-Language", "Cookie"))
    return response


def switch_targets() -> list[tuple[str, str, str]]:
    """The language switch of a page: (BCP 47 tag, the language's own name, URL) per other language."""
    here = request.full_path.rstrip("?") if request.query_string else request.path
    own, shown_now = {"zh_CN": "简体中文", "en": "English"}, locale_name()
    return [(LANGUAGE_TAGS[name], own[name], url_for("i18n.choose_language", lang=name, next=here))
            for name in SUPPORTED if name != shown_now]


def init_app(app: Flask) -> None:
    """Install the locale and time-zone selection on ``app``."""
    settings = app.extensions["tessera"].settings
    default = supported_locale(settings.default_locale)
    if default is None:
        raise ConfigurationError(f"TESSERA_DEFAULT_LOCALE must be one of {', '.join(SUPPORTED)}, "
                                 f"not {settings.default_locale!r}")
    try:
        ZoneInfo(settings.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(f"TESSERA_TIMEZONE must be an IANA time zone such as Asia/Shanghai, "
                                 f"not {settings.timezone!r}") from None
    app.config.update(TESSERA_DEFAULT_LOCALE=default, TESSERA_TIMEZONE=settings.timezone,
                      BABEL_DEFAULT_LOCALE=default, BABEL_DEFAULT_TIMEZONE=settings.timezone,
                      BABEL_TRANSLATION_DIRECTORIES="translations", BABEL_DOMAIN="messages")
    Babel(app, locale_selector=select_locale, timezone_selector=select_timezone)
    app.register_blueprint(bp)
    app.after_request(_after)
    app.jinja_env.filters["localtime"] = localtime
    app.jinja_env.globals.update(html_lang=html_lang, language_switch=switch_targets, claim_words=claim_words)


def shown(value: object) -> str:
    """``value`` in the request's language: a :class:`Text` translated (its :class:`Text` values
    too), an exception by its message (its first argument), anything else as ``str`` gives it."""
    if isinstance(value, BaseException):
        value = value.args[0] if len(value.args) == 1 else str(value)
    if not isinstance(value, Text):
        return str(value)
    if not value.params:
        return gettext(value.template)
    return gettext(value.template, **{name: shown(v) if isinstance(v, Text) else v for name, v in value.params.items()})
