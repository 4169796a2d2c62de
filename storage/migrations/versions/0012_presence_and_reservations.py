"""Agents' presence (kept alive by the instances holding their connections)
and the reservations they let lapse in a row

Revision ID: 0012
Revises: 0010
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("present_until", sa.Double(), nullable=True))
        batch_op.add_column(sa.Column("presence_lost_at", sa.Double(), nullable=True))
        batch_op.add_column(sa.Column("missed_reservations", sa.Integer(), server_default=sa.text("0"),
                                      nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_column("missed_reservations")
        batch_op.drop_column("presence_lost_at")
        batch_op.drop_column("present_until")
