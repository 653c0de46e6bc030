"""Issuing and managing citizen cards: the CA side of personalisation, over one registry.

Every operation is all-or-nothing across the card token, the CA and SQL:

* issue: journal entry (cardsim.journal) -> token with two on-card key pairs (writer process)
  -> certificates, the three signed records and the security object signed in memory -> objects
  written to the card -> PIN envelope written (cardsim.envelopes) -> one SQL transaction
  registers the certificates, records and card row -> commit -> journal entry dropped. Any
  failure before the commit deletes the token and the envelope; a killed process leaves a
  journal entry that the next issuer sweeps (token and envelope deleted, nothing registered).
  A citizen holds at most one active card: refused before the token is made, and enforced by
  a unique index on the registry (the race of two issuers).
* lost / renew / expire: certificate revocation, the new CRL, the card's state change and the
  audit entry (cardsim.events.record) in one SQL transaction.
* record update: the department's new record and a new security object are written to the card
  inside the SQL transaction that registers them; the card write needs the citizen's PIN
  (tax and insurance records are private objects).
"""

from __future__ import annotations

import datetime
import os
import secrets
import signal
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asn1crypto import cms, core
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ca.authority import CertificateAuthority, SignedCertificate
from ca.models import Certificate, CertificateStatus
from ca.subjects import SubjectRequest
from cardsim import events, journal
from cardsim.envelopes import remove_envelope, write_envelope
from cardsim.events import CardEventSink
from cardsim.citizens import Application, citizen_subject, parse_application, parse_record_update
from cardsim.config import CardSettings
from cardsim.errors import (CardBlocked, CardConfigurationError, CardError, CardNotFound, CardWriteFailed,
                            InvalidApplication, InvalidCardState, PinBlocked)
from cardsim.identity_schemes import mask_any
from cardsim.models import Card, CardDepartment, CardRecord, CardStatus
from cardsim.pseudonyms import pseudonym
from cardsim.pseudonyms import register as register_pseudonym
from cardsim.numbers import SHARDS, new_card_number, parse_card_number
from cardsim.personalisation import (AUTH_KEY, SIGN_KEY, CardObject, PersonalisationStation, find_token_folder_by_label,
                                     token_folder)
from cardsim.records import (LABELS, PRIVATE_RECORDS, RECORD_TYPES, SECURITY_OBJECT, Signer, record_content,
                             security_object_content, sha256_hex)
from cardsim.setup import DEPARTMENTS

CITIZEN_CA = "citizen"
#: the states a card may be renewed (replaced) from
_RENEWABLE = (CardStatus.ACTIVE, CardStatus.LOST, CardStatus.EXPIRED)
#: personalisation processes of a batch: three keep two cores busy while the CA side signs
WRITERS = 3


def crash_point(name: str) -> None:
    """Fault injection for the crash tests: ``TESSERA_CARD_CRASH_AT=<name>`` kills this process
    here; ``TESSERA_CARD_FAIL_AT=<name>`` raises instead (a refusal midway, process alive)."""
    if os.environ.get("TESSERA_CARD_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get("TESSERA_CARD_FAIL_AT") == name:
        raise CardWriteFailed(f"injected failure at {name}")


@dataclass(frozen=True)
class IssuedCard:
    number: str
    holder: str
    national_id: str
    pin: str = field(repr=False)
    puk: str = field(repr=False)
    expires_at: datetime.datetime
    auth_serial: str
    sign_serial: str
    #: where the PIN envelope was written (before the card became active)
    envelope: Path


@dataclass(frozen=True)
class CardSummary:
    number: str
    holder: str
    national_id: str
    status: str
    issued_at: datetime.datetime
    expires_at: datetime.datetime
    auth_serial: str
    sign_serial: str
    records: dict[str, int]  # record type -> current version
    replaces: str | None
    replaced_by: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "number": self.number, "holder": self.holder, "national_id": self.national_id, "status": self.status,
            "issued_at": self.issued_at.isoformat(), "expires_at": self.expires_at.isoformat(),
            "auth_certificate": self.auth_serial, "sign_certificate": self.sign_serial,
            "records": self.records, "replaces": self.replaces, "replaced_by": self.replaced_by,
        }


@dataclass(frozen=True)
class CardJob:
    """One card to issue: the application, its batch key, the card it replaces, and where its PIN
    envelope goes given the new card's number (default: the home's envelope folder)."""

    application: Application
    batch_key: str | None = None
    replaces: str | None = None
    envelope_at: Callable[[str], Path] | None = None


@dataclass
class _Flight:
    """A card on its way through personalisation."""

    job: CardJob
    number: str
    pin: str = field(repr=False)
    puk: str = field(repr=False)
    entry: journal.JournalEntry
    now: datetime.datetime
    stage: str = "create"
    serial: str | None = None
    public_keys: dict[str, bytes] = field(default_factory=dict)
    certificates: dict[str, SignedCertificate] = field(default_factory=dict)
    records: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    objects: list[CardObject] = field(default_factory=list)
    expires_at: datetime.datetime = datetime.datetime.max.replace(tzinfo=datetime.timezone.utc)
    envelope: Path | None = None


def _pin(digits: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(digits))


def record_content_of(der: bytes) -> bytes:
    content = cms.ContentInfo.load(der)["content"]["encap_content_info"]["content"].native
    assert isinstance(content, bytes)
    return content


class CardIssuer:
    """Issue, update and retire cards; one per process, over the deployment's CA."""

    def __init__(self, ca: CertificateAuthority, settings: CardSettings, actor: str = "cli",
                 station: PersonalisationStation | None = None, events: CardEventSink | None = None) -> None:
        self.ca = ca
        self._events = events
        self.settings = settings
        self.actor = actor
        self.station = station or PersonalisationStation(settings)
        self._signers: dict[str, Signer] | None = None
        self._swept = False
        self._shard: list[int] | None = None  # [open shard, cards in it]
        self._more_stations: list[PersonalisationStation] = []
        self._pseudonym_key: bytes | None = None
        self._country: str | None = None

    @property
    def event_sink(self) -> CardEventSink | None:
        """Where registry changes are audited, inside their transaction: the sink given, else the
        one the deployment installed for this process (cardsim.events)."""
        return self._events if self._events is not None else events.installed_sink()

    def close(self) -> None:
        self.station.close()
        for station in self._more_stations:
            station.close()

    # -- signing identities -----------------------------------------------------------------
    def signers(self) -> dict[str, Signer]:
        """record type (and ``security-object``) -> the department's signer, loaded once."""
        if self._signers is None:
            with self.ca.sessions() as session:
                rows = list(session.scalars(select(CardDepartment)))
                if {r.name for r in rows} != set(DEPARTMENTS):
                    raise InvalidCardState("the card departments are not set up: run `tessera init`")
                staff = x509.load_der_x509_certificate(self.ca.authority(session, "staff").certificate_der)
                signers = {}
                for row in rows:
                    cert_row = session.get(Certificate, row.certificate_id)
                    assert cert_row is not None
                    signers[row.record_type] = Signer(row.name, x509.load_der_x509_certificate(cert_row.der), (staff,),
                                                      self.ca.keyring.get(row.key_ref))
            self._signers = signers
        return self._signers

    def _department_ids(self, session: Session) -> dict[str, int]:
        return {row.record_type: row.id for row in session.scalars(select(CardDepartment))}

    # -- crash recovery ---------------------------------------------------------------------
    def sweep(self) -> list[str]:
        """Undo every card whose issuer died before registering it (see cardsim.journal)."""
        undone = []
        for noted, drop in journal.abandoned(self.settings.pending_dir):
            number = noted["number"]
            with self.ca.sessions() as session:
                registered = session.scalar(select(Card.id).where(Card.number == number)) is not None
            if not registered:
                token_dir = self.settings.shard_of(number).token_dir
                folder = token_folder(token_dir, noted.get("serial", "")) if token_dir.exists() else None
                folders = [folder] if folder else (
                    find_token_folder_by_label(token_dir, number, float(noted.get("started", "0")))
                    if token_dir.exists() else [])
                for path in folders:
                    _remove_tree(path)
                (self.settings.counter_dir / number).unlink(missing_ok=True)
                if noted.get("envelope"):
                    remove_envelope(Path(noted["envelope"]))
                undone.append(number)
                events.emit("card.issue-failed", number, self.actor, "undone", reason="interrupted issuance")
            drop()
        self._swept = True
        return undone

    def _ensure_swept(self) -> None:
        if not self._swept:
            self.sweep()

    # -- issuance ---------------------------------------------------------------------------
    def issue(self, application: Application, replaces: str | None = None, envelope: Path | None = None) -> IssuedCard:
        """Make, sign, write and register one card, all or nothing; its PIN envelope goes to
        ``envelope`` (default: the home's envelope folder)."""
        outcome: list[IssuedCard | BaseException] = []
        job = CardJob(application, replaces=replaces, envelope_at=(lambda _number: envelope) if envelope else None)
        self.issue_many([job], outcome.append,
                        lambda job, exc: outcome.append(exc), writers=1)
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        return outcome[0]

    def issue_many(self, jobs: Iterable["CardJob"], on_issued: Callable[[IssuedCard], None],
                   on_failed: Callable[["CardJob", BaseException], None], writers: int = WRITERS) -> None:
        """Issue cards through ``writers`` personalisation processes at once.

        Per card: the writer makes the token and keys; this process signs the certificates,
        records and security object in memory; the writer puts them on the card; then one short
        SQL transaction registers everything. While this process signs for one card, the other
        writers generate keys for the next ones, so both cores work (the writers' SoftHSM work
        is ~80 % of a card's CPU: docs/cards.md, "Benchmark"). Card errors go to ``on_failed``
        (the token undone); a process kill is undone by the next sweep.
        """
        self._ensure_swept()
        signers = self.signers()
        stations = [self.station] + self._extra_stations(writers - 1)
        pending = iter(jobs)
        flights: list[_Flight | None] = [None] * len(stations)

        def start(k: int) -> None:
            flights[k] = None
            for job in pending:
                try:
                    flight = self._begin(job, {f.number for f in flights if f is not None})
                except CardError as exc:
                    on_failed(job, exc)
                    continue
                try:
                    stations[k].send("create_card", number=flight.number, pin=flight.pin, puk=flight.puk)
                except BaseException as exc:
                    self._undo(stations[k], flight, exc)
                    on_failed(job, exc)
                    continue
                flights[k] = flight
                return

        for k in range(len(stations)):
            start(k)
        while any(flights):
            for k, flight in enumerate(flights):
                if flight is None:
                    continue
                try:
                    answer = stations[k].receive()
                    if flight.stage == "create":
                        flight.serial = answer["serial"]
                        flight.entry.note(serial=answer["serial"])
                        crash_point("token")
                        flight.public_keys = answer["public_keys"]
                        flight.objects = self._sign_card(flight, signers)
                        crash_point("certificates")
                        stations[k].send("write_objects", number=flight.number, objects=flight.objects)
                        flight.stage = "write"
                        continue
                    crash_point("written")
                    self._write_envelope(flight)
                    crash_point("envelope")
                    issued = self._store(flight)
                except BaseException as exc:
                    self._undo(stations[k], flight, exc)
                    if not isinstance(exc, Exception):
                        raise
                    on_failed(flight.job, exc)
                    start(k)
                    continue
                crash_point("committed")
                flight.entry.close()
                on_issued(issued)
                start(k)

    def _extra_stations(self, count: int) -> list[PersonalisationStation]:
        while len(self._more_stations) < count:
            self._more_stations.append(PersonalisationStation(self.settings))
        return self._more_stations[:count]

    def _open_shard(self) -> int:
        """The shard the next card goes into: the newest one with room. Counted on disk once per
        process (one listing of one shard), then tracked as this process issues."""
        if self._shard is None:
            shards = self.settings.existing_shards()
            index = shards[-1].index if shards else 0
            self._shard = [index, self.settings.shard(index).token_count()]
        while self._shard[1] >= self.settings.shard_capacity:
            index = self._shard[0] + 1
            if index >= SHARDS:
                raise CardConfigurationError("every card shard is full")
            self._shard = [index, self.settings.shard(index).token_count()]
        self._shard[1] += 1
        return self._shard[0]

    @staticmethod
    def _active_card(session: Session, national_id: str) -> str | None:
        return session.scalar(select(Card.number).where(Card.national_id == national_id,
                                                        Card.status == CardStatus.ACTIVE))

    def active_card(self, national_id: str) -> str | None:
        """The number of the citizen's active card, if they hold one."""
        with self.ca.sessions() as session:
            return self._active_card(session, national_id)

    def _refuse_second_card(self, session: Session, job: "CardJob") -> None:
        """One active card per citizen: a new card only replaces the active one (renew)."""
        national_id = job.application.identity.national_id
        holder = self._active_card(session, national_id)
        if holder is not None and holder != job.replaces:
            raise InvalidCardState(f"national_id {mask_any(national_id)} already holds active card {holder}; "
                                   "renew it or report it lost first")

    def _begin(self, job: "CardJob", in_flight: set[str]) -> "_Flight":
        with self.ca.sessions() as session:
            self._refuse_second_card(session, job)
            shard = self._open_shard()
            while True:
                number = new_card_number(shard)
                if number not in in_flight and session.scalar(select(Card.id).where(Card.number == number)) is None:
                    break
        entry = journal.begin(self.settings.pending_dir, number)
        crash_point("journal")
        return _Flight(job, number, _pin(6), _pin(8), entry, self.ca.clock())

    def _write_envelope(self, flight: "_Flight") -> None:
        """The PIN envelope, before the commit that activates the card (noted first, so a sweep
        after a kill removes it with the token)."""
        where = flight.job.envelope_at or (lambda number: self.settings.envelope_dir / f"{number}.json")
        path = where(flight.number)
        flight.entry.note(envelope=str(path))
        flight.envelope = path
        write_envelope(path, flight.number, flight.job.application.holder, flight.pin, flight.puk)

    def _undo(self, station: PersonalisationStation, flight: "_Flight", exc: BaseException) -> None:
        if flight.envelope is not None:
            remove_envelope(flight.envelope)
        try:
            station.call("destroy", number=flight.number, serial=flight.serial)
        except CardError:
            flight.entry.release()  # the sweep of a later run finishes the undo
        else:
            flight.entry.close()
        events.emit("card.issue-failed", flight.number, self.actor, "failure", reason=type(exc).__name__)

    def _citizen_country(self) -> str:
        """The country of the citizen CA, which the card certificates' subjects name (read once)."""
        if self._country is None:
            issuer = self.ca.authority_certificate(CITIZEN_CA)
            self._country = str(issuer.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)[0].value)
        return self._country

    def _sign_card(self, flight: "_Flight", signers: dict[str, Signer]) -> list[CardObject]:
        """Certificates for the on-card keys (the CA's profiles citizen-auth/-sign, RFC 5280), the
        three records and the security object, all signed in memory; registered only by :meth:`_store`."""
        application = flight.job.application
        subject = SubjectRequest(citizen_subject(application, self._citizen_country(), self._pseudonym(application)))
        now = flight.now
        for label in (AUTH_KEY, SIGN_KEY):
            public_key = serialization.load_der_public_key(flight.public_keys[label])
            flight.certificates[label] = self.ca.sign(label, public_key, subject, CITIZEN_CA, now)  # type: ignore[arg-type]
        flight.expires_at = min(flight.certificates[AUTH_KEY].certificate.not_valid_after_utc,
                                flight.certificates[SIGN_KEY].certificate.not_valid_after_utc,
                                now + self.settings.validity)
        data = flight.job.application.record_data()
        for record_type in RECORD_TYPES:
            signer = signers[record_type]
            content = record_content(record_type, flight.number, 1, signer.name, data[record_type], now)
            flight.records[record_type] = (1, signer.sign(content, now))
        so_content = security_object_content(flight.number, 1, flight.public_keys, flight.records, flight.expires_at, now)
        flight.records[SECURITY_OBJECT] = (1, signers[SECURITY_OBJECT].sign(so_content, now))
        certificates = {label: signed.certificate for label, signed in flight.certificates.items()}
        objects = [
            CardObject(label, cert.public_bytes(serialization.Encoding.DER), kind="certificate",
                       subject=cert.subject.public_bytes(), issuer=cert.issuer.public_bytes(),
                       serial=core.Integer(cert.serial_number).dump())
            for label, cert in certificates.items()
        ]
        objects += [CardObject(LABELS[t], der, private=t in PRIVATE_RECORDS) for t, (_, der) in flight.records.items()]
        return objects

    def _pseudonym(self, application: Application) -> str:
        """The citizen's pseudonym in this deployment (cardsim.pseudonyms); the key is derived once."""
        if self._pseudonym_key is None:
            self._pseudonym_key = self.settings.pseudonym_key()
        return pseudonym(self._pseudonym_key, application.scheme, application.identity.national_id)

    def _store(self, flight: "_Flight") -> IssuedCard:
        """Register the card; losing the race for the citizen's one active card (the registry's
        unique index) is :class:`InvalidCardState`, like the check before the token was made."""
        try:
            return self._register(flight)
        except IntegrityError:
            with self.ca.sessions() as session:  # another issuer activated a card for this citizen first
                self._refuse_second_card(session, flight.job)
            raise

    def _register(self, flight: "_Flight") -> IssuedCard:
        """One short transaction: certificates (each with its ``cert.issue``), card, records (and the
        replaced card's retirement)."""
        job, now = flight.job, flight.now
        assert flight.envelope is not None
        with self.ca.sessions.begin() as session:
            if job.replaces:  # first: the citizen's one active card is the new one only after this
                self._retire_replaced(session, job.replaces, flight.number, now)
                session.flush()
            rows = {label: self.ca.register(session, signed, f"card:{flight.number}", actor=self.actor)
                    for label, signed in flight.certificates.items()}
            card = Card(number=flight.number, national_id=job.application.identity.national_id,
                        holder=job.application.holder, status=CardStatus.ACTIVE, token_serial=flight.serial or "",
                        issued_at=now, expires_at=flight.expires_at, status_changed_at=now,
                        auth_certificate_id=rows[AUTH_KEY].id, sign_certificate_id=rows[SIGN_KEY].id,
                        replaces=job.replaces, batch_key=job.batch_key)
            session.add(card)
            application = job.application
            register_pseudonym(session, self._pseudonym(application), application.scheme,
                               application.identity.national_id, now)
            session.flush()
            departments = self._department_ids(session)
            for record_type, (version, der) in flight.records.items():
                session.add(CardRecord(card_id=card.id, record_type=record_type, version=version, issued_at=now,
                                       department_id=departments[record_type], sha256=sha256_hex(der), der=der,
                                       current=True))
            events.record(session, self.event_sink, "card.issued", flight.number, self.actor,
                          serial=flight.serial or "", replaces=job.replaces or "",
                          auth_certificate=rows[AUTH_KEY].serial_hex, sign_certificate=rows[SIGN_KEY].serial_hex)
            if job.replaces:
                events.record(session, self.event_sink, "card.renewed", job.replaces, self.actor,
                              new_card=flight.number)
        return IssuedCard(flight.number, card.holder, card.national_id, flight.pin, flight.puk, flight.expires_at,
                          rows[AUTH_KEY].serial_hex, rows[SIGN_KEY].serial_hex, flight.envelope)

    def _serials(self, session: Session, card: Card) -> tuple[str, str]:
        auth = session.get(Certificate, card.auth_certificate_id)
        sign = session.get(Certificate, card.sign_certificate_id)
        assert auth is not None and sign is not None
        return auth.serial_hex, sign.serial_hex

    def _security_object(self, session: Session, signers: dict[str, Signer], card: Card, version: int,
                         public_keys: dict[str, bytes], records: dict[str, tuple[int, bytes]],
                         now: datetime.datetime, departments: dict[str, int]) -> bytes:
        content = security_object_content(card.number, version, public_keys, records, card.expires_at, now)
        der = signers[SECURITY_OBJECT].sign(content, now)
        session.add(CardRecord(card_id=card.id, record_type=SECURITY_OBJECT, version=version, issued_at=now,
                               department_id=departments[SECURITY_OBJECT], sha256=sha256_hex(der), der=der,
                               current=True))
        return der

    def _retire_replaced(self, session: Session, old_number: str, new_number: str, now: datetime.datetime) -> None:
        old = self._card_row(session, old_number)
        if old.status not in _RENEWABLE:
            raise InvalidCardState(f"card {old_number} is {old.status}: it cannot be renewed")
        self._revoke_certificates(session, old, x509.ReasonFlags.superseded, now)
        old.status, old.replaced_by, old.status_changed_at = CardStatus.RENEWED, new_number, now

    def _revoke_certificates(self, session: Session, card: Card, reason: x509.ReasonFlags,
                             now: datetime.datetime) -> None:
        """The card's unexpired certificates revoked by the CA, with the new CRL and their
        ``cert.revoke`` events, in the caller's transaction."""
        certificates = []
        for cert_id in (card.auth_certificate_id, card.sign_certificate_id):
            cert = session.get(Certificate, cert_id)
            assert cert is not None
            if cert.status != CertificateStatus.REVOKED and cert.not_after > now:
                certificates.append(cert)
        if certificates:
            self.ca.revoke_in(session, certificates, reason, self.actor, now)

    # -- registry reads ---------------------------------------------------------------------
    def _card_row(self, session: Session, number: str) -> Card:
        number = parse_card_number(number)
        card = session.scalar(select(Card).where(Card.number == number))
        if card is None:
            raise CardNotFound(f"no card {number} in the registry")
        return card

    def summary(self, number: str) -> CardSummary:
        with self.ca.sessions() as session:
            card = self._card_row(session, number)
            records = {r.record_type: r.version for r in session.scalars(
                select(CardRecord).where(CardRecord.card_id == card.id, CardRecord.current.is_(True)))}
            auth, sign = self._serials(session, card)
            return CardSummary(card.number, card.holder, card.national_id, card.status, card.issued_at,
                               card.expires_at, auth, sign, records, card.replaces, card.replaced_by)

    def current_records(self, number: str) -> dict[str, bytes]:
        """record type -> CMS DER of the current version, from the registry."""
        with self.ca.sessions() as session:
            card = self._card_row(session, number)
            return {r.record_type: r.der for r in session.scalars(
                select(CardRecord).where(CardRecord.card_id == card.id, CardRecord.current.is_(True)))}

    def application_of(self, number: str) -> Application:
        """Rebuild a card's application from its current signed records (for renewal)."""
        import json

        records = self.current_records(number)
        data = {t: json.loads(record_content_of(records[t]))["data"] for t in RECORD_TYPES}
        row = {**data["identity"], **{("tax_status" if k == "status" else k): str(v) for k, v in data["tax"].items()},
               **{("insurance_valid_until" if k == "valid_until" else k): str(v) for k, v in data["insurance"].items()}}
        return parse_application(row, scheme="cn-gb11643" if "name" in data["identity"] else "ee-evs585")

    # -- lifecycle --------------------------------------------------------------------------
    def report_lost(self, number: str) -> CardSummary:
        """The citizen reports the card lost: certificates revoked (keyCompromise) and CRL in one transaction."""
        now = self.ca.clock()
        with self.ca.sessions.begin() as session:
            card = self._card_row(session, number)
            if card.status != CardStatus.ACTIVE:
                raise InvalidCardState(f"card {card.number} is {card.status}; only an active card can be reported lost")
            self._revoke_certificates(session, card, x509.ReasonFlags.key_compromise, now)
            card.status, card.status_changed_at = "lost", now
            number = card.number
            events.record(session, self.event_sink, "card.lost", number, self.actor)
        return self.summary(number)

    def renew(self, number: str, envelope: Path | None = None) -> IssuedCard:
        """A new card with new keys and re-signed records; the old card is retired in the same commit."""
        old = self.summary(number)
        if old.status not in _RENEWABLE:
            raise InvalidCardState(f"card {old.number} is {old.status}: it cannot be renewed")
        return self.issue(self.application_of(old.number), replaces=old.number, envelope=envelope)

    def expire_due(self, dry_run: bool = False) -> list[str]:
        """Mark every active card whose certificates are past notAfter (RFC 5280 section 4.1.2.5)
        expired, in one transaction with one audit entry per card; ``dry_run`` only lists them.
        A card's ``expires_at`` is the earlier notAfter of its two certificates (or the card
        validity, if shorter), so this is the certificates' expiry."""
        now = self.ca.clock()
        query = select(Card).where(Card.status == CardStatus.ACTIVE, Card.expires_at <= now).order_by(Card.number)
        if dry_run:
            with self.ca.sessions() as session:
                return [card.number for card in session.scalars(query)]
        with self.ca.sessions.begin() as session:
            due = list(session.scalars(query))
            numbers = [c.number for c in due]
            for card in due:
                card.status, card.status_changed_at = "expired", now
                events.record(session, self.event_sink, "card.expired", card.number, self.actor,
                              expired_at=card.expires_at.isoformat())
        return numbers

    # -- record updates ---------------------------------------------------------------------
    def update_record(self, number: str, department: str, data: dict[str, Any], pin: str) -> int:
        """The department replaces its own record: new version, new signature, new security object."""
        if department not in DEPARTMENTS or DEPARTMENTS[department][0] not in ("tax", "insurance"):
            raise InvalidApplication("only the tax-office and the insurance-fund update records on a card")
        record_type = DEPARTMENTS[department][0]
        signers = self.signers()
        now = self.ca.clock()
        with self.ca.sessions.begin() as session:
            card = self._card_row(session, number)
            content_data = parse_record_update(record_type, data, national_id=card.national_id)
            if card.status != CardStatus.ACTIVE:
                raise InvalidCardState(f"card {card.number} is {card.status}: its records cannot be updated")
            current = {r.record_type: r for r in session.scalars(
                select(CardRecord).where(CardRecord.card_id == card.id, CardRecord.current.is_(True)))}
            version = current[record_type].version + 1
            der = signers[record_type].sign(record_content(record_type, card.number, version, department,
                                                           content_data, now), now)
            departments = self._department_ids(session)
            for kind in (record_type, SECURITY_OBJECT):
                current[kind].current = False
            session.flush()
            session.add(CardRecord(card_id=card.id, record_type=record_type, version=version, issued_at=now,
                                   department_id=departments[record_type], sha256=sha256_hex(der), der=der,
                                   current=True))
            records = {t: (r.version, r.der) for t, r in current.items() if t in RECORD_TYPES}
            records[record_type] = (version, der)
            public_keys = self._card_public_keys(session, card)
            so_der = self._security_object(session, signers, card, current[SECURITY_OBJECT].version + 1,
                                           public_keys, records, now, departments)
            # audited before the card is written: no audit entry, no change on the card
            events.record(session, self.event_sink, "card.record-updated", card.number, self.actor,
                          record=record_type, version=str(version))
            try:
                self.station.call("replace_objects", number=card.number, pin=pin, objects=[
                    CardObject(LABELS[record_type], der, private=record_type in PRIVATE_RECORDS),
                    CardObject(LABELS[SECURITY_OBJECT], so_der)])
            except PinBlocked:
                events.emit("card.pin-blocked", card.number, self.actor, "failure")
                raise
            crash_point("record-written")
        return version

    def _card_public_keys(self, session: Session, card: Card) -> dict[str, bytes]:
        keys = {}
        for label, cert_id in ((AUTH_KEY, card.auth_certificate_id), (SIGN_KEY, card.sign_certificate_id)):
            cert = session.get(Certificate, cert_id)
            assert cert is not None
            keys[label] = x509.load_der_x509_certificate(cert.der).public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return keys

    # -- PIN and PUK ------------------------------------------------------------------------
    def change_pin(self, number: str, old_pin: str, new_pin: str) -> None:
        number = parse_card_number(number)
        self._pin_operation(number, "change_pin", "card.pin-changed", old_pin=old_pin, new_pin=new_pin)

    def unblock(self, number: str, puk: str, new_pin: str) -> None:
        number = parse_card_number(number)
        self._pin_operation(number, "unblock", "card.unblocked", puk=puk, new_pin=new_pin)

    def _pin_operation(self, number: str, operation: str, event: str, **kwargs: str) -> None:
        try:
            self.station.call(operation, number=number, **kwargs)
        except PinBlocked:
            events.emit("card.pin-blocked", number, self.actor, "failure")
            raise
        except CardBlocked:
            self._mark_blocked(number)
            raise
        events.emit(event, number, self.actor)

    def _mark_blocked(self, number: str) -> None:
        """The card blocked itself (10 wrong PUKs): the registry follows, audited in its transaction."""
        now = self.ca.clock()
        with self.ca.sessions.begin() as session:
            card = session.scalar(select(Card).where(Card.number == number))
            if card is not None and card.status == CardStatus.ACTIVE:
                card.status, card.status_changed_at = "blocked", now
            events.record(session, self.event_sink, "card.blocked", number, self.actor, "failure")

    # -- batches ----------------------------------------------------------------------------
    def issued_batch_keys(self, keys: Iterable[str]) -> set[str]:
        wanted = list(keys)
        found: set[str] = set()
        with self.ca.sessions() as session:
            for i in range(0, len(wanted), 500):
                found.update(session.scalars(select(Card.batch_key).where(Card.batch_key.in_(wanted[i:i + 500]))))
        return found


def _remove_tree(path: Any) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def iter_batch(rows: Iterator[dict[str, Any]], source: str) -> Iterator[tuple[int, str, Application | None, str]]:
    """(row number, batch key, application or None, problem) for each CSV row (header is row 1)."""
    for index, row in enumerate(rows, start=2):
        key = f"{source}:{row.get('national_id', '')}"
        try:
            yield index, key, parse_application(row), ""
        except InvalidApplication as exc:
            yield index, key, None, str(exc)

