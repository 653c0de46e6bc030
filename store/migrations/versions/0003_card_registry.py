"""citizen card registry: cards, records, PIN/PUK counters, departments

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 08:40:00

The PIN/PUK try counters live with the card tokens (cardsim.pins), not in SQL.
"""
from alembic import op
import sqlalchemy as sa
import store.types


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "card_department",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(32), nullable=False, unique=True),
        sa.Column("record_type", sa.String(32), nullable=False, unique=True),
        sa.Column("subject", sa.String(1024), nullable=False),
        sa.Column("certificate_id", sa.Integer(), sa.ForeignKey("ca_certificate.id"), nullable=False),
        sa.Column("key_ref", sa.String(512), nullable=False),
    )
    op.create_table(
        "card",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("number", sa.String(16), nullable=False, unique=True),
        sa.Column("national_id", sa.String(16), nullable=False),
        sa.Column("holder", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("token_serial", sa.String(32), nullable=False),
        sa.Column("issued_at", store.types.UtcDateTime(), nullable=False),
        sa.Column("expires_at", store.types.UtcDateTime(), nullable=False),
        sa.Column("status_changed_at", store.types.UtcDateTime(), nullable=True),
        sa.Column("auth_certificate_id", sa.Integer(), sa.ForeignKey("ca_certificate.id"), nullable=False),
        sa.Column("sign_certificate_id", sa.Integer(), sa.ForeignKey("ca_certificate.id"), nullable=False),
        sa.Column("replaces", sa.String(16), nullable=True),
        sa.Column("replaced_by", sa.String(16), nullable=True),
        sa.Column("batch_key", sa.String(300), nullable=True, unique=True),
    )
    op.create_index("ix_card_national_id_status", "card", ["national_id", "status"])
    op.create_table(
        "card_record",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("card_id", sa.Integer(), sa.ForeignKey("card.id"), nullable=False),
        sa.Column("record_type", sa.String(32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("department_id", sa.Integer(), sa.ForeignKey("card_department.id"), nullable=False),
        sa.Column("issued_at", store.types.UtcDateTime(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("der", sa.LargeBinary(), nullable=False),
        sa.Column("current", sa.Boolean(), nullable=False),
        sa.UniqueConstraint("card_id", "record_type", "version"),
    )
    op.create_index("ix_card_record_current", "card_record", ["card_id", "record_type", "current"])
    op.create_index("ix_card_record_sha256", "card_record", ["sha256"])


def downgrade() -> None:
    op.drop_index("ix_card_record_sha256", table_name="card_record")
    op.drop_index("ix_card_record_current", table_name="card_record")
    op.drop_table("card_record")
    op.drop_index("ix_card_national_id_status", table_name="card")
    op.drop_table("card")
    op.drop_table("card_department")
