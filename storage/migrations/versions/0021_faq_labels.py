"""faq_labels: agents' and supervisors' labels of customer questions (FAQ X, or no FAQ)

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "faq_labels",
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("intent_id", sa.String(length=100), nullable=True),
        sa.Column("labelled_by", sa.String(length=64), nullable=False),
        sa.Column("labelled_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("message_id", name=op.f("pk_faq_labels")),
    )
    op.create_index("ix_faq_labels_labelled_at", "faq_labels", ["labelled_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_faq_labels_labelled_at", table_name="faq_labels")
    op.drop_table("faq_labels")
