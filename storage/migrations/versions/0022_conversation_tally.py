"""conversations.tally: the metric tally stored with each change, so loading a
conversation (another instance's change, a restart) reads no events

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable and not back-filled: a row without one has its tally replayed
    # from its events when it is loaded, as before, and gets one at its next
    # change.
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(sa.Column("tally", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("tally")
