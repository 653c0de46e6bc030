"""The certificate authority as one object: every business operation is one transaction.

The web layer, the CLI, card personalisation and the audit trail call this; it knows nothing of
HTTP (cf. step-ca's ``authority``). It is the one issuance path: every certificate Tessera makes,
from the CA certificates of `tessera init` to a citizen card's, passes its profile checks and is
recorded with a ``cert.issue`` event (ca.events) in the transaction that stores it; every
revocation with a ``cert.revoke`` event in the transaction that revokes it.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography import x509
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from ca import crl as crl_module
from ca import revocation
from ca.errors import InvalidRequest, NotFound, NotInitialised
from ca.events import CaEvent, EventSink
from ca.hierarchy import ISSUING_CA_PROFILE, ROOT, HierarchyPlan, create_hierarchy, delegated_signers
from ca.issuance import _check_requester, _Issuer, _sign, _store, csr_public_key, find_certificate, load_csr
from ca.keyring import Keyring
from ca.keys import PublicKey
from ca.models import Authority, Certificate, Crl, Signer
from ca.profiles import EXAMPLE_POLICY_ARC, SM2_PREFIX, Profile, check_policy_arc, get_profile, role_of
from ca.sm2 import Sm2PublicKey
from ca.subjects import SubjectRequest
from ca.urls import PublicUrls


#: who the certificates of `tessera init` are recorded as requested by
INIT_REQUESTER = "tessera init"


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


@dataclass(frozen=True)
class SignedCertificate:
    """A certificate this CA signed under a profile (:meth:`CertificateAuthority.sign`) and has not
    stored yet: :meth:`CertificateAuthority.register` stores it and records its ``cert.issue`` in
    the caller's transaction. Card personalisation writes the certificates on the card between the
    two, so the certificates of a card that fails midway are never registered."""

    certificate: x509.Certificate
    profile: str
    issuer: str
    issuer_id: int
    signed_at: datetime.datetime


class CertificateAuthority:
    """Issue, revoke, publish: the CA's operations over one store and one keyring."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        keyring: Keyring,
        urls: PublicUrls,
        clock: Callable[[], datetime.datetime] = utc_now,
        crl_period: datetime.timedelta = datetime.timedelta(days=1),
        crl_refresh_before: datetime.timedelta = datetime.timedelta(hours=6),
        events: EventSink | None = None,
        policy_arc: str = EXAMPLE_POLICY_ARC,
    ) -> None:
        self.sessions = sessions
        self.keyring = keyring
        self.urls = urls
        self.clock = clock
        self.crl_period = crl_period
        self.crl_refresh_before = crl_refresh_before
        self.events = events
        #: the arc of the profiles' certificate policies (ca.profiles), e.g. from TESSERA_POLICY_ARC
        self.policy_arc = check_policy_arc(policy_arc)
        #: issuing authorities as issuance needs them; their certificate and key never change
        self._issuers: dict[str, _Issuer] = {}

    # -- hierarchy -----------------------------------------------------------------------
    def initialise(self, plan: HierarchyPlan) -> list[Authority]:
        """Create root, issuing CAs, OCSP responders, TSA and first CRLs in one transaction, each
        certificate recorded with its ``cert.issue`` event."""
        now = self.clock()
        with self.sessions.begin() as session:
            authorities = create_hierarchy(session, self.keyring, self.urls, plan, now, self.policy_arc)
            names = {a.id: a.name for a in authorities}
            for authority in authorities:
                self._emit(session, CaEvent("cert.issue", INIT_REQUESTER, f"cert:{authority.serial_hex}", {
                    "profile": "root-ca" if authority.parent_id is None else ISSUING_CA_PROFILE,
                    "subject": authority.subject, "issuer": names[authority.parent_id or authority.id]}))
            issuers = {a.name: _Issuer.of(a, self.keyring.get(a.key_ref)) for a in authorities}
            for signer in delegated_signers(plan):
                key = self.keyring.generate(plan.backend, signer.key_label, plan.key_type, plan.key_dir)
                signed = self._sign(issuers[signer.issuer], get_profile(signer.profile), key.public_key(),
                                    signer.subject, now)
                row = self.register(session, signed, INIT_REQUESTER)
                session.add(Signer(role=signer.role, authority_id=signed.issuer_id, certificate_id=row.id,
                                   key_ref=key.reference))
            session.flush()
            for authority in authorities:
                crl_module.build_crl(session, authority, _cert(authority), self.keyring.get(authority.key_ref),
                                     now, self.crl_period)
            return authorities

    def is_initialised(self) -> bool:
        with self.sessions() as session:
            return (session.scalar(select(func.count()).select_from(Authority)) or 0) > 0

    def authority(self, session: Session, name: str) -> Authority:
        row = session.scalar(select(Authority).where(Authority.name == name))
        if row is None:
            if session.scalar(select(func.count()).select_from(Authority)) == 0:
                raise NotInitialised("the CA hierarchy does not exist yet: run `tessera init`")
            raise NotFound(f"no certificate authority named {name!r}")
        return row

    def authorities(self) -> list[Authority]:
        with self.sessions() as session:
            return list(session.scalars(select(Authority).order_by(Authority.id)))

    def authority_certificate(self, name: str) -> x509.Certificate:
        with self.sessions() as session:
            return _cert(self.authority(session, name))

    def chain(self, name: str) -> list[x509.Certificate]:
        """The authority's certificate followed by its parents up to the root."""
        with self.sessions() as session:
            out: list[x509.Certificate] = []
            row: Authority | None = self.authority(session, name)
            while row is not None:
                out.append(_cert(row))
                row = session.get(Authority, row.parent_id) if row.parent_id else None
            return out

    def signer(self, role: str, authority_name: str) -> tuple[x509.Certificate, str]:
        with self.sessions() as session:
            authority = self.authority(session, authority_name)
            row = session.scalar(select(Signer).where(Signer.role == role, Signer.authority_id == authority.id))
            if row is None:
                raise NotFound(f"no {role} signer for {authority_name}")
            cert = session.get(Certificate, row.certificate_id)
            assert cert is not None
            return x509.load_der_x509_certificate(cert.der), row.key_ref

    # -- issuance ------------------------------------------------------------------------
    def issue(
        self,
        profile_name: str,
        csr_data: bytes,
        requester: str,
        subject: str | None = None,
        alt_names: Sequence[str] | None = None,
        issuer: str | None = None,
    ) -> Certificate:
        """Issue from a CSR in a transaction of its own. ``subject``/``alt_names`` override the CSR's
        proposal; either way every value is validated against the profile and rebuilt."""
        profile = get_profile(profile_name)
        csr = load_csr(csr_data)
        proposal = SubjectRequest.from_csr(csr)
        if subject is not None or alt_names:
            given = SubjectRequest.parse(subject or "", list(alt_names or ()))
            proposal = SubjectRequest(
                given.attributes if subject is not None else proposal.attributes,
                given.alt_names if alt_names else proposal.alt_names,
            )
        _check_requester(requester)
        public_key = csr_public_key(csr)
        signed = self._sign(self._issuer(self._issuer_name(profile, issuer, public_key)), profile, public_key,
                            proposal, self.clock())
        with self.sessions.begin() as session:
            return self.register(session, signed, requester)

    def issue_for_key(
        self,
        session: Session,
        profile_name: str,
        public_key: PublicKey,
        subject: SubjectRequest,
        requester: str,
        issuer: str | None = None,
    ) -> Certificate:
        """Issue for a key the caller holds (a department's or the audit trail's signing key), in
        the caller's transaction: as :meth:`sign` then :meth:`register`."""
        profile = get_profile(profile_name)
        _check_requester(requester)
        signed = self._sign(self._issuer(self._issuer_name(profile, issuer, public_key), session), profile, public_key,
                            subject, self.clock())
        return self.register(session, signed, requester)

    def sign(
        self,
        profile_name: str,
        public_key: PublicKey,
        subject: SubjectRequest,
        issuer: str | None = None,
        now: datetime.datetime | None = None,
    ) -> SignedCertificate:
        """Check the request against the profile and the issuing CA (key type, subject, policy, the
        issuing CA not expired) and sign the certificate; :meth:`register` stores it."""
        profile = get_profile(profile_name)
        return self._sign(self._issuer(self._issuer_name(profile, issuer, public_key)), profile, public_key, subject,
                          now or self.clock())

    def register(self, session: Session, signed: SignedCertificate, requester: str,
                 actor: str | None = None) -> Certificate:
        """Store ``signed`` and record its ``cert.issue`` event (by ``actor``, default the
        requester) in the caller's transaction: both commit together or not at all."""
        row = _store(session, signed.issuer_id, signed.certificate, signed.profile, requester, signed.signed_at)
        details = {"profile": row.profile, "subject": row.subject, "issuer": signed.issuer}
        if actor is not None and actor != row.requester:
            details["requester"] = row.requester
        self._emit(session, CaEvent("cert.issue", actor or row.requester, f"cert:{row.serial_hex}", details))
        return row

    def _sign(self, issuer: _Issuer, profile: Profile, public_key: PublicKey,
              subject: SubjectRequest, now: datetime.datetime) -> SignedCertificate:
        certificate = _sign(issuer, profile, public_key, subject, self.urls, self.policy_arc, now)
        return SignedCertificate(certificate, profile.name, issuer.name, issuer.authority_id, now)

    @staticmethod
    def _issuer_name(profile: Profile, issuer: str | None, public_key: PublicKey) -> str:
        """The named issuer, else the profile's first: in the SM2 hierarchy for an SM2 key."""
        suite = SM2_PREFIX if isinstance(public_key, Sm2PublicKey) else ""
        name = issuer or suite + profile.issuers[0]
        if role_of(name) not in profile.issuers:
            raise InvalidRequest(f"profile {profile.name} cannot be issued by {name}")
        return name

    def _emit(self, session: Session, event: CaEvent) -> None:
        if self.events is not None:
            self.events(session, event)

    def _issuer(self, name: str, session: Session | None = None) -> _Issuer:
        """The issuing CA ``name``, loaded once (through the caller's ``session`` if given)."""
        issuer = self._issuers.get(name)
        if issuer is None:
            if session is None:
                with self.sessions() as own:
                    return self._issuer(name, own)
            authority = self.authority(session, name)
            issuer = self._issuers[name] = _Issuer.of(authority, self.keyring.get(authority.key_ref))
        return issuer

    # -- status --------------------------------------------------------------------------
    def revoke(self, serial: str, reason: str | x509.ReasonFlags, actor: str = "unspecified") -> Certificate:
        """Revoke (or hold) and publish the new CRL in the same transaction."""
        flag = reason if isinstance(reason, x509.ReasonFlags) else revocation.parse_reason(reason)
        with self.sessions.begin() as session:
            cert = find_certificate(session, serial)
            self.revoke_in(session, [cert], flag, actor)
            return cert

    def revoke_in(self, session: Session, certificates: Sequence[Certificate], reason: x509.ReasonFlags,
                  actor: str, now: datetime.datetime | None = None, events: EventSink | None = None) -> None:
        """Revoke (or hold) ``certificates`` and publish each issuing CA's new CRL (RFC 5280 section
        5) in the caller's transaction, each with its ``cert.revoke`` event (``reason``, the
        certificate's ``subject`` and ``requester``). ``events``: the sink that records them instead
        of the CA's, for an act that records its events with its own context (an administrator's
        role and request: idp.account_lifecycle)."""
        now = now or self.clock()
        emit = events or self._emit
        issuers: set[int] = set()
        for cert in certificates:
            revocation.revoke(session, cert, reason, now)
            issuers.add(cert.issuer_id)
            emit(session, CaEvent("cert.revoke", actor, f"cert:{cert.serial_hex}",
                                  {"reason": reason.value, "subject": cert.subject, "requester": cert.requester}))
        for issuer_id in sorted(issuers):
            self._publish(session, session.get(Authority, issuer_id), now)  # type: ignore[arg-type]

    def release_hold(self, serial: str, actor: str = "unspecified") -> Certificate:
        now = self.clock()
        with self.sessions.begin() as session:
            cert = find_certificate(session, serial)
            revocation.release_hold(session, cert, now)
            self._publish(session, session.get(Authority, cert.issuer_id), now)  # type: ignore[arg-type]
            self._emit(session, CaEvent("cert.release", actor, f"cert:{cert.serial_hex}", {"subject": cert.subject}))
            return cert

    def get(self, serial: str) -> Certificate:
        with self.sessions() as session:
            return find_certificate(session, serial)

    def list_certificates(
        self, status: str | None = None, profile: str | None = None, issuer: str | None = None,
        limit: int = 100, offset: int = 0,
    ) -> list[Certificate]:
        with self.sessions() as session:
            query = select(Certificate).order_by(Certificate.issued_at.desc(), Certificate.id.desc())
            if status:
                query = query.where(Certificate.status == status)
            if profile:
                query = query.where(Certificate.profile == profile)
            if issuer:
                query = query.where(Certificate.issuer_id == self.authority(session, issuer).id)
            return list(session.scalars(query.limit(max(1, min(limit, 10_000))).offset(max(0, offset))))

    def certificate_counts(self) -> dict[str, int]:
        """How many certificates there are by status (``valid``, ``revoked``, ``hold``): the public
        home page's figures, which name nobody."""
        with self.sessions() as session:
            rows = session.execute(select(Certificate.status, func.count()).group_by(Certificate.status))
            return {status: count for status, count in rows}

    # -- CRLs ----------------------------------------------------------------------------
    def _publish(self, session: Session, authority: Authority, now: datetime.datetime) -> Crl:
        return crl_module.build_crl(session, authority, _cert(authority), self.keyring.get(authority.key_ref),
                                    now, self.crl_period)

    def publish_crl(self, name: str) -> Crl:
        now = self.clock()
        with self.sessions.begin() as session:
            return self._publish(session, self.authority(session, name), now)

    def current_crl(self, name: str) -> Crl:
        """The newest CRL, re-signed first when it is within ``crl_refresh_before`` of nextUpdate."""
        now = self.clock()
        with self.sessions() as session:
            authority = self.authority(session, name)
            latest = crl_module.latest_crl(session, authority)
            if latest is not None and latest.next_update - now > self.crl_refresh_before:
                return latest
        try:
            return self.publish_crl(name)
        except IntegrityError:
            # another process published the same number a moment ago: serve theirs
            with self.sessions() as session:
                latest = crl_module.latest_crl(session, self.authority(session, name))
                assert latest is not None
                return latest


def _cert(authority: Authority) -> x509.Certificate:
    return x509.load_der_x509_certificate(authority.certificate_der)


__all__ = ["CertificateAuthority", "HierarchyPlan", "ROOT", "SignedCertificate", "utc_now"]
