"""Shared database infrastructure: the declarative base and column types, the engine and sessions,
and the Alembic migrations that build the schema (SQLite or PostgreSQL). No domain logic."""
