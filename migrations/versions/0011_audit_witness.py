"""audit checkpoints witnessed outside the database (issue 12)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 20:40:00

Reserved for this change; filled in by the work it names.
"""


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
