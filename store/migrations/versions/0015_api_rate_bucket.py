"""the verification API's rate limit shared by every worker and node (issue 16 item 6)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 11:30:00

``api_rate_bucket``: one token bucket per service for the whole deployment; each worker leases
tokens from it in chunks (idp/verification_api/rate_limit.py). Before, each worker process had a
bucket of its own, so the limit multiplied by workers x nodes. The table starts empty: a bucket is
created full on a service's first call.
"""
from alembic import op
import sqlalchemy as sa


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'api_rate_bucket',
        sa.Column('key', sa.String(length=64), nullable=False),
        sa.Column('tokens', sa.Float(), nullable=False),
        sa.Column('granted', sa.Float(), nullable=False),
        sa.Column('refilled_at', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('key'),
    )


def downgrade() -> None:
    op.drop_table('api_rate_bucket')
