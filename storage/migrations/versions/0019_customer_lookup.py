"""A customer's earlier conversations: conversations by channel and customer

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_conversations_customer", "conversations", ["channel_id", "customer_id"])


def downgrade() -> None:
    op.drop_index("ix_conversations_customer", table_name="conversations")
