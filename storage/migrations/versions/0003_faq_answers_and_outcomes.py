"""faq_answers (live answer edits); messages.outcome and messages.verdict

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "faq_answers",
        sa.Column("intent_id", sa.String(length=100), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("intent_id", name=op.f("pk_faq_answers")),
    )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("outcome", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("verdict", sa.String(length=32), nullable=True))
        batch_op.create_index("ix_messages_outcome_at", ["outcome", "at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_outcome_at")
        batch_op.drop_column("verdict")
        batch_op.drop_column("outcome")
    op.drop_table("faq_answers")
