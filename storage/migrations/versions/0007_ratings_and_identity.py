"""One rating per conversation episode; disabled agents and channels; a
channel's previous webhook secret while a rotation overlaps

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rating", sa.Integer(), nullable=True))
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("disabled_at", sa.Double(), nullable=True))
    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.add_column(sa.Column("disabled_at", sa.Double(), nullable=True))
        batch_op.add_column(sa.Column("previous_webhook_secret", sa.String(128), nullable=True))
        batch_op.add_column(sa.Column("previous_secret_until", sa.Double(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.drop_column("previous_secret_until")
        batch_op.drop_column("previous_webhook_secret")
        batch_op.drop_column("disabled_at")
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_column("disabled_at")
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_column("rating")
