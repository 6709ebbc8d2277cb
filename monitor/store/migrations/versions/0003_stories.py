"""stories: one event across outlets; every item belongs to one

Items stored before this migration get a story of their own each (story id = item id,
assignment order = item id): grouping old coverage after the fact would change what
subscribers were already mailed, and a story of one is always correct, only not merged.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import monitor.store.schema

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stories",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("first_seen_at", monitor.store.schema.UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", monitor.store.schema.UTCDateTime(), nullable=False),
        sa.Column("item_count", sa.Integer(), nullable=False),
        sa.Column("lead_item_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stories")),
    )
    with op.batch_alter_table("stories", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_stories_first_seen_at"), ["first_seen_at"], unique=False
        )
    if op.get_bind().dialect.name == "sqlite":
        # SQLite adds a column with its reference in place; batch mode would copy and
        # drop the items table, and dropping it cascades to the hits.
        op.execute("ALTER TABLE items ADD COLUMN story_id INTEGER REFERENCES stories (id)")
    else:
        op.add_column("items", sa.Column("story_id", sa.Integer(), nullable=True))
        op.create_foreign_key(
            op.f("fk_items_story_id_stories"), "items", "stories", ["story_id"], ["id"]
        )
    op.add_column("items", sa.Column("story_seq", sa.Integer(), nullable=True))
    op.create_index(op.f("ix_items_story_id"), "items", ["story_id"], unique=False)
    op.create_index(op.f("ix_items_story_seq"), "items", ["story_seq"], unique=False)

    # Existing items: a story each, numbered like the item.
    op.execute(
        "INSERT INTO stories (id, title, first_seen_at, last_seen_at, item_count, lead_item_id) "
        "SELECT id, title, first_seen_at, first_seen_at, 1, id FROM items"
    )
    op.execute("UPDATE items SET story_id = id, story_seq = id")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "SELECT setval(pg_get_serial_sequence('stories', 'id'), "
            "COALESCE((SELECT MAX(id) FROM stories), 0) + 1, false)"
        )


def downgrade() -> None:
    op.drop_index(op.f("ix_items_story_seq"), table_name="items")
    op.drop_index(op.f("ix_items_story_id"), table_name="items")
    op.drop_column("items", "story_seq")
    if op.get_bind().dialect.name == "sqlite":
        # SQLite cannot drop a column that references another table in place: set it
        # to NULL and leave it (unused by the older schema) rather than copy the table.
        op.execute("UPDATE items SET story_id = NULL")
    else:
        op.drop_constraint(op.f("fk_items_story_id_stories"), "items", type_="foreignkey")
        op.drop_column("items", "story_id")
    op.drop_index(op.f("ix_stories_first_seen_at"), table_name="stories")
    op.drop_table("stories")
