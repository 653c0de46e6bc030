"""governance: account applications and approvals, role grants, four-eyes requests, password history

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 09:50:00
"""
from alembic import op
import sqlalchemy as sa
import ca.models


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
