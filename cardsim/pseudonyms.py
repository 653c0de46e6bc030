"""Pseudonymous citizen identifiers for certificates.

A citizen certificate is read by everyone the citizen shows it to, so it must not carry the
identity number (sensitive personal information under the PIPL, GB/T 35273-2020 section 3.2).
Its subject serialNumber (X.520 section 6.2.9) holds instead ``PSN-`` and the first 120 bits of
HMAC-SHA256 (RFC 2104) of ``<scheme>:<number>``, base32 (RFC 4648 section 6) without padding:
stable for one deployment (the same citizen gets the same pseudonym on every card), unlinkable
across deployments, and not reversible without the deployment's key. The key is derived from the
deployment's data key (HMAC-SHA256 of the data key over a fixed label, as the CSRF token key is);
the registry table ``citizen_pseudonym`` (migration 0010) maps a pseudonym back to the citizen.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac

from cryptography import x509
from cryptography.x509.oid import NameOID
from sqlalchemy import Connection, bindparam, select
from sqlalchemy.orm import Session

from cardsim.models import CitizenPseudonym

PREFIX = "PSN-"
_LABEL = b"tessera citizen pseudonym key v1"


def pseudonym_key(data_key: bytes) -> bytes:
    """The deployment's pseudonym key, derived from its data key."""
    return hmac.new(data_key, _LABEL, hashlib.sha256).digest()


def pseudonym(key: bytes, scheme: str, number: str) -> str:
    """``PSN-`` + 24 base32 characters (120 bits) for citizen ``number`` of ``scheme``."""
    digest = hmac.new(key, f"{scheme}:{number}".encode(), hashlib.sha256).digest()[:15]
    return PREFIX + base64.b32encode(digest).decode()


def is_pseudonym(text: str | None) -> bool:
    return bool(text) and str(text).startswith(PREFIX) and len(str(text)) == len(PREFIX) + 24


def subject_pseudonym(cert: x509.Certificate) -> str | None:
    """The pseudonym in a certificate's subject serialNumber, or None (another kind of serialNumber)."""
    values = cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    value = str(values[0].value) if values else ""
    return value if is_pseudonym(value) else None


def register(session: Session, value: str, scheme: str, number: str, now: datetime.datetime) -> None:
    """Keep ``value -> number`` in the registry (inside the caller's transaction; idempotent)."""
    if session.get(CitizenPseudonym, value) is None:
        session.add(CitizenPseudonym(pseudonym=value, national_id=number, scheme=scheme, created_at=now))


#: built once: the card login asks it on every login
_NATIONAL_ID = select(CitizenPseudonym.national_id).where(CitizenPseudonym.pseudonym == bindparam("pseudonym"))


def citizen_of(session: Session | Connection, value: str) -> str | None:
    """The identity number behind a pseudonym, or None (in a session, or on a plain connection)."""
    return session.scalar(_NATIONAL_ID, {"pseudonym": value})
