"""handoffs by request time: the staffing forecast and the simulator's
replay read the handoffs of chosen days

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_handoffs_requested_at", "handoffs", ["requested_at"])


def downgrade() -> None:
    op.drop_index("ix_handoffs_requested_at", table_name="handoffs")
