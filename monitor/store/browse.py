"""Read-only queries behind the web view and the JSON API: items (with search), hits per
day, top outlets.

Search uses the full-text index of migration 0006: FTS5 on SQLite, a GIN index over a
``tsvector`` expression on PostgreSQL. The user's words are never passed through as query
syntax: each word is searched as it is (all of them must occur), so no input is an error.
"""

from __future__ import annotations

import contextlib
import re
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, literal_column, select, text, true
from sqlalchemy.exc import DBAPIError

from monitor.store.db import Store
from monitor.store.rows import ItemRow as ItemRow
from monitor.store.rows import fold_items
from monitor.store.schema import PG_SEARCH_DOCUMENT, feeds, hits, items, stories
from monitor.store.stories import StoryRecord, items_by_story

#: Longest search input considered; the rest is ignored.
MAX_QUERY = 200
_WORD = re.compile(r"\w+", re.UNICODE)


def query_words(q: str) -> list[str]:
    """The words of a search input, as searched (at most 16)."""
    return _WORD.findall(q[:MAX_QUERY])[:16]


def _fts5_query(words: Sequence[str]) -> str:
    return " ".join('"' + w.replace('"', '""') + '"' for w in words)


_ITEM_COLUMNS = (
    items.c.id,
    items.c.feed_id,
    feeds.c.url.label("feed_url"),
    feeds.c.title.label("feed_title"),
    items.c.guid,
    items.c.link,
    items.c.title,
    items.c.summary,
    items.c.content,
    items.c.published_at.label("published"),
    items.c.first_seen_at.label("first_seen"),
    items.c.story_id,
    items.c.lang,
    items.c.text_source,
    items.c.article,
    items.c.article_error,
)


def list_items(
    store: Store,
    *,
    q: str | None = None,
    since: datetime | None = None,
    watchlist: str | None = None,
    watchlists: Sequence[str] | None = None,
    feed_id: int | None = None,
    story_id: int | None = None,
    matched_only: bool = False,
    before_id: int | None = None,
    limit: int = 50,
) -> list[ItemRow]:
    """Items newest first, filtered; ``q`` searches title, summary and content."""
    conds: list[Any] = []
    if since is not None:
        conds.append(items.c.first_seen_at >= since)
    if feed_id is not None:
        conds.append(items.c.feed_id == feed_id)
    before = None
    if before_id is not None:
        before = items.c.id < before_id
        conds.append(before)
    if story_id is not None:
        conds.append(items.c.story_id == story_id)
    if watchlist is not None:
        conds.append(
            exists().where(and_(hits.c.item_id == items.c.id, hits.c.watchlist == watchlist))
        )
    elif watchlists is not None:
        conds.append(
            exists().where(
                and_(hits.c.item_id == items.c.id, hits.c.watchlist.in_(list(watchlists)))
            )
        )
    elif matched_only:
        conds.append(exists().where(hits.c.item_id == items.c.id))
    chosen = select(items.c.id)
    if q is not None:
        if not [c for c in conds if c is not before]:
            # The common case, a bare search, newest first.
            words = query_words(q)
            if not words:
                return []
            with store.read() as conn:  # one statement: every round trip counts
                return _newest_matches(store, conn, words, limit, before_id)
        found = _search(store, q)
        if found is None:
            return []
        conds.append(items.c.id.in_(found))
    if conds:
        chosen = chosen.where(and_(*conds))
    chosen = chosen.order_by(items.c.id.desc()).limit(limit)
    with store.read() as conn:
        return item_rows(conn, chosen.subquery())


#: How long PostgreSQL may walk the newest items looking for matches before the search
#: switches to collecting every match through the GIN index (see _newest_matches).
PG_WALK_BUDGET_MS = 150


def _newest_matches(
    store: Store, conn: Any, words: Sequence[str], limit: int, before_id: int | None
) -> list[ItemRow]:
    """The newest ``limit`` items (below ``before_id``) containing every word, with their
    feeds and hits: one statement."""
    before = before_id or 2**62
    if store.is_sqlite:
        # FTS5 walks its index newest first and stops at ``limit``, however many match.
        found = text(
            "SELECT rowid AS id FROM items_fts WHERE items_fts MATCH :fts "
            "AND rowid < :before ORDER BY rowid DESC LIMIT :n"
        ).bindparams(fts=_fts5_query(words), n=limit, before=before)
        return item_rows(conn, found.columns(literal_column("id")).subquery("found"))
    # PostgreSQL: for frequent words, walking the primary key backwards finds the newest
    # matches at once; for rare ones it would read (and compute the document of) much of
    # the table, and collecting the matches through the GIN index first is the fast way.
    # Which one: the search index's statistics (ANALYZE keeps the most common words of
    # the indexed documents and the share of documents holding each) say how many rows the
    # walk reads. A word not among them is rarer than all of them: collect. Without
    # statistics (a new database, before its first ANALYZE): walk within a small time
    # budget, and on running out of it, collect.
    params = {"words": " ".join(words), "n": limit, "before": before}
    match = f"{PG_SEARCH_DOCUMENT} @@ plainto_tsquery('simple'::regconfig, :words)"
    walk = text(f"SELECT id FROM items WHERE {match} AND id < :before ORDER BY id DESC LIMIT :n")
    collect = text(
        f"WITH found AS MATERIALIZED (SELECT id FROM items WHERE {match}) "
        "SELECT id FROM found WHERE id < :before ORDER BY id DESC LIMIT :n"
    )

    def rows(found: Any) -> list[ItemRow]:
        chosen = found.bindparams(**params).columns(literal_column("id")).subquery("found")
        return item_rows(conn, chosen)

    share = _pg_share(store, conn, words)
    if share is not None:
        # The walk reads about limit / share rows, the index collects share * rows.
        walked = limit / share if share > 0 else float("inf")
        collected = share * _pg_stats[store][2]
        return rows(walk if walked <= min(PG_WALK_ROWS, collected) else collect)
    # The budget is set for the session and put back after (the web view's connections
    # are autocommit: no transaction to scope a SET LOCAL to).
    budget = text("SELECT set_config('statement_timeout', :v, false)")
    usual = conn.execute(text("SELECT current_setting('statement_timeout')")).scalar_one()
    conn.execute(budget, {"v": str(PG_WALK_BUDGET_MS)})
    try:
        return rows(walk)
    except DBAPIError as exc:
        if "statement timeout" not in str(exc):
            raise
        conn.rollback()  # in a transaction, it was aborted (and the SET with it)
    finally:
        with contextlib.suppress(DBAPIError):  # an aborted transaction's rollback puts it back
            conn.execute(budget, {"v": usual})
    return rows(collect)


#: The most rows a search walks (newest first) rather than collect through the index:
#: about 80 ms of computing documents.
PG_WALK_ROWS = 2000
#: Seconds the statistics of the search index are kept before they are read again.
PG_STATS_EVERY = 600.0
#: Per store: when read, the index's common words and their shares, the number of items.
_pg_stats: weakref.WeakKeyDictionary[Store, tuple[float, dict[str, float] | None, float]] = (
    weakref.WeakKeyDictionary()
)


def _pg_share(store: Store, conn: Any, words: Sequence[str]) -> float | None:
    """The estimated share of items holding every word (as if independent), from the
    search index's statistics; 0 if a word is not among its common ones; None: no
    statistics."""
    kept = _pg_stats.get(store)
    if kept is None or time.monotonic() - kept[0] > PG_STATS_EVERY:
        row = conn.execute(
            text(
                "SELECT s.most_common_elems::text::text[], s.most_common_elem_freqs, c.reltuples "
                "FROM pg_class c LEFT JOIN pg_stats s ON s.schemaname = current_schema() "
                "AND s.tablename = 'ix_items_search' WHERE c.oid = 'items'::regclass"
            )
        ).first()
        common = None
        if row is not None and row[0] is not None and row[1] is not None:
            common = dict(zip(row[0], row[1], strict=False))
        kept = (time.monotonic(), common, float(row[2]) if row is not None else 0.0)
        _pg_stats[store] = kept
    common = kept[1]
    if not common:
        return None
    # The words as the 'simple' configuration makes them lexemes (lower case; its parser
    # also splits at "_"), near enough for an estimate and without a round trip.
    lexemes = [part.lower() for w in words for part in w.split("_") if part]
    share = 1.0
    for lexeme in lexemes:
        share *= common.get(lexeme, 0.0)
    return share


def _search(store: Store, q: str) -> Any:
    """A subquery of the ids of items containing every word of ``q``; None: no words."""
    words = query_words(q)
    if not words:
        return None
    if store.is_sqlite:
        matched = text("SELECT rowid FROM items_fts WHERE items_fts MATCH :fts").bindparams(
            fts=_fts5_query(words)
        )
        return matched.columns(literal_column("rowid"))
    # Materialised first, so that the planner uses the GIN index rather than walking
    # the primary key backwards and computing every item's tsvector.
    found = (
        select(items.c.id)
        .where(
            text(
                f"{PG_SEARCH_DOCUMENT} @@ plainto_tsquery('simple'::regconfig, :words)"
            ).bindparams(words=" ".join(words))
        )
        .cte("found")
        .prefix_with("MATERIALIZED")
    )
    return select(found.c.id)


@dataclass(frozen=True, slots=True)
class StoryPage:
    """A story with (up to a limit of) its items, oldest first: the lead leads."""

    id: int
    title: str
    first_seen: datetime
    last_seen: datetime
    item_count: int
    items: list[ItemRow]


def story_page(store: Store, story_id: int, *, limit: int) -> StoryPage | None:
    """The story, its newest ``limit`` items (shown oldest first) and their hits: one
    statement."""
    chosen = (
        select(items.c.id)
        .where(items.c.story_id == story_id)
        .order_by(items.c.id.desc())
        .limit(limit)
        .subquery("chosen")
    )
    query = (
        select(
            stories.c.title.label("story_title"),
            stories.c.first_seen_at.label("story_first"),
            stories.c.last_seen_at.label("story_last"),
            stories.c.item_count,
            *_ROW_COLUMNS,
        )
        .select_from(
            stories.outerjoin(chosen, true())
            .outerjoin(items, items.c.id == chosen.c.id)
            .outerjoin(feeds, items.c.feed_id == feeds.c.id)
            .outerjoin(hits, hits.c.item_id == items.c.id)
        )
        .where(stories.c.id == story_id)
        .order_by(items.c.id.desc(), hits.c.id)
    )
    with store.read() as conn:
        found = list(conn.execute(query))
    if not found:
        return None
    head = found[0]
    rows = fold_items(r._mapping for r in found)
    rows.reverse()
    return StoryPage(
        story_id, head.story_title, head.story_first, head.story_last,
        max(int(head.item_count), len(rows)), rows,
    )  # fmt: skip


#: An item's columns, then one of its hits' (NULL without hits): rows ``fold_items`` reads.
_ROW_COLUMNS = (
    *_ITEM_COLUMNS,
    hits.c.watchlist.label("hit_watchlist"),
    hits.c.matches.label("hit_matches"),
)


def item_rows(conn: Any, chosen: Any) -> list[ItemRow]:
    """The items whose ids ``chosen`` (a subquery of ``id``) gives, newest first, with
    their feeds and hits: one statement."""
    query = (
        select(*_ROW_COLUMNS)
        .select_from(
            items.join(chosen, items.c.id == chosen.c.id)
            .outerjoin(feeds, items.c.feed_id == feeds.c.id)
            .outerjoin(hits, hits.c.item_id == items.c.id)
        )
        .order_by(items.c.id.desc(), hits.c.id)
    )
    return fold_items(r._mapping for r in conn.execute(query))


def hits_per_day(store: Store, watchlist: str, *, days: int, today: date) -> list[tuple[date, int]]:
    """Hits stored per UTC day over the ``days`` days ending ``today`` (zeros included)."""
    start = datetime(today.year, today.month, today.day) - timedelta(days=days - 1)
    start_utc = start.replace(tzinfo=UTC)
    day = func.date(hits.c.created_at)  # stored as naive UTC on both backends
    query = (
        select(day.label("day"), func.count().label("n"))
        .where(and_(hits.c.watchlist == watchlist, hits.c.created_at >= start_utc))
        .group_by(day)
    )
    counts: dict[date, int] = {}
    with store.read() as conn:
        for d, n in conn.execute(query):
            key = d if isinstance(d, date) else date.fromisoformat(str(d))
            counts[key] = int(n)
    first = start.date()
    span = [first + timedelta(days=i) for i in range(days)]
    return [(d, counts.get(d, 0)) for d in span]


def top_outlets(
    store: Store, watchlist: str, *, since: datetime, limit: int = 10
) -> list[tuple[str, str | None, int]]:
    """The feeds with the most hits of ``watchlist`` since ``since``: (name, site, hits)."""
    n = func.count().label("n")
    query = (
        select(feeds.c.title, feeds.c.url, feeds.c.site_url, n)
        .select_from(
            hits.join(items, hits.c.item_id == items.c.id).join(
                feeds, items.c.feed_id == feeds.c.id
            )
        )
        .where(and_(hits.c.watchlist == watchlist, hits.c.created_at >= since))
        .group_by(feeds.c.id, feeds.c.title, feeds.c.url, feeds.c.site_url)
        .order_by(n.desc(), feeds.c.url)
        .limit(limit)
    )
    with store.read() as conn:
        return [(r.title or r.url, r.site_url, int(r.n)) for r in conn.execute(query)]


def matched_stories(
    store: Store,
    *,
    since: datetime | None = None,
    watchlists: Sequence[str] | None = None,
    feed_id: int | None = None,
    lang: str | None = None,
    q: str | None = None,
    limit: int = 50,
) -> list[StoryRecord]:
    """Stories with a hit (of one of ``watchlists``, if given) stored since ``since``,
    the most recently seen first, each with its items; ``feed_id``, ``lang``: only stories
    with an item of that feed, in that language; ``q``: only stories with an item
    containing every word (then stories without hits count too)."""
    conds: list[Any] = []
    if q is not None:
        found = _search(store, q)
        if found is None:
            return []
        source: Any = items
        conds.append(items.c.id.in_(found))
    else:
        source = hits.join(items, hits.c.item_id == items.c.id)
    if since is not None:
        conds.append((items.c.first_seen_at if q is not None else hits.c.created_at) >= since)
    if watchlists is not None:
        if q is not None:
            source = source.join(hits, hits.c.item_id == items.c.id)
        conds.append(hits.c.watchlist.in_(list(watchlists)))
    if feed_id is not None:
        conds.append(items.c.feed_id == feed_id)
    if lang is not None:
        conds.append(items.c.lang == lang)
    cols = (stories.c.id, stories.c.title, stories.c.first_seen_at, stories.c.last_seen_at)
    if q is None and feed_id is None and lang is None:
        # Walk the stories most recently seen first (an index) and keep those with a
        # hit: a few probes per story shown, whatever the number of hits.
        probe = hits.join(items, hits.c.item_id == items.c.id)
        has_hit = [items.c.story_id == stories.c.id]
        if watchlists is not None:
            has_hit.append(hits.c.watchlist.in_(list(watchlists)))
        query = select(*cols).where(exists().select_from(probe).where(and_(*has_hit)))
        if since is not None:
            query = query.where(stories.c.last_seen_at >= since)
    else:
        wanted = select(items.c.story_id).distinct().select_from(source)
        if conds:
            wanted = wanted.where(and_(*conds))
        sub = wanted.subquery()
        query = select(*cols).select_from(stories.join(sub, stories.c.id == sub.c.story_id))
    query = query.order_by(stories.c.last_seen_at.desc(), stories.c.id.desc()).limit(limit)
    with store.read() as conn:
        rows = list(conn.execute(query))
        members = items_by_story(conn, [r.id for r in rows])
    return [
        StoryRecord(r.id, r.title, r.first_seen_at, r.last_seen_at, members.get(r.id, []))
        for r in rows
    ]


def generation(store: Store) -> tuple[int, int]:
    """The newest item and hit ids: they move whenever a poll stores something (the web
    view's kept pages are dropped then)."""
    with store.read() as conn:
        row = conn.execute(
            select(select(func.max(items.c.id)).scalar_subquery(),
                   select(func.max(hits.c.id)).scalar_subquery())
        ).one()  # fmt: skip
    return int(row[0] or 0), int(row[1] or 0)


def feed_names(store: Store) -> dict[str, str]:
    """Feed URL -> the name to show (its title, else the URL)."""
    with store.read() as conn:
        return {r.url: r.title or r.url for r in conn.execute(select(feeds.c.url, feeds.c.title))}
