"""Tables of the citizen card registry.

Every table uses :class:`store.base.Base`, so one metadata describes the whole schema; every change
is an Alembic migration (store/migrations/versions/0003_card_registry.py). The registry knows every
card, its certificates, and every version of every record it ever signed, so a verifier can tell a
current record from a superseded one. PIN/PUK try counters are not here: they belong to the card
(cardsim.pins).
"""

from __future__ import annotations

import datetime
from enum import StrEnum

from sqlalchemy import Boolean, ForeignKey, Index, Integer, LargeBinary, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from store.base import Base
from store.types import UtcDateTime

__all__ = ["Base", "CardDepartment", "Card", "CardRecord", "CardStatus", "CitizenPseudonym"]


class CardDepartment(Base):
    """A department that signs one kind of record (or the card issuer, who signs security objects)."""

    __tablename__ = "card_department"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(32), unique=True)
    record_type: Mapped[str] = mapped_column(String(32), unique=True)
    subject: Mapped[str] = mapped_column(String(1024))
    certificate_id: Mapped[int] = mapped_column(ForeignKey("ca_certificate.id"))
    key_ref: Mapped[str] = mapped_column(String(512))


class CardStatus(StrEnum):
    """The state of a card (:attr:`Card.status`; the same strings in the database and in JSON). Only an
    ``active`` card logs in, signs and can be reported lost; the others are final."""

    ACTIVE = "active"
    LOST = "lost"
    #: replaced by a new card (:attr:`Card.replaced_by`)
    RENEWED = "renewed"
    EXPIRED = "expired"
    BLOCKED = "blocked"


class Card(Base):
    """A citizen card: its number (the token label), holder, state and certificates."""

    __tablename__ = "card"
    __table_args__ = (
        Index("ix_card_national_id_status", "national_id", "status"),
        #: one active card per citizen (cardsim.issuance), whichever process issues it
        Index("uq_card_active_citizen", "national_id", unique=True,
              sqlite_where=text("status = 'active'"), postgresql_where=text("status = 'active'")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(16), unique=True)
    #: the citizen identity number (18 characters for cn-gb11643; migration 0010 widened it)
    national_id: Mapped[str] = mapped_column(String(32))
    holder: Mapped[str] = mapped_column(String(255))
    #: a :class:`CardStatus`
    status: Mapped[str] = mapped_column(String(16), default=CardStatus.ACTIVE)
    token_serial: Mapped[str] = mapped_column(String(32))
    issued_at: Mapped[datetime.datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime.datetime] = mapped_column(UtcDateTime())
    status_changed_at: Mapped[datetime.datetime | None] = mapped_column(UtcDateTime())
    auth_certificate_id: Mapped[int] = mapped_column(ForeignKey("ca_certificate.id"))
    sign_certificate_id: Mapped[int] = mapped_column(ForeignKey("ca_certificate.id"))
    replaces: Mapped[str | None] = mapped_column(String(16))
    replaced_by: Mapped[str | None] = mapped_column(String(16))
    #: the batch row this card came from (``file:row``), so a resumed batch skips it
    batch_key: Mapped[str | None] = mapped_column(String(300), unique=True)


class CardRecord(Base):
    """One signed version of one record (identity, tax, insurance, security-object) of a card."""

    __tablename__ = "card_record"
    __table_args__ = (
        UniqueConstraint("card_id", "record_type", "version"),
        Index("ix_card_record_current", "card_id", "record_type", "current"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    card_id: Mapped[int] = mapped_column(ForeignKey("card.id"))
    record_type: Mapped[str] = mapped_column(String(32))
    version: Mapped[int] = mapped_column(Integer)
    department_id: Mapped[int] = mapped_column(ForeignKey("card_department.id"))
    issued_at: Mapped[datetime.datetime] = mapped_column(UtcDateTime())
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    der: Mapped[bytes] = mapped_column(LargeBinary)
    current: Mapped[bool] = mapped_column(Boolean, default=True)


class CitizenPseudonym(Base):
    """The pseudonym a citizen's certificates carry (cardsim.pseudonyms) -> the citizen (migration 0010)."""

    __tablename__ = "citizen_pseudonym"
    __table_args__ = (Index("ix_citizen_pseudonym_citizen", "national_id"),)

    pseudonym: Mapped[str] = mapped_column(String(40), primary_key=True)
    national_id: Mapped[str] = mapped_column(String(32))
    #: the identity scheme of the number (cardsim.identity_schemes): cn-gb11643 or ee-evs585
    scheme: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime.datetime] = mapped_column(UtcDateTime())
