"""citizen identity schemes and pseudonyms (issue 13)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 20:40:00

Reserved for this change; filled in by the work it names.
"""


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
