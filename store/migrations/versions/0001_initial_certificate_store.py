"""initial certificate store

Revision ID: 0001
Revises: 
Create Date: 2026-11-25 04:15:41.075239
"""
from alembic import op
import sqlalchemy as sa
import store.types


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('ca_authority',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('parent_id', sa.Integer(), nullable=True),
    sa.Column('subject', sa.String(length=1024), nullable=False),
    sa.Column('serial_hex', sa.String(length=40), nullable=False),
    sa.Column('certificate_der', sa.LargeBinary(), nullable=False),
    sa.Column('key_ref', sa.String(length=512), nullable=False),
    sa.Column('crl_number', sa.BigInteger(), nullable=False),
    sa.Column('created_at', store.types.UtcDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['parent_id'], ['ca_authority.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('ca_timestamp',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('serial_hex', sa.String(length=40), nullable=False),
    sa.Column('gen_time', store.types.UtcDateTime(), nullable=False),
    sa.Column('hash_algorithm', sa.String(length=16), nullable=False),
    sa.Column('message_imprint_hex', sa.String(length=128), nullable=False),
    sa.Column('policy', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('serial_hex')
    )
    op.create_table('ca_certificate',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('serial_hex', sa.String(length=40), nullable=False),
    sa.Column('issuer_id', sa.Integer(), nullable=False),
    sa.Column('profile', sa.String(length=32), nullable=False),
    sa.Column('subject', sa.String(length=1024), nullable=False),
    sa.Column('requester', sa.String(length=255), nullable=False),
    sa.Column('issued_at', store.types.UtcDateTime(), nullable=False),
    sa.Column('not_before', store.types.UtcDateTime(), nullable=False),
    sa.Column('not_after', store.types.UtcDateTime(), nullable=False),
    sa.Column('fingerprint_sha256', sa.String(length=64), nullable=False),
    sa.Column('der', sa.LargeBinary(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('revoked_at', store.types.UtcDateTime(), nullable=True),
    sa.Column('revocation_reason', sa.String(length=32), nullable=True),
    sa.Column('status_changed_at', store.types.UtcDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['issuer_id'], ['ca_authority.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('fingerprint_sha256'),
    sa.UniqueConstraint('serial_hex')
    )
    with op.batch_alter_table('ca_certificate', schema=None) as batch_op:
        batch_op.create_index('ix_ca_certificate_issuer_status', ['issuer_id', 'status'], unique=False)
        batch_op.create_index(batch_op.f('ix_ca_certificate_subject'), ['subject'], unique=False)

    op.create_table('ca_crl',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('authority_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.BigInteger(), nullable=False),
    sa.Column('this_update', store.types.UtcDateTime(), nullable=False),
    sa.Column('next_update', store.types.UtcDateTime(), nullable=False),
    sa.Column('der', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['authority_id'], ['ca_authority.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('authority_id', 'number')
    )
    op.create_table('ca_ocsp_response',
    sa.Column('certificate_id', sa.Integer(), nullable=False),
    sa.Column('hash_algorithm', sa.String(length=16), nullable=False),
    sa.Column('next_update', store.types.UtcDateTime(), nullable=False),
    sa.Column('der', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['certificate_id'], ['ca_certificate.id'], ),
    sa.PrimaryKeyConstraint('certificate_id', 'hash_algorithm')
    )
    op.create_table('ca_signer',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('authority_id', sa.Integer(), nullable=False),
    sa.Column('certificate_id', sa.Integer(), nullable=False),
    sa.Column('key_ref', sa.String(length=512), nullable=False),
    sa.ForeignKeyConstraint(['authority_id'], ['ca_authority.id'], ),
    sa.ForeignKeyConstraint(['certificate_id'], ['ca_certificate.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('role', 'authority_id')
    )


def downgrade() -> None:
    op.drop_table('ca_signer')
    op.drop_table('ca_ocsp_response')
    op.drop_table('ca_crl')
    with op.batch_alter_table('ca_certificate', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ca_certificate_subject'))
        batch_op.drop_index('ix_ca_certificate_issuer_status')

    op.drop_table('ca_certificate')
    op.drop_table('ca_timestamp')
    op.drop_table('ca_authority')
