"""metric_rollups and metric_histograms (hourly counters and histograms); messages.replied_at

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "metric_rollups",
        sa.Column("hour", sa.Double(), nullable=False),
        sa.Column("channel_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("hour", "channel_id", "name", name=op.f("pk_metric_rollups")),
    )
    op.create_table(
        "metric_histograms",
        sa.Column("hour", sa.Double(), nullable=False),
        sa.Column("channel_id", sa.String(length=64), nullable=False),
        sa.Column("stat", sa.String(length=32), nullable=False),
        sa.Column("counts", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("hour", "channel_id", "stat", name=op.f("pk_metric_histograms")),
    )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("replied_at", sa.Double(), nullable=True))
        batch_op.create_index(
            "ix_messages_unreplied_at", ["at"], unique=False,
            sqlite_where=sa.text("replied_at IS NULL AND external_id IS NOT NULL"),
            postgresql_where=sa.text("replied_at IS NULL AND external_id IS NOT NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_unreplied_at")
        batch_op.drop_column("replied_at")
    op.drop_table("metric_histograms")
    op.drop_table("metric_rollups")
