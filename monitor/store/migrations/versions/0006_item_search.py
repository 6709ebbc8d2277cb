"""item search: full-text index over items' title, summary and content

SQLite gets an FTS5 table kept in sync by triggers; PostgreSQL a GIN index on a
tsvector expression. Both index the items already stored. Also an index on
stories.last_seen_at, for the web view's "most recently seen first".

Revision ID: 0006
Revises: 0003
"""

from __future__ import annotations

from alembic import op

from monitor.store.schema import PG_SEARCH_DDL, SQLITE_SEARCH_DDL, SQLITE_SEARCH_TRIGGERS

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_stories_last_seen_at", "stories", ["last_seen_at"])
    dialect = op.get_bind().dialect.name
    for statement in SQLITE_SEARCH_DDL if dialect == "sqlite" else PG_SEARCH_DDL:
        op.execute(statement)


def downgrade() -> None:
    op.drop_index("ix_stories_last_seen_at", table_name="stories")
    if op.get_bind().dialect.name == "sqlite":
        for trigger in SQLITE_SEARCH_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute("DROP TABLE IF EXISTS items_fts")
    else:
        op.execute("DROP INDEX IF EXISTS ix_items_search")
