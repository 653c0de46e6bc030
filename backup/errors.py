"""Typed errors of backup and restore: the command line prints each as one line and exits non-zero."""

from __future__ import annotations


class BackupError(Exception):
    """A backup cannot be made, checked or restored; ``str()`` says why, for the operator."""


class WrongKey(BackupError):
    """The passphrase or key file is not the archive's."""


class ArchiveDamaged(BackupError):
    """The archive does not authenticate, or its contents do not match its manifest."""


class RestoreRefused(BackupError):
    """Restoring would overwrite something: the home or the database is not empty."""
