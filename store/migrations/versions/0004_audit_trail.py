"""audit trail: hash-chained entries, signed and time-stamped checkpoints, append-only triggers

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 09:10:00

SQLite: BEFORE UPDATE / BEFORE DELETE triggers on audit_entry and audit_checkpoint RAISE(ABORT).
PostgreSQL: one trigger function refusing UPDATE, DELETE and TRUNCATE on both tables, and the
role ``tessera_app`` (NOLOGIN; name from TESSERA_DB_APP_ROLE) with ordinary DML on every table but
only SELECT/INSERT on the audit tables. A deployment runs the service as a login role that is a
member of it (docs/audit.md, "Protections").
"""
import os
import re

from alembic import op
import sqlalchemy as sa
import store.types


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

APPEND_ONLY = ("audit_entry", "audit_checkpoint")


def _genesis() -> str:
    import hashlib

    return hashlib.sha256(b"tessera audit trail genesis").hexdigest()


def _app_role() -> str:
    role = os.environ.get("TESSERA_DB_APP_ROLE") or "tessera_app"
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", role):
        raise ValueError("TESSERA_DB_APP_ROLE must be a plain lower-case SQL identifier")
    return role


def upgrade() -> None:
    op.create_table(
        "audit_entry",
        sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("at", store.types.UtcDateTime(), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("subject_role", sa.String(64), nullable=True),
        sa.Column("object", sa.String(255), nullable=True),
        sa.Column("result", sa.String(16), nullable=False),
        sa.Column("source_address", sa.String(64), nullable=True),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("entry_hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_audit_entry_at", "audit_entry", ["at"])
    op.create_index("ix_audit_entry_event_type", "audit_entry", ["event_type"])
    op.create_index("ix_audit_entry_subject", "audit_entry", ["subject"])
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("entry_hash", sa.String(64), nullable=False),
    )
    op.create_table(
        "audit_checkpoint",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("seq", sa.BigInteger(), nullable=False, unique=True),
        sa.Column("previous_seq", sa.BigInteger(), nullable=False),
        sa.Column("entry_hash", sa.String(64), nullable=False),
        sa.Column("created_at", store.types.UtcDateTime(), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.Column("signer_certificate", sa.LargeBinary(), nullable=False),
        sa.Column("timestamp_token", sa.LargeBinary(), nullable=False),
    )
    op.execute(sa.text("INSERT INTO audit_head (id, seq, entry_hash) VALUES (1, 0, :h)").bindparams(h=_genesis()))
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for table in APPEND_ONLY:
            for action in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only: {action} on {table} refused'); END"
                )
    elif dialect == "postgresql":
        op.execute(
            "CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "RAISE EXCEPTION 'the audit trail is append-only: % on % refused', TG_OP, TG_TABLE_NAME "
            "USING ERRCODE = 'insufficient_privilege'; END $$"
        )
        for table in APPEND_ONLY:
            op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                       "FOR EACH ROW EXECUTE FUNCTION audit_append_only()")
            op.execute(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                       "FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()")
        role = _app_role()
        op.execute(f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN "
                   f"CREATE ROLE {role} NOLOGIN; END IF; END $$")
        op.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}")
        op.execute(f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {role}")
        op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role}")
        op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {role}")
        for table in APPEND_ONLY:
            op.execute(f"REVOKE ALL ON {table} FROM {role}")
            op.execute(f"GRANT SELECT, INSERT ON {table} TO {role}")
        op.execute(f"REVOKE ALL ON audit_head FROM {role}")
        op.execute(f"GRANT SELECT, UPDATE ON audit_head TO {role}")  # the tip moves; never deleted


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for table in APPEND_ONLY:
            for action in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{action}")
    elif dialect == "postgresql":
        for table in APPEND_ONLY:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        op.execute("DROP FUNCTION IF EXISTS audit_append_only()")
    op.drop_table("audit_checkpoint")
    op.drop_table("audit_head")
    op.drop_index("ix_audit_entry_subject", table_name="audit_entry")
    op.drop_index("ix_audit_entry_event_type", table_name="audit_entry")
    op.drop_index("ix_audit_entry_at", table_name="audit_entry")
    op.drop_table("audit_entry")
