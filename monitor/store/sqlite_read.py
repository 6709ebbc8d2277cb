"""The read-only commands on a SQLite file, through the standard library's ``sqlite3``.

``monitor hits``, ``status``, ``feeds list``, ``stories``, ``items`` and ``outbox`` only
read, and SQLAlchemy's import alone costs them most of their time (~0.2 s of ~0.27 s). On
a SQLite file that is already at the current schema they read here instead, with plain
SQL: the same queries as the repository functions named beside each (``feeds.list_hits``,
``status.status_report``, ``feeds.list_feeds``, ``stories.list_stories``,
``articles.list_items``, ``outbox.list_outbox``), building the same records (``rows.py``,
``status_rows.py``) through the same rules; a test keeps both readers' records equal on
one database. Anything else
(PostgreSQL, a new or older database, a URL with options) is left to
:func:`monitor.store.open_store`: :func:`open_reader` returns None.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

from monitor.store.migrations import SCHEMA_HEAD
from monitor.store.rows import (
    FEED_SYNC_COLUMNS,
    REMOVED_FROM_CONFIG,
    FailingFeed,
    FeedRecord,
    ItemRow,
    OutboxEntry,
    StoredHit,
    StoryItem,
    StoryRecord,
    StoryStats,
    feed_record,
    fold_items,
    stored_reader,
    stored_time,
    story_members,
)
from monitor.store.sqlite_file import BUSY_TIMEOUT_MS, sqlite_database, sqlite_problem
from monitor.store.status_rows import (
    ArticleFailures,
    Instance,
    OutboxState,
    StatusReport,
    holdings_of,
)


def open_reader(url: str) -> SQLiteReader | None:
    """A reader of the SQLite file ``url`` names, when it exists and is at the current
    schema; None otherwise (then :func:`~monitor.store.open_store` creates, migrates or
    reports the problem)."""
    database = sqlite_database(url)
    if database is None:
        return None
    path = Path(database).expanduser().resolve()
    if not path.is_file():
        return None
    try:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    except sqlite3.Error:
        return None
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA query_only = ON")
        revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        revision = None
    if revision is None or revision[0] != SCHEMA_HEAD:
        conn.close()
        return None
    return SQLiteReader(conn, str(path))


def _columns(record: type) -> str:
    return ", ".join(f.name for f in fields(record))


# The column list of `feeds.list_hits` (`feeds._hit_query`).
_HITS = (
    "SELECT hits.id, hits.watchlist, hits.matches, hits.created_at, items.id AS item_id, "
    "items.identity, items.guid, items.link, items.title, items.summary, items.content, "
    "items.published_at, items.first_seen_at, items.feed_id, feeds.url AS feed_url, "
    "feeds.title AS feed_title, items.story_id, items.lang "
    "FROM hits JOIN items ON hits.item_id = items.id "
    "LEFT OUTER JOIN feeds ON items.feed_id = feeds.id"
)


def _query(sql: str, conds: Sequence[str], order: str, limit: int | None, params: list[Any]) -> str:
    """``sql`` with its conditions, order and limit (whose value goes to ``params``)."""
    if conds:
        sql += " WHERE " + " AND ".join(conds)
    sql += f" ORDER BY {order}"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return sql


#: Story ids per statement (SQLite allows 999 parameters in builds before 3.32).
_ID_CHUNK = 500


class SQLiteReader:
    """One read-only connection; each method reads in one transaction (a snapshot)."""

    def __init__(self, conn: sqlite3.Connection, database: str) -> None:
        self._conn = conn
        self.database = database

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        try:
            self._conn.execute("BEGIN")
            try:
                yield self._conn
            finally:
                self._conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            problem = sqlite_problem(exc, self.database)
            if problem is not None:
                raise problem from exc
            raise

    def _records(
        self, conn: sqlite3.Connection, sql: str, params: Any = ()
    ) -> Iterator[dict[str, Any]]:
        cur = conn.execute(sql, params)
        names = [d[0] for d in cur.description]
        readers = [(n, r) for n in names if (r := stored_reader(n)) is not None]
        for row in cur:
            record = dict(zip(names, row, strict=True))
            for name, read in readers:
                if (value := record[name]) is not None:
                    record[name] = read(value)
            yield record

    # ------------------------------------------------------------------ hits

    def list_hits(
        self,
        *,
        since: datetime | None = None,
        watchlists: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[StoredHit]:
        """As ``feeds.list_hits`` (oldest first)."""
        conds, params = [], list[Any]()
        if since is not None:
            conds.append("hits.created_at >= ?")
            params.append(stored_time(since))
        if watchlists:
            conds.append(f"hits.watchlist IN ({', '.join('?' * len(watchlists))})")
            params.extend(watchlists)
        sql = _query(_HITS, conds, "hits.created_at, hits.id", limit, params)
        with self._read() as conn:
            return [StoredHit(**r) for r in self._records(conn, sql, params)]

    # ------------------------------------------------------------------ outbox

    def list_outbox(self, *, statuses: Sequence[str]) -> list[OutboxEntry]:
        """As ``outbox.list_outbox`` (oldest first, each with its number of hits)."""
        sql = (
            "SELECT outbox.id, outbox.subscriber, outbox.message_id, outbox.subject, "
            "outbox.status, outbox.attempts, coalesce(counts.hits, 0) AS hits, "
            "outbox.created_at, outbox.next_attempt_at, outbox.last_error, outbox.sent_at, "
            "outbox.kind FROM outbox LEFT OUTER JOIN (SELECT deliveries.outbox_id AS "
            "outbox_id, count(*) AS hits FROM deliveries GROUP BY deliveries.outbox_id) "
            "AS counts ON counts.outbox_id = outbox.id "
            f"WHERE outbox.status IN ({', '.join('?' * len(statuses))}) "
            "ORDER BY outbox.created_at, outbox.id"
        )
        with self._read() as conn:
            return [OutboxEntry(**r) for r in self._records(conn, sql, list(statuses))]

    # ------------------------------------------------------------------ items

    def list_items(
        self,
        *,
        since: datetime | None = None,
        feed_url: str | None = None,
        limit: int | None = None,
    ) -> list[ItemRow]:
        """As ``articles.list_items`` (oldest first; with ``limit``, the newest ``limit``
        of them), each with its hits folded in (``rows.fold_items``)."""
        conds, params = [], list[Any]()
        if since is not None:
            conds.append("items.first_seen_at >= ?")
            params.append(stored_time(since))
        if feed_url is not None:
            conds.append("feeds.url = ?")
            params.append(feed_url)
        chosen = _query(
            "SELECT items.id FROM items LEFT OUTER JOIN feeds ON items.feed_id = feeds.id",
            conds, "items.id DESC", limit, params,
        )  # fmt: skip
        sql = (
            "SELECT items.id, items.feed_id, feeds.url AS feed_url, feeds.title AS feed_title, "
            "items.guid, items.link, items.title, items.summary, items.content, "
            "items.published_at, items.first_seen_at, items.story_id, items.lang, "
            "items.text_source, items.article, items.article_error, "
            "hits.watchlist AS hit_watchlist, hits.matches "
            f"FROM items JOIN ({chosen}) AS chosen ON items.id = chosen.id "
            "LEFT OUTER JOIN feeds ON items.feed_id = feeds.id "
            "LEFT OUTER JOIN hits ON hits.item_id = items.id "
            "ORDER BY items.id DESC, hits.id"
        )
        with self._read() as conn:
            # Named as stored (read back by their names), then as fold_items reads them.
            out = fold_items(
                r | {"published": r["published_at"], "first_seen": r["first_seen_at"],
                     "hit_matches": r["matches"]}
                for r in self._records(conn, sql, params)
            )  # fmt: skip
        out.reverse()
        return out

    # ------------------------------------------------------------------ stories

    def list_stories(
        self,
        *,
        since: datetime | None = None,
        watchlist: str | None = None,
        limit: int | None = None,
    ) -> list[StoryRecord]:
        """As ``stories.list_stories`` (the most recently seen first)."""
        sql = (
            "SELECT stories.id, stories.title, stories.first_seen_at, stories.last_seen_at "
            "FROM stories"
        )
        conds, params = [], list[Any]()
        if since is not None:
            conds.append("stories.last_seen_at >= ?")
            params.append(stored_time(since))
        if watchlist is not None:
            conds.append(
                "stories.id IN (SELECT items.story_id FROM hits JOIN items "
                "ON hits.item_id = items.id WHERE hits.watchlist = ?)"
            )
            params.append(watchlist)
        sql = _query(sql, conds, "stories.last_seen_at DESC, stories.id DESC", limit, params)
        with self._read() as conn:
            rows = list(self._records(conn, sql, params))
            members = self._items_by_story(conn, [r["id"] for r in rows])
        return [
            StoryRecord(r["id"], r["title"], r["first_seen_at"], r["last_seen_at"],
                        members.get(r["id"], []))
            for r in rows
        ]  # fmt: skip

    def _items_by_story(
        self, conn: sqlite3.Connection, story_ids: Sequence[int]
    ) -> dict[int, list[StoryItem]]:
        """As ``stories.items_by_story``."""
        ids = sorted(set(story_ids))
        rows: list[dict[str, Any]] = []
        hits: list[tuple[int, str]] = []
        # A story's items all come with its id, so the ids are read in chunks (SQLite caps
        # the parameters of a statement), each chunk's items in order.
        for start in range(0, len(ids), _ID_CHUNK):
            chunk = ids[start : start + _ID_CHUNK]
            wanted = f"items.story_id IN ({', '.join('?' * len(chunk))})"
            rows += self._records(
                conn,
                "SELECT items.id, items.story_id, feeds.url, feeds.title AS feed_title, "
                "items.link, items.title, items.published_at, items.first_seen_at "
                "FROM items LEFT OUTER JOIN feeds ON items.feed_id = feeds.id "
                f"WHERE {wanted} ORDER BY items.first_seen_at, items.id",
                chunk,
            )
            hits += conn.execute(
                "SELECT hits.item_id, hits.watchlist FROM hits JOIN items "
                f"ON hits.item_id = items.id WHERE {wanted}",
                chunk,
            )
        return story_members(rows, hits)

    # ------------------------------------------------------------------ feeds

    def list_feeds(self) -> list[FeedRecord]:
        """As ``feeds.list_feeds`` (every feed, retired ones too)."""
        sql = f"SELECT {_columns(FeedRecord)} FROM feeds ORDER BY feeds.id"
        with self._read() as conn:
            return [feed_record(r) for r in self._records(conn, sql)]

    def feed_sync_rows(self) -> list[dict[str, Any]]:
        """What ``rows.feed_sync_plan`` compares with the config."""
        sql = f"SELECT {', '.join(FEED_SYNC_COLUMNS)} FROM feeds ORDER BY feeds.id"
        with self._read() as conn:
            return list(self._records(conn, sql))

    # ------------------------------------------------------------------ status

    def status_report(self, *, now: datetime | None = None) -> StatusReport:
        """As ``status.status_report``."""
        now = now or datetime.now(UTC)
        midnight = stored_time(datetime.combine(now.astimezone(UTC).date(), time(0), tzinfo=UTC))
        week = stored_time(now - timedelta(days=7))
        with self._read() as conn:
            active = conn.execute(
                "SELECT count(*) FROM feeds WHERE feeds.retired_at IS NULL"
            ).fetchone()[0]
            by_watchlist = {
                str(w): int(n)
                for w, n in conn.execute(
                    "SELECT hits.watchlist, count(*) FROM hits WHERE hits.created_at >= ? "
                    "GROUP BY hits.watchlist",
                    (midnight,),
                )
            }
            article_failures = [
                ArticleFailures(**r)
                for r in self._records(
                    conn,
                    "SELECT feeds.url, feeds.article_failures AS count, "
                    "feeds.article_last_error AS last_error, "
                    "feeds.article_last_error_at AS last_error_at FROM feeds "
                    "WHERE feeds.retired_at IS NULL AND feeds.article_failures > 0 "
                    "ORDER BY feeds.article_failures DESC, feeds.url",
                )
            ]
            # feeds.last_poll_run
            last_run = next(
                self._records(
                    conn,
                    "SELECT * FROM poll_runs WHERE poll_runs.finished_at IS NOT NULL "
                    "ORDER BY poll_runs.id DESC LIMIT 1",
                ),
                None,
            )
            # outbox.failing_feeds
            failing = [
                FailingFeed(**r)
                for r in self._records(
                    conn,
                    f"SELECT {_columns(FailingFeed)} FROM feeds "
                    "WHERE (feeds.consecutive_failures > 0 OR feeds.retired_at IS NOT NULL) "
                    "AND (feeds.retired_reason IS NULL OR feeds.retired_reason != ?) "
                    "ORDER BY feeds.retired_at IS NULL, feeds.consecutive_failures DESC, "
                    "feeds.url",
                    (REMOVED_FROM_CONFIG,),
                )
            ]
            # status.outbox_state
            outbox = OutboxState.of(
                conn.execute(
                    "SELECT outbox.kind, outbox.status, count(*), min(outbox.created_at) "
                    "FROM outbox GROUP BY outbox.kind, outbox.status"
                ).fetchall()
            )
            # instances.list_instances, instances.holdings
            instances = [
                Instance(**r)
                for r in self._records(
                    conn, f"SELECT {_columns(Instance)} FROM instances ORDER BY started_at"
                )
            ]
            claims = [
                conn.execute(
                    f"SELECT claimed_by, count(*) FROM {table} WHERE claimed_by IS NOT NULL "
                    "AND claim_expires_at >= ? GROUP BY claimed_by",
                    (stored_time(now),),
                ).fetchall()
                for table in ("feeds", "outbox")
            ]
            # stories.story_stats
            today = conn.execute(
                "SELECT count(*) FROM stories WHERE stories.first_seen_at >= ?", (midnight,)
            ).fetchone()[0]
            count, total = conn.execute(
                "SELECT count(*), sum(stories.item_count) FROM stories "
                "WHERE stories.first_seen_at >= ?",
                (week,),
            ).fetchone()
        return StatusReport(
            now=now,
            last_run=last_run,
            active_feeds=int(active),
            failing=failing,
            hits_today=sum(by_watchlist.values()),
            hits_today_by_watchlist=by_watchlist,
            outbox=outbox,
            instances=instances,
            holdings=holdings_of(*claims),
            stories=StoryStats.of(today, count, total),
            article_failures=article_failures,
        )
