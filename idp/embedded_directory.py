"""The deployment's embedded staff directory as `tessera init` prepares it: the private slapd of
:mod:`directory.slapd`, built with a ppolicy lockout (draft-behera 5.2, ``pwdMaxFailure``) that
stays a backstop above the login throttle of :mod:`idp.throttle`.

The directory package knows nothing of the web service's settings; this module passes it the
values it needs.
"""

from __future__ import annotations

import os

from directory.slapd import DirectoryFolder, build_directory
from idp.settings import Settings


def prepare_embedded_directory(settings: Settings) -> list[str]:
    """Create the private slapd's configuration and seed data if missing; a line per step done."""
    if os.environ.get("TESSERA_LDAP_URLS"):
        return []  # an external directory: nothing of ours to prepare
    return build_directory(DirectoryFolder(settings.home / "ldap"), settings.secrets_dir,
                           max_failure=backstop_max_failure(settings))


def backstop_max_failure(settings: Settings) -> int:
    """The directory's pwdMaxFailure for ``settings``: above what the login throttle lets through
    to the directory for one account in a window (the account-wide limit, plus the pair limit of
    the account's usual address), so that the ppolicy lock stays a backstop."""
    through = max(settings.throttle_account_wide_failures, settings.throttle_account_failures) \
        + settings.throttle_account_failures
    return max(settings.directory_max_failures, through + 1)
