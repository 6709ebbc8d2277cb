"""What ``monitor status`` reports, read from the database alone.

The last finished poll cycle, the feeds failing and why, today's hits (UTC day), what
waits in the outbox and the age of the oldest (in all, and per kind: mail, webhook), and
the instances that run.
"""

from __future__ import annotations

from datetime import UTC, datetime, time

from sqlalchemy import Connection, func, select

from monitor.store import feeds as feed_store
from monitor.store import instances as instance_store
from monitor.store import outbox as outbox_store
from monitor.store import stories as story_store
from monitor.store.db import Store
from monitor.store.schema import feeds, hits, outbox
from monitor.store.status_rows import ArticleFailures as ArticleFailures
from monitor.store.status_rows import OutboxCounts as OutboxCounts
from monitor.store.status_rows import OutboxState as OutboxState
from monitor.store.status_rows import StatusReport as StatusReport


def outbox_state(store: Store, conn: Connection | None = None) -> OutboxState:
    """Queued (and the oldest of them), failed and sent rows, in all and per kind."""
    with store.reading(conn) as conn:
        rows = conn.execute(
            select(
                outbox.c.kind, outbox.c.status, func.count(), func.min(outbox.c.created_at)
            ).group_by(outbox.c.kind, outbox.c.status)
        ).all()
    return OutboxState.of(rows)


def status_report(store: Store, *, now: datetime | None = None) -> StatusReport:
    """Every part read in one snapshot (:meth:`Store.snapshot`), so that they agree: the
    outbox's counts and the claims on it, say, as of one moment."""
    now = now or datetime.now(UTC)
    midnight = datetime.combine(now.astimezone(UTC).date(), time(0), tzinfo=UTC)
    with store.snapshot() as conn:
        active = conn.execute(
            select(func.count()).select_from(feeds).where(feeds.c.retired_at.is_(None))
        ).scalar_one()
        by_watchlist = {
            str(w): int(n)
            for w, n in conn.execute(
                select(hits.c.watchlist, func.count())
                .where(hits.c.created_at >= midnight)
                .group_by(hits.c.watchlist)
            )
        }
        article_failures = [
            ArticleFailures(**dict(r._mapping))
            for r in conn.execute(
                select(
                    feeds.c.url,
                    feeds.c.article_failures.label("count"),
                    feeds.c.article_last_error.label("last_error"),
                    feeds.c.article_last_error_at.label("last_error_at"),
                )
                .where(feeds.c.retired_at.is_(None), feeds.c.article_failures > 0)
                .order_by(feeds.c.article_failures.desc(), feeds.c.url)
            )
        ]
        return StatusReport(
            now=now,
            last_run=feed_store.last_poll_run(store, conn),
            active_feeds=int(active),
            failing=outbox_store.failing_feeds(store, conn),
            hits_today=sum(by_watchlist.values()),
            hits_today_by_watchlist=by_watchlist,
            outbox=outbox_state(store, conn),
            instances=instance_store.list_instances(store, conn),
            holdings=instance_store.holdings(store, now=now, conn=conn),
            stories=story_store.story_stats(store, now=now, conn=conn),
            article_failures=article_failures,
        )
