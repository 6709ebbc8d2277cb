"""The database schema (SQLAlchemy Core). Alembic migrations create it; see ``migrations/``.

Portable between SQLite (the embedded default) and PostgreSQL (the scale-out store): only
types both understand, timestamps stored as UTC, uniqueness enforced by the database.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from monitor.store.rows import stored_time

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on every backend.

    SQLite has no time zone type: values are stored as naive UTC and made aware on read.
    """

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use timezone-aware UTC")
        return value.astimezone(UTC).replace(tzinfo=None)

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        """On SQLite, the stored text in one step (``rows.stored_time``: the text
        SQLAlchemy's own DATETIME writes, a test holds them equal), not two through
        ``process_bind_param`` and the dialect's %-formatting (~5 us a value). The last
        value's text is kept: a poll writes its one ``now`` into most rows (an item's
        first_seen_at, its story's first and last_seen_at)."""
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)
        last: tuple[datetime | None, str | None] = (None, None)

        def process(value: datetime | None) -> str | None:
            nonlocal last
            if value is None:
                return None
            seen, text = last  # one tuple: threads sharing the statement see a pair
            if value is not seen:
                text = stored_time(value)
                last = (value, text)
            return text

        return process

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC)


feeds = Table(
    "feeds",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("url", String(2048), nullable=False, unique=True),
    Column("title", Text),
    Column("site_url", Text),
    Column("source", String(16), nullable=False, default="config"),  # config | import | opml
    Column("interval_s", Integer),  # None: the [polling] interval
    Column("headers", JSON, nullable=False, default=dict),
    Column("etag", Text),
    Column("last_modified", Text),
    Column("last_status", Integer),  # last HTTP status, None when no response
    Column("last_outcome", String(16)),  # ok | not_modified | failed | gone
    Column("consecutive_failures", Integer, nullable=False, default=0),
    Column("next_due_at", UTCDateTime, index=True),  # None: due now
    Column("last_polled_at", UTCDateTime),
    Column("last_success_at", UTCDateTime),
    Column("last_error", Text),
    Column("last_error_kind", String(32)),
    Column("last_error_at", UTCDateTime),
    Column("warnings", Text),  # the last parse's warnings, one a line
    Column("hint_s", Integer),  # what the server suggested: ttl, max-age, Retry-After
    # Activity, for the adaptive interval (schedule_policy): successful polls in a row
    # without new items, and when a poll last brought new items.
    Column("quiet_polls", Integer, nullable=False, default=0, server_default="0"),
    Column("last_new_items_at", UTCDateTime),
    Column("retired_at", UTCDateTime),
    Column("retired_reason", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("claimed_by", String(128)),
    Column("claim_expires_at", UTCDateTime),
    # Article pages behind the feed's items: the feed's own mode (None: [fulltext] mode),
    # and the article fetches that failed (how many, the last reason and when).
    Column("fulltext", String(8)),
    Column("article_failures", Integer, nullable=False, default=0, server_default="0"),
    Column("article_last_error", Text),
    Column("article_last_error_at", UTCDateTime),
)

items = Table(
    "items",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("identity", String(128), nullable=False, unique=True),
    Column("feed_id", Integer, ForeignKey("feeds.id", ondelete="SET NULL")),
    Column("guid", Text),
    Column("link", Text),
    Column("title", Text, nullable=False, default=""),
    Column("summary", Text, nullable=False, default=""),
    Column("content", Text, nullable=False, default=""),
    Column("author", Text),
    Column("lang", String(16)),  # detected language (monitor.lang): en, ru, kk, uz-Latn, ...
    Column("published_at", UTCDateTime),
    Column("first_seen_at", UTCDateTime, nullable=False, index=True),
    # Where ``content`` came from: "feed", or "article" once the page's text replaced it.
    Column("text_source", String(8), nullable=False, default="feed", server_default="feed"),
    # The article page: None (not wanted), "pending" (to fetch; survives a restart),
    # "done" (its text is ``content``) or "failed" (``article_error`` says why). An item
    # leaves "pending" once and is never fetched again.
    Column("article", String(8), index=True),
    Column("article_error", Text),
    # The story (one event across outlets) the item was assigned to when it was stored,
    # and the order of that assignment: several instances sharing a database catch up
    # with each other's assignments by it (see store/stories.py).
    Column("story_id", Integer, ForeignKey("stories.id"), index=True),
    Column("story_seq", Integer, index=True),
)

stories = Table(
    "stories",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("title", Text, nullable=False),  # the lead item's title
    Column("first_seen_at", UTCDateTime, nullable=False, index=True),
    Column("last_seen_at", UTCDateTime, nullable=False),
    Column("item_count", Integer, nullable=False),
    Column("lead_item_id", Integer),  # the representative item: the story's first
)

hits = Table(
    "hits",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("item_id", Integer, ForeignKey("items.id", ondelete="CASCADE"), nullable=False),
    Column("watchlist", String(100), nullable=False, index=True),
    Column("matches", JSON, nullable=False),  # [Match.to_dict(), ...]
    Column("created_at", UTCDateTime, nullable=False, index=True),
    UniqueConstraint("item_id", "watchlist", name="uq_hits_item_watchlist"),
)

subscribers = Table(
    "subscribers",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("created_at", UTCDateTime, nullable=False),  # hits before this are not mailed
    Column("last_digest_at", UTCDateTime),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("subscriber", String(320), nullable=False, index=True),
    Column("message_id", String(255), nullable=False, unique=True),
    Column("subject", Text, nullable=False),
    Column("message", LargeBinary, nullable=False),  # the rendered RFC 5322 bytes
    Column("status", String(16), nullable=False, index=True),  # queued | sent | failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("created_at", UTCDateTime, nullable=False),
    Column("next_attempt_at", UTCDateTime),
    Column("last_error", Text),
    Column("sent_at", UTCDateTime),
    Column("claimed_by", String(128)),
    Column("claim_expires_at", UTCDateTime),
    # mail (an RFC 5322 message to ``subscriber``) | webhook (a JSON body for the
    # ``[[webhooks]]`` entry whose key is in ``subscriber``)
    Column("kind", String(16), nullable=False, default="mail", server_default="mail"),
    # The receiver's own wait (a webhook's Retry-After): not sent before it, even when
    # told to send without waiting for the backoff (``digest --send-now``).
    Column("retry_after_at", UTCDateTime),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("subscriber", String(320), nullable=False),
    Column("hit_id", Integer, ForeignKey("hits.id", ondelete="CASCADE"), nullable=False),
    Column("outbox_id", Integer, ForeignKey("outbox.id", ondelete="CASCADE"), nullable=False),
    UniqueConstraint("subscriber", "hit_id", name="uq_deliveries_subscriber_hit"),
    Index("ix_deliveries_outbox_id", "outbox_id"),
)

poll_runs = Table(
    "poll_runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("instance", String(128)),
    Column("started_at", UTCDateTime, nullable=False, index=True),
    Column("finished_at", UTCDateTime),
    Column("feeds", Integer, nullable=False, default=0),
    Column("fetched", Integer, nullable=False, default=0),
    Column("not_modified", Integer, nullable=False, default=0),
    Column("failed", Integer, nullable=False, default=0),
    Column("new_items", Integer, nullable=False, default=0),
    Column("new_hits", Integer, nullable=False, default=0),
)

instances = Table(
    "instances",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("hostname", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("heartbeat_at", UTCDateTime, nullable=False, index=True),
)

# The web view lists the most recently seen stories first.
Index("ix_stories_last_seen_at", stories.c.last_seen_at)
# A feed's items newest first: a poll reads the identities of a feed's most recent items
# (store.feeds.recent_identities) without reading all it ever had (migration 0011).
Index("ix_items_feed_id_id", items.c.feed_id, items.c.id)

# Full-text search over items (title, summary, content), kept in sync by the database in
# the transaction that writes the item. SQLite: an FTS5 table over ``items`` (external
# content, rowid = items.id) and triggers. PostgreSQL: a GIN index on the expression
# below, queried with the same expression. Migration 0006 creates both and indexes the
# items already stored.
ITEMS_FTS = "items_fts"
SQLITE_SEARCH_DDL: tuple[str, ...] = (
    "CREATE VIRTUAL TABLE items_fts USING fts5(title, summary, content, content='items', "
    "content_rowid='id', tokenize='unicode61 remove_diacritics 2')",
    "CREATE TRIGGER items_fts_insert AFTER INSERT ON items BEGIN "
    "INSERT INTO items_fts(rowid, title, summary, content) "
    "VALUES (new.id, new.title, new.summary, new.content); END",
    "CREATE TRIGGER items_fts_delete AFTER DELETE ON items BEGIN "
    "INSERT INTO items_fts(items_fts, rowid, title, summary, content) "
    "VALUES ('delete', old.id, old.title, old.summary, old.content); END",
    "CREATE TRIGGER items_fts_update AFTER UPDATE OF title, summary, content ON items BEGIN "
    "INSERT INTO items_fts(items_fts, rowid, title, summary, content) "
    "VALUES ('delete', old.id, old.title, old.summary, old.content); "
    "INSERT INTO items_fts(rowid, title, summary, content) "
    "VALUES (new.id, new.title, new.summary, new.content); END",
    "INSERT INTO items_fts(items_fts) VALUES ('rebuild')",
)
SQLITE_SEARCH_TRIGGERS = ("items_fts_insert", "items_fts_delete", "items_fts_update")
#: The document PostgreSQL searches ('simple': no stemming, so every language works alike).
PG_SEARCH_DOCUMENT = (
    "to_tsvector('simple'::regconfig, coalesce(title, '') || ' ' || coalesce(summary, '') "
    "|| ' ' || coalesce(content, ''))"
)
PG_SEARCH_DDL: tuple[str, ...] = (
    f"CREATE INDEX ix_items_search ON items USING gin ({PG_SEARCH_DOCUMENT})",
)
