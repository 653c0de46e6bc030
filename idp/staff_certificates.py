"""Staff certificates (profile ``staff-auth``): the subject comes from the directory, never the CSR.

The CSR only proves possession of the key (its signature is checked by the CA) and carries the
public key; the subject (RFC 5280 section 4.1.2.6) is built from the staff member's directory
entry and the staff CA's organisation and country, the subjectAltName (section 4.2.1.6) is the
directory's e-mail address. A staff member sees and may revoke only their own certificates.
"""

from __future__ import annotations

from typing import Any

from cryptography.x509.oid import NameOID
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ca.authority import CertificateAuthority
from ca.errors import NotFound
from ca.models import Certificate

PROFILE = "staff-auth"
OWN_REVOCATION_REASONS = ("keyCompromise", "superseded", "cessationOfOperation", "unspecified")


def own_revocation_reason(value: str | None) -> str:
    """``value`` if a person may give it for their own certificate (RFC 5280 section 5.3.1), else
    ``unspecified``."""
    return value if value in OWN_REVOCATION_REASONS else "unspecified"


def _escape(value: str) -> str:
    """An RFC 4514 section 2.4 attribute value."""
    out = []
    for i, ch in enumerate(value):
        if ch in ',+"\\<>;=' or (i == 0 and ch in "# ") or (i == len(value) - 1 and ch == " "):
            out.append("\\" + ch)
        elif ord(ch) < 32:
            out.append(f"\\{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)


def requester_of(uid: str) -> str:
    return f"staff:{uid}"


class StaffCertificates:
    def __init__(self, ca: CertificateAuthority, sessions: sessionmaker[Session]) -> None:
        self.ca = ca
        self.sessions = sessions

    def subject_for(self, claims: dict[str, Any]) -> tuple[str, list[str]]:
        """(RFC 4514 subject, subjectAltNames) from the directory claims."""
        issuer = self.ca.authority_certificate("staff").subject
        organisation = issuer.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        country = issuer.get_attributes_for_oid(NameOID.COUNTRY_NAME)
        parts = [f"CN={_escape(str(claims.get('name') or claims['sub'])[:64])}"]
        if claims.get("given_name"):
            parts.append(f"GN={_escape(str(claims['given_name'])[:64])}")
        if claims.get("family_name"):
            parts.append(f"SN={_escape(str(claims['family_name'])[:64])}")
        if claims.get("department_name") or claims.get("department"):
            parts.append(f"OU={_escape(str(claims.get('department_name') or claims.get('department'))[:64])}")
        if organisation:
            parts.append(f"O={_escape(str(organisation[0].value))}")
        if country:
            parts.append(f"C={_escape(str(country[0].value))}")
        alt_names = [f"email:{claims['email']}"] if claims.get("email") else []
        return ",".join(parts), alt_names

    def issue(self, uid: str, claims: dict[str, Any], csr: bytes) -> Certificate:
        subject, alt_names = self.subject_for(claims)
        return self.ca.issue(PROFILE, csr, requester_of(uid), subject=subject, alt_names=alt_names)

    def list_for(self, uid: str) -> list[Certificate]:
        with self.sessions() as session:
            return list(session.scalars(select(Certificate).where(Certificate.requester == requester_of(uid))
                                        .order_by(Certificate.issued_at.desc())))

    def own(self, uid: str, serial: str) -> Certificate:
        """The certificate ``serial`` if ``uid`` requested it; else NotFound (as if it did not exist)."""
        row = self.ca.get(serial)
        if row.requester != requester_of(uid):
            raise NotFound(f"no certificate {serial[:64]} of yours")
        return row

    def revoke_own(self, uid: str, serial: str, reason: str) -> Certificate:
        return self.ca.revoke(self.own(uid, serial).serial_hex, own_revocation_reason(reason), actor=f"staff:{uid}")
