"""Why a directory operation failed, in words fit to show the person who tried to log in.

Every error is a :class:`DirectoryError` with a stable ``kind`` (for audit records and tests)
and a ``message`` for the page: English, which a page shows in its own language
(:mod:`translatable`). :class:`InvalidCredentials` is deliberately one message for a wrong
password, an unknown user and a malformed user name, so the login page never reveals whether an
account exists. :class:`DirectoryUnavailable` means the directory could not be asked:
it is never a failed login and the web layer answers 503.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from translatable import N_

if TYPE_CHECKING:  # pragma: no cover
    from directory.client import StaffMember


class DirectoryError(Exception):
    """Base of every directory failure. ``kind`` is stable; ``message`` is for the user."""

    kind = "directory-error"
    default_message = N_("The directory could not complete the request.")

    def __init__(self, message: str | None = None, *, member: "StaffMember | None" = None) -> None:
        self.message = message or self.default_message
        self.member = member
        super().__init__(self.message)


class InvalidCredentials(DirectoryError):
    """Wrong password, unknown user or malformed user name: always the same message."""

    kind = "invalid-credentials"
    default_message = N_("The user name or password is incorrect.")

    def __init__(self, message: str | None = None, *, member: "StaffMember | None" = None) -> None:
        # never say which of user or password was wrong, and never carry the member
        super().__init__(self.default_message, member=None)


class AccountLocked(DirectoryError):
    """ppolicy locked the account after too many failed passwords (draft-behera 5.3.3)."""

    kind = "account-locked"
    default_message = N_("This account is locked after too many wrong passwords. Try again later "
                         "or ask your department's IT support to unlock it.")


class AccountDisabled(DirectoryError):
    """An administrator disabled the account (permanent ppolicy lock, or AD's ACCOUNTDISABLE)."""

    kind = "account-disabled"
    default_message = N_("This account is disabled. Ask your department's IT support.")


class PasswordExpired(DirectoryError):
    """The password is past pwdMaxAge and no grace logins remain."""

    kind = "password-expired"
    default_message = N_("Your password has expired. Ask your department's IT support to reset it.")


class PasswordMustChange(DirectoryError):
    """The password was reset by an administrator and must be changed before use (pwdReset)."""

    kind = "password-must-change"
    default_message = N_("Your password was reset by an administrator: choose a new password before you continue.")


class DirectoryUnavailable(DirectoryError):
    """No configured directory server answered in time. Never counts as a failed login."""

    kind = "directory-unavailable"
    default_message = N_("The staff directory is unavailable at the moment. Please try again in a few minutes.")


class DirectorySetupError(DirectoryError):
    """The embedded directory cannot be built, loaded, started or stopped (slapd missing, its port
    taken, a bulk load refused): a fault of the installation, for the operator, not a login."""

    kind = "directory-setup"


class PasswordRejected(DirectoryError):
    """The directory refused a new password (too short, too weak, used before, read-only)."""

    kind = "password-rejected"
    default_message = N_("The directory refused the new password: choose a longer one you have not used before.")
