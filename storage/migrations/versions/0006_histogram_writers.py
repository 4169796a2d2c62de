"""metric_histograms.writer: each instance adds to histogram rows of its own;
tierdesk_refuse(): lets one statement roll itself back

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing rows become the rows of writer '' (SQLite's only writer); the
    # readers add every writer's rows of a key up.
    with op.batch_alter_table("metric_histograms", schema=None, recreate="always") as batch_op:
        batch_op.add_column(sa.Column("writer", sa.String(length=64), server_default="", nullable=False))
        batch_op.drop_constraint("pk_metric_histograms", type_="primary")
        batch_op.create_primary_key("pk_metric_histograms", ["hour", "channel_id", "stat", "writer"])
    if op.get_bind().dialect.name == "postgresql":
        # A batch written as one statement (storage/pg_writer.py) calls this
        # when the statement's own results show it must not stand: raising
        # rolls the whole statement back, with an error code of our own.
        op.execute(
            "CREATE FUNCTION tierdesk_refuse(reason text) RETURNS text LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION USING ERRCODE = 'TD001', MESSAGE = reason; END $$")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION tierdesk_refuse(text)")
    # Several writers' rows of one key are blobs SQL cannot add up: the
    # histograms are emptied, and `tierdesk metrics rebuild` recomputes them
    # from the event log.
    op.execute("DELETE FROM metric_histograms")
    with op.batch_alter_table("metric_histograms", schema=None, recreate="always") as batch_op:
        batch_op.drop_constraint("pk_metric_histograms", type_="primary")
        batch_op.create_primary_key("pk_metric_histograms", ["hour", "channel_id", "stat"])
        batch_op.drop_column("writer")
