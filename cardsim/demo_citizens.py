"""Demo and load-test citizens: Chinese people with valid GB 11643-1999 numbers (or Estonian ones
for the ``ee-evs585`` scheme), used by the seed data, the tests and bench/cards_issue.py.

Citizen ``i`` is the same person every time, and distinct ``i`` below 16,800 get distinct birth
dates, hence distinct identity numbers. They live in the eight county-level divisions of 湘西土家族
苗族自治州 (GB/T 2260 codes 4331xx).
"""

from __future__ import annotations

import datetime

from cardsim.identity_schemes import scheme_named
from directory.person_names import name_parts

#: 湘西土家族苗族自治州: county-level divisions (GB/T 2260), their seat and a street
COUNTIES = (("433101", "吉首市", "人民北路"), ("433122", "泸溪县", "白沙大道"), ("433123", "凤凰县", "沱江大道"),
            ("433124", "花垣县", "民主路"), ("433125", "保靖县", "迁陵路"), ("433126", "古丈县", "红星路"),
            ("433127", "永顺县", "猛洞河路"), ("433130", "龙山县", "民族路"))
PREFECTURE = "湖南省湘西土家族苗族自治州"
ETHNICITIES = ("土家族", "苗族", "汉族", "汉族", "土家族", "白族", "回族", "侗族")
INSURANCE_MIX = ("pension,medical", "pension,medical,unemployment,work-injury,maternity", "medical",
                 "pension,medical,unemployment,work-injury")


def birth_date(i: int) -> datetime.date:
    return datetime.date(1950 + i % 50, 1 + (i // 50) % 12, 1 + (i // 600) % 28)


def name_of(i: int) -> tuple[str, str]:
    """(汉字 name, pinyin) of citizen ``i``: family name first, no space (张伟, "Zhang Wei")."""
    (family, family_pinyin), (given, given_pinyin) = name_parts(i)
    return family + given, f"{family_pinyin} {given_pinyin}"


def chinese_citizen(i: int) -> dict[str, str]:
    """A valid ``cn-gb11643`` card application for citizen ``i``."""
    dob = birth_date(i)
    sex = "MF"[i % 2]
    region, county, street = COUNTIES[i % len(COUNTIES)]
    number = scheme_named("cn-gb11643").make(dob, sex, i * 7, region)
    name, pinyin = name_of(i)
    issued = datetime.date(2016 + i % 8, dob.month, min(dob.day, 28))
    return {
        "national_id": number, "name": name, "name_pinyin": pinyin, "sex": sex,
        "ethnicity": ETHNICITIES[i % len(ETHNICITIES)], "date_of_birth": dob.isoformat(),
        "address": f"{PREFECTURE}{county}{street}{1 + i % 200}号",
        "issuing_authority": f"{county}公安局", "valid_from": issued.isoformat(),
        "valid_until": "long-term" if dob.year < 1970 else issued.replace(year=issued.year + 20).isoformat(),
        "tax_office": f"国家税务总局{county}税务局", "tax_credit_rating": "ABBMA"[i % 5],
        "insured_place": f"{PREFECTURE}{county}", "insurance_types": INSURANCE_MIX[i % len(INSURANCE_MIX)],
        "insurance_status": "active",
    }


def estonian_citizen(i: int) -> dict[str, str]:
    """A valid ``ee-evs585`` card application for citizen ``i``."""
    dob = birth_date(i)
    sex = "FM"[i % 2]
    return {
        "national_id": scheme_named("ee-evs585").make(dob, sex, (i * 7) % 1000), "given_names": f"Kadri{i}",
        "surname": "Tamm", "date_of_birth": dob.isoformat(), "sex": sex, "nationality": "EST",
        "address": f"Pikk {i}, Tallinn", "taxpayer_number": f"{1000000 + i}", "tax_office": "Tallinn",
        "tax_status": "resident", "last_assessed_year": "2025", "insurer": "Health Insurance Fund",
        "policy_number": f"POL-{100000 + i}", "coverage_class": "standard", "insurance_valid_until": "2028-12-31",
    }


def demo_citizen(i: int, scheme: str = "cn-gb11643") -> dict[str, str]:
    """Citizen ``i`` in the shape of ``scheme``."""
    return chinese_citizen(i) if scheme == "cn-gb11643" else estonian_citizen(i)
