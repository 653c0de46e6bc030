"""audit checkpoints by time: the row that elects which process makes the next one (issue 12)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 20:40:00

``audit_checkpoint_schedule`` holds one row (id 1) whose ``due_at`` the service's processes
compare-and-set to claim a time-based checkpoint round (audit/checkpoint_schedule.py), so several
workers or nodes never make duplicate or competing checkpoints. The witness itself (the
append-only file, syslog) is outside the database and needs no schema.
"""
import datetime

from alembic import op
import sqlalchemy as sa
import store.types


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "audit_checkpoint_schedule",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("due_at", store.types.UtcDateTime(), nullable=False),
        sa.Column("holder", sa.String(255), nullable=True),
    )
    op.bulk_insert(table, [{"id": 1, "due_at": datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc),
                            "holder": None}])


def downgrade() -> None:
    op.drop_table("audit_checkpoint_schedule")
