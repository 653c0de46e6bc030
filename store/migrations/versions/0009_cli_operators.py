"""operator tokens of the command line (issue 12: --as proven by password and TOTP)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 20:40:00

``tessera admin login`` stores the SHA-256 of a short-lived random token here; every command
acting ``--as`` a staff member presents the token and is refused without a live one.
"""
from alembic import op
import sqlalchemy as sa
import store.types


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'gov_operator_token',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('uid', sa.String(length=128), nullable=False),
        sa.Column('issued_at', store.types.UtcDateTime(), nullable=False),
        sa.Column('expires_at', store.types.UtcDateTime(), nullable=False),
        sa.Column('revoked_at', store.types.UtcDateTime(), nullable=True),
        sa.Column('channel', sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('token_hash'),
    )
    op.create_index('ix_gov_operator_token_uid', 'gov_operator_token', ['uid'])


def downgrade() -> None:
    op.drop_index('ix_gov_operator_token_uid', table_name='gov_operator_token')
    op.drop_table('gov_operator_token')
