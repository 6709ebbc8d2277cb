"""What ``monitor status`` reports, read from the database alone.

The last finished poll cycle, the feeds failing and why, today's hits (UTC day), the mail
waiting in the outbox and the age of the oldest, and the instances that run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
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
class OutboxState:
    queued: int
    oldest_queued_at: datetime | None
    failed: int


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

    def alive(self, instance: instance_store.Instance) -> bool:
        """Whether the instance's heartbeat is recent."""
        return self.now - instance.heartbeat_at <= instance_store.STALE_AFTER


def outbox_state(store: Store) -> OutboxState:
    with store.read() as conn:
        queued, oldest = conn.execute(
            select(func.count(), func.min(outbox.c.created_at)).where(
                outbox.c.status == outbox_store.QUEUED
            )
        ).one()
        failed = conn.execute(
            select(func.count()).where(outbox.c.status == outbox_store.FAILED)
        ).scalar_one()
    if oldest is not None and oldest.tzinfo is None:  # func.min loses the column type
        oldest = oldest.replace(tzinfo=UTC)
    elif isinstance(oldest, str):
        oldest = datetime.fromisoformat(oldest).replace(tzinfo=UTC)
    return OutboxState(int(queued), oldest, int(failed))


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
    )
