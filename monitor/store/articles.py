"""Repository API for article pages and for listing stored items.

An item whose article is to be read is stored as ``article = 'pending'`` together with its
feed-text hits (see :func:`monitor.store.feeds.save_polls`). Reading the page comes after;
:func:`save_articles` then records, in one transaction per batch, the page's text as the
item's ``content`` with the extra hits, or the reason it could not be used (counted on the
feed). An item leaves "pending" once, so nothing is fetched twice; one left pending by a
crash is found again by :func:`pending_articles`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update

from monitor.models import Item, Match
from monitor.store.browse import ItemRow, item_rows
from monitor.store.db import Store, utcnow
from monitor.store.feeds import stored_item
from monitor.store.rows import item_text as item_text
from monitor.store.schema import feeds, hits, items

PENDING = "pending"
DONE = "done"
FAILED = "failed"


@dataclass(frozen=True, slots=True)
class PendingArticle:
    """An item whose article page is still to be read."""

    item_id: int
    feed_id: int | None
    feed_url: str | None
    item: Item


def pending_articles(store: Store, *, limit: int = 1000) -> list[PendingArticle]:
    """Items still waiting for their article (oldest first): those a crash or a stop left."""
    query = (
        select(items, feeds.c.url.label("feed_url"))
        .select_from(items.outerjoin(feeds, items.c.feed_id == feeds.c.id))
        .where(items.c.article == PENDING)
        .order_by(items.c.id)
        .limit(limit)
    )
    with store.read() as conn:
        return [
            PendingArticle(r.id, r.feed_id, r.feed_url, stored_item(r)) for r in conn.execute(query)
        ]


@dataclass(frozen=True, slots=True)
class ArticleWrite:
    """What reading one item's article came to: its text and matches, or why not."""

    item_id: int
    feed_id: int | None
    text: str | None  # the extracted text (already capped); None: keep the feed text
    error: str | None = None  # why the page was not used
    matches: Sequence[Match] = ()


@dataclass(slots=True)
class ArticlesSaved:
    done: int = 0
    failed: int = 0
    new_hits: int = 0
    hits_by_watchlist: dict[str, int] = field(default_factory=dict)


def save_articles(
    store: Store, writes: Sequence[ArticleWrite], *, now: datetime | None = None
) -> ArticlesSaved:
    """Store read articles in one transaction: the text with its new hits (one per item
    and watchlist: a watchlist the feed text already hit keeps that hit), or the failure,
    counted on the item's feed. Items no longer pending (another instance finished them)
    are left alone."""
    now = now or utcnow()
    saved = ArticlesSaved()
    with store.write() as conn:
        ids = [w.item_id for w in writes]
        still = set(
            conn.execute(
                select(items.c.id).where(items.c.id.in_(ids), items.c.article == PENDING)
            ).scalars()
        )
        done = [w for w in writes if w.item_id in still and w.text is not None]
        failed = [w for w in writes if w.item_id in still and w.text is None]
        if done:
            conn.execute(
                update(items)
                .where(items.c.id == bindparam("id_"))
                .values(
                    content=bindparam("content_"),
                    text_source="article",
                    article=DONE,
                    article_error=None,
                ),
                [{"id_": w.item_id, "content_": w.text} for w in done],
            )
        if failed:
            conn.execute(
                update(items)
                .where(items.c.id == bindparam("id_"))
                .values(article=FAILED, article_error=bindparam("error_")),
                [{"id_": w.item_id, "error_": w.error or "unknown"} for w in failed],
            )
            per_feed: dict[int, tuple[int, str]] = {}
            for w in failed:
                if w.feed_id is not None:
                    count, _ = per_feed.get(w.feed_id, (0, ""))
                    per_feed[w.feed_id] = (count + 1, w.error or "unknown")
            for feed_id, (count, error) in sorted(per_feed.items()):
                conn.execute(
                    update(feeds)
                    .where(feeds.c.id == feed_id)
                    .values(
                        article_failures=feeds.c.article_failures + count,
                        article_last_error=error,
                        article_last_error_at=now,
                    )
                )
        rows: list[dict[str, Any]] = []
        for w in done:
            grouped: dict[str, list[Match]] = {}
            for m in w.matches:
                grouped.setdefault(m.watchlist, []).append(m)
            rows += [
                {
                    "item_id": w.item_id,
                    "watchlist": watchlist,
                    "matches": [m.to_dict() for m in ms],
                    "created_at": now,
                }
                for watchlist, ms in grouped.items()
            ]
        if rows:
            stmt = (
                store.insert(hits)
                .on_conflict_do_nothing(index_elements=["item_id", "watchlist"])
                .returning(hits.c.watchlist)
            )
            for watchlist in conn.execute(stmt, rows).scalars():
                saved.new_hits += 1
                saved.hits_by_watchlist[watchlist] = saved.hits_by_watchlist.get(watchlist, 0) + 1
        saved.done, saved.failed = len(done), len(failed)
    return saved


# --------------------------------------------------------------------------- items


def list_items(
    store: Store,
    *,
    since: datetime | None = None,
    feed_url: str | None = None,
    limit: int | None = None,
) -> list[ItemRow]:
    """Stored items with their feeds and hits, oldest first; with ``limit``, the newest
    ``limit`` of them (still oldest first). ``records.item_record`` gives each's JSON."""
    chosen = select(items.c.id).select_from(items.outerjoin(feeds, items.c.feed_id == feeds.c.id))
    if since is not None:
        chosen = chosen.where(items.c.first_seen_at >= since)
    if feed_url is not None:
        chosen = chosen.where(feeds.c.url == feed_url)
    chosen = chosen.order_by(items.c.id.desc())
    if limit is not None:
        chosen = chosen.limit(limit)
    with store.read() as conn:
        rows = item_rows(conn, chosen.subquery())
    rows.reverse()
    return rows
