"""governance: account applications and approvals, role grants, four-eyes requests, password history

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 09:50:00

Role grants themselves live in the directory (group membership); every grant is in the audit trail.
"""
from alembic import op
import sqlalchemy as sa
import store.types


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'gov_account_application',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('uid', sa.String(length=128), nullable=False),
        sa.Column('given_name', sa.String(length=128), nullable=False),
        sa.Column('surname', sa.String(length=128), nullable=False),
        sa.Column('department', sa.String(length=64), nullable=False),
        sa.Column('post', sa.String(length=128), nullable=False),
        sa.Column('groups_json', sa.Text(), nullable=False),
        sa.Column('previous_post', sa.String(length=128), nullable=True),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('applied_by', sa.String(length=128), nullable=False),
        sa.Column('applied_at', store.types.UtcDateTime(), nullable=False),
        sa.Column('decided_by', sa.String(length=128), nullable=True),
        sa.Column('decided_at', store.types.UtcDateTime(), nullable=True),
        sa.Column('issued_by', sa.String(length=128), nullable=True),
        sa.Column('issued_at', store.types.UtcDateTime(), nullable=True),
        sa.Column('note', sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_gov_account_application_uid', 'gov_account_application', ['uid'])
    op.create_index('ix_gov_application_state', 'gov_account_application', ['status', 'department'])
    op.create_table(
        'gov_four_eyes_request',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('operation', sa.String(length=32), nullable=False),
        sa.Column('target', sa.String(length=255), nullable=False),
        sa.Column('details_json', sa.Text(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('requested_by', sa.String(length=128), nullable=False),
        sa.Column('requested_at', store.types.UtcDateTime(), nullable=False),
        sa.Column('decided_by', sa.String(length=128), nullable=True),
        sa.Column('decided_at', store.types.UtcDateTime(), nullable=True),
        sa.Column('outcome', sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_table(
        'gov_password_history',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('uid', sa.String(length=128), nullable=False),
        sa.Column('password_hash', sa.String(length=255), nullable=False),
        sa.Column('created_at', store.types.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_gov_password_history_uid', 'gov_password_history', ['uid'])


def downgrade() -> None:
    op.drop_index('ix_gov_password_history_uid', table_name='gov_password_history')
    op.drop_table('gov_password_history')
    op.drop_table('gov_four_eyes_request')
    op.drop_index('ix_gov_application_state', table_name='gov_account_application')
    op.drop_index('ix_gov_account_application_uid', table_name='gov_account_application')
    op.drop_table('gov_account_application')
