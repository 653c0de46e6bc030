"""The reader library services use to verify a citizen card through PKCS#11 (python-pkcs11).

``CardReader.verify(number)`` opens the card by its number, reads its certificates, records and
security object, and checks, each with its own outcome and reason (:class:`CardVerification`):

* the card certificates: chain to the root (RFC 5280 section 6), expiry, status (OCSP or CRL);
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
shard (shared/FIELD-NOTES.md: ``get_token`` scans every slot), rebuilt only when a number is not
in it (a card made after the index). Every PIN use goes through the card's try counter.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pkcs11
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pkcs11 import Attribute, Mechanism, ObjectClass
from pkcs11.util.ec import encode_ecdsa_signature
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, sessionmaker

from cardsim.config import CardSettings
from cardsim.errors import CardError
from cardsim.numbers import is_card_number
from cardsim.personalisation import APPLICATION, AUTH_KEY, SIGN_KEY
from cardsim.pins import TryCounter, check_pin_form
from cardsim.records import LABELS, PRIVATE_RECORDS, RECORD_TYPES, SECURITY_OBJECT, parse_content, sha256_hex
from cardsim.shard_module import ShardLibrary
from cardsim.trust import Check, ChainValidator, CrlStatus, OcspStatus, SignedContent, issuer_of, open_signed_data

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
        again every ``crl_max_age`` seconds (or OCSP when ``online``)."""
        from ca import crl as crl_module
        from ca.models import Authority, Certificate
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

        def published_crls() -> list[x509.CertificateRevocationList]:
            out = []
            with sessions() as session:
                for authority_id in authority_ids:
                    authority = session.get(Authority, authority_id)
                    latest = crl_module.latest_crl(session, authority) if authority is not None else None
                    if latest is not None:
                        out.append(x509.load_der_x509_crl(latest.der))
            return out

        roots = [c for name, c in certs.items() if name == "root"]
        intermediates = [c for name, c in certs.items() if name != "root"]
        status: CrlStatus | OcspStatus = (OcspStatus() if online else
                                          CrlStatus(published_crls(), list(certs.values()), published_crls, crl_max_age))

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


def _pkcs11_wrong_pin(exc: Exception) -> bool:
    return isinstance(exc, (pkcs11.exceptions.PinIncorrect, pkcs11.exceptions.PinLocked))


class CardReader:
    """Opens cards of one card folder through PKCS#11 and verifies them against a trust."""

    def __init__(self, settings: CardSettings, trust: ReaderTrust) -> None:
        settings.require()
        self.settings = settings
        self.trust = trust
        self._chains = ChainValidator(trust.roots)
        self._signer_checks: dict[bytes, tuple[Check, x509.Certificate | None, Check | None]] = {}
        self._shards: dict[int, ShardLibrary] = {}

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
            shard.reinitialise()  # a card made after our index: see it (FIELD-NOTES)
            token = shard.tokens.get(number)
        return (shard, token) if token is not None else None

    def __contains__(self, number: str) -> bool:
        return self._token(number) is not None

    # -- reading ----------------------------------------------------------------------------
    def read(self, number: str, pin: str | None = None, challenge: bytes | None = None) -> CardContents | None:
        """Read the card's objects; with the PIN also the private records and, given a challenge,
        the card's signature over SHA-256(challenge) with its authentication key."""
        found = self._token(number)
        if found is None:
            return None
        shard, token = found
        pin_check: Check | None = None
        session = None
        if pin is not None:
            check_pin_form(pin)
            counter = TryCounter(self.settings.counter_dir, number, self.settings.fsync_counters)
            try:
                session = counter.attempt_pin(lambda: token.open(user_pin=pin), _pkcs11_wrong_pin)
                pin_check = Check("pin", True)
            except CardError as exc:
                # python-pkcs11 leaks the session of a failed login: close it (FIELD-NOTES)
                shard.close_all_sessions(token.slot.slot_id)
                pin_check = Check("pin", False, exc.kind, str(exc))
        if session is None:
            session = token.open()
        try:
            certificates = {}
            wanted = [Attribute.LABEL, Attribute.VALUE]  # one C_GetAttributeValue per object
            for obj in session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE}):
                values = obj.get_attributes(wanted)
                certificates[values[Attribute.LABEL]] = bytes(values[Attribute.VALUE])
            objects: dict[str, list[bytes]] = {}
            for obj in session.get_objects({Attribute.CLASS: ObjectClass.DATA, Attribute.APPLICATION: APPLICATION}):
                values = obj.get_attributes(wanted)
                objects.setdefault(values[Attribute.LABEL], []).append(bytes(values[Attribute.VALUE]))
            signature = None
            if challenge is not None and pin_check is not None and pin_check.ok:
                key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=AUTH_KEY)
                # SoftHSM has no CKM_ECDSA_SHA256: hash here, sign the digest (FIELD-NOTES)
                signature = bytes(key.sign(hashlib.sha256(challenge).digest(), mechanism=Mechanism.ECDSA))
        finally:
            session.close()
        return CardContents(certificates, objects, signature, challenge, pin_check)

    # -- verifying --------------------------------------------------------------------------
    def verify(self, number: str, pin: str | None = None, at: datetime.datetime | None = None) -> CardVerification:
        """Every check of the card; never raises for a bad card."""
        at = at or datetime.datetime.now(datetime.timezone.utc)
        if isinstance(self.trust.status, CrlStatus):
            self.trust.status.refresh_if_old()
        checks: list[Check] = []
        if not is_card_number(number):
            return CardVerification(number, (Check("card", False, "bad-card-number", "wrong length or check digit"),))
        try:
            contents = self.read(number, pin, secrets.token_bytes(32) if pin is not None else None)
        except CardError as exc:
            return CardVerification(number, (Check("card", False, exc.kind, str(exc)),))
        except pkcs11.exceptions.PKCS11Error as exc:
            return CardVerification(number, (Check("card", False, "card-unreadable", type(exc).__name__),))
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
            except ValueError:
                checks.append(Check(name, False, "certificate-malformed", "cannot parse the certificate"))
                continue
            out[label] = cert
            chain = self._chains.validate(cert, self.trust.intermediates, at, name)
            if not chain.ok:
                reason = "card-expired" if chain.reason == "expired" or cert.not_valid_after_utc < at else chain.reason
                checks.append(Check(name, False, reason, chain.detail))
                continue
            issuer = issuer_of(cert, self.trust.intermediates, verified=True)
            assert issuer is not None  # the chain validated
            status = self.trust.status.status(cert, issuer, at, name)
            checks.append(status if not status.ok else Check(name, True, "good", status.detail))
        return out, checks

    def _signer(self, signed: SignedContent, expected: x509.Name | None, at: datetime.datetime) -> Check:
        """The signer's department, its chain at signing time (a record outlives the two-year
        signer certificate, as a signed document does) and its status now. Every card shares
        these few signers, so the chain is validated once per signer and signing day, and the
        status is kept per CRL generation, or (online) the OCSP answer until its nextUpdate."""
        if expected is None or signed.signer.subject != expected:
            return Check("signer", False, "wrong-department",
                         f"signed by {signed.signer.subject.rfc4514_string()}, not the owning department")
        signed_at = signed.signing_time or at
        if signed_at > at + datetime.timedelta(minutes=5):
            return Check("signer", False, "signed-in-the-future", f"signing time {signed_at:%Y-%m-%d %H:%M:%SZ}")
        status_source = self.trust.status
        generation = status_source.generation if isinstance(status_source, CrlStatus) else 0
        key = signed.signer.fingerprint(hashes.SHA256()) + signed_at.strftime("%Y%m%d").encode() + bytes([generation % 256])
        cached = self._signer_checks.get(key)
        if cached is None:
            pool = [*signed.intermediates, *self.trust.intermediates]
            chain = self._chains.validate(signed.signer, pool, signed_at)
            issuer = issuer_of(signed.signer, pool, verified=True) if chain.ok else None
            status = None  # online: kept_status below
            if isinstance(status_source, CrlStatus) and issuer is not None:
                status = status_source.status(signed.signer, issuer, at)
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
            expires_at = datetime.datetime.strptime(so["expires_at"], "%Y-%m-%dT%H:%M:%SZ").replace(
                tzinfo=datetime.timezone.utc)
        except (ValueError, KeyError, TypeError) as exc:
            return None, [Check(name, False, "malformed", str(exc))]
        if at > expires_at:  # said first: an expired card's signers and CRLs may be stale too
            return None, [Check(name, False, "card-expired", f"the card expired at {so['expires_at']}")]
        signer = self._signer(signed, self.trust.departments.get(SECURITY_OBJECT), at)
        if not signer.ok:
            return None, [Check(name, False, signer.reason, signer.detail)]
        if so.get("card") != number:
            return None, [Check(name, False, "record-from-another-card", f"the security object is for card {so.get('card')}")]
        checks = []
        if registry is not None and registry.versions.get(SECURITY_OBJECT, 0) > so.get("version", 0):
            checks.append(Check(name, False, "superseded-version",
                                f"version {so.get('version')} on the card, {registry.versions[SECURITY_OBJECT]} current"))
        elif registry is not None and registry.hashes.get(SECURITY_OBJECT, sha256_hex(values[0])) != sha256_hex(values[0]):
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
        signer = self._signer(signed, self.trust.departments.get(record_type), at)
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
        if registry is not None and registry.hashes.get(record_type, sha256_hex(der)) != sha256_hex(der):
            # e.g. an update written to the card whose registration never committed
            return Check(name, False, "unregistered-version",
                         f"version {version} on the card is not the registry's current version "
                         f"{registry.versions.get(record_type)}"), content
        if so is None:
            return Check(name, False, "security-object-missing", "no valid security object to bind the record"), content
        listed = so.get("records", {}).get(record_type, {})
        if listed.get("sha256") != sha256_hex(der):
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
        public = cert.public_key()
        try:
            assert isinstance(public, ec.EllipticCurvePublicKey)
            public.verify(encode_ecdsa_signature(contents.signature), contents.challenge, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, AssertionError, ValueError):
            return Check(name, False, "key-mismatch", "the card's key does not match its authentication certificate")
        return Check(name, True, "ok", "the card signed a fresh challenge with the certified key")


def verification_json(result: CardVerification) -> str:
    return json.dumps(result.as_dict(), indent=2, ensure_ascii=False)
