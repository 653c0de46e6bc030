"""citizen identity schemes: pseudonym registry, identity numbers up to 32 characters

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 20:40:00

``citizen_pseudonym`` maps the pseudonym in a citizen certificate's subject serialNumber
(cardsim.pseudonyms) to the citizen identity number; ``card.national_id`` and
``verification_log.national_id`` grow from 16 to 32 characters (a GB 11643 number has 18).
"""
from alembic import op
import sqlalchemy as sa
import store.types


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'citizen_pseudonym',
        sa.Column('pseudonym', sa.String(length=40), nullable=False),
        sa.Column('national_id', sa.String(length=32), nullable=False),
        sa.Column('scheme', sa.String(length=16), nullable=False),
        sa.Column('created_at', store.types.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('pseudonym'),
    )
    op.create_index('ix_citizen_pseudonym_citizen', 'citizen_pseudonym', ['national_id'])
    with op.batch_alter_table('card') as batch:
        batch.alter_column('national_id', type_=sa.String(length=32), existing_type=sa.String(length=16),
                           existing_nullable=False)
    with op.batch_alter_table('verification_log') as batch:
        batch.alter_column('national_id', type_=sa.String(length=32), existing_type=sa.String(length=16),
                           existing_nullable=True)


def downgrade() -> None:
    with op.batch_alter_table('verification_log') as batch:
        batch.alter_column('national_id', type_=sa.String(length=16), existing_type=sa.String(length=32),
                           existing_nullable=True)
    with op.batch_alter_table('card') as batch:
        batch.alter_column('national_id', type_=sa.String(length=16), existing_type=sa.String(length=32),
                           existing_nullable=False)
    op.drop_index('ix_citizen_pseudonym_citizen', table_name='citizen_pseudonym')
    op.drop_table('citizen_pseudonym')
