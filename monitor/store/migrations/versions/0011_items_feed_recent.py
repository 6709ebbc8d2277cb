"""items by feed, newest first: the index on items.feed_id becomes (feed_id, id)

A poll asks, for each feed it fetched, which of the feed's most recent items are stored
(``store.feeds.recent_identities``: ``WHERE feed_id = ? ORDER BY id DESC LIMIT n``). On
PostgreSQL an index on feed_id alone gives the feed's rows in no useful order: every
item the feed ever had is read and sorted, each poll (a year of a busy feed: tens of
thousands of rows). With (feed_id, id) the newest n are read from the index's end. On
SQLite the old index already held the rowid (= id) after feed_id; the new one is the
same, under the name the schema gives it. It serves everything the old one did (a feed's
items, the foreign key's ON DELETE SET NULL).

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_items_feed_id_id", "items", ["feed_id", "id"], unique=False)
    op.drop_index("ix_items_feed_id", table_name="items")


def downgrade() -> None:
    op.create_index("ix_items_feed_id", "items", ["feed_id"], unique=False)
    op.drop_index("ix_items_feed_id_id", table_name="items")
