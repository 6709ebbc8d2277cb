"""The records of ``monitor status`` (``status.py`` and ``sqlite_read.py`` build them;
see ``rows.py``). No SQLAlchemy here."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from monitor.store.rows import MAIL, QUEUED, WEBHOOK, FailingFeed, StoryStats, stored_value

#: How often a running daemon updates its row (``monitor run``'s heartbeat job).
HEARTBEAT_EVERY = timedelta(seconds=60)
#: An instance whose heartbeat is older than this is shown as not responding.
STALE_AFTER = 3 * HEARTBEAT_EVERY


@dataclass(frozen=True, slots=True)
class Instance:
    id: str
    hostname: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime


@dataclass(frozen=True, slots=True)
class Holdings:
    """What one instance holds now: feeds claimed for polling, mail claimed for sending
    (leases not yet run out)."""

    feeds: int = 0
    outbox: int = 0


def holdings_of(feed_claims: Iterable[Any], outbox_claims: Iterable[Any]) -> dict[str, Holdings]:
    """Holdings per holder from ``(holder, count)`` rows of live feed and outbox claims."""
    counts: dict[str, list[int]] = {}
    for slot, rows in enumerate((feed_claims, outbox_claims)):
        for holder, n in rows:
            counts.setdefault(str(holder), [0, 0])[slot] = int(n)
    return {h: Holdings(f, o) for h, (f, o) in counts.items()}


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

    @classmethod
    def of(cls, rows: Iterable[Any]) -> OutboxState:
        """From ``(kind, status, count, oldest created_at)`` rows, one per kind and status."""
        figures: dict[str, dict[str, Any]] = {
            kind: {"queued": 0, "oldest_queued_at": None, "failed": 0, "sent": 0}
            for kind in (MAIL, WEBHOOK)
        }
        for kind, status, count, oldest in rows:
            counts = figures.setdefault(
                kind, {"queued": 0, "oldest_queued_at": None, "failed": 0, "sent": 0}
            )
            if status in counts:
                counts[status] = int(count)
            if status == QUEUED:
                # min() loses the column's type: text on SQLite
                counts["oldest_queued_at"] = stored_value("oldest_queued_at", oldest)
        by_kind = {kind: OutboxCounts(**f) for kind, f in figures.items()}
        oldest_all = [c.oldest_queued_at for c in by_kind.values() if c.oldest_queued_at]
        return cls(
            queued=sum(c.queued for c in by_kind.values()),
            oldest_queued_at=min(oldest_all, default=None),
            failed=sum(c.failed for c in by_kind.values()),
            by_kind=by_kind,
        )


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
    failing: list[FailingFeed]
    hits_today: int  # since 00:00 UTC
    hits_today_by_watchlist: dict[str, int]
    outbox: OutboxState
    instances: list[Instance]
    #: Live claims per holder (``host:pid``); a holder absent from ``instances`` is gone.
    holdings: dict[str, Holdings]
    stories: StoryStats | None = None
    #: Active feeds with article pages not read, most first.
    article_failures: list[ArticleFailures] = field(default_factory=list)

    def alive(self, instance: Instance) -> bool:
        """Whether the instance's heartbeat is recent."""
        return self.now - instance.heartbeat_at <= STALE_AFTER
