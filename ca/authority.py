"""The certificate authority as one object: every business operation is one transaction.

The web layer and the CLI call this; it knows nothing of HTTP (cf. step-ca's ``authority``).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence

from cryptography import x509
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from ca import crl as crl_module
from ca import revocation
from ca.errors import InvalidRequest, NotFound, NotInitialised
from ca.events import CaEvent, EventSink
from ca.hierarchy import ROOT, HierarchyPlan, create_hierarchy
from ca.issuance import IssuerContext, find_certificate, issue_certificate, load_csr
from ca.keyring import Keyring
from ca.models import Authority, Certificate, Crl, Signer
from ca.profiles import get_profile
from ca.subjects import SubjectRequest
from ca.urls import PublicUrls


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


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
    ) -> None:
        self.sessions = sessions
        self.keyring = keyring
        self.urls = urls
        self.clock = clock
        self.crl_period = crl_period
        self.crl_refresh_before = crl_refresh_before
        self.events = events
        #: issuing authorities as issuance needs them; their certificate and key never change
        self._issuers: dict[str, IssuerContext] = {}

    # -- hierarchy -----------------------------------------------------------------------
    def initialise(self, plan: HierarchyPlan) -> list[Authority]:
        """Create root, issuing CAs, OCSP responders, TSA and first CRLs in one transaction."""
        now = self.clock()
        with self.sessions.begin() as session:
            authorities = create_hierarchy(session, self.keyring, self.urls, plan, now)
            for authority in authorities:
                crl_module.build_crl(session, authority, _cert(authority), self.keyring.get(authority.key_ref),
                                     now, self.crl_period)
            return authorities

    def is_initialised(self) -> bool:
        with self.sessions() as session:
            return session.scalar(select(func.count()).select_from(Authority)) > 0

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
        """Issue from a CSR. ``subject``/``alt_names`` override the CSR's proposal; either way
        every value is validated against the profile and rebuilt."""
        profile = get_profile(profile_name)
        csr = load_csr(csr_data)
        proposal = SubjectRequest.from_csr(csr)
        if subject is not None or alt_names:
            given = SubjectRequest.parse(subject or "", list(alt_names or ()))
            proposal = SubjectRequest(
                given.attributes if subject is not None else proposal.attributes,
                given.alt_names if alt_names else proposal.alt_names,
            )
        issuer_name = issuer or profile.issuers[0]
        if issuer_name not in profile.issuers:
            raise InvalidRequest(f"profile {profile.name} cannot be issued by {issuer_name}")
        context = self._issuer(issuer_name)
        now = self.clock()
        with self.sessions.begin() as session:
            row = issue_certificate(session, context, profile, csr.public_key(), proposal, requester, self.urls, now)
            self._emit(session, CaEvent("cert.issue", requester, f"cert:{row.serial_hex}",
                                        {"profile": row.profile, "subject": row.subject, "issuer": issuer_name}))
            return row

    def _emit(self, session: Session, event: CaEvent) -> None:
        if self.events is not None:
            self.events(session, event)

    def _issuer(self, name: str) -> IssuerContext:
        context = self._issuers.get(name)
        if context is None:
            with self.sessions() as session:
                authority = self.authority(session, name)
                session.expunge(authority)
            context = IssuerContext(authority, _cert(authority), self.keyring.get(authority.key_ref))
            self._issuers[name] = context
        return context

    # -- status --------------------------------------------------------------------------
    def revoke(self, serial: str, reason: str | x509.ReasonFlags, actor: str = "unspecified") -> Certificate:
        """Revoke (or hold) and publish the new CRL in the same transaction."""
        flag = reason if isinstance(reason, x509.ReasonFlags) else revocation.parse_reason(reason)
        now = self.clock()
        with self.sessions.begin() as session:
            cert = find_certificate(session, serial)
            revocation.revoke(session, cert, flag, now)
            self._publish(session, session.get(Authority, cert.issuer_id), now)  # type: ignore[arg-type]
            self._emit(session, CaEvent("cert.revoke", actor, f"cert:{cert.serial_hex}",
                                        {"reason": flag.value, "subject": cert.subject}))
            return cert

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


__all__ = ["CertificateAuthority", "HierarchyPlan", "ROOT", "utc_now"]
