"""Every field of every citizen record (both identity schemes) has words on the citizen portal,
so no citizen meets a raw key such as ``tax_credit_rating`` (issue 13, plain language)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from cardsim.citizens import (CnIdentity, CnInsuranceRecord, CnTaxRecord, Identity, InsuranceRecord,
                              TaxRecord)

PORTAL = Path(__file__).resolve().parent.parent / "idp" / "templates" / "portal.html"


def _field_words() -> set[str]:
    block = re.search(r"{% set field_words = {(.*?)} %}", PORTAL.read_text(), re.S)
    assert block, "portal.html has no field_words"
    return set(re.findall(r'"([a-z_]+)": _\(', block.group(1)))


def test_every_record_field_has_words_on_the_portal() -> None:
    records = (Identity, TaxRecord, InsuranceRecord, CnIdentity, CnTaxRecord, CnInsuranceRecord)
    keys = {f.name for record in records for f in dataclasses.fields(record)}
    missing = sorted(keys - _field_words())
    assert not missing, f"record fields without words on the portal: {missing}"
