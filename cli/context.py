"""What every ``tessera`` command gets: the settings and, built on first use, the deployment; and
a total deadline on the command's directory work (``TESSERA_LDAP_COMMAND_DEADLINE``,
directory.connection.deadline), so a directory that stopped answering fails the command instead of
hanging it."""

from __future__ import annotations

from pathlib import Path

import click
from sqlalchemy import make_url
from sqlalchemy.orm import Session, sessionmaker

from directory.config import DirectoryConfig, DirectoryConfigError
from directory.connection import deadline
from idp.deployment import Deployment
from idp.settings import ConfigurationError, Settings

#: commands whose directory work is not the command's: the web service gives each request its own deadline (idp.app)
_SERVICES = frozenset({"serve"})


class CliContext:
    def __init__(self, home: str | None) -> None:
        self.settings = Settings.from_env(home)
        self._deployment: Deployment | None = None
        command = click.get_current_context(silent=True)
        if command is not None and command.invoked_subcommand not in _SERVICES:
            command.with_resource(deadline(_command_deadline(self.settings.home), from_first_exchange=True))

    @property
    def deployment(self) -> Deployment:
        if self._deployment is None:
            self._deployment = Deployment(self.settings)
            _ = self._deployment.audit  # card and security events of this command are audited (idp.audit_bridge)
        return self._deployment

    def read_only_sessions(self) -> sessionmaker[Session]:
        """The database alone, for a command that writes nothing: no CA token, no secrets, no audit
        trail opened (an auditor's ``audit verify --no-record`` on a copy of the database). A
        SQLite file that is not there is an error, not a new empty database."""
        url = make_url(self.settings.database_url)
        if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).is_file():
            raise ConfigurationError(f"no database at {url.database}: check --home or TESSERA_DATABASE_URL")
        return (self._deployment or Deployment(self.settings)).sessions


def _command_deadline(home: Path) -> float:
    """``TESSERA_LDAP_COMMAND_DEADLINE`` seconds; the default when the directory settings are not
    usable (a command that uses the directory reports why, one that does not has no need to)."""
    try:
        return DirectoryConfig.from_env(home).command_deadline
    except DirectoryConfigError:
        return DirectoryConfig.command_deadline
