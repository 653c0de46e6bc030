"""operators of the command line (issue 12: --as proven)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 20:40:00

Reserved for this change; filled in by the work it names.
"""


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
