"""audit head follows entries: on SQLite a trigger moves the chain head to each inserted entry

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25 14:40:00

With the head moved by the database, an entry appended in a transaction of its own is one
statement (audit/trail.py: a compare-and-set insert that succeeds only while the head is still the
entry it was chained to), so SQLite's write lock is held for that statement alone.
PostgreSQL keeps its row lock on the head and moves it explicitly (one round trip).
"""
from alembic import op


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

TRIGGER = "audit_entry_moves_head"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(f"CREATE TRIGGER {TRIGGER} AFTER INSERT ON audit_entry BEGIN "
                   "UPDATE audit_head SET seq = NEW.seq, entry_hash = NEW.entry_hash WHERE id = 1; END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(f"DROP TRIGGER IF EXISTS {TRIGGER}")
