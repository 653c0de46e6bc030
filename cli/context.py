"""What every ``tessera`` command gets: the settings and, built on first use, the deployment."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import make_url
from sqlalchemy.orm import Session, sessionmaker

from idp.deployment import Deployment
from idp.settings import ConfigurationError, Settings


class CliContext:
    def __init__(self, home: str | None) -> None:
        self.settings = Settings.from_env(home)
        self._deployment: Deployment | None = None

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
