"""runtime settings: the values the system administrator changed while the service runs

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 12:05:00

A row exists only for a changed setting (idp/runtime_settings.py); every change is in the audit trail.
"""
from alembic import op
import sqlalchemy as sa
import store.types


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'idp_runtime_setting',
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('value', sa.Integer(), nullable=False),
        sa.Column('changed_by', sa.String(length=255), nullable=False),
        sa.Column('changed_at', store.types.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('name'),
    )


def downgrade() -> None:
    op.drop_table('idp_runtime_setting')
