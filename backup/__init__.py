"""Backup, restore and disaster recovery of a deployment (issue 16; docs/operations.md, "Backup and restore").

A library beside the web service: it uses the CA, the audit trail, the card folder and the
directory below it, and knows nothing of HTTP or of the settings (the command line, cli/backup.py,
tells it where each part lives: :class:`backup.parts.DeploymentFiles`).

- backup.parts: copying each part consistently while the service runs, and putting it back;
- backup.manifest: what a backup holds, with every file's SHA-256;
- backup.archive: the archive sealed with AES-256-GCM (STREAM), key from a passphrase (scrypt) or a key file;
- backup.create: making and checking a backup; backup.restore: restoring into an empty home;
- backup.reconcile: the restored database against the witness (audit.witness), so that a restore
  never silently goes back in time;
- backup.retention: keeping the newest backups of a folder.
"""

from __future__ import annotations

from backup.archive import KeySource, new_key_file
from backup.create import create_backup, verify_backup
from backup.errors import ArchiveDamaged, BackupError, RestoreRefused, WrongKey
from backup.parts import DeploymentFiles
from backup.reconcile import Reconciliation, reconcile
from backup.restore import restore_backup
from backup.retention import backup_name, prune

__all__ = ["ArchiveDamaged", "BackupError", "DeploymentFiles", "KeySource", "Reconciliation", "RestoreRefused",
           "WrongKey", "backup_name", "create_backup", "new_key_file", "prune", "reconcile", "restore_backup",
           "verify_backup"]
