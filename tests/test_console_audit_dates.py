"""The audit trail's date filters (issue 17, item 5): date fields whose days are the console's local
time (Asia/Shanghai), a whole day included as the end of a period, and a wrong date explained on
the same page next to its field, never a page that only says "Refused".

Against the running service (tests.fixtures_admin), as its auditor, without a browser.
"""

from __future__ import annotations

import datetime
import re
from zoneinfo import ZoneInfo

import pytest
import requests

from tests.fixtures_admin import *  # noqa: F401,F403
from tests.fixtures_admin import AdminAgent, IdpServer, audit_entries, audit_tip

EN = {"Accept-Language": "en", "Accept": "text/html"}
SHANGHAI = ZoneInfo("Asia/Shanghai")


def _seqs(page: requests.Response) -> set[int]:
    return {int(n) for n in re.findall(r'<a href="/admin/audit/(\d+)">', page.text)}


def _newest(idp: IdpServer, agent: AdminAgent) -> tuple[int, datetime.date]:
    """An entry of the trail and its day in Shanghai (the auditor's own reading, recorded just now)."""
    agent.get(idp.url("/admin/audit"), headers=EN)
    entry = audit_entries(idp, since_seq=audit_tip(idp) - 1)[-1]
    at = datetime.datetime.fromisoformat(str(entry["at"])).replace(tzinfo=datetime.timezone.utc)
    return int(entry["seq"]), at.astimezone(SHANGHAI).date()


def test_days_are_local_and_the_last_day_is_included(idp: IdpServer, admin_agents: dict[str, AdminAgent]) -> None:
    auditor = admin_agents["auditor"]
    seq, day = _newest(idp, auditor)
    page = auditor.get(idp.url("/admin/audit"), params={"since": day.isoformat(), "until": day.isoformat()}, headers=EN)
    assert page.status_code == 200 and seq in _seqs(page)
    assert '<input type="date" name="since" id="since" value="%s"' % day.isoformat() in page.text
    assert "Asia/Shanghai" in page.text.split('id="date-zone"', 1)[1][:300]  # said next to the fields
    after = auditor.get(idp.url("/admin/audit"), params={"since": (day + datetime.timedelta(days=1)).isoformat()},
                        headers=EN)
    assert after.status_code == 200 and seq not in _seqs(after)
    before = auditor.get(idp.url("/admin/audit"), params={"until": (day - datetime.timedelta(days=1)).isoformat()},
                         headers=EN)
    assert before.status_code == 200 and seq not in _seqs(before)
    report = auditor.get(idp.url("/admin/audit/reports"), params={"since": day.isoformat()}, headers=EN)
    assert report.status_code == 200 and "svg" in report.text


@pytest.mark.parametrize("path", ["/admin/audit", "/admin/audit/reports"])
@pytest.mark.parametrize(("params", "field", "words"), [
    ({"since": "2026-13-45"}, "since", "Since: '2026-13-45' is not a date. Use year-month-day, e.g. 2026-11-25"),
    ({"until": "yesterday"}, "until", "Until: 'yesterday' is not a date."),
    ({"since": "2026-11-25", "until": "2026-11-24"}, "until", "Until: the period ends before it begins"),
])
def test_a_wrong_date_is_explained_on_the_same_page(idp: IdpServer, admin_agents: dict[str, AdminAgent], path: str,
                                                    params: dict[str, str], field: str, words: str) -> None:
    auditor = admin_agents["auditor"]
    tip = audit_tip(idp)
    page = auditor.get(idp.url(path), params={"type": "login.*", **params}, headers=EN)
    assert page.status_code == 400, page.text[:300]
    error = re.search(r'<p class="error" role="alert" id="%s-error">([^<]*)</p>' % field, page.text)
    assert error and words in error.group(1).replace("&#39;", "'"), page.text[-1500:]
    assert "(local time: China Standard Time (Asia/Shanghai))" in error.group(1) or "period" in words
    assert 'id="refusal"' not in page.text and "<h1>Refused</h1>" not in page.text
    assert 'value="login.*"' in page.text  # the filter form stays as sent
    assert f'aria-describedby="{field}-error"' in page.text
    assert audit_tip(idp) == tip  # nothing read, nothing recorded


def test_a_wrong_date_in_an_export_is_explained_too(idp: IdpServer, admin_agents: dict[str, AdminAgent]) -> None:
    auditor = admin_agents["auditor"]
    answer = auditor.post(idp.url("/admin/audit/export?since=31.12.2026"),
                          data={"csrf_token": auditor.csrf(), "format": "csv"}, headers=EN)
    assert answer.status_code == 400 and 'id="since-error"' in answer.text
    assert answer.headers["Content-Type"].startswith("text/html")


@pytest.mark.parametrize("value", ["0001-01-01", "9999-12-31", "0001-01-01T00:00", "9999-12-31T23:59:59-12:00",
                                   "2026-02-30", "2026-11-25T25:00", "\x00", "2026-11-25T10:00:00+08:00"])
def test_edge_dates_never_5xx(idp: IdpServer, admin_agents: dict[str, AdminAgent], value: str) -> None:
    auditor = admin_agents["auditor"]
    for name in ("since", "until"):
        page = auditor.get(idp.url("/admin/audit"), params={name: value}, headers=EN)
        assert page.status_code in (200, 400), (name, value, page.status_code)
