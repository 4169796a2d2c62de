"""Conversation weights against capacity, and messages left when a queue is full

Revision ID: 0018
Revises: 0013
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("handoffs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("weight", sa.Integer(), server_default=sa.text("1"), nullable=False))
        batch_op.add_column(sa.Column("slots", sa.Integer(), server_default=sa.text("1"), nullable=False))
        batch_op.add_column(sa.Column("left_message", sa.Boolean(), server_default=sa.text("false"),
                                      nullable=False))
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("message_offer", sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_column("message_offer")
    with op.batch_alter_table("handoffs", schema=None) as batch_op:
        batch_op.drop_column("left_message")
        batch_op.drop_column("slots")
        batch_op.drop_column("weight")
