"""The TSA bound to the store: its certificate and key from the hierarchy, every token recorded."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from ca.authority import CertificateAuthority, utc_now
from ca.models import Timestamp
from ca.profiles import tsa_policy
from ca.tsa import IssuedTimestamp, TimeStampAuthority, TimestampReply


class StoredTimeStampAuthority:
    """Builds the RFC 3161 TSA lazily (per process) and stores each issued token's serial.

    ``authority`` is the issuing CA whose TSA signs: ``staff`` (ECDSA) or ``sm2-staff`` (SM2). Its
    tokens name the policy under the CA's policy arc (:func:`ca.profiles.tsa_policy`)."""

    def __init__(self, ca: CertificateAuthority, sessions: sessionmaker[Session], authority: str = "staff") -> None:
        self._ca = ca
        self._sessions = sessions
        self._authority = authority
        self._tsa: TimeStampAuthority | None = None

    def _record(self, issued: IssuedTimestamp) -> None:
        with self._sessions.begin() as session:
            session.add(Timestamp(
                serial_hex=format(issued.serial, "x"), gen_time=issued.gen_time,
                hash_algorithm=issued.hash_algorithm, message_imprint_hex=issued.message_imprint.hex(),
                policy=issued.policy,
            ))

    def respond(self, query_der: bytes) -> TimestampReply:
        if self._tsa is None:
            certificate, key_ref = self._ca.signer("tsa", self._authority)
            chain = self._ca.chain(self._authority)
            self._tsa = TimeStampAuthority(self._ca.keyring.get(key_ref), certificate, chain,
                                           tsa_policy(self._ca.policy_arc), self._record, clock=utc_now)
        return self._tsa.respond(query_der)
