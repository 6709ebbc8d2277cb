"""article text: each item's article state and text source, each feed's fulltext mode

Items found before this revision keep their feed text (``article`` stays NULL: nothing to
fetch, ``text_source`` is "feed"); feeds follow ``[fulltext] mode`` until the config says
otherwise, with no article failures recorded.

Revision ID: 0004
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import monitor.store.schema

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("feeds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fulltext", sa.String(length=8), nullable=True))
        batch_op.add_column(
            sa.Column("article_failures", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("article_last_error", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("article_last_error_at", monitor.store.schema.UTCDateTime(), nullable=True)
        )
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("text_source", sa.String(length=8), nullable=False, server_default="feed")
        )
        batch_op.add_column(sa.Column("article", sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column("article_error", sa.Text(), nullable=True))
        batch_op.create_index("ix_items_article", ["article"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.drop_index("ix_items_article")
        batch_op.drop_column("article_error")
        batch_op.drop_column("article")
        batch_op.drop_column("text_source")
    with op.batch_alter_table("feeds", schema=None) as batch_op:
        batch_op.drop_column("article_last_error_at")
        batch_op.drop_column("article_last_error")
        batch_op.drop_column("article_failures")
        batch_op.drop_column("fulltext")
