"""citizen login nonces, verification API services and their log

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 09:35:00
"""
from alembic import op
import sqlalchemy as sa
import store.types


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'citizen_login_nonce',
        sa.Column('nonce_hash', sa.String(length=64), nullable=False),
        sa.Column('binding_hash', sa.String(length=64), nullable=False),
        sa.Column('issued_at', store.types.UtcDateTime(), nullable=False),
        sa.Column('expires_at', store.types.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('nonce_hash'),
    )
    op.create_index('ix_citizen_login_nonce_expires', 'citizen_login_nonce', ['expires_at'])
    op.create_table(
        'verification_log',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('at', store.types.UtcDateTime(), nullable=False),
        sa.Column('service', sa.String(length=255), nullable=False),
        sa.Column('operation', sa.String(length=32), nullable=False),
        sa.Column('national_id', sa.String(length=16), nullable=True),
        sa.Column('subject', sa.String(length=255), nullable=False),
        sa.Column('certificate_serial', sa.String(length=40), nullable=True),
        sa.Column('outcome', sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_verification_log_citizen', 'verification_log', ['national_id', 'at'])


def downgrade() -> None:
    op.drop_index('ix_verification_log_citizen', table_name='verification_log')
    op.drop_table('verification_log')
    op.drop_index('ix_citizen_login_nonce_expires', table_name='citizen_login_nonce')
    op.drop_table('citizen_login_nonce')
