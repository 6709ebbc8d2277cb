"""What ``monitor status`` reports, read from the database alone.

The last finished poll cycle, the feeds failing and why, today's hits (UTC day), what
waits in the outbox and the age of the oldest (in all, and per kind: mail, webhook), and
the instances that run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from typing import Any

from sqlalchemy import func, select

from monitor.store import feeds as feed_store
from monitor.store import instances as instance_store
from monitor.store import outbox as outbox_store
from monitor.store import stories as story_store
from monitor.store.db import Store
from monitor.store.schema import feeds, hits, outbox


@dataclass(frozen=True, slots=True)
class OutboxCounts:
    """Outbox rows of one kind (or of all) by status."""

    queued: int = 0
    oldest_queued_at: datetime | None = None
    failed: int = 0
    sent: int = 0


@dataclass(frozen=True, slots=True)
class OutboxState:
    queued: int
    oldest_queued_at: datetime | None
    failed: int
    #: Per kind, every kind present (zeros included): ``mail`` and ``webhook``.
    by_kind: Mapping[str, OutboxCounts] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ArticleFailures:
    """A feed some of whose article pages could not be read (the feed text was kept)."""

    url: str
    count: int
    last_error: str | None
    last_error_at: datetime | None


@dataclass(frozen=True, slots=True)
class StatusReport:
    now: datetime
    last_run: Mapping[str, Any] | None
    active_feeds: int
    failing: list[outbox_store.FailingFeed]
    hits_today: int  # since 00:00 UTC
    hits_today_by_watchlist: dict[str, int]
    outbox: OutboxState
    instances: list[instance_store.Instance]
    #: Live claims per holder (``host:pid``); a holder absent from ``instances`` is gone.
    holdings: dict[str, instance_store.Holdings]
    stories: story_store.StoryStats | None = None
    #: Active feeds with article pages not read, most first.
    article_failures: list[ArticleFailures] = field(default_factory=list)

    def alive(self, instance: instance_store.Instance) -> bool:
        """Whether the instance's heartbeat is recent."""
        return self.now - instance.heartbeat_at <= instance_store.STALE_AFTER


def _aware(when: Any) -> datetime | None:
    if isinstance(when, str):  # func.min loses the column type
        when = datetime.fromisoformat(when)
    if when is not None and when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when  # type: ignore[no-any-return]


def outbox_state(store: Store) -> OutboxState:
    """Queued (and the oldest of them), failed and sent rows, in all and per kind."""
    figures: dict[str, dict[str, Any]] = {
        kind: {"queued": 0, "oldest_queued_at": None, "failed": 0, "sent": 0}
        for kind in (outbox_store.MAIL, outbox_store.WEBHOOK)
    }
    with store.read() as conn:
        rows = conn.execute(
            select(
                outbox.c.kind, outbox.c.status, func.count(), func.min(outbox.c.created_at)
            ).group_by(outbox.c.kind, outbox.c.status)
        ).all()
    for kind, status, count, oldest in rows:
        counts = figures.setdefault(
            kind, {"queued": 0, "oldest_queued_at": None, "failed": 0, "sent": 0}
        )
        if status in counts:
            counts[status] = int(count)
        if status == outbox_store.QUEUED:
            counts["oldest_queued_at"] = _aware(oldest)
    by_kind = {kind: OutboxCounts(**f) for kind, f in figures.items()}
    oldest_all = [c.oldest_queued_at for c in by_kind.values() if c.oldest_queued_at]
    return OutboxState(
        queued=sum(c.queued for c in by_kind.values()),
        oldest_queued_at=min(oldest_all, default=None),
        failed=sum(c.failed for c in by_kind.values()),
        by_kind=by_kind,
    )


def status_report(store: Store, *, now: datetime | None = None) -> StatusReport:
    now = now or datetime.now(UTC)
    midnight = datetime.combine(now.astimezone(UTC).date(), time(0), tzinfo=UTC)
    with store.read() as conn:
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
        last_run=feed_store.last_poll_run(store),
        active_feeds=int(active),
        failing=outbox_store.failing_feeds(store),
        hits_today=sum(by_watchlist.values()),
        hits_today_by_watchlist=by_watchlist,
        outbox=outbox_state(store),
        instances=instance_store.list_instances(store),
        holdings=instance_store.holdings(store, now=now),
        stories=story_store.story_stats(store, now=now),
        article_failures=article_failures,
    )
