"""identity provider: staff sessions, TOTP, OpenID Connect clients, codes and tokens

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 08:40:00
"""
from alembic import op
import sqlalchemy as sa
import store.types


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('idp_client_assertion_jti',
    sa.Column('jti', sa.String(length=255), nullable=False),
    sa.Column('client_id', sa.String(length=128), nullable=False),
    sa.Column('expires_at', store.types.UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('jti', 'client_id')
    )
    op.create_index(op.f('ix_idp_client_assertion_jti_expires_at'), 'idp_client_assertion_jti', ['expires_at'], unique=False)
    op.create_table('idp_login_throttle',
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('window_start', store.types.UtcDateTime(), nullable=False),
    sa.Column('blocked_until', store.types.UtcDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_table('idp_oauth_client',
    sa.Column('client_id', sa.String(length=128), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('secret_hash', sa.String(length=255), nullable=True),
    sa.Column('metadata_json', sa.Text(), nullable=False),
    sa.Column('trusted', sa.Boolean(), nullable=False),
    sa.Column('created_at', store.types.UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('client_id')
    )
    op.create_table('idp_signing_key',
    sa.Column('kid', sa.String(length=64), nullable=False),
    sa.Column('alg', sa.String(length=16), nullable=False),
    sa.Column('private_sealed', sa.LargeBinary(), nullable=False),
    sa.Column('public_jwk_json', sa.Text(), nullable=False),
    sa.Column('created_at', store.types.UtcDateTime(), nullable=False),
    sa.Column('retired_at', store.types.UtcDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('kid')
    )
    op.create_table('idp_staff_account',
    sa.Column('uid', sa.String(length=128), nullable=False),
    sa.Column('claims_json', sa.Text(), nullable=False),
    sa.Column('totp_secret_sealed', sa.LargeBinary(), nullable=True),
    sa.Column('totp_pending_sealed', sa.LargeBinary(), nullable=True),
    sa.Column('totp_enrolled_at', store.types.UtcDateTime(), nullable=True),
    sa.Column('totp_last_step', sa.Integer(), nullable=False),
    sa.Column('updated_at', store.types.UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('uid')
    )
    op.create_table('idp_web_session',
    sa.Column('id_hash', sa.String(length=64), nullable=False),
    sa.Column('uid', sa.String(length=128), nullable=True),
    sa.Column('data_json', sa.Text(), nullable=False),
    sa.Column('created_at', store.types.UtcDateTime(), nullable=False),
    sa.Column('last_seen_at', store.types.UtcDateTime(), nullable=False),
    sa.Column('address', sa.String(length=64), nullable=True),
    sa.Column('user_agent', sa.String(length=255), nullable=True),
    sa.PrimaryKeyConstraint('id_hash')
    )
    op.create_index(op.f('ix_idp_web_session_last_seen_at'), 'idp_web_session', ['last_seen_at'], unique=False)
    op.create_index(op.f('ix_idp_web_session_uid'), 'idp_web_session', ['uid'], unique=False)
    op.create_table('idp_authorization_code',
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('client_id', sa.String(length=128), nullable=False),
    sa.Column('uid', sa.String(length=128), nullable=False),
    sa.Column('redirect_uri', sa.Text(), nullable=False),
    sa.Column('scope', sa.Text(), nullable=False),
    sa.Column('nonce', sa.String(length=255), nullable=True),
    sa.Column('code_challenge', sa.String(length=128), nullable=True),
    sa.Column('code_challenge_method', sa.String(length=16), nullable=True),
    sa.Column('auth_time', sa.Integer(), nullable=False),
    sa.Column('acr', sa.String(length=64), nullable=True),
    sa.Column('amr', sa.String(length=64), nullable=False),
    sa.Column('session_id_hash', sa.String(length=64), nullable=True),
    sa.Column('created_at', store.types.UtcDateTime(), nullable=False),
    sa.Column('expires_at', store.types.UtcDateTime(), nullable=False),
    sa.Column('used_at', store.types.UtcDateTime(), nullable=True),
    sa.Column('family', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['client_id'], ['idp_oauth_client.client_id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('code_hash')
    )
    op.create_index('ix_idp_authorization_code_expires_at', 'idp_authorization_code', ['expires_at'], unique=False)
    op.create_index('ix_idp_authorization_code_nonce', 'idp_authorization_code', ['client_id', 'nonce'], unique=False)
    op.create_index(op.f('ix_idp_authorization_code_uid'), 'idp_authorization_code', ['uid'], unique=False)
    op.create_table('idp_consent',
    sa.Column('uid', sa.String(length=128), nullable=False),
    sa.Column('client_id', sa.String(length=128), nullable=False),
    sa.Column('scope', sa.Text(), nullable=False),
    sa.Column('granted_at', store.types.UtcDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['client_id'], ['idp_oauth_client.client_id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('uid', 'client_id')
    )
    op.create_table('idp_oauth_token',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('client_id', sa.String(length=128), nullable=False),
    sa.Column('uid', sa.String(length=128), nullable=False),
    sa.Column('family', sa.String(length=64), nullable=False),
    sa.Column('access_token_hash', sa.String(length=64), nullable=False),
    sa.Column('refresh_token_hash', sa.String(length=64), nullable=True),
    sa.Column('scope', sa.Text(), nullable=False),
    sa.Column('auth_time', sa.Integer(), nullable=False),
    sa.Column('amr', sa.String(length=64), nullable=False),
    sa.Column('issued_at', store.types.UtcDateTime(), nullable=False),
    sa.Column('expires_in', sa.Integer(), nullable=False),
    sa.Column('refresh_expires_at', store.types.UtcDateTime(), nullable=True),
    sa.Column('access_revoked', sa.Boolean(), nullable=False),
    sa.Column('refresh_used_at', store.types.UtcDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['client_id'], ['idp_oauth_client.client_id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('access_token_hash'),
    sa.UniqueConstraint('refresh_token_hash')
    )
    op.create_index('ix_idp_oauth_token_family', 'idp_oauth_token', ['family'], unique=False)
    op.create_index(op.f('ix_idp_oauth_token_uid'), 'idp_oauth_token', ['uid'], unique=False)
    op.create_table('idp_recovery_code',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('uid', sa.String(length=128), nullable=False),
    sa.Column('code_hash', sa.String(length=255), nullable=False),
    sa.Column('used_at', store.types.UtcDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['uid'], ['idp_staff_account.uid'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_idp_recovery_code_uid'), 'idp_recovery_code', ['uid'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_idp_recovery_code_uid'), table_name='idp_recovery_code')
    op.drop_table('idp_recovery_code')
    op.drop_index(op.f('ix_idp_oauth_token_uid'), table_name='idp_oauth_token')
    op.drop_index('ix_idp_oauth_token_family', table_name='idp_oauth_token')
    op.drop_table('idp_oauth_token')
    op.drop_table('idp_consent')
    op.drop_index(op.f('ix_idp_authorization_code_uid'), table_name='idp_authorization_code')
    op.drop_index('ix_idp_authorization_code_nonce', table_name='idp_authorization_code')
    op.drop_index('ix_idp_authorization_code_expires_at', table_name='idp_authorization_code')
    op.drop_table('idp_authorization_code')
    op.drop_index(op.f('ix_idp_web_session_uid'), table_name='idp_web_session')
    op.drop_index(op.f('ix_idp_web_session_last_seen_at'), table_name='idp_web_session')
    op.drop_table('idp_web_session')
    op.drop_table('idp_staff_account')
    op.drop_table('idp_signing_key')
    op.drop_table('idp_oauth_client')
    op.drop_table('idp_login_throttle')
    op.drop_index(op.f('ix_idp_client_assertion_jti_expires_at'), table_name='idp_client_assertion_jti')
    op.drop_table('idp_client_assertion_jti')
