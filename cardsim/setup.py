"""What `tessera init` prepares for issuing cards (called from idp.home; idempotent).

The card folder (its own SoftHSM2 token folder, see cardsim.config), and the signing identities:
the civil registry (identity records), the tax office (tax records), the insurance fund
(insurance records) and the card issuer (card security objects), each with a ``service``
certificate from the staff CA (issued by the CA, audited as ``cert.issue``) and its key generated on
the CA's PKCS#11 token.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.x509.oid import NameOID
from sqlalchemy import select

from ca.authority import INIT_REQUESTER, CertificateAuthority
from ca.errors import KeyUnavailable
from ca.keys import KeyType
from ca.subjects import SubjectRequest
from cardsim.config import CardSettings
from cardsim.models import CardDepartment
from cardsim.shard_migration import migrate

#: department name -> (the record type it signs, its display name)
DEPARTMENTS: dict[str, tuple[str, str]] = {
    "civil-registry": ("identity", "Civil Registry"),
    "tax-office": ("tax", "Tax Office"),
    "insurance-fund": ("insurance", "Insurance Fund"),
    "card-issuer": ("security-object", "Card Issuer"),
}
RECORD_DEPARTMENT = {record_type: name for name, (record_type, _) in DEPARTMENTS.items()}


def prepare_card_issuer(home: Path, ca: CertificateAuthority) -> list[str]:
    """Create whatever card issuance needs that is missing; a line per step done."""
    done: list[str] = []
    settings = CardSettings.from_env(home)
    done += migrate(settings)
    if settings.prepare():
        done.append(f"created the card folder {settings.folder} (tokens in shards under {settings.shards_dir})")
    staff = ca.authority_certificate("staff")
    organisation = staff.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
    country = staff.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)[0].value
    for name, (record_type, display) in DEPARTMENTS.items():
        with ca.sessions.begin() as session:
            if session.scalar(select(CardDepartment).where(CardDepartment.name == name)) is not None:
                continue
            label = f"tessera-card-{name}"
            try:
                key = ca.keyring.get(f"pkcs11:{label}")  # left by an interrupted earlier run
            except KeyUnavailable:
                key = ca.keyring.generate("pkcs11", label, KeyType.EC_P256)
            subject = SubjectRequest(((NameOID.COUNTRY_NAME, str(country)), (NameOID.ORGANIZATION_NAME, str(organisation)),
                                      (NameOID.ORGANIZATIONAL_UNIT_NAME, display),
                                      (NameOID.COMMON_NAME, f"{display} card records signer")))
            row = ca.issue_for_key(session, "service", key.public_key(), subject, INIT_REQUESTER, issuer="staff")
            session.add(CardDepartment(name=name, record_type=record_type, subject=row.subject,
                                       certificate_id=row.id, key_ref=key.reference))
            done.append(f"created card signer {name} ({record_type}): {row.subject}")
    return done
