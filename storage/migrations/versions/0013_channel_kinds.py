"""Channels of several kinds (webhook, the web widget, a Matrix bridge), the
notices a webhook channel may ask for, where a bridge has read up to, and
the handoffs taken from a skill's queue by time (for the expected wait)

Revision ID: 0013
Revises: 0015 (0014 and 0015 landed first; 0013 follows them so there is one head)
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kind", sa.String(16), server_default=sa.text("'webhook'"), nullable=False))
        batch_op.add_column(sa.Column("notices", sa.Boolean(), server_default=sa.text("false"), nullable=False))
    op.create_table(
        "channel_cursors",
        sa.Column("channel_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("channel_id", "name", name=op.f("pk_channel_cursors")),
    )
    op.create_index("ix_handoffs_skill_assigned_at", "handoffs", ["skill", "assigned_at"])


def downgrade() -> None:
    op.drop_index("ix_handoffs_skill_assigned_at", table_name="handoffs")
    op.drop_table("channel_cursors")
    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.drop_column("notices")
        batch_op.drop_column("kind")
