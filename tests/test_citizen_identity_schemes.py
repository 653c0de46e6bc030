"""GB 11643-1999 citizen identity numbers (and the EVS 585 alternative): vectors, reasons, properties."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cardsim.citizens import parse_application
from cardsim.demo_citizens import chinese_citizen, estonian_citizen
from cardsim.errors import InvalidApplication
from cardsim.identity_schemes import PROVINCES, InvalidCitizenId, mask_any, scheme_named

GB = scheme_named("cn-gb11643")
EE = scheme_named("ee-evs585")
TODAY = datetime.date(2026, 12, 2)



def test_check_character_matches_an_independent_iso7064_computation() -> None:
    # ISO 7064 MOD 11-2 computed the "pure" way: the check value c makes sum(a_i * 2^(18-i)) + c == 1 (mod 11)
    def iso7064(first17: str) -> str:
        total = sum(int(d) * pow(2, 17 - i, 11) for i, d in enumerate(first17))
        for c in range(11):
            if (total + c) % 11 == 1:
                return "X" if c == 10 else str(c)
        raise AssertionError

    for head in ("11010519491231002", "43310119850715001", "65290119991231999", "71000020260101000"):
        assert GB.check_character(head) == iso7064(head)
    assert GB.check_character("11010519491231002") == "X"


def test_valid_numbers_including_ones_ending_in_x() -> None:
    parsed = GB.validate("11010519491231002X", today=TODAY)
    assert (parsed.number, parsed.date_of_birth, parsed.sex, parsed.region) == (
        "11010519491231002X", datetime.date(1949, 12, 31), "F", "110105")
    assert GB.validate("11010519491231002x", today=TODAY).number == "11010519491231002X"  # stored upper case
    made = [GB.make(datetime.date(1990, 3, d), "MF"[d % 2], d) for d in range(1, 29)]
    assert any(n.endswith("X") for n in made)
    for number in made:
        assert GB.validate(number, today=TODAY).number == number
    for number in ("433101198507150018", "433101200002290023", "82000019000101001X"):
        GB.validate(number, today=TODAY)


@pytest.mark.parametrize(("number", "sex", "reason"), [
    ("11010519491231002", None, "wrong-length"),
    ("11010519491231002X1", None, "wrong-length"),
    ("", None, "wrong-length"),
    ("1101051949123100ZX", None, "bad-characters"),
    ("X10105194912310021", None, "bad-characters"),
    ("１１０１０５１９４９１２３１００２Ｘ", None, "bad-characters"),  # full-width digits
    ("991011194912310020", None, "unknown-province"),
    ("191011194912310020", None, "unknown-province"),
    ("433101198502290018", None, "impossible-date"),   # 1985 is not a leap year
    ("433101198513010013", None, "impossible-date"),
    ("433101189912310019", None, "date-before-1900"),
    ("433101202712010011", None, "date-in-future"),
    ("110105194912310021", None, "bad-check-character"),
    ("11010519491231002X", "M", "sex-mismatch"),       # sequence 002: even, female
    ("433101198507150018", "F", "sex-mismatch"),       # sequence 001: odd, male
])
def test_every_kind_of_invalid_number_has_its_reason(number: str, sex: str | None, reason: str) -> None:
    with pytest.raises(InvalidCitizenId) as refused:
        GB.validate(number, sex, TODAY)
    assert refused.value.reason == reason, refused.value.message


def _valid_numbers() -> st.SearchStrategy[str]:
    dates = st.dates(datetime.date(1900, 1, 1), TODAY)
    regions = st.tuples(st.sampled_from(sorted(PROVINCES)), st.integers(0, 9999)).map(lambda t: f"{t[0]}{t[1]:04d}")
    return st.builds(lambda d, s, n, r: GB.make(d, s, n, r), dates, st.sampled_from("MF"), st.integers(0, 499), regions)


@settings(max_examples=300, deadline=None)
@given(_valid_numbers())
def test_every_generated_number_is_valid(number: str) -> None:
    parsed = GB.validate(number, today=TODAY)
    assert parsed.sex == ("M" if int(number[16]) % 2 else "F")
    assert GB.validate(number.lower(), parsed.sex, TODAY).number == number


@settings(max_examples=300, deadline=None)
@given(_valid_numbers(), st.integers(0, 17), st.integers(1, 10))
def test_changing_any_one_character_makes_it_invalid(number: str, position: int, shift: int) -> None:
    alphabet = "0123456789X" if position == 17 else "0123456789"
    old = alphabet.index(number[position])
    new = alphabet[(old + shift) % len(alphabet)]
    if new == number[position]:
        new = alphabet[(old + 1) % len(alphabet)]
    changed = number[:position] + new + number[position + 1:]
    with pytest.raises(InvalidCitizenId):
        GB.validate(changed, today=TODAY)


def test_mask_keeps_first_and_last_four() -> None:
    assert GB.mask("43310119850715123X") == "4331**********123X"
    assert mask_any("43310119850715123X") == "4331**********123X"
    assert mask_any("38001085718") == "3******5718"
    assert mask_any("") == ""


def test_estonian_scheme_still_works() -> None:
    code = EE.make(datetime.date(1980, 1, 8), "M", 571)
    assert code == "38001085718"
    assert EE.validate(code, "M", TODAY).date_of_birth == datetime.date(1980, 1, 8)
    with pytest.raises(InvalidCitizenId) as refused:
        EE.validate("38001085719", None, TODAY)
    assert refused.value.reason == "bad-check-character"
    application = parse_application(estonian_citizen(4), TODAY, "ee-evs585")
    assert application.holder == "Kadri4 Tamm" and application.scheme == "ee-evs585"


def test_chinese_application_shape_and_refusals() -> None:
    row = chinese_citizen(12)
    application = parse_application(row, TODAY, "cn-gb11643")
    assert application.holder == row["name"] and " " not in application.holder
    data = application.record_data()
    assert data["tax"]["taxpayer_number"] == row["national_id"] == data["insurance"]["social_security_number"]
    assert data["identity"]["ethnicity"] == row["ethnicity"]
    assert set(data["tax"]) == {"taxpayer_number", "tax_office", "tax_credit_rating"}
    bad = {**row, "national_id": row["national_id"][:-1] + ("0" if row["national_id"][-1] != "0" else "1"),
           "ethnicity": "火星族", "tax_credit_rating": "E", "insurance_types": "pension,gold", "name": "伟 张"}
    with pytest.raises(InvalidApplication) as refused:
        parse_application(bad, TODAY, "cn-gb11643")
    for expected in ("bad-check-character", "ethnicity", "tax_credit_rating", "insurance_types", "family name first"):
        assert expected in str(refused.value)
    with pytest.raises(InvalidApplication, match="sex-mismatch"):
        parse_application({**row, "sex": "F" if row["sex"] == "M" else "M"}, TODAY, "cn-gb11643")
    assert parse_application({**row, "sex": "男" if row["sex"] == "M" else "女"}, TODAY, "cn-gb11643").identity.sex == row["sex"]


def test_demo_citizens_are_valid_and_distinct() -> None:
    numbers = set()
    for i in range(0, 10_000, 13):
        row = chinese_citizen(i)
        GB.validate(row["national_id"], row["sex"], TODAY)
        numbers.add(row["national_id"])
    assert len(numbers) == len(range(0, 10_000, 13))


def test_pseudonyms_are_stable_per_deployment_and_reveal_nothing() -> None:
    import hashlib
    import hmac

    from cardsim.pseudonyms import is_pseudonym, pseudonym, pseudonym_key

    key, other = pseudonym_key(b"\x01" * 32), pseudonym_key(b"\x02" * 32)
    number = "11010519491231002X"
    value = pseudonym(key, "cn-gb11643", number)
    assert is_pseudonym(value) and value == pseudonym(key, "cn-gb11643", number)
    assert value != pseudonym(other, "cn-gb11643", number)  # unlinkable across deployments
    assert value != pseudonym(key, "cn-gb11643", "110105194912310029")
    assert not any(number[i:i + 6] in value for i in range(13))
    # RFC 2104 HMAC-SHA256, computed independently with the standard library
    expected_key = hmac.new(b"\x01" * 32, b"tessera citizen pseudonym key v1", hashlib.sha256).digest()
    digest = hmac.new(expected_key, f"cn-gb11643:{number}".encode(), hashlib.sha256).digest()[:15]
    import base64

    assert value == "PSN-" + base64.b32encode(digest).decode()
