"""citizen login nonces, verification API services and their log

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 09:35:00
"""
from alembic import op
import sqlalchemy as sa
import ca.models


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
