"""`tessera card issue-batch`: every invalid row reported with its number and why, a summary,
and a run interrupted by a kill resumes without issuing anything twice."""

from __future__ import annotations

import csv
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from cardsim.citizens import CN_FIELDS as FIELDS
from tests.conftest import TESSERA, Home
from tests.fixtures_cards import citizen, registered_cards, token_folders


def write_csv(path: Path, rows: list[dict[str, str]], extra: dict[int, list[str]] | None = None) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(FIELDS)
        for i, row in enumerate(rows):
            writer.writerow([row.get(f, "") for f in FIELDS] + (extra or {}).get(i, []))


def batch_cards(home: Home, name: str) -> int:
    with sqlite3.connect(home.path / "tessera.db") as db:
        return int(db.execute("select count(*) from card where batch_key like ?", (f"{name}:%",)).fetchone()[0])


def test_bad_rows_are_reported_with_their_row_number(home: Home, tmp_path: Path) -> None:
    good = [citizen(400 + i) for i in range(4)]
    wrong_digit = citizen(410)
    number = wrong_digit["national_id"]
    wrong_digit["national_id"] = number[:-1] + ("0" if number[-1] != "0" else "1")
    rows = [good[0], wrong_digit, good[1], citizen(411, name=""), citizen(412, date_of_birth="1970-13-01"),
            good[2], dict(good[1]), good[3], citizen(413)]
    path = tmp_path / "citizens.csv"
    write_csv(path, rows, extra={8: ["surplus"]})
    result = home.cli("card", "issue-batch", str(path), "--envelopes", str(tmp_path / "env"), check=False)
    assert result.returncode == 3
    err = result.stderr.decode()
    assert "row 3: national_id is refused (bad-check-character)" in err
    assert "row 5: name is missing" in err
    assert "row 6: date_of_birth '1970-13-01' is not a date" in err
    assert "row 8: the same national_id as row 4" in err
    assert "row 10: more values than header columns" in err
    assert "issuing cards" in err  # the progress bar
    summary = result.stdout.decode()
    assert summary.startswith("4 issued, 0 already issued (skipped), 5 invalid, 0 failed")
    assert len(list((tmp_path / "env").iterdir())) == 4
    assert all(oct(p.stat().st_mode)[-3:] == "600" for p in (tmp_path / "env").iterdir())
    again = home.cli("card", "issue-batch", str(path), "--envelopes", str(tmp_path / "env"), check=False)
    assert again.stdout.decode().startswith("0 issued, 4 already issued (skipped), 5 invalid")
    assert batch_cards(home, "citizens.csv") == 4


def test_an_interrupted_batch_resumes(home: Home, tmp_path: Path) -> None:
    path = tmp_path / "resume.csv"
    write_csv(path, [citizen(450 + i) for i in range(16)])
    proc = subprocess.Popen([TESSERA, "card", "issue-batch", str(path), "--envelopes", str(tmp_path / "env")],
                            env=home.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 60
    while batch_cards(home, "resume.csv") < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    done = batch_cards(home, "resume.csv")
    assert 3 <= done < 16, "the batch should have been interrupted midway"
    result = home.cli("card", "issue-batch", str(path), "--envelopes", str(tmp_path / "env"))
    assert result.stdout.decode().startswith(f"{16 - done} issued, {done} already issued (skipped), 0 invalid")
    assert batch_cards(home, "resume.csv") == 16
    assert token_folders(home) == registered_cards(home)  # no orphan from the killed run
    assert list((home.path / "cards" / "pending").iterdir()) == []
