"""The logged-in staff member as the web layer sees it (Flask-Login's user object).

Claims come from the directory entry at login (:class:`directory.client.StaffMember`) and are kept
in the server-side session and in the account row; the directory stays the source of truth.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask_login import UserMixin

if TYPE_CHECKING:
    from directory.client import StaffMember


def claims_of(member: "StaffMember") -> dict[str, Any]:
    """The directory entry as OIDC claims (OIDC Core 5.1) plus Tessera's department and roles."""
    return {
        "sub": member.uid,
        "preferred_username": member.uid,
        "name": member.name,
        "given_name": member.given_name,
        "family_name": member.surname,
        "email": member.email,
        "email_verified": bool(member.email),
        "title": member.title,
        "department": member.department,
        "department_name": member.department_name,
        "roles": sorted(member.roles),
        "groups": sorted(member.groups),
        "is_approver": bool(member.is_approver),
        "dn": member.dn,
    }


class StaffUser(UserMixin):
    """A staff member with the facts of their login (auth_time, amr: RFC 8176 method names)."""

    def __init__(self, claims: dict[str, Any], auth_time: int = 0, amr: tuple[str, ...] = ()) -> None:
        self.claims = claims
        self.uid: str = str(claims["sub"])
        self.auth_time = auth_time
        self.amr = amr

    def get_id(self) -> str:
        return self.uid

    @property
    def name(self) -> str:
        return str(self.claims.get("name") or self.uid)

    @property
    def email(self) -> str:
        return str(self.claims.get("email") or "")

    @property
    def roles(self) -> list[str]:
        return list(self.claims.get("roles") or [])
