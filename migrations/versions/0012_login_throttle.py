"""login throttle per account and source (issue 12)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 20:40:00

Reserved for this change; filled in by the work it names.
"""


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
