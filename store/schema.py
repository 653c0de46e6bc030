"""Bringing a database to the current schema with Alembic (``store/migrations``, installed with the
package and found beside this module, never through the repository's layout)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


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
