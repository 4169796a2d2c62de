"""faq_answers.language: an answer edit is in one language; an intent may
have one per language

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Edits made before answers had languages replaced the one answer, which
    # is the default language's; no knowledge base could name another
    # default than "en" then.
    with op.batch_alter_table("faq_answers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("language", sa.String(length=16), server_default="en", nullable=False))
        batch_op.drop_constraint("pk_faq_answers", type_="primary")
        batch_op.create_primary_key("pk_faq_answers", ["intent_id", "language"])


def downgrade() -> None:
    # One answer per intent again: the default language's edit is the one kept.
    op.execute("DELETE FROM faq_answers WHERE language <> 'en'")
    with op.batch_alter_table("faq_answers", schema=None) as batch_op:
        batch_op.drop_constraint("pk_faq_answers", type_="primary")
        batch_op.create_primary_key("pk_faq_answers", ["intent_id"])
        batch_op.drop_column("language")
