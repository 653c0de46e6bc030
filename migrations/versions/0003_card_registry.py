"""citizen card registry: cards, records, PIN/PUK counters, departments

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 08:40:00
"""
from alembic import op
import sqlalchemy as sa
import ca.models


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
