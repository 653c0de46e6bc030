"""The reader library services use to verify a citizen card through PKCS#11.

``CardReader.verify(number)`` opens the card by its number, reads its certificates, records and
security object, and checks, each with its own outcome and reason (:class:`CardVerification`):

* the card certificates: chain to the root (RFC 5280 section 6), expiry, status (OCSP, or the CRLs
  of every certificate of the path, section 6.3: a revoked CA revokes its cards);
* each record: CMS signature (RFC 5652 section 5.6), signed by the department that owns that kind
  of record, the signer's chain and status, bound to this card number, listed in the security
  object, and the registry's current version (a superseded version is named as such);
* the security object: signed by the card issuer, same card number, the hashes of the card's
  public keys equal the certificates' keys, not expired;
* the registry's word on the card (lost, renewed, expired, blocked) when a registry is given;
* active authentication (after the PIN): the card signs a fresh random challenge with its
  authentication key, verified with the certificate's key (ICAO 9303-11 section 6.1 in spirit).

A bad card is a result, never an exception. A card's shard comes from its number; the reader
opens each shard it needs once, through a private copy of the PKCS#11 module (cardsim.shard_module,
so ``SOFTHSM2_CONF`` of the process is left alone), and finds cards through a label index per
shard (docs/platform-notes.md: ``get_token`` scans every slot), rebuilt only when a number is not
in it (a card made after the index). It reads a card through :mod:`cardsim.cryptoki` on that same
module (one session, one search, one C_GetAttributeValue per object). Every PIN use goes through
the card's try counter. Only what every card shares is kept between verifications (signer and CA
certificates, signer checks, the CA part of certificate paths); nothing of a card is.
"""

from __future__ import annotations

import datetime
import fcntl
import hashlib
import json
import os
import re
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pkcs11
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, sessionmaker

from cardsim import cryptoki as ck
from cardsim.config import CardSettings
from cardsim.cryptoki import Cryptoki
from cardsim.errors import CardError
from cardsim.numbers import is_card_number
from cardsim.personalisation import APPLICATION, AUTH_KEY, SIGN_KEY
from cardsim.pins import TryCounter, check_pin_form
from cardsim.records import LABELS, PRIVATE_RECORDS, RECORD_TYPES, SECURITY_OBJECT, parse_content, sha256_hex
from cardsim.shard_module import ShardLibrary
from verification.chain import ChainValidator
from verification.crl_status import CrlStatus
from verification.ocsp_status import OcspStatus
from verification.reasons import Check
from verification.signatures import public_key_of, verify_signature
from verification.signed_data import SignedContent, open_signed_data

_LABEL_TO_RECORD = {label: kind for kind, label in LABELS.items()}


@dataclass(frozen=True)
class RegistryEntry:
    """What the registry says about a card: its state and the current version of each record."""

    status: str
    versions: dict[str, int]
    replaced_by: str | None = None
    #: record type -> SHA-256 (hex) of the current version's CMS encoding
    hashes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CardVerification:
    """The typed result: every check with its outcome and reason; ``ok`` when none failed."""

    card_number: str
    checks: tuple[Check, ...]
    records: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(c.ok or c.skipped for c in self.checks) and any(c.ok for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok and not c.skipped]

    @property
    def reasons(self) -> set[str]:
        return {c.reason for c in self.failures}

    def check(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)

    def as_dict(self) -> dict[str, Any]:
        return {"card": self.card_number, "ok": self.ok, "checks": [c.as_dict() for c in self.checks],
                "records": self.records}


@dataclass
class ReaderTrust:
    """What a service trusts: the root(s), the CA certificates, which department signs which
    record (by certificate subject), where certificate status comes from, and the registry."""

    roots: list[x509.Certificate]
    intermediates: list[x509.Certificate]
    departments: dict[str, x509.Name]
    status: CrlStatus | OcspStatus
    registry: Callable[[str], RegistryEntry | None] | None = None

    @classmethod
    def from_registry(cls, sessions: sessionmaker[Session], online: bool = False,
                      crl_max_age: float = 60.0) -> "ReaderTrust":
        """Trust as the deployment's own database describes it: CRLs as last published, read
        again every ``crl_max_age`` seconds (or, when ``online``, OCSP for the end entities and
        those CRLs for the CAs above them)."""
        from ca import crl as crl_module
        from ca.hierarchy import ROOT
        from ca.models import Authority, Certificate
        from ca.profiles import SM2_PREFIX
        from cardsim.models import Card, CardDepartment, CardRecord

        with sessions() as session:
            authorities = list(session.scalars(select(Authority)))
            certs = {a.name: x509.load_der_x509_certificate(a.certificate_der) for a in authorities}
            departments = {}
            for row in session.scalars(select(CardDepartment)):
                cert_row = session.get(Certificate, row.certificate_id)
                assert cert_row is not None
                departments[row.record_type] = x509.load_der_x509_certificate(cert_row.der).subject
        authority_ids = [a.id for a in authorities]

        def published_crls() -> list[bytes]:
            out = []
            with sessions() as session:
                for authority_id in authority_ids:
                    authority = session.get(Authority, authority_id)
                    latest = crl_module.latest_crl(session, authority) if authority is not None else None
                    if latest is not None:
                        out.append(latest.der)
            return out

        roots = [c for name, c in certs.items() if name in (ROOT, SM2_PREFIX + ROOT)]  # SM2: verification.sm2_paths
        intermediates = [c for name, c in certs.items() if name not in (ROOT, SM2_PREFIX + ROOT)]
        crls = CrlStatus(published_crls(), list(certs.values()), published_crls, crl_max_age)
        status: CrlStatus | OcspStatus = OcspStatus(authorities=crls) if online else crls

        # the registry's word on a card: its state and the version and hash of each current record (one
        # row per record; none when the registry lacks the card or lists none of its records)
        query = (select(Card.status, Card.replaced_by, CardRecord.record_type, CardRecord.version, CardRecord.sha256)
                 .join(CardRecord, (CardRecord.card_id == Card.id) & CardRecord.current.is_(True))
                 .where(Card.number == bindparam("number")))
        engine = sessions.kw["bind"]

        def registry(number: str) -> RegistryEntry | None:
            with engine.connect() as connection:
                rows = connection.execute(query, {"number": number}).all()
            if not rows:
                return None
            return RegistryEntry(rows[0][0], {r[2]: r[3] for r in rows}, rows[0][1], {r[2]: r[4] for r in rows})

        return cls(roots, intermediates, departments, status, registry)


@dataclass(frozen=True)
class CardContents:
    """What was read from a card."""

    certificates: dict[str, bytes]
    objects: dict[str, list[bytes]]  # object label -> values (more than one is itself a finding)
    signature: bytes | None = None  # active authentication, raw r||s
    challenge: bytes | None = None
    pin_check: Check | None = None


_UTC_FORMAT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")


def _utc(text: str) -> datetime.datetime:
    """A record's ``YYYY-MM-DDTHH:MM:SSZ`` (cardsim.records), as strictly as it is written."""
    if not isinstance(text, str) or not _UTC_FORMAT.fullmatch(text):
        raise ValueError(f"not a UTC time: {text!r}")
    return datetime.datetime.fromisoformat(text[:19]).replace(tzinfo=datetime.timezone.utc)


def _wrong_pin(exc: Exception) -> bool:
    return isinstance(exc, ck.CryptokiError) and exc.rv in (ck.CKR_PIN_INCORRECT, ck.CKR_PIN_LOCKED)


class CardUnreadable(CardError):
    """The card answered, but not as a Tessera card does (e.g. no authentication key to sign with)."""

    kind = "card-unreadable"


#: what a read asks of every object, and the buffer sizes that fit a Tessera card's values
_READ = (ck.CKA_CLASS, ck.CKA_LABEL, ck.CKA_APPLICATION, ck.CKA_VALUE)
_READ_SIZES = (8, 64, 64, 8192)
_NEEDED = {ck.CKO_CERTIFICATE: (ck.CKA_LABEL, ck.CKA_VALUE),
           ck.CKO_DATA: (ck.CKA_LABEL, ck.CKA_APPLICATION, ck.CKA_VALUE)}
_APPLICATION = APPLICATION.encode("utf-8")
_RELOAD_SECONDS = 10.0


class CardReader:
    """Opens cards of one card folder through PKCS#11 and verifies them against a trust."""

    def __init__(self, settings: CardSettings, trust: ReaderTrust) -> None:
        settings.require()
        self.settings = settings
        self.trust = trust
        self._chains = ChainValidator(trust.roots)
        #: (signer, record type, signing day, CRL generation) -> (chain, issuer, CRL status)
        self._signer_checks: dict[tuple[Any, ...], tuple[Check, x509.Certificate | None, Check | None]] = {}
        self._shards: dict[int, ShardLibrary] = {}
        self._cryptokis: dict[int, Cryptoki] = {}
        self._reloaded: dict[int, float] = {}

    # -- finding cards ----------------------------------------------------------------------
    def _shard(self, number: str) -> "ShardLibrary | None":
        shard = self.settings.shard_of(number)
        reader = self._shards.get(shard.index)
        if reader is None:
            if not shard.exists():
                return None
            reader = self._shards[shard.index] = ShardLibrary(shard, self.settings.module_path)
        return reader

    def _token(self, number: str) -> tuple["ShardLibrary", Any] | None:
        shard = self._shard(number)
        if shard is None:
            return None
        token = shard.tokens.get(number)
        if token is None:
            shard.reinitialise()  # a card made after our index: see it (docs/platform-notes.md)
            token = shard.tokens.get(number)
        return (shard, token) if token is not None else None

    def __contains__(self, number: str) -> bool:
        return self._token(number) is not None

    # -- reading ----------------------------------------------------------------------------
    def _cryptoki(self, shard: ShardLibrary) -> Cryptoki:
        p11 = self._cryptokis.get(shard.shard.index)
        if p11 is None:
            p11 = self._cryptokis[shard.shard.index] = Cryptoki.attached(shard.module)
        return p11

    def _reload(self, shard: ShardLibrary, counter: TryCounter) -> bool:
        """Read the shard's tokens again after a login refused with CKR_USER_PIN_NOT_INITIALIZED,
        at most once per shard every ``_RELOAD_SECONDS``; False when it was reloaded just now.

        SoftHSM2 takes a token's PIN blobs from its file once, when the module is initialised; a
        file that another process's login was rewriting at that moment leaves this process with a
        card that "has no user PIN" until it initialises again (seen with three readers starting
        at once, old reader too). The card's try counter is held meanwhile, so no login to this
        card rewrites its file while it is read again (pins.TryCounter: an exclusive flock)."""
        now = time.monotonic()
        if now - self._reloaded.get(shard.shard.index, -_RELOAD_SECONDS) < _RELOAD_SECONDS:
            return False
        self._reloaded[shard.shard.index] = now
        try:
            fd = os.open(counter.path, os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            shard.reinitialise()
        finally:
            os.close(fd)
        return True

    def read(self, number: str, pin: str | None = None, challenge: bytes | None = None) -> CardContents | None:
        """Read the card's objects; with the PIN also the private records and, given a challenge,
        the card's signature over SHA-256(challenge) with its authentication key.

        One read-only session (PKCS#11 v2.40 section 5.6), logged in on when a PIN is given and
        closed at the end, which logs the card out: a failed login leaves it open, not logged
        in, and the public objects are read on it (docs/platform-notes.md: open a public session, log in on
        it, close it whatever happens). One C_FindObjects for every object the session sees and
        one C_GetAttributeValue per object."""
        found = self._token(number)
        if found is None:
            return None
        shard, token = found
        p11 = self._cryptoki(shard)
        slot = token.slot.slot_id
        opened: list[int] = []
        pin_check: Check | None = None
        if pin is not None:
            check_pin_form(pin)
            counter = TryCounter(self.settings.counter_dir, number, self.settings.fsync_counters)

            def log_in() -> None:
                # the session too is opened under the counter's lock: SoftHSM2 rewrites the token
                # file at each login, and opening a session on a card another process is logging
                # in to fails (the lock takes both one at a time, across processes)
                opened.append(p11.open_session(slot, rw=False))
                p11.login(opened[0], ck.CKU_USER, pin)

            try:
                counter.attempt_pin(log_in, _wrong_pin)
                pin_check = Check("pin", True)
            except CardError as exc:
                pin_check = Check("pin", False, exc.kind, str(exc))
            except BaseException as exc:
                for handle in opened:
                    p11.close_session(handle)
                if (isinstance(exc, ck.CryptokiError) and exc.rv == ck.CKR_USER_PIN_NOT_INITIALIZED
                        and self._reload(shard, counter)):
                    return self.read(number, pin, challenge)
                raise
        session = opened[0] if opened else p11.open_session(slot, rw=False)
        try:
            certificates: dict[str, bytes] = {}
            objects: dict[str, list[bytes]] = {}
            auth_keys: list[int] = []
            attributes = ck.AttributeReader(p11, _READ, _READ_SIZES)
            for handle in p11.all_objects(session):
                values = attributes.read(session, handle)
                kind = values[ck.CKA_CLASS]
                if kind is None:
                    continue
                object_class = int.from_bytes(kind, sys.byteorder)
                # a value that did not fit its buffer reads as None too: ask again for what this
                # class of object must have (never for what keys and certificates lack or hide)
                values = attributes.complete(session, handle, values, _NEEDED.get(object_class, (ck.CKA_LABEL,)))
                label = values[ck.CKA_LABEL]
                if label is None:
                    continue
                text = label.decode("utf-8", "replace")
                value = values[ck.CKA_VALUE]
                if object_class == ck.CKO_CERTIFICATE and value is not None:
                    certificates[text] = value
                elif object_class == ck.CKO_DATA and values[ck.CKA_APPLICATION] == _APPLICATION and value is not None:
                    objects.setdefault(text, []).append(value)
                elif object_class == ck.CKO_PRIVATE_KEY and text == AUTH_KEY:
                    auth_keys.append(handle)
            signature = None
            if challenge is not None and pin_check is not None and pin_check.ok:
                if len(auth_keys) != 1:
                    raise CardUnreadable(f"{len(auth_keys)} private keys labelled {AUTH_KEY}")
                # SoftHSM has no CKM_ECDSA_SHA256: hash here, sign the digest (docs/platform-notes.md)
                signature = p11.sign_ecdsa(session, auth_keys[0], hashlib.sha256(challenge).digest())
        finally:
            p11.close_session(session)
        return CardContents(certificates, objects, signature, challenge, pin_check)

    # -- verifying --------------------------------------------------------------------------
    def verify(self, number: str, pin: str | None = None, at: datetime.datetime | None = None) -> CardVerification:
        """Every check of the card; never raises for a bad card."""
        at = at or datetime.datetime.now(datetime.timezone.utc)
        crls = self.trust.status if isinstance(self.trust.status, CrlStatus) else self.trust.status.authorities
        if crls is not None:
            crls.refresh_if_old()
        checks: list[Check] = []
        if not is_card_number(number):
            return CardVerification(number, (Check("card", False, "bad-card-number", "wrong length or check digit"),))
        try:
            contents = self.read(number, pin, secrets.token_bytes(32) if pin is not None else None)
        except CardError as exc:
            return CardVerification(number, (Check("card", False, exc.kind, str(exc)),))
        except (pkcs11.exceptions.PKCS11Error, ck.CryptokiError) as exc:
            return CardVerification(number, (Check("card", False, "card-unreadable", str(exc) or type(exc).__name__),))
        if contents is None:
            return CardVerification(number, (Check("card", False, "card-not-found", "no card with that number"),))
        checks.append(Check("card", True))
        registry = self.trust.registry(number) if self.trust.registry is not None else None
        checks.append(self._registry_check(registry))
        card_certs, cert_checks = self._certificates(contents, at)
        checks += cert_checks
        so, so_checks = self._security_object(number, contents, card_certs, registry, at)
        checks += so_checks
        records: dict[str, dict[str, Any]] = {}
        for record_type in RECORD_TYPES:
            check, content = self._record(number, record_type, contents, so, registry, at, pin is not None)
            checks.append(check)
            if content is not None and check.ok:
                records[record_type] = content["data"] | {"version": content["version"]}
        checks.append(self._active_authentication(contents, card_certs.get(AUTH_KEY)))
        return CardVerification(number, tuple(checks), records)

    def _registry_check(self, entry: RegistryEntry | None) -> Check:
        if self.trust.registry is None:
            return Check("registry", True, "skipped", "no registry given", skipped=True)
        if entry is None:
            return Check("registry", False, "card-not-registered", "the registry does not know this card")
        reasons = {"lost": "card-lost", "renewed": "card-replaced", "expired": "card-expired", "blocked": "card-blocked"}
        if entry.status != "active":
            detail = f"the registry lists the card as {entry.status}"
            if entry.replaced_by:
                detail += f" (replaced by {entry.replaced_by})"
            return Check("registry", False, reasons.get(entry.status, "card-" + entry.status), detail)
        return Check("registry", True, "active")

    def _certificates(self, contents: CardContents, at: datetime.datetime) -> tuple[dict[str, x509.Certificate], list[Check]]:
        out: dict[str, x509.Certificate] = {}
        checks: list[Check] = []
        for label in (AUTH_KEY, SIGN_KEY):
            name = f"certificate:{label}"
            der = contents.certificates.get(label)
            if der is None:
                checks.append(Check(name, False, "certificate-missing", "the card holds no such certificate"))
                continue
            try:
                cert = x509.load_der_x509_certificate(der)
            except (ValueError, x509.InvalidVersion):  # InvalidVersion: not v1-v3, and not a ValueError
                checks.append(Check(name, False, "certificate-malformed", "cannot parse the certificate"))
                continue
            out[label] = cert
            chain, path = self._chains.validate_path(cert, self.trust.intermediates, at, name)
            if not chain.ok or path is None:
                reason = "card-expired" if chain.reason == "expired" or cert.not_valid_after_utc < at else chain.reason
                checks.append(Check(name, False, reason, chain.detail))
                continue
            status = self.trust.status.path_status(path, at, name)  # the card's and every CA's
            checks.append(status if not status.ok else Check(name, True, "good", status.detail))
        return out, checks

    def _signer(self, signed: SignedContent, record_type: str, at: datetime.datetime) -> Check:
        """The signer's department, its chain at signing time (a record outlives the two-year
        signer certificate, as a signed document does) and its status now. Every card shares
        these few signers, so the department and chain are checked once per signer and signing
        day, and the status is kept per CRL generation, or (online) the CAs' CRL status per
        generation and the signer's OCSP answer until its nextUpdate."""
        signed_at = signed.signing_time or at
        if signed_at > at + datetime.timedelta(minutes=5):
            if not self._is_department(signed.signer, record_type):
                return self._wrong_department(signed)
            return Check("signer", False, "signed-in-the-future", f"signing time {signed_at:%Y-%m-%d %H:%M:%SZ}")
        status_source = self.trust.status
        generation = status_source.generation
        key = (signed.signer, record_type, signed_at.date(), generation)
        cached = self._signer_checks.get(key)
        if cached is None:
            if not self._is_department(signed.signer, record_type):
                return self._wrong_department(signed)
            pool = [*signed.intermediates, *self.trust.intermediates]
            chain, path = self._chains.validate_path(signed.signer, pool, signed_at)
            issuer = (path[1] if len(path) > 1 else path[0]) if path is not None else None
            status = None  # online and every CA good: kept_status below
            if isinstance(status_source, CrlStatus) and path is not None:
                status = status_source.path_status(path, at)
            elif path is not None:
                status = status_source.authorities_status(path, at)
            if len(self._signer_checks) > 1_000:
                self._signer_checks.clear()
            cached = self._signer_checks[key] = (chain, issuer, status)
        chain, issuer, status = cached
        if not chain.ok:
            return Check("signer", False, "signer-" + chain.reason, chain.detail)
        if status is None:  # online: asked again once the kept answer is past its nextUpdate
            assert isinstance(status_source, OcspStatus) and issuer is not None
            status = status_source.kept_status(signed.signer, issuer, at)
        if not status.ok:
            return Check("signer", False, "signer-" + status.reason, status.detail)
        return Check("signer", True)

    def _is_department(self, signer: x509.Certificate, record_type: str) -> bool:
        expected = self.trust.departments.get(record_type)
        return expected is not None and signer.subject == expected

    @staticmethod
    def _wrong_department(signed: SignedContent) -> Check:
        return Check("signer", False, "wrong-department",
                     f"signed by {signed.signer.subject.rfc4514_string()}, not the owning department")

    def _security_object(self, number: str, contents: CardContents, certs: dict[str, x509.Certificate],
                         registry: RegistryEntry | None, at: datetime.datetime) -> tuple[dict[str, Any] | None, list[Check]]:
        name = "security-object"
        values = contents.objects.get(LABELS[SECURITY_OBJECT], [])
        if len(values) != 1:
            return None, [Check(name, False, "security-object-missing" if not values else "duplicate-objects",
                                f"{len(values)} security objects on the card")]
        signed, check = open_signed_data(values[0])
        if signed is None:
            return None, [Check(name, False, check.reason, check.detail)]
        try:
            so = parse_content(signed.content)
            expires_at = _utc(so["expires_at"])
        except (ValueError, KeyError, TypeError) as exc:
            return None, [Check(name, False, "malformed", str(exc))]
        if at > expires_at:  # said first: an expired card's signers and CRLs may be stale too
            return None, [Check(name, False, "card-expired", f"the card expired at {so['expires_at']}")]
        signer = self._signer(signed, SECURITY_OBJECT, at)
        if not signer.ok:
            return None, [Check(name, False, signer.reason, signer.detail)]
        if so.get("card") != number:
            return None, [Check(name, False, "record-from-another-card", f"the security object is for card {so.get('card')}")]
        checks = []
        if registry is not None and registry.versions.get(SECURITY_OBJECT, 0) > so.get("version", 0):
            checks.append(Check(name, False, "superseded-version",
                                f"version {so.get('version')} on the card, {registry.versions[SECURITY_OBJECT]} current"))
        elif registry is not None and registry.hashes.get(SECURITY_OBJECT, digest := sha256_hex(values[0])) != digest:
            checks.append(Check(name, False, "unregistered-version",
                                f"version {so.get('version')} on the card is not the registry's current version"))
        keys = so.get("keys", {})
        for label, cert in certs.items():
            spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
            if keys.get(label) != sha256_hex(spki):
                checks.append(Check(name, False, "key-mismatch",
                                    f"the {label} certificate's key is not the key the card was issued with"))
        return so, checks or [Check(name, True, "ok", f"version {so.get('version')}")]

    def _record(self, number: str, record_type: str, contents: CardContents, so: dict[str, Any] | None,
                registry: RegistryEntry | None, at: datetime.datetime, with_pin: bool) -> tuple[Check, dict[str, Any] | None]:
        name = f"record:{record_type}"
        values = contents.objects.get(LABELS[record_type], [])
        if not values:
            if record_type in PRIVATE_RECORDS and not (with_pin and contents.pin_check and contents.pin_check.ok):
                return Check(name, False, "pin-required", "a private record: readable after the PIN", skipped=True), None
            return Check(name, False, "record-missing", "the card holds no such record"), None
        if len(values) > 1:
            return Check(name, False, "duplicate-objects", f"{len(values)} objects labelled {LABELS[record_type]}"), None
        der = values[0]
        signed, check = open_signed_data(der)
        if signed is None:
            reason = "record-modified" if check.reason in ("digest-mismatch", "bad-signature") else check.reason
            return Check(name, False, reason, check.detail), None
        signer = self._signer(signed, record_type, at)
        if not signer.ok:
            return Check(name, False, signer.reason, signer.detail), None
        try:
            content = parse_content(signed.content)
        except ValueError as exc:
            return Check(name, False, "malformed", str(exc)), None
        if content.get("type") != record_type:
            return Check(name, False, "wrong-record-type", f"the object holds a {content.get('type')} record"), None
        if content.get("card") != number:
            return Check(name, False, "record-from-another-card", f"the record belongs to card {content.get('card')}"), None
        version = content.get("version")
        if registry is not None and registry.versions.get(record_type, 0) > (version or 0):
            return Check(name, False, "superseded-version",
                         f"version {version} of {content.get('issued_at')} on the card; "
                         f"the registry's current version is {registry.versions[record_type]}"), content
        digest = sha256_hex(der)
        if registry is not None and registry.hashes.get(record_type, digest) != digest:
            # e.g. an update written to the card whose registration never committed
            return Check(name, False, "unregistered-version",
                         f"version {version} on the card is not the registry's current version "
                         f"{registry.versions.get(record_type)}"), content
        if so is None:
            return Check(name, False, "security-object-missing", "no valid security object to bind the record"), content
        listed = so.get("records", {}).get(record_type, {})
        if listed.get("sha256") != digest:
            reason = "superseded-version" if listed.get("version", 0) > (version or 0) else "not-in-security-object"
            return Check(name, False, reason, "the security object lists another version of this record"), content
        return Check(name, True, "ok", f"version {version} of {content.get('issued_at')}"), content

    def _active_authentication(self, contents: CardContents, cert: x509.Certificate | None) -> Check:
        name = "active-authentication"
        if contents.pin_check is None:
            return Check(name, False, "pin-required", "needs the PIN", skipped=True)
        if not contents.pin_check.ok:
            return Check(name, False, contents.pin_check.reason, contents.pin_check.detail)
        if cert is None or contents.signature is None or contents.challenge is None:
            return Check(name, False, "certificate-missing", "no authentication certificate to check against")
        try:  # raw r||s of CKM_ECDSA (PKCS#11 v2.40 section 2.3.1) over the challenge's SHA-256
            verify_signature(public_key_of(cert), contents.signature, contents.challenge, hashes.SHA256(), raw_ecdsa=True)
        except InvalidSignature:
            return Check(name, False, "key-mismatch", "the card's key does not match its authentication certificate")
        return Check(name, True, "ok", "the card signed a fresh challenge with the certified key")


def verification_json(result: CardVerification) -> str:
    return json.dumps(result.as_dict(), indent=2, ensure_ascii=False)
