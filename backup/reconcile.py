"""After a restore: the database against what the deployment had published (audit.witness), so
that it does not silently go back in time.

:func:`reconcile`, in this order:

1. the restored head is checkpointed (signed and time-stamped as any checkpoint) and appended to
   the witness as a ``restored`` line: the checkpointer goes on from it, and verification reports
   every entry witnessed before and lost with the restore (``audit-gap``) instead of saying OK;
2. every CA whose CRL number is behind the witness's continues above it (RFC 5280 section 5.2.3:
   a number is never issued twice);
3. every revocation (or hold) the witness knows and the database lost is made again, with its
   witnessed reason and date (section 5.3.1), recorded as ``cert.revoke`` by the restorer; those of
   certificates the database does not have (issued after the backup) are listed for the operator;
4. each CA touched publishes a new CRL.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field, replace
from typing import Any

from cryptography import x509
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from audit import chain
from audit.checkpoints import Checkpointer, TimeStamper
from audit.models import AuditHead
from audit.verification import compare_published
from audit.witness import PublishedHistory, PublishedState, RestoreNote, Revocation, Witness, WitnessLine, read_records
from ca import crl as crl_module
from ca import revocation as revocation_module
from ca.authority import CertificateAuthority
from ca.errors import InvalidStateTransition
from ca.events import CaEvent
from ca.models import Authority, Certificate


@dataclass
class Reconciliation:
    """What :func:`reconcile` found and did."""

    backup_created: str
    restored_head: int
    #: the highest audit head the witness saw (None: no witness file)
    witnessed_head: int | None = None
    witnessed_until: str | None = None
    #: CAs whose CRL numbers now continue above the witness's: (name, number restored, number witnessed)
    crl_numbers: list[tuple[str, int, int]] = field(default_factory=list)
    reapplied: list[Revocation] = field(default_factory=list)
    #: witnessed revocations of certificates the database does not have, or that cannot be made again
    unknown: list[Revocation] = field(default_factory=list)
    #: revocations the witness counted but could not hold (too many at once)
    uncounted: int = 0

    @property
    def gap(self) -> tuple[int, int] | None:
        """(first, last) audit entries witnessed and lost, if any."""
        if self.witnessed_head is not None and self.witnessed_head > self.restored_head:
            return self.restored_head + 1, self.witnessed_head
        return None

    def lines(self) -> list[str]:
        """The report, a line per finding, for the operator."""
        out = []
        if self.witnessed_head is None:
            out.append("no witness: what was published after the backup cannot be known")
        elif self.gap:
            first, last = self.gap
            out.append(f"audit gap: entries {first} to {last} (witnessed up to {self.witnessed_until}) were lost; "
                       "`tessera audit verify` reports them (audit-gap)")
        else:
            out.append(f"no audit entry witnessed after the backup was lost (head {self.restored_head})")
        out += [f"CRL numbers of the {name} CA continue above {witnessed} (the backup had {restored})"
                for name, restored, witnessed in self.crl_numbers]
        out += [f"revoked again: {r.serial} of the {r.authority} CA ({_what(r)}, {r.at[:19]}Z)" for r in self.reapplied]
        out += [f"NOT in the database, revoke or re-issue by hand: certificate {r.serial} of the {r.authority} CA "
                f"({_what(r)}, {r.at[:19]}Z)" for r in self.unknown]
        if self.uncounted:
            out.append(f"{self.uncounted} revocation(s) were too many for the witness's lines: compare the newest "
                       "CRLs relying parties hold with the database")
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"backup_created": self.backup_created, "restored_head": self.restored_head,
                "witnessed_head": self.witnessed_head, "gap": list(self.gap) if self.gap else None,
                "crl_numbers": [{"ca": n, "restored": r, "witnessed": w} for n, r, w in self.crl_numbers],
                "reapplied": [r.as_dict() for r in self.reapplied], "unknown": [r.as_dict() for r in self.unknown],
                "uncounted": self.uncounted}


def _what(revocation: Revocation) -> str:
    return "on hold" if revocation.status == "on-hold" else revocation.reason or "unspecified"


def reconcile(ca: CertificateAuthority, sessions: sessionmaker[Session], witness: Witness | None,
              backup_created: datetime.datetime, actor: str, tsa: TimeStamper | None = None) -> Reconciliation:
    """Bring the restored database level with the witness (see the module docstring)."""
    now = ca.clock()
    records = list(read_records(witness.path)) if witness is not None and witness.path is not None \
        and witness.path.exists() else []
    with sessions() as session:
        head = int(session.scalar(select(AuditHead.seq).where(AuditHead.id == 1)) or 0)
    result = Reconciliation(chain.canonical_time(backup_created), head)
    if witness is None or witness.path is None:
        return result
    result.witnessed_head, result.witnessed_until = 0, None
    for _number, line in records:
        if isinstance(line, WitnessLine):
            if line.restored is not None or line.seq > result.witnessed_head:
                result.witnessed_head, result.witnessed_until = line.seq, line.time
    history = PublishedHistory.of(records)
    result.uncounted = sum(history.incomplete.values())
    row = Checkpointer(ca, sessions, tsa, ca.clock).checkpoint()
    note = RestoreNote(chain.canonical_time(now), chain.canonical_time(backup_created))
    witness.append(replace(WitnessLine.of(row.id, row.seq, row.entry_hash, row.created_at, row.previous_seq,
                                          row.signature), state=PublishedState(), restored=note))
    with sessions.begin() as session:
        difference = compare_published(session, history)
        touched: set[int] = set()
        for name, restored, witnessed in difference.crl_behind:
            authority = ca.authority(session, name)
            authority.crl_number = max(authority.crl_number, witnessed)
            touched.add(authority.id)
            result.crl_numbers.append((name, restored, witnessed))
        result.unknown = list(difference.unknown)
        for lost in difference.lost:
            certificate = session.scalar(select(Certificate).where(Certificate.serial_hex == lost.serial))
            if certificate is None or not _revoke_again(ca, session, certificate, lost, now, actor):
                result.unknown.append(lost)
                continue
            touched.add(certificate.issuer_id)
            result.reapplied.append(lost)
        session.flush()
        for authority_id in sorted(touched):
            issuer = session.get(Authority, authority_id)
            assert issuer is not None
            crl_module.build_crl(session, issuer, x509.load_der_x509_certificate(issuer.certificate_der),
                                 ca.keyring.get(issuer.key_ref), now, ca.crl_period)
    return result


def _revoke_again(ca: CertificateAuthority, session: Session, certificate: Certificate, lost: Revocation,
                  now: datetime.datetime, actor: str) -> bool:
    """Revoke (or hold) ``certificate`` as witnessed, with the witnessed date; False if it cannot be."""
    if lost.status == "on-hold":
        flag = x509.ReasonFlags.certificate_hold
    else:
        try:
            flag = x509.ReasonFlags(lost.reason) if lost.reason else x509.ReasonFlags.unspecified
        except ValueError:
            flag = x509.ReasonFlags.unspecified
    try:
        revocation_module.revoke(session, certificate, flag, now)
    except InvalidStateTransition:  # expired meanwhile: no CRL lists it any more
        return False
    certificate.revoked_at = datetime.datetime.strptime(lost.at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc)
    if ca.events is not None:
        ca.events(session, CaEvent("cert.revoke", actor, f"cert:{certificate.serial_hex}",
                                   {"reason": flag.value, "subject": certificate.subject, "from": "witness",
                                    "revoked_at": lost.at}))
    return True
