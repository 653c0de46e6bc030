"""Citizen identity number schemes: the Chinese 公民身份号码 (default) and the Estonian personal code.

A deployment chooses one with ``TESSERA_CITIZEN_ID_SCHEME``: ``cn-gb11643`` (default) or
``ee-evs585``. A scheme checks a number (:meth:`CitizenIdScheme.validate`, which raises
:class:`InvalidCitizenId` with a stable reason code), reads the date of birth and sex it encodes,
masks it for display, and makes valid numbers for demos and load tests.

* ``cn-gb11643``: GB 11643-1999 "Citizen identification number": 6-digit administrative division
  code (GB/T 2260; the province part, the first two digits, must exist), date of birth YYYYMMDD,
  3-digit sequence code (odd for men, even for women), and an ISO 7064 MOD 11-2 check character
  (``X`` for 10; a lowercase ``x`` is accepted and stored upper case).
* ``ee-evs585``: EVS 585:2007 personal identification code: sex-and-century digit, YYMMDD,
  3-digit serial, mod-11 check digit with two weight sets.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from typing import Protocol

DEFAULT_SCHEME = "cn-gb11643"

#: GB 11643-1999 section 8.2 (ISO 7064 MOD 11-2): weights of the first 17 digits
GB11643_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
#: GB/T 2260 province-level codes (the first two digits of an administrative division code)
PROVINCES = {
    "11": "北京市", "12": "天津市", "13": "河北省", "14": "山西省", "15": "内蒙古自治区",
    "21": "辽宁省", "22": "吉林省", "23": "黑龙江省",
    "31": "上海市", "32": "江苏省", "33": "浙江省", "34": "安徽省", "35": "福建省", "36": "江西省", "37": "山东省",
    "41": "河南省", "42": "湖北省", "43": "湖南省", "44": "广东省", "45": "广西壮族自治区", "46": "海南省",
    "50": "重庆市", "51": "四川省", "52": "贵州省", "53": "云南省", "54": "西藏自治区",
    "61": "陕西省", "62": "甘肃省", "63": "青海省", "64": "宁夏回族自治区", "65": "新疆维吾尔自治区",
    "71": "台湾省", "81": "香港特别行政区", "82": "澳门特别行政区",
}

#: the reason codes of :class:`InvalidCitizenId` (stable: shown to programs, mapped to words by the UI)
REASONS = ("wrong-length", "bad-characters", "unknown-province", "impossible-date", "date-before-1900",
           "date-in-future", "bad-check-character", "sex-mismatch")


class InvalidCitizenId(ValueError):
    """A refused identity number: ``reason`` is one of :data:`REASONS`, ``message`` plain words."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class CitizenId:
    """A checked identity number and what it encodes."""

    number: str
    date_of_birth: datetime.date
    #: ``M`` or ``F``
    sex: str
    #: the administrative division (GB/T 2260) for cn-gb11643, "" otherwise
    region: str = ""


class CitizenIdScheme(Protocol):
    name: str
    #: ISO 3166 alpha-2 country of the certificates' C= and of the records
    country: str
    #: the longest number (database columns hold 32 characters)
    length: int

    def validate(self, text: str, sex: str | None = None, today: datetime.date | None = None) -> CitizenId:
        """The parsed number; raises :class:`InvalidCitizenId` (``sex``: M/F to cross-check)."""
        ...

    def mask(self, text: str) -> str:
        """The number for display to someone who does not need all of it."""
        ...

    def make(self, date_of_birth: datetime.date, sex: str, serial: int, region: str = "") -> str:
        """A valid number (for demos, tests and load tests)."""
        ...


def mask_number(text: str, head: int = 4, tail: int = 4) -> str:
    """``4331**********123X``: the first ``head`` and last ``tail`` characters, stars between
    (shorter numbers keep less, so at least half is always hidden)."""
    if len(text) < head + tail + 2:
        head, tail = min(head, len(text) // 4), min(tail, len(text) // 4)
    return text[:head] + "*" * (len(text) - head - tail) + text[len(text) - tail:]


def _check_sex(parsed: CitizenId, sex: str | None) -> CitizenId:
    if sex and sex.upper() in ("M", "F") and sex.upper() != parsed.sex:
        raise InvalidCitizenId("sex-mismatch", "the sequence code of the number says "
                               f"{'male' if parsed.sex == 'M' else 'female'}, but the sex given is "
                               f"{'male' if sex.upper() == 'M' else 'female'}")
    return parsed


def _birth_date(year: int, month: int, day: int, today: datetime.date) -> datetime.date:
    try:
        born = datetime.date(year, month, day)
    except ValueError:
        raise InvalidCitizenId("impossible-date", f"{year:04d}-{month:02d}-{day:02d} is not a date") from None
    if born.year < 1900:
        raise InvalidCitizenId("date-before-1900", f"the date of birth {born.isoformat()} is before 1900")
    if born > today:
        raise InvalidCitizenId("date-in-future", f"the date of birth {born.isoformat()} is in the future")
    return born


class Gb11643:
    """公民身份号码, GB 11643-1999."""

    name = "cn-gb11643"
    country = "CN"
    length = 18

    @staticmethod
    def check_character(first17: str) -> str:
        """ISO 7064 MOD 11-2 (GB 11643-1999 section 8.2): ``(12 - sum mod 11) mod 11``, ``X`` for 10."""
        value = (12 - sum(int(c) * w for c, w in zip(first17, GB11643_WEIGHTS, strict=False)) % 11) % 11
        return "X" if value == 10 else str(value)

    def validate(self, text: str, sex: str | None = None, today: datetime.date | None = None) -> CitizenId:
        number = text.strip().upper()
        if len(number) != 18:
            raise InvalidCitizenId("wrong-length", f"a citizen identity number has 18 characters, not {len(number)}")
        if not re.fullmatch(r"[0-9]{17}[0-9X]", number):
            raise InvalidCitizenId("bad-characters", "a citizen identity number is 17 digits and a final digit or X")
        if number[:2] not in PROVINCES:
            raise InvalidCitizenId("unknown-province", f"{number[:2]} is not a province code (GB/T 2260)")
        born = _birth_date(int(number[6:10]), int(number[10:12]), int(number[12:14]), today or datetime.date.today())
        if self.check_character(number[:17]) != number[17]:
            raise InvalidCitizenId("bad-check-character", "the check character (the last one) is wrong: "
                                   "a character was mistyped")
        parsed = CitizenId(number, born, "M" if int(number[16]) % 2 else "F", number[:6])
        return _check_sex(parsed, sex)

    def mask(self, text: str) -> str:
        return mask_number(text, 4, 4)

    def make(self, date_of_birth: datetime.date, sex: str, serial: int, region: str = "433101") -> str:
        """``serial`` picks the sequence code (0-499); its parity follows ``sex``."""
        sequence = (serial % 500) * 2 + (1 if sex.upper() == "M" else 0)
        head = f"{region or '433101'}{date_of_birth:%Y%m%d}{sequence:03d}"
        return head + self.check_character(head)


class Evs585:
    """Estonian personal identification code, EVS 585:2007."""

    name = "ee-evs585"
    country = "EE"
    length = 11
    _W1 = (1, 2, 3, 4, 5, 6, 7, 8, 9, 1)
    _W2 = (3, 4, 5, 6, 7, 8, 9, 1, 2, 3)

    @classmethod
    def check_character(cls, first_ten: str) -> str:
        digits = [int(c) for c in first_ten]
        total = sum(d * w for d, w in zip(digits, cls._W1, strict=False)) % 11
        if total == 10:
            total = sum(d * w for d, w in zip(digits, cls._W2, strict=False)) % 11
            if total == 10:
                total = 0
        return str(total)

    def validate(self, text: str, sex: str | None = None, today: datetime.date | None = None) -> CitizenId:
        number = text.strip()
        if len(number) != 11:
            raise InvalidCitizenId("wrong-length", f"a personal code has 11 digits, not {len(number)}")
        if not re.fullmatch(r"[1-8][0-9]{10}", number):
            raise InvalidCitizenId("bad-characters", "a personal code is 11 digits, the first 1 to 8")
        century = 1800 + 100 * ((int(number[0]) - 1) // 2)
        born = _birth_date(century + int(number[1:3]), int(number[3:5]), int(number[5:7]),
                           today or datetime.date.today())
        if self.check_character(number[:10]) != number[10]:
            raise InvalidCitizenId("bad-check-character", "the check digit (the last one) is wrong")
        return _check_sex(CitizenId(number, born, "M" if int(number[0]) % 2 else "F"), sex)

    def mask(self, text: str) -> str:
        return mask_number(text, 1, 4)

    def make(self, date_of_birth: datetime.date, sex: str, serial: int, region: str = "") -> str:
        century = (date_of_birth.year - 1800) // 100
        first = 1 + 2 * century + (1 if sex.upper() == "F" else 0)
        head = f"{first}{date_of_birth:%y%m%d}{serial % 1000:03d}"
        return head + self.check_character(head)


SCHEMES: dict[str, CitizenIdScheme] = {s.name: s for s in (Gb11643(), Evs585())}


def scheme_named(name: str | None) -> CitizenIdScheme:
    """The scheme called ``name`` (``None`` or "": the default); ValueError for an unknown name."""
    try:
        return SCHEMES[name or DEFAULT_SCHEME]
    except KeyError:
        raise ValueError(f"TESSERA_CITIZEN_ID_SCHEME must be one of {', '.join(SCHEMES)}, not {name!r}") from None


def mask_any(text: str | None) -> str:
    """Mask a stored number of either scheme (recognised by its length) for display."""
    if not text:
        return ""
    return SCHEMES["ee-evs585"].mask(text) if len(text) == 11 else SCHEMES[DEFAULT_SCHEME].mask(text)
