"""A citizen's application for a card: identity, tax and insurance data, checked field by field.

The national identity number follows the Estonian personal identification code (EVS 585:2007):
gender-and-century digit, birth date YYMMDD, serial, and a mod-11 check digit with two weight
sets; it must agree with the date of birth and sex given.
"""

from __future__ import annotations

import datetime
import re
import unicodedata
from dataclasses import asdict, dataclass
from typing import Any

from cardsim.errors import InvalidApplication

FIELDS = (
    "national_id", "given_names", "surname", "date_of_birth", "sex", "nationality", "address",
    "taxpayer_number", "tax_office", "tax_status", "last_assessed_year",
    "insurer", "policy_number", "coverage_class", "insurance_valid_until",
)
TAX_STATUSES = ("resident", "non-resident", "exempt")
COVERAGE_CLASSES = ("basic", "standard", "extended")
_W1 = (1, 2, 3, 4, 5, 6, 7, 8, 9, 1)
_W2 = (3, 4, 5, 6, 7, 8, 9, 1, 2, 3)


def national_id_check_digit(first_ten: str) -> str:
    digits = [int(c) for c in first_ten]
    total = sum(d * w for d, w in zip(digits, _W1)) % 11
    if total == 10:
        total = sum(d * w for d, w in zip(digits, _W2)) % 11
        if total == 10:
            total = 0
    return str(total)


def make_national_id(date_of_birth: datetime.date, sex: str, serial: int) -> str:
    """A valid code for the given birth date, sex (F/M) and serial (0-999): for tests and demos."""
    century = (date_of_birth.year - 1800) // 100
    first = 1 + 2 * century + (1 if sex == "F" else 0)
    head = f"{first}{date_of_birth:%y%m%d}{serial % 1000:03d}"
    return head + national_id_check_digit(head)


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
class Application:
    identity: Identity
    tax: TaxRecord
    insurance: InsuranceRecord

    @property
    def holder(self) -> str:
        return f"{self.identity.given_names} {self.identity.surname}"

    def record_data(self) -> dict[str, dict[str, Any]]:
        return {"identity": asdict(self.identity), "tax": asdict(self.tax), "insurance": asdict(self.insurance)}


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


def parse_application(row: dict[str, Any], today: datetime.date | None = None) -> Application:
    """Check every field; raise :class:`InvalidApplication` naming every problem at once."""
    today = today or datetime.date.today()
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


def parse_record_update(record_type: str, row: dict[str, Any], today: datetime.date | None = None) -> dict[str, Any]:
    """Check the new content of a tax or insurance record (the department's update)."""
    today = today or datetime.date.today()
    base = {"national_id": "", "given_names": "x", "surname": "x", "date_of_birth": "2000-01-01", "sex": "F",
            "nationality": "EST", "address": "x", "taxpayer_number": "000000", "tax_office": "x",
            "tax_status": "resident", "last_assessed_year": str(today.year), "insurer": "x",
            "policy_number": "XXXXXX", "coverage_class": "basic", "insurance_valid_until": "2000-01-01"}
    if record_type == "tax":
        allowed = {"taxpayer_number", "tax_office", "tax_status", "last_assessed_year"}
        mapping = {"status": "tax_status"}
    elif record_type == "insurance":
        allowed = {"insurer", "policy_number", "coverage_class", "insurance_valid_until"}
        mapping = {"valid_until": "insurance_valid_until"}
    else:
        raise InvalidApplication("only the tax and insurance records can be updated by their departments")
    given = {mapping.get(k, k): v for k, v in row.items()}
    extra = sorted(set(given) - allowed)
    if extra:
        raise InvalidApplication(f"unknown fields for a {record_type} record: {', '.join(extra)}")
    missing = sorted(allowed - set(given))
    if missing:
        raise InvalidApplication(f"missing fields: {', '.join(missing)}")
    probe = {**base, **{k: str(v) for k, v in given.items()}}
    probe.pop("national_id")
    try:
        app = parse_application({**probe, "national_id": make_national_id(datetime.date(2000, 1, 1), "F", 0)}, today)
    except InvalidApplication as exc:
        raise InvalidApplication(str(exc)) from None
    return asdict(app.tax) if record_type == "tax" else asdict(app.insurance)
