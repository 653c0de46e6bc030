"""login throttle per account and source (issue 12): counts kept under the old rules dropped

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 20:40:00

No schema change: ``idp_login_throttle`` (key, failures, window_start, blocked_until) holds the new
counters under new key kinds (idp/throttle.py): ``pair:<account>|<address>`` (the low limit),
``account:<account>`` (now the generous account-wide limit), ``address:<address>`` (unchanged) and
``usual:<account>|<address>`` (the last login from there). An ``account:`` row counted under the
old rule may be blocked after the old low limit and would now hold the account back from every
address for up to a window: those rows are dropped. Going back drops the new kinds of row.
"""

from alembic import op


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DELETE FROM idp_login_throttle WHERE key LIKE 'account:%'")


def downgrade() -> None:
    op.execute("DELETE FROM idp_login_throttle WHERE key LIKE 'pair:%' OR key LIKE 'usual:%'")
