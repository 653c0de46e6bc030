"""The certificate store's tables (SQLAlchemy 2.x typed ORM). Every change is an Alembic migration."""

from __future__ import annotations

import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from store.base import Base
from store.types import UtcDateTime


class Authority(Base):
    """A CA of the hierarchy: the root, or an issuing CA (``staff``, ``citizen``)."""

    __tablename__ = "ca_authority"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(32), unique=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("ca_authority.id"))
    subject: Mapped[str] = mapped_column(String(1024))
    serial_hex: Mapped[str] = mapped_column(String(40))
    certificate_der: Mapped[bytes] = mapped_column(LargeBinary)
    key_ref: Mapped[str] = mapped_column(String(512))
    crl_number: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime.datetime] = mapped_column(UtcDateTime())


class CertificateStatus(StrEnum):
    """The state of a certificate in the store (:attr:`Certificate.status`; the same strings in the
    database and in JSON). ``revoked`` is final; ``on-hold`` (certificateHold, RFC 5280 section 5.3.1)
    may be released to ``valid``."""

    VALID = "valid"
    REVOKED = "revoked"
    ON_HOLD = "on-hold"


class Certificate(Base):
    """Every certificate the CA issued (including the issuing CAs' own, under the root)."""

    __tablename__ = "ca_certificate"
    __table_args__ = (Index("ix_ca_certificate_issuer_status", "issuer_id", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    serial_hex: Mapped[str] = mapped_column(String(40), unique=True)
    issuer_id: Mapped[int] = mapped_column(ForeignKey("ca_authority.id"))
    profile: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(1024), index=True)
    requester: Mapped[str] = mapped_column(String(255))
    issued_at: Mapped[datetime.datetime] = mapped_column(UtcDateTime())
    not_before: Mapped[datetime.datetime] = mapped_column(UtcDateTime())
    not_after: Mapped[datetime.datetime] = mapped_column(UtcDateTime())
    fingerprint_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    der: Mapped[bytes] = mapped_column(LargeBinary)
    #: a :class:`CertificateStatus`
    status: Mapped[str] = mapped_column(String(16), default=CertificateStatus.VALID)
    revoked_at: Mapped[datetime.datetime | None] = mapped_column(UtcDateTime())
    revocation_reason: Mapped[str | None] = mapped_column(String(32))
    status_changed_at: Mapped[datetime.datetime | None] = mapped_column(UtcDateTime())


class Crl(Base):
    """Every CRL published, newest with the highest number (RFC 5280 section 5.2.3)."""

    __tablename__ = "ca_crl"
    __table_args__ = (UniqueConstraint("authority_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    authority_id: Mapped[int] = mapped_column(ForeignKey("ca_authority.id"))
    number: Mapped[int] = mapped_column(BigInteger)
    this_update: Mapped[datetime.datetime] = mapped_column(UtcDateTime())
    next_update: Mapped[datetime.datetime] = mapped_column(UtcDateTime())
    der: Mapped[bytes] = mapped_column(LargeBinary)


class Signer(Base):
    """A delegated signer with its own certificate and key: an OCSP responder per CA, the TSA."""

    __tablename__ = "ca_signer"
    __table_args__ = (UniqueConstraint("role", "authority_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    role: Mapped[str] = mapped_column(String(16))  # "ocsp" or "tsa"
    authority_id: Mapped[int] = mapped_column(ForeignKey("ca_authority.id"))
    certificate_id: Mapped[int] = mapped_column(ForeignKey("ca_certificate.id"))
    key_ref: Mapped[str] = mapped_column(String(512))


class OcspResponse(Base):
    """A pre-produced OCSP response (RFC 6960 section 2.2), deleted when the status changes."""

    __tablename__ = "ca_ocsp_response"

    certificate_id: Mapped[int] = mapped_column(ForeignKey("ca_certificate.id"), primary_key=True)
    hash_algorithm: Mapped[str] = mapped_column(String(16), primary_key=True)
    next_update: Mapped[datetime.datetime] = mapped_column(UtcDateTime())
    der: Mapped[bytes] = mapped_column(LargeBinary)


class Timestamp(Base):
    """Every time-stamp token issued (RFC 3161 section 2.4.2), so serials are provably unique."""

    __tablename__ = "ca_timestamp"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    serial_hex: Mapped[str] = mapped_column(String(40), unique=True)
    gen_time: Mapped[datetime.datetime] = mapped_column(UtcDateTime())
    hash_algorithm: Mapped[str] = mapped_column(String(16))
    message_imprint_hex: Mapped[str] = mapped_column(String(128))
    policy: Mapped[str] = mapped_column(String(64))
