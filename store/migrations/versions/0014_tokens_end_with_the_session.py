"""tokens end with the session: the session's OpenID Connect sid on sessions, codes and tokens (issue 17)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 10:50:00

``idp_web_session.sid`` names a login session as OpenID Connect does (random, kept when the
cookie's id rotates); the codes and tokens issued in it carry it, so ending the session (logout,
timeout, help desk, leaver) ends them. ``idp_oauth_token.offline``: the grant has
``offline_access`` and its refresh token outlives the session. ``idp_authorization_code``'s
``session_id_hash`` was written (mostly empty: the login had not rotated the id yet) and never
read: ``sid`` replaces it. Existing sessions, codes and tokens have no sid and keep working as
before until they expire.
"""
from alembic import op
import sqlalchemy as sa


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('idp_web_session') as batch:
        batch.add_column(sa.Column('sid', sa.String(length=64), nullable=True))
        batch.create_index(batch.f('ix_idp_web_session_sid'), ['sid'], unique=False)
    with op.batch_alter_table('idp_authorization_code') as batch:
        batch.add_column(sa.Column('sid', sa.String(length=64), nullable=True))
        batch.drop_column('session_id_hash')
    with op.batch_alter_table('idp_oauth_token') as batch:
        batch.add_column(sa.Column('sid', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('offline', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.create_index(batch.f('ix_idp_oauth_token_sid'), ['sid'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('idp_oauth_token') as batch:
        batch.drop_index(batch.f('ix_idp_oauth_token_sid'))
        batch.drop_column('offline')
        batch.drop_column('sid')
    with op.batch_alter_table('idp_authorization_code') as batch:
        batch.add_column(sa.Column('session_id_hash', sa.String(length=64), nullable=True))
        batch.drop_column('sid')
    with op.batch_alter_table('idp_web_session') as batch:
        batch.drop_index(batch.f('ix_idp_web_session_sid'))
        batch.drop_column('sid')
