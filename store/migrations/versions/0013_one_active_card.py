"""one active card per citizen: a partial unique index on card (national_id) where active

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 11:00:00

``tessera card issue`` could give a citizen a second active card (issue 16); the issuer now
refuses that and this index holds it for every path and every process. A registry that already
holds two active cards of one citizen cannot take the index: the upgrade stops and names the
cards, so the operator decides which one to report lost (``tessera card lost NUMBER``), rather
than the migration retiring a card a citizen may be holding.
"""
from alembic import op
import sqlalchemy as sa


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    doubles = op.get_bind().execute(sa.text(
        "SELECT number FROM card WHERE status = 'active' AND national_id IN "
        "(SELECT national_id FROM card WHERE status = 'active' GROUP BY national_id HAVING count(*) > 1) "
        "ORDER BY national_id, number")).scalars().all()
    if doubles:
        raise RuntimeError("citizens hold more than one active card: " + ", ".join(doubles) +
                           ". Report the surplus cards lost (tessera card lost NUMBER), then upgrade again.")
    op.create_index('uq_card_active_citizen', 'card', ['national_id'], unique=True,
                    sqlite_where=sa.text("status = 'active'"), postgresql_where=sa.text("status = 'active'"))


def downgrade() -> None:
    op.drop_index('uq_card_active_citizen', table_name='card')
