"""Bringing a database to the current schema with Alembic (the migrations/ folder)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, MetaData

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def metadata() -> MetaData:
    """The whole schema: every package's tables share :class:`ca.models.Base`."""
    import audit.models  # noqa: F401  (registers the audit trail's tables)
    import cardsim.models  # noqa: F401  (registers the card registry's tables)
    import idp.citizen_models  # noqa: F401  (citizen login nonces, verification log)
    import idp.governance_models  # noqa: F401  (applications, approvals, four-eyes requests)
    import idp.models  # noqa: F401  (registers the identity provider's tables)
    import idp.runtime_settings  # noqa: F401  (runtime settings changed by the system administrator)
    from ca.models import Base

    return Base.metadata


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(engine: Engine) -> None:
    """Apply every migration not yet applied (idempotent)."""
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def pending(engine: Engine) -> list[str]:
    """The migrations this code has and the database has not applied yet (empty: up to date)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config(engine.url.render_as_string(hide_password=False)))
    with engine.connect() as connection:
        applied = set(MigrationContext.configure(connection).get_current_heads())
    missing: list[str] = []
    for revision in script.walk_revisions():  # newest first
        if revision.revision in applied:
            break
        missing.append(revision.revision)
    return list(reversed(missing))
