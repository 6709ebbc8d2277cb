"""The daemon's APScheduler jobs, inspected in-process (no network, no subprocess)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import update

from monitor.config import settings_from_mapping
from monitor.match import compile_watchlists
from monitor.scheduler import Daemon
from monitor.schedules import next_digest_time
from monitor.store import open_store
from monitor.store import outbox as outbox_store
from monitor.store.schema import subscribers
from monitor.watchlists import WatchlistRegistry

REPO = Path(__file__).resolve().parents[1]


async def test_jobs_poll_tick_digest_schedules_and_catch_up(tmp_path: Path) -> None:
    settings = settings_from_mapping(
        {
            "database": {"url": f"sqlite:///{tmp_path / 'm.db'}"},
            "watchlists": {"dir": str(REPO / "watchlists")},
            "polling": {"tick": "3s"},
            "subscribers": [
                {"email": "now@example.org", "schedule": "immediate"},
                {"email": "daily@example.org", "schedule": "daily 08:00",
                 "timezone": "Asia/Almaty"},
                {"email": "missed@example.org", "schedule": "daily 08:00"},
            ],
        },
        {},
    )  # fmt: skip
    store = open_store(settings.database_url, upgrade=True)
    try:
        outbox_store.sync_subscribers(store, settings.subscribers)
        two_days_ago = datetime.now(UTC) - timedelta(days=2)
        with store.write() as conn:  # missed@ last had a digest two days ago
            conn.execute(
                update(subscribers)
                .where(subscribers.c.email == "missed@example.org")
                .values(last_digest_at=two_days_ago)
            )
        daemon = Daemon(
            None, settings, store, WatchlistRegistry(settings.watchlists_dir, compile_watchlists)
        )
        daemon.scheduler = AsyncIOScheduler(timezone=UTC)
        daemon.scheduler.start(paused=True)
        try:
            daemon._schedule_poll(first=True)
            await daemon._schedule_digests()
            jobs = {job.id: job for job in daemon.scheduler.get_jobs()}
            assert set(jobs) == {"poll", "digest:daily@example.org", "digest:missed@example.org"}
            poll = jobs["poll"]
            assert poll.max_instances == 1 and poll.coalesce is True
            assert poll.misfire_grace_time == 3  # one tick, not APScheduler's 1 s default
            assert poll.trigger.interval == timedelta(seconds=3)

            daily = jobs["digest:daily@example.org"]
            created = outbox_store.subscriber_state(store, "daily@example.org")
            assert created is not None
            sub = settings.subscribers[1]
            assert daily.next_run_time == next_digest_time(sub, created.created_at)
            local = daily.next_run_time.astimezone(ZoneInfo("Asia/Almaty"))
            assert (local.hour, local.minute) == (8, 0)
            assert daily.misfire_grace_time is None  # a late digest is still sent

            missed = jobs["digest:missed@example.org"]
            assert missed.next_run_time <= datetime.now(UTC) + timedelta(seconds=1)

            # A subscriber removed from the config loses its job on the next sync.
            daemon.settings = settings_from_mapping(
                {"subscribers": [{"email": "now@example.org", "schedule": "immediate"}]}, {}
            )
            await daemon._schedule_digests()
            assert {job.id for job in daemon.scheduler.get_jobs()} == {"poll"}
        finally:
            daemon.scheduler.shutdown(wait=False)
            daemon.notifier.close()
    finally:
        store.dispose()
