"""A citizen's application for a card: identity, tax and insurance data, checked field by field.

Two shapes, one per citizen identity scheme (cardsim.identity_schemes, ``TESSERA_CITIZEN_ID_SCHEME``):

* ``cn-gb11643`` (default), records shaped for Chinese departments. Identity (居民身份证):
  ``name`` 姓名 (one string, family name first, no space: 张伟), ``name_pinyin`` (optional, Latin
  script: Zhang Wei), ``sex`` 性别 (M/F, 男/女 accepted), ``ethnicity`` 民族 (GB/T 3304 name),
  ``date_of_birth`` 出生日期, ``address`` 住址, ``national_id`` 公民身份号码 (GB 11643-1999),
  ``issuing_authority`` 签发机关, ``valid_from``/``valid_until`` 有效期限 (``long-term`` for 长期).
  Tax: ``taxpayer_number`` 纳税人识别号 (for a person, the identity number), ``tax_office``
  主管税务机关, ``tax_credit_rating`` 纳税信用级别 (A/B/M/C/D). Social insurance:
  ``social_security_number`` 社会保障号码 (the identity number), ``insured_place`` 参保地,
  ``insurance_types`` 险种 (comma-separated among pension 养老, medical 医疗, unemployment 失业,
  work-injury 工伤, maternity 生育), ``insurance_status`` 参保状态 (active 正常参保, suspended
  暂停参保, terminated 终止参保).
* ``ee-evs585``: the Estonian shape (personal code EVS 585:2007, given names and surname, ISO 3166
  nationality, taxpayer number, insurer and policy).

The number must agree with the date of birth and sex given.
"""

from __future__ import annotations

import datetime
import os
import re
import unicodedata
from dataclasses import asdict, dataclass
from typing import Any

from cryptography.x509 import Certificate, ObjectIdentifier
from cryptography.x509.oid import NameOID

from cardsim.errors import InvalidApplication
from cardsim.ethnic_groups import ETHNIC_GROUPS, ethnic_group_code
from cardsim.identity_schemes import Evs585, InvalidCitizenId, scheme_named

FIELDS = (
    "national_id", "given_names", "surname", "date_of_birth", "sex", "nationality", "address",
    "taxpayer_number", "tax_office", "tax_status", "last_assessed_year",
    "insurer", "policy_number", "coverage_class", "insurance_valid_until",
)
CN_FIELDS = (
    "national_id", "name", "name_pinyin", "sex", "ethnicity", "date_of_birth", "address", "issuing_authority",
    "valid_from", "valid_until", "taxpayer_number", "tax_office", "tax_credit_rating",
    "social_security_number", "insured_place", "insurance_types", "insurance_status",
)
TAX_STATUSES = ("resident", "non-resident", "exempt")
COVERAGE_CLASSES = ("basic", "standard", "extended")
#: 纳税信用级别 (State Taxation Administration, 纳税信用管理办法)
TAX_CREDIT_RATINGS = ("A", "B", "M", "C", "D")
#: 险种: the five social insurances (社会保险法)
INSURANCE_TYPES = ("pension", "medical", "unemployment", "work-injury", "maternity")
INSURANCE_STATUSES = ("active", "suspended", "terminated")
LONG_TERM = "long-term"


def configured_scheme_name(env: dict[str, str] | None = None) -> str:
    """``TESSERA_CITIZEN_ID_SCHEME`` (checked), default ``cn-gb11643``."""
    name = (os.environ if env is None else env).get("TESSERA_CITIZEN_ID_SCHEME") or None
    return scheme_named(name).name


def national_id_check_digit(first_ten: str) -> str:
    """The EVS 585 check digit (kept for the Estonian scheme's callers)."""
    return Evs585.check_character(first_ten)


def make_national_id(date_of_birth: datetime.date, sex: str, serial: int) -> str:
    """A valid Estonian code for the given birth date, sex (F/M) and serial (0-999): for tests and demos."""
    return Evs585().make(date_of_birth, sex, serial)


@dataclass(frozen=True)
class Identity:
    national_id: str
    given_names: str
    surname: str
    date_of_birth: str
    sex: str
    nationality: str
    address: str


@dataclass(frozen=True)
class TaxRecord:
    taxpayer_number: str
    tax_office: str
    status: str
    last_assessed_year: int


@dataclass(frozen=True)
class InsuranceRecord:
    insurer: str
    policy_number: str
    coverage_class: str
    valid_until: str


@dataclass(frozen=True)
class CnIdentity:
    """居民身份证 data: the record keys are stable ASCII; the UI gives the Chinese labels."""

    national_id: str
    name: str
    name_pinyin: str
    sex: str
    ethnicity: str
    date_of_birth: str
    address: str
    issuing_authority: str
    valid_from: str
    valid_until: str


@dataclass(frozen=True)
class CnTaxRecord:
    taxpayer_number: str
    tax_office: str
    tax_credit_rating: str


@dataclass(frozen=True)
class CnInsuranceRecord:
    social_security_number: str
    insured_place: str
    insurance_types: str
    insurance_status: str


@dataclass(frozen=True)
class Application:
    identity: Identity | CnIdentity
    tax: TaxRecord | CnTaxRecord
    insurance: InsuranceRecord | CnInsuranceRecord
    #: the citizen identity scheme of ``identity.national_id``
    scheme: str = "ee-evs585"

    @property
    def holder(self) -> str:
        """The name as people write it: 张伟 (family name first, no space) or "Kadri Tamm"."""
        if isinstance(self.identity, CnIdentity):
            return self.identity.name
        return f"{self.identity.given_names} {self.identity.surname}"

    def record_data(self) -> dict[str, dict[str, Any]]:
        return {"identity": asdict(self.identity), "tax": asdict(self.tax), "insurance": asdict(self.insurance)}


def citizen_subject(application: Application, country: str, pseudonym: str) -> tuple[tuple[ObjectIdentifier, str], ...]:
    """The subject of a citizen's certificates (RFC 5280 section 4.1.2.6): country, name and the
    pseudonym (cardsim.pseudonyms) as serialNumber, never the identity number. A Chinese name is
    one commonName, family name first (张伟); an Estonian one has surname and givenName too."""
    identity = application.identity
    if isinstance(identity, CnIdentity):
        return ((NameOID.COUNTRY_NAME, country), (NameOID.COMMON_NAME, identity.name[:64]),
                (NameOID.SERIAL_NUMBER, pseudonym))
    return ((NameOID.COUNTRY_NAME, country), (NameOID.SURNAME, identity.surname[:64]),
            (NameOID.GIVEN_NAME, identity.given_names[:64]),
            (NameOID.COMMON_NAME, f"{identity.surname},{identity.given_names}"[:64]),
            (NameOID.SERIAL_NUMBER, pseudonym))


def holder_name(cert: Certificate) -> str:
    """The holder's name as people write it: ``givenName surname`` where the subject has both
    (Estonian certificates), else the commonName (a Chinese name is one string, 张伟)."""
    given = cert.subject.get_attributes_for_oid(NameOID.GIVEN_NAME)
    surname = cert.subject.get_attributes_for_oid(NameOID.SURNAME)
    if given and surname:
        return f"{_value_text(given[0].value)} {_value_text(surname[0].value)}"
    common = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return _value_text(common[0].value) if common else ""


def _value_text(value: str | bytes) -> str:
    """A name attribute's value as text (cryptography types it str or bytes; names are strings)."""
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def _text(row: dict[str, Any], name: str, maximum: int, problems: list[str]) -> str:
    value = row.get(name)
    if value is None or not str(value).strip():
        problems.append(f"{name} is missing")
        return ""
    text = unicodedata.normalize("NFC", str(value).strip())
    if len(text) > maximum:
        problems.append(f"{name} is longer than {maximum} characters")
    if any(unicodedata.category(c).startswith("C") for c in text):
        problems.append(f"{name} contains control characters")
    return text


def _date(row: dict[str, Any], name: str, problems: list[str]) -> datetime.date | None:
    text = _text(row, name, 10, problems)
    if not text:
        return None
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        try:
            return datetime.date.fromisoformat(text)
        except ValueError:
            pass
    problems.append(f"{name} {text!r} is not a date (YYYY-MM-DD)")
    return None


def parse_application(row: dict[str, Any], today: datetime.date | None = None,
                      scheme: str | None = None) -> Application:
    """Check every field; raise :class:`InvalidApplication` naming every problem at once.
    ``scheme``: the identity scheme (default: ``TESSERA_CITIZEN_ID_SCHEME``)."""
    today = today or datetime.date.today()
    if (scheme or configured_scheme_name()) == "cn-gb11643":
        return _parse_cn(row, today)
    problems: list[str] = []
    unknown = sorted(k for k in row if k not in FIELDS and k is not None)
    if unknown:
        problems.append(f"unknown fields: {', '.join(map(str, unknown))}")
    national_id = _text(row, "national_id", 11, problems)
    given = _text(row, "given_names", 100, problems)
    surname = _text(row, "surname", 100, problems)
    dob = _date(row, "date_of_birth", problems)
    sex = _text(row, "sex", 1, problems).upper()
    if sex and sex not in ("F", "M"):
        problems.append("sex must be F or M")
    nationality = _text(row, "nationality", 3, problems).upper()
    if nationality and not re.fullmatch(r"[A-Z]{3}", nationality):
        problems.append("nationality must be an ISO 3166-1 alpha-3 code (e.g. EST)")
    address = _text(row, "address", 200, problems)
    if national_id:
        if not re.fullmatch(r"[1-8]\d{10}", national_id):
            problems.append("national_id must be 11 digits starting 1-8")
        elif national_id_check_digit(national_id[:10]) != national_id[10]:
            problems.append("national_id has a wrong check digit")
        elif dob is not None and sex in ("F", "M") and make_national_id(dob, sex, int(national_id[7:10])) != national_id:
            problems.append("national_id does not match date_of_birth and sex")
    if dob is not None and dob > today:
        problems.append("date_of_birth is in the future")
    taxpayer = _text(row, "taxpayer_number", 12, problems)
    if taxpayer and not re.fullmatch(r"\d{6,12}", taxpayer):
        problems.append("taxpayer_number must be 6 to 12 digits")
    tax_office = _text(row, "tax_office", 100, problems)
    tax_status = _text(row, "tax_status", 16, problems).lower()
    if tax_status and tax_status not in TAX_STATUSES:
        problems.append(f"tax_status must be one of {', '.join(TAX_STATUSES)}")
    year_text = _text(row, "last_assessed_year", 4, problems)
    year = 0
    if year_text:
        if not re.fullmatch(r"\d{4}", year_text) or not 1990 <= int(year_text) <= today.year:
            problems.append(f"last_assessed_year must be a year from 1990 to {today.year}")
        else:
            year = int(year_text)
    insurer = _text(row, "insurer", 100, problems)
    policy = _text(row, "policy_number", 20, problems)
    if policy and not re.fullmatch(r"[A-Z0-9-]{6,20}", policy):
        problems.append("policy_number must be 6 to 20 capital letters, digits or dashes")
    coverage = _text(row, "coverage_class", 16, problems).lower()
    if coverage and coverage not in COVERAGE_CLASSES:
        problems.append(f"coverage_class must be one of {', '.join(COVERAGE_CLASSES)}")
    valid_until = _date(row, "insurance_valid_until", problems)
    if problems:
        raise InvalidApplication("; ".join(problems))
    assert dob is not None and valid_until is not None
    return Application(
        Identity(national_id, given, surname, dob.isoformat(), sex, nationality, address),
        TaxRecord(taxpayer, tax_office, tax_status, year),
        InsuranceRecord(insurer, policy, coverage, valid_until.isoformat()),
    )


def _choice(row: dict[str, Any], name: str, allowed: tuple[str, ...], problems: list[str]) -> str:
    value = _text(row, name, 32, problems)
    if value and value not in allowed:
        problems.append(f"{name} must be one of {', '.join(allowed)}")
    return value


def _parse_cn(row: dict[str, Any], today: datetime.date) -> Application:
    """The ``cn-gb11643`` shape (module docstring), every problem named at once."""
    problems: list[str] = []
    unknown = sorted(k for k in row if k not in CN_FIELDS and k is not None)
    if unknown:
        problems.append(f"unknown fields: {', '.join(map(str, unknown))}")
    number = _text(row, "national_id", 18, problems).upper()
    name = _text(row, "name", 50, problems)
    if name and (" " in name or "\u3000" in name) and not re.fullmatch(r"[A-Za-z .'-]+", name):
        problems.append("name is one string, family name first, without spaces (e.g. 张伟)")
    pinyin = str(row.get("name_pinyin") or "").strip()
    if pinyin and not re.fullmatch(r"[A-Za-zÀ-ɏ̀-ͯ' -]{1,100}", unicodedata.normalize("NFC", pinyin)):
        problems.append("name_pinyin must be Latin letters (e.g. Zhang Wei)")
    sex = {"男": "M", "女": "F"}.get(str(row.get("sex") or "").strip(), _text(row, "sex", 1, problems).upper())
    if sex and sex not in ("F", "M"):
        problems.append("sex must be M or F (男 or 女)")
    ethnicity = _text(row, "ethnicity", 10, problems)
    if ethnicity:
        code = ethnic_group_code(ethnicity)
        if code is None:
            problems.append(f"ethnicity {ethnicity!r} is not one of the 56 nationalities of GB/T 3304")
        else:
            ethnicity = ETHNIC_GROUPS[code]
    dob = _date(row, "date_of_birth", problems) if row.get("date_of_birth") else None
    address = _text(row, "address", 200, problems)
    authority = _text(row, "issuing_authority", 100, problems)
    valid_from = _date(row, "valid_from", problems)
    valid_until_text = str(row.get("valid_until") or "").strip()
    if valid_until_text in (LONG_TERM, "长期"):
        valid_until = LONG_TERM
    else:
        until = _date(row, "valid_until", problems)
        valid_until = until.isoformat() if until else ""
        if until and valid_from and until <= valid_from:
            problems.append("valid_until must be after valid_from")
    if number:
        try:
            parsed = scheme_named("cn-gb11643").validate(number, sex if sex in ("F", "M") else None, today)
        except InvalidCitizenId as exc:
            problems.append(f"national_id is refused ({exc.reason}): {exc.message}")
        else:
            number = parsed.number
            if dob is not None and dob != parsed.date_of_birth:
                problems.append("national_id does not match date_of_birth")
            dob = dob or parsed.date_of_birth
    for derived in ("taxpayer_number", "social_security_number"):
        given = str(row.get(derived) or "").strip().upper()
        if given and number and given != number:
            problems.append(f"{derived} of a person is their citizen identity number")
    tax_office = _text(row, "tax_office", 100, problems)
    rating = _choice(row, "tax_credit_rating", TAX_CREDIT_RATINGS, problems)
    place = _text(row, "insured_place", 100, problems)
    types_text = _text(row, "insurance_types", 100, problems)
    types = [t.strip() for t in types_text.split(",") if t.strip()]
    if types_text and (not types or any(t not in INSURANCE_TYPES for t in types) or len(set(types)) != len(types)):
        problems.append(f"insurance_types must be a comma-separated list of {', '.join(INSURANCE_TYPES)}")
    status = _choice(row, "insurance_status", INSURANCE_STATUSES, problems)
    if problems:
        raise InvalidApplication("; ".join(problems))
    assert dob is not None and valid_from is not None
    return Application(
        CnIdentity(number, name, pinyin, sex, ethnicity, dob.isoformat(), address, authority,
                   valid_from.isoformat(), valid_until),
        CnTaxRecord(number, tax_office, rating),
        CnInsuranceRecord(number, place, ",".join(t for t in INSURANCE_TYPES if t in types), status),
        "cn-gb11643",
    )


def parse_record_update(record_type: str, row: dict[str, Any], today: datetime.date | None = None,
                        national_id: str = "") -> dict[str, Any]:
    """Check the new content of a tax or insurance record (the department's update) of the card of
    citizen ``national_id`` (its scheme decides the record's shape)."""
    today = today or datetime.date.today()
    if record_type not in ("tax", "insurance"):
        raise InvalidApplication("only the tax and insurance records can be updated by their departments")
    if len(national_id) == 18:
        return _parse_cn_update(record_type, row, today, national_id)
    base = {"national_id": "", "given_names": "x", "surname": "x", "date_of_birth": "2000-01-01", "sex": "F",
            "nationality": "EST", "address": "x", "taxpayer_number": "000000", "tax_office": "x",
            "tax_status": "resident", "last_assessed_year": str(today.year), "insurer": "x",
            "policy_number": "XXXXXX", "coverage_class": "basic", "insurance_valid_until": "2000-01-01"}
    if record_type == "tax":
        allowed = {"taxpayer_number", "tax_office", "tax_status", "last_assessed_year"}
        mapping = {"status": "tax_status"}
    else:
        allowed = {"insurer", "policy_number", "coverage_class", "insurance_valid_until"}
        mapping = {"valid_until": "insurance_valid_until"}
    given = {mapping.get(k, k): v for k, v in row.items()}
    _exact_fields(record_type, given, allowed)
    probe = {**base, **{k: str(v) for k, v in given.items()}}
    probe.pop("national_id")
    try:
        app = parse_application({**probe, "national_id": make_national_id(datetime.date(2000, 1, 1), "F", 0)}, today,
                                "ee-evs585")
    except InvalidApplication as exc:
        raise InvalidApplication(str(exc)) from None
    return asdict(app.tax) if record_type == "tax" else asdict(app.insurance)


def _exact_fields(record_type: str, given: dict[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(given) - allowed)
    if extra:
        raise InvalidApplication(f"unknown fields for a {record_type} record: {', '.join(extra)}")
    missing = sorted(allowed - set(given))
    if missing:
        raise InvalidApplication(f"missing fields: {', '.join(missing)}")


def _parse_cn_update(record_type: str, row: dict[str, Any], today: datetime.date, number: str) -> dict[str, Any]:
    given = {k: v for k, v in row.items() if k not in ("taxpayer_number", "social_security_number") or v}
    allowed = ({"tax_office", "tax_credit_rating"} if record_type == "tax" else
               {"insured_place", "insurance_types", "insurance_status"})
    _exact_fields(record_type, {k: v for k, v in given.items()
                                if k not in ("taxpayer_number", "social_security_number")}, allowed)
    probe = {"national_id": number, "name": "x", "sex": "M" if int(number[16]) % 2 else "F", "ethnicity": "汉族",
             "address": "x", "issuing_authority": "x", "valid_from": "2000-01-01", "valid_until": LONG_TERM,
             "tax_office": "x", "tax_credit_rating": "A", "insured_place": "x", "insurance_types": "medical",
             "insurance_status": "active", **{k: str(v) for k, v in given.items()}}
    app = _parse_cn(probe, today)
    return asdict(app.tax) if record_type == "tax" else asdict(app.insurance)
