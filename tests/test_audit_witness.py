"""The audit trail's tail protected from outside the database (issue 12, finding 4).

The outside tester's attacks, as they did them (triggers dropped, the tail rewritten with recomputed
hashes and head, the newest checkpoint deleted), on SQLite and PostgreSQL: verification compares
the database with the append-only witness file and names each finding, and the checkpointer
refuses to sign the forgery. Also: the witness file's form and permissions (its signatures judged
by openssl), syslog lines as RFC 5424 (received on a UDP socket), and time-based checkpoints with
an injectable clock, elected among several schedules so none is duplicated.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import re
import socket
import stat
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from audit.checkpoint_schedule import CheckpointSchedule
from audit.checkpoints import Checkpointer
from audit.errors import CheckpointRefused
from audit.models import AuditCheckpoint, AuditEntry
from audit.verification import verify
from audit.witness import Witness, parse_line
from tests.fixtures_audit import *  # noqa: F401,F403
from tests.fixtures_audit import AuditStore, fill, rewrite_tail, root_pem, run, tamper, witnessed


def findings(store: AuditStore, witness: Path) -> list[str]:
    return sorted(str(p).split(":", 1)[0] for p in verify(store.sessions, witness=witness).problems)


def refused(store: AuditStore) -> str:
    with pytest.raises(CheckpointRefused) as caught:
        store.checkpointer.checkpoint()
    return caught.value.finding


def count_checkpoints(store: AuditStore) -> int:
    with store.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(AuditCheckpoint)) or 0)


def last_entry(store: AuditStore) -> dict[str, Any]:
    with store.engine.connect() as conn:
        table = AuditEntry.__table__
        return dict(conn.execute(select(table).order_by(table.c.seq.desc()).limit(1)).mappings().one())


@pytest.fixture()
def trail25(audit_store: AuditStore) -> tuple[AuditStore, Path]:
    """25 entries, checkpoints at 10 and 20 (automatic) and 25 (as the time-based one would), all witnessed."""
    path = witnessed(audit_store)
    fill(audit_store, 25)
    audit_store.checkpointer.checkpoint()
    assert [parse_line(line).seq for line in path.read_text().splitlines()] == [10, 20, 25]
    assert verify(audit_store.sessions, witness=path).ok
    return audit_store, path


# -- the witness file ------------------------------------------------------------------------
def test_witness_lines_are_signed_checkpoints_in_a_0600_append_only_file(trail25: tuple[AuditStore, Path]) -> None:
    store, path = trail25
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    with store.sessions() as session:
        rows = {r.seq: r for r in session.scalars(select(AuditCheckpoint))}
    for line in lines:
        row = rows[line["seq"]]
        assert (line["checkpoint"], line["entry_hash"], line["previous"]) == (row.id, row.entry_hash, row.previous_seq)
        assert base64.b64decode(line["signature"]) == row.signature
    # the judge: openssl verifies a witness line's signature against the root held outside, and prints
    # the statement the line describes
    (store.folder / "line.p7s").write_bytes(base64.b64decode(lines[-1]["signature"]))
    checked = run("openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(store.folder / "line.p7s"),
                  "-CAfile", str(root_pem(store.ca, store.folder)), cwd=store.folder)
    assert checked.returncode == 0, checked.stderr
    assert f"seq=25\nentry_hash={lines[-1]['entry_hash']}\n" in checked.stdout
    assert f"time={lines[-1]['time']}" in checked.stdout


def test_a_forged_or_garbled_witness_line_is_named(trail25: tuple[AuditStore, Path]) -> None:
    store, path = trail25
    forged = json.loads(path.read_text().splitlines()[-1])
    forged.update(seq=30, entry_hash="ab" * 32, checkpoint=99)  # the signature no longer signs what it says
    with open(path, "a") as fh:
        fh.write(json.dumps(forged) + "\n")
        fh.write("not a witness line\n")
    assert findings(store, path) == ["witness-forged line=4", "witness-malformed line=5"]


# -- the outside tester's attacks --------------------------------------------------------------
def _change(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows[2]["subject"] = "staff:nobody"
    return rows


ATTACKS = {
    "changed": (_change, ["checkpoint-missing seq=25", "entry-changed seq=25"]),
    "deleted": (lambda rows: rows[:2] + rows[3:], ["checkpoint-missing seq=25", "trail-truncated after seq=24"]),
    "inserted": (lambda rows: rows[:2] + [dict(rows[2], subject="staff:forger")] + rows[2:],
                 ["checkpoint-missing seq=25", "entry-changed seq=25"]),
    "swapped": (lambda rows: rows[:2] + [rows[3], rows[2]] + rows[4:], ["checkpoint-missing seq=25", "entry-changed seq=25"]),
    "truncated": (lambda rows: rows[:1], ["checkpoint-missing seq=25", "trail-truncated after seq=21"]),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_tail_rewritten_with_recomputed_hashes_and_newest_checkpoint_deleted(
        trail25: tuple[AuditStore, Path], attack: str) -> None:
    store, path = trail25
    edit, expected = ATTACKS[attack]
    tamper(store, "DELETE FROM audit_checkpoint WHERE seq = 25")
    rewrite_tail(store, 21, edit)
    # the database alone looks clean: this is the finding
    assert verify(store.sessions).ok, [str(p) for p in verify(store.sessions).problems]
    assert findings(store, path) == expected
    before = path.read_bytes()
    assert refused(store) in ("checkpoint-missing seq=25", "trail-truncated after seq=24",
                              "trail-truncated after seq=21")
    assert count_checkpoints(store) == 2 and path.read_bytes() == before  # nothing signed, nothing witnessed
    # the refusal is itself an audit entry
    entry = last_entry(store)
    assert (entry["event_type"], entry["result"]) == ("audit.checkpoint", "refused")
    assert json.loads(entry["details"])["finding"].startswith(("checkpoint-missing", "trail-truncated"))


def test_tail_rewritten_under_a_kept_checkpoint_is_named_and_refused(trail25: tuple[AuditStore, Path]) -> None:
    store, path = trail25
    rewrite_tail(store, 23, _change)  # entries 23..25 rewritten; checkpoint 25 kept
    assert findings(store, path) == ["entry-changed seq=25"]
    assert refused(store) == "entry-changed seq=25"


def test_deleting_the_newest_checkpoint_alone_is_named_and_refused(trail25: tuple[AuditStore, Path]) -> None:
    store, path = trail25
    tamper(store, "DELETE FROM audit_checkpoint WHERE seq = 25")
    assert verify(store.sessions).ok  # the database alone cannot tell
    assert findings(store, path) == ["checkpoint-missing seq=25"]
    assert refused(store) == "checkpoint-missing seq=25"


def test_whole_trail_truncated_is_named_and_refused(trail25: tuple[AuditStore, Path]) -> None:
    store, path = trail25
    tamper(store, "DELETE FROM audit_checkpoint", "DELETE FROM audit_entry")
    rewrite_tail(store, 1, lambda rows: [])
    assert findings(store, path) == ["checkpoint-missing seq=10", "checkpoint-missing seq=20",
                                     "checkpoint-missing seq=25", "trail-truncated after seq=0"]
    assert refused(store) == "trail-truncated after seq=0"


def test_unsigned_tail_broken_without_recomputing_is_refused(trail25: tuple[AuditStore, Path]) -> None:
    store, _ = trail25
    fill(store, 3, start=100)  # 26..28: after the last checkpoint
    tamper(store, "UPDATE audit_entry SET subject = 'staff:nobody' WHERE seq = 27")
    assert refused(store) in ("entry-changed seq=27", "entry-malformed seq=27")


def test_an_honest_trail_goes_on_being_checkpointed_and_witnessed(trail25: tuple[AuditStore, Path]) -> None:
    store, path = trail25
    fill(store, 4, start=100)
    row = store.checkpointer.checkpoint()
    assert row.seq == 29 and parse_line(path.read_text().splitlines()[-1]).seq == 29
    assert store.checkpointer.checkpoint().id == row.id  # idempotent: no second line
    assert len(path.read_text().splitlines()) == 4
    assert verify(store.sessions, witness=path).ok


# -- syslog ----------------------------------------------------------------------------------
def test_syslog_witness_sends_rfc5424_messages(audit_store: AuditStore) -> None:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(5)
    try:
        path = witnessed(audit_store, syslog=f"udp://127.0.0.1:{receiver.getsockname()[1]}")
        fill(audit_store, 10)  # automatic checkpoint at 10
        message = receiver.recv(65536).decode()
    finally:
        receiver.close()
    # RFC 5424 section 6: <PRI>VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP SD SP MSG
    match = re.fullmatch(r"<(\d+)>1 (\S+Z) (\S+) tessera (\d+) audit-checkpoint - (\{.*\})", message)
    assert match, message
    assert int(match[1]) == 10 * 8 + 6  # authpriv.info
    assert int(match[4]) == os.getpid()
    sent = parse_line(match[5])
    filed = parse_line(path.read_text().splitlines()[0])
    assert sent.signature is None and (sent.seq, sent.entry_hash, sent.signature_sha256) == \
        (filed.seq, filed.entry_hash, filed.signature_sha256) == (10, filed.entry_hash, filed.signature_sha256)


def test_unreachable_syslog_does_not_stop_checkpoints(audit_store: AuditStore) -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    with pytest.raises(OSError):  # TCP to a closed port: the handler cannot even connect
        Witness(None, f"tcp://127.0.0.1:{port}")
    path = witnessed(audit_store, syslog=f"udp://127.0.0.1:{port}")  # UDP: sent into the void
    fill(audit_store, 10)
    assert parse_line(path.read_text().splitlines()[0]).seq == 10


# -- checkpoints by time ---------------------------------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.now = datetime.datetime(2026, 12, 2, 20, 0, tzinfo=datetime.timezone.utc)

    def __call__(self) -> datetime.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += datetime.timedelta(seconds=seconds)


def test_time_based_checkpoints_while_there_is_activity_elected_once(audit_store: AuditStore) -> None:
    path = witnessed(audit_store, checkpoint_every=1000)
    clock = FakeClock()
    # three processes' schedules (workers or nodes) on one database
    schedules = [CheckpointSchedule(Checkpointer(audit_store.ca, audit_store.sessions, witness=Witness(path)),
                                    audit_store.sessions, interval=60, clock=clock, holder=f"worker-{n}")
                 for n in range(3)]
    assert [s.tick() for s in schedules] == [None, None, None]  # no entries: nothing to sign
    fill(audit_store, 3)
    made = [s.tick() for s in schedules]
    assert [m is not None for m in made] == [True, False, False] and made[0].seq == 3  # one elected
    fill(audit_store, 2, start=3)
    clock.advance(30)
    assert [s.tick() for s in schedules] == [None, None, None]  # not due yet
    clock.advance(30)
    made = [s.tick() for s in schedules]
    assert sum(m is not None for m in made) == 1 and next(m for m in made if m).seq == 5
    clock.advance(600)
    assert [s.tick() for s in schedules] == [None, None, None]  # quiet: no new checkpoint
    fill(audit_store, 1, start=5)
    assert sum(s.tick() is not None for s in schedules) == 1  # activity again: checkpointed at once
    assert count_checkpoints(audit_store) == 3
    assert [parse_line(line).seq for line in path.read_text().splitlines()] == [3, 5, 6]
    assert verify(audit_store.sessions, witness=path).ok


def test_schedule_thread_checkpoints_within_the_interval(audit_store: AuditStore) -> None:
    import time

    path = witnessed(audit_store, checkpoint_every=1000)
    fill(audit_store, 2)
    schedule = CheckpointSchedule(audit_store.checkpointer, audit_store.sessions, interval=0.6).start()
    try:
        deadline = time.monotonic() + 10
        while count_checkpoints(audit_store) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        schedule.stop()
    assert count_checkpoints(audit_store) == 1 and parse_line(path.read_text()).seq == 2


def test_a_refused_time_based_checkpoint_is_logged_not_raised(trail25: tuple[AuditStore, Path],
                                                              caplog: pytest.LogCaptureFixture) -> None:
    store, _ = trail25
    tamper(store, "DELETE FROM audit_checkpoint WHERE seq = 25")
    fill(store, 1, start=100)
    schedule = CheckpointSchedule(store.checkpointer, store.sessions, interval=60, clock=FakeClock())
    assert schedule.tick() is None
    assert "audit checkpoint refused: checkpoint-missing seq=25" in caplog.text


# -- reading the newest line from the end ----------------------------------------------------
def _witness_text(seq: int, signature: bytes) -> str:
    import hashlib

    return json.dumps({"v": "tessera-audit-witness-v1", "checkpoint": seq, "seq": seq * 10, "entry_hash": "ab" * 32,
                       "time": "2026-12-02T20:00:00.000000Z", "previous": 0, "signature": base64.b64encode(signature).decode(),
                       "signature_sha256": hashlib.sha256(signature).hexdigest()})


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(st.one_of(st.binary(max_size=60000).map(lambda b: ("line", b)),
                                 st.text(max_size=50).map(lambda t: ("junk", t))), max_size=12),
       block=st.sampled_from([7, 100, 4096, 65536]), ending=st.sampled_from(["", "\n", "\n\n", "\n{"]))
def test_newest_line_read_from_the_end_is_the_last_well_formed_one(tmp_path: Path, pieces: list[tuple[str, Any]],
                                                                    block: int, ending: str) -> None:
    from audit.witness import WitnessLine, last_line, read_witness

    text = "\n".join(_witness_text(n + 1, v) if kind == "line" else v.replace("\n", " ")
                     for n, (kind, v) in enumerate(pieces)) + ending
    path = tmp_path / "w.log"
    path.write_text(text)
    expected = [line for _, line in read_witness(path) if isinstance(line, WitnessLine)]
    assert last_line(path, block) == (expected[-1] if expected else None)


# -- what the CA published: CRL numbers and revocations (issue 16) -----------------------------
def service_certificate(store: AuditStore, name: str) -> str:
    """A service certificate of the staff CA for a key the test holds; its serial."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from ca.authority import INIT_REQUESTER
    from ca.subjects import SubjectRequest

    subject = SubjectRequest(((NameOID.COUNTRY_NAME, "CN"), (NameOID.ORGANIZATION_NAME, "Tessera Government PKI"),
                              (NameOID.ORGANIZATIONAL_UNIT_NAME, "Tests"), (NameOID.COMMON_NAME, name)))
    with store.sessions.begin() as session:
        row = store.ca.issue_for_key(session, "service", ec.generate_private_key(ec.SECP256R1()).public_key(),
                                     subject, INIT_REQUESTER, issuer="staff")
        return row.serial_hex


def _records(path: Path) -> list[Any]:
    from audit.witness import read_records

    return [record for _, record in read_records(path)]


def test_crls_and_checkpoints_leave_what_was_published_in_the_witness(audit_store: AuditStore) -> None:
    from audit.witness import CrlLine, PublishedHistory, WitnessLine, attach, authority_key_id
    from ca.models import Authority, Crl

    store = audit_store
    path = witnessed(store)
    assert store.checkpointer.witness is not None
    attach(store.sessions, store.checkpointer.witness)
    kept, held = service_certificate(store, "kept"), service_certificate(store, "held")
    store.ca.revoke(kept, "keyCompromise")
    store.ca.revoke(held, "certificateHold")
    store.ca.release_hold(held)
    fill(store, 10)  # the automatic checkpoint at 10
    crl_lines = [r for r in _records(path) if isinstance(r, CrlLine)]
    with store.sessions() as session:
        staff = session.scalar(select(Authority).where(Authority.name == "staff"))
        assert staff is not None
        numbers = list(session.scalars(select(Crl.number).where(Crl.authority_id == staff.id).order_by(Crl.number)))
        key = authority_key_id(staff.certificate_der)
    # one line per CRL, as published: what each added and dropped
    assert [(c.number, [a.serial for a in c.added], list(c.removed)) for c in crl_lines] == [
        (numbers[-3], [kept], []), (numbers[-2], [held], []), (numbers[-1], [], [held])]
    assert crl_lines[0].added[0].reason == "keyCompromise" and crl_lines[1].added[0].status == "on-hold"
    assert all(c.key_id == key for c in crl_lines)
    # the checkpoint's line carries every CA's last CRL number, the revocation and the released hold
    line = [r for r in _records(path) if isinstance(r, WitnessLine)][-1]
    assert line.state is not None
    assert {(c.authority, c.number) for c in line.state.crls} >= {("staff", numbers[-1])}
    assert [(r.serial, r.status) for r in line.state.revocations] == [(kept, "revoked")]
    assert line.state.released == (("staff", held),)
    history = PublishedHistory.of(enumerate(_records(path), 1))
    assert set(history.revoked) == {("staff", kept)} and history.crl_numbers[("staff", key)] == numbers[-1]
    assert verify(store.sessions, witness=path).ok


def test_crl_numbers_continue_above_the_witness_and_a_crl_it_cannot_record_is_not_published(
        audit_store: AuditStore) -> None:
    from audit.witness import CrlLine, Witness, attach, authority_key_id
    from ca.crl import CrlWitnessUnavailable
    from ca.models import Authority

    store = audit_store
    path = store.folder / "witness.log"
    with store.sessions() as session:
        staff = session.scalar(select(Authority).where(Authority.name == "staff"))
        assert staff is not None
        key, before = authority_key_id(staff.certificate_der), staff.crl_number
    published = CrlLine("staff", key, before + 40, "2026-12-01T00:00:00.000000Z", "ab" * 32)
    path.write_text(published.text() + "\n" + CrlLine("staff", "00" * 20, 999, published.this_update, "cd" * 32).text()
                    + "\n")
    witness = Witness(path)
    attach(store.sessions, witness)
    assert store.ca.publish_crl("staff").number == before + 41  # above the witness; another key's numbers do not count
    # a transaction that rolls back leaves no line; one whose line cannot be written is not published
    with pytest.raises(RuntimeError), store.sessions.begin() as session:
        store.ca._publish(session, store.ca.authority(session, "staff"), store.ca.clock())
        raise RuntimeError("undone")
    assert [r.number for r in _records(path) if isinstance(r, CrlLine)] == [before + 40, 999, before + 41]
    witness.path = store.folder / "witness.log" / "not-a-folder"
    with pytest.raises(CrlWitnessUnavailable):
        store.ca.publish_crl("staff")
    with store.sessions() as session:
        assert store.ca.authority(session, "staff").crl_number == before + 41
