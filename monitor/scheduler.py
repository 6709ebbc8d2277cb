"""The daemon (``monitor run``): APScheduler wiring, signals and sd_notify; nothing else.

The work itself is the pipeline's (``poll_due``, ``send_digests``); this module decides
*when* it runs and keeps the process trustworthy under systemd.

Jobs (APScheduler 3, ``AsyncIOScheduler``, all times UTC):

``poll``               every ``polling.tick`` (5 s): polls the feeds that are *due*. Each
                       feed's own schedule is ``feeds.next_due_at`` in the database, set
                       after every poll by :mod:`monitor.schedule_policy` (its interval,
                       adaptive to activity, server hints and failures, with jitter). One
                       instance at a time, coalesced, misfire grace of one tick. A cycle
                       with new hits is followed at once by the immediate digests (one
                       batched mail each; every 30 s already during a long cycle).
``digest:<email>``     one per scheduled subscriber, at ``schedules.next_digest_time``
                       in the subscriber's zone (quiet hours respected); it re-arms itself.
                       A digest missed while the daemon was down runs at start.
``outbox``             every 30 s: retries queued mail whose backoff has passed, and posts
                       to the webhooks that are due (their schedules, their retries).
``heartbeat``          every minute: the instance's row, for ``monitor status``.

Signals: SIGTERM/SIGINT stop (no new jobs; in-flight fetches are abandoned between
transactions; an SMTP conversation in progress gets :data:`SEND_GRACE` seconds to finish,
else it is dropped before the server commits and the mail stays queued); SIGHUP reloads
the config and the watchlists (an invalid file keeps the old version, logged as
file:line). The config file and the watchlists are also reloaded when they change on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import socket
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from monitor import pipeline
from monitor.config import Settings, SubscriberConfig, load_settings, locate_config
from monitor.errors import DatabaseUnusable, MonitorError
from monitor.match import Matcher
from monitor.notify import Notifier
from monitor.pipeline import window_file
from monitor.schedules import next_digest_time
from monitor.store import Store, open_store
from monitor.store import feeds as feed_store
from monitor.store import instances as instance_store
from monitor.store import lock as store_lock
from monitor.store import outbox as outbox_store
from monitor.store import status as status_store
from monitor.store.db import utcnow
from monitor.watchlists import WatchlistRegistry
from monitor.wording import plural

log = logging.getLogger(__name__)

#: Seconds an SMTP send in progress may take to finish after SIGTERM.
SEND_GRACE = 5.0
#: Seconds cancelled work may take to clean up (release claims, close connections).
CLEANUP_GRACE = 5.0
OUTBOX_EVERY = 30.0
#: During a poll cycle longer than this, immediate alerts go out every this many seconds.
LONG_CYCLE_FLUSH = 30.0
#: After a cycle found the database unusable (corrupt, read-only ...), cycles are skipped
#: for this long, doubling on each failure up to DATABASE_RETRY_MAX.
DATABASE_RETRY = 30.0
DATABASE_RETRY_MAX = 600.0
HEARTBEAT_EVERY = instance_store.HEARTBEAT_EVERY.total_seconds()
#: Settings that only a restart can change.
RESTART_ONLY = (
    "database.url", "metrics.listen", "web.listen", "web.token_file", "web.trust_proxy_auth",
)  # fmt: skip


class _SkippedRunFilter(logging.Filter):
    """A tick that finds the previous cycle still running is normal, not a warning."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances reached" not in record.getMessage()


def run_daemon(config: str | None, settings: Settings) -> int:
    """``monitor run``: take the lock, migrate, load, and serve until SIGTERM. Exit status."""
    lock = store_lock.acquire(settings.database_url)
    try:
        registry = pipeline.watchlist_registry(settings.watchlists_dir)  # a bad file stops us here
        store = open_store(settings.database_url, upgrade=True)
        try:
            daemon = Daemon(config, settings, store, registry)
            asyncio.run(daemon.main())
        finally:
            store.dispose()
    finally:
        if lock is not None:
            lock.release()
    return 0


class Daemon:
    def __init__(
        self,
        config: str | None,
        settings: Settings,
        store: Store,
        registry: WatchlistRegistry[Matcher],
    ) -> None:
        self.config = config
        self.settings = settings
        self.store = store
        self.registry = registry
        self.instance = pipeline.instance_name()
        self.notifier = Notifier()
        self.metrics: Any = None
        self.web: Any = None
        self.scheduler: AsyncIOScheduler | None = None
        self.pool: pipeline.ParsePool | None = None
        self.stories = pipeline.story_index(settings)  # the window of recent items
        # On SQLite the window is kept in a file between runs (``pipeline.window_file``):
        # loaded at start, saved at a clean stop.
        self._window_file = window_file.window_path(settings.database_url)
        self._pool_version = registry.version
        self._config_path = locate_config(config, os.environ)
        self._config_stamp = _stamp(self._config_path)
        self._stop = asyncio.Event()
        self._stopping = False
        self._reload_lock = asyncio.Lock()
        self._poll_tasks: set[asyncio.Task[Any]] = set()
        self._send_tasks: set[asyncio.Task[Any]] = set()
        self._last_line = "no poll cycle yet"
        self._database_retry = 0.0  # seconds to wait after the last unusable-database error
        self._database_retry_at = 0.0  # time.monotonic() before which cycles are skipped
        self._started = time.monotonic()

    # -- lifecycle

    async def main(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        logging.getLogger("apscheduler.scheduler").addFilter(_SkippedRunFilter())
        watchdog: asyncio.Task[None] | None = None
        try:
            await asyncio.to_thread(self._prepare)
            self.pool = pipeline.ParsePool(
                self.settings["polling.parse_workers"], self.registry.matcher
            )
            self._start_metrics()
            await self._start_web()
            self.scheduler = AsyncIOScheduler(timezone=UTC)
            self._schedule_poll(first=True)
            self.scheduler.add_job(
                self._outbox_job, IntervalTrigger(seconds=OUTBOX_EVERY), id="outbox",
                max_instances=1, coalesce=True, misfire_grace_time=int(OUTBOX_EVERY),
            )  # fmt: skip
            self.scheduler.add_job(
                self._heartbeat_job, IntervalTrigger(seconds=HEARTBEAT_EVERY), id="heartbeat",
                max_instances=1, coalesce=True, misfire_grace_time=int(HEARTBEAT_EVERY),
            )  # fmt: skip
            await self._schedule_digests()
            self.scheduler.start()
            if self.notifier.watchdog_interval:
                watchdog = asyncio.create_task(self._watchdog(self.notifier.watchdog_interval))
            feeds = await asyncio.to_thread(feed_store.feed_count, self.store)
            log.info(
                "monitor run: %s, %s, %s; database %s",
                plural(feeds, "feed"),
                plural(len(self.registry.watchlists), "watchlist"),
                plural(len(self.settings.subscribers), "subscriber"),
                self.store.engine.url.render_as_string(hide_password=True),
            )
            self.notifier.ready(self._status_line())
            await self._stop.wait()
        finally:
            await self._shutdown()
            if watchdog is not None:
                watchdog.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watchdog
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            self.notifier.close()

    def _prepare(self) -> None:
        """At start, in a thread: free what a killed predecessor held, sync config to the db."""
        freed = instance_store.release_dead_claims(self.store, socket.gethostname())
        if freed:
            log.info("freed %d claims left by a stopped instance", freed)
        instance_store.register(self.store, self.instance, socket.gethostname(), os.getpid())
        pipeline.sync_config(self.settings, self.store)
        if self._window_file is not None:
            saved = window_file.load(self._window_file, self.store, self.stories.params)
            if saved is not None:  # else the first poll fills the window from the store
                self.stories = saved
                log.info("story window: %s from the last run", plural(len(saved), "item"))

    def request_stop(self, sig: int = signal.SIGTERM) -> None:
        if self._stopping:
            return
        self._stopping = True
        log.info("%s: stopping", signal.Signals(sig).name)
        self.notifier.stopping("stopping")
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.pause()  # no new jobs; running ones are ours to end
        for task in self._poll_tasks:
            task.cancel()  # fetches are abandoned; a feed's write is never cut (see poll_feed)
        self._stop.set()

    async def _shutdown(self) -> None:
        started = time.monotonic()
        if self._send_tasks:
            _done, pending = await asyncio.wait(set(self._send_tasks), timeout=SEND_GRACE)
            for task in pending:
                log.warning("stopping: abandoning a mail run; its messages stay queued")
                task.cancel()
        for task in self._poll_tasks:
            task.cancel()
        # Cancelled work cleans up (claims released, connections closed); bounded, so a
        # server that stops answering cannot hold the stop beyond TimeoutStopSec.
        left = {*self._poll_tasks, *self._send_tasks}
        stuck: set[asyncio.Task[Any]] = set()
        if left:
            _done, stuck = await asyncio.wait(left, timeout=CLEANUP_GRACE)
            if stuck:
                log.warning("stopping: %d tasks did not finish cleaning up", len(stuck))
        # Saved once no poll can change it (a poll still cleaning up might).
        if self._window_file is not None and len(self.stories) and not stuck:
            await asyncio.to_thread(
                window_file.save_quietly, self._window_file, self.stories, self.store
            )
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if self.pool is not None:
            await asyncio.to_thread(self.pool.close)
        if self.metrics is not None:
            self.metrics.close()
        if self.web is not None:
            with contextlib.suppress(Exception):
                await self.web.stop()
        with contextlib.suppress(Exception):
            await asyncio.to_thread(instance_store.unregister, self.store, self.instance)
        log.info("stopped in %.1fs", time.monotonic() - started)

    async def _watchdog(self, every: float) -> None:
        # Runs on the event loop: a blocked loop stops the pings and systemd restarts us.
        while True:
            self.notifier.watchdog()
            await asyncio.sleep(every)

    def _start_metrics(self) -> None:
        listen = self.settings["metrics.listen"]
        if not listen:
            return
        from monitor.metrics import Metrics, OutboxFigures, OutboxProbe, StoriesProbe
        from monitor.store import stories as story_store

        def read() -> dict[str, OutboxFigures]:
            state = status_store.outbox_state(self.store)
            return {
                kind: OutboxFigures(c.queued, c.oldest_queued_at, c.failed, c.sent)
                for kind, c in state.by_kind.items()
            }

        def stories() -> tuple[int, float | None]:
            stats = story_store.story_stats(self.store, now=utcnow())
            return stats.today, stats.items_per_story_7d

        self.metrics = Metrics(OutboxProbe(read), StoriesProbe(stories))
        self.metrics.serve(listen)

    async def _start_web(self) -> None:
        """The web view beside polling: ``monitor web`` as a child process (see
        :mod:`monitor.web.process`: our interpreter and event loop stay the poller's)."""
        listen = self.settings["web.listen"]
        if not listen:
            return
        from monitor.web.process import WebProcess

        web = WebProcess(self.config, listen, lambda: self.settings)
        await web.start()
        self.web = web
        log.info("web view on http://%s/ (process %s)", listen, web.pid)

    # -- jobs

    def _track(
        self, tasks: set[asyncio.Task[Any]], work: Callable[[], Coroutine[Any, Any, None]]
    ) -> asyncio.Task[None]:
        """Run ``work`` as a task the stop sequence knows about."""
        task = asyncio.create_task(work())
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return task

    def _schedule_poll(self, *, first: bool = False) -> None:
        assert self.scheduler is not None
        tick = max(0.1, float(self.settings["polling.tick"]))
        self.scheduler.add_job(
            self._poll_job,
            IntervalTrigger(seconds=tick),
            id="poll",
            replace_existing=True,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, math.ceil(tick)),
            next_run_time=datetime.now(UTC) if first else None,
        )

    async def _poll_job(self) -> None:
        if self._stopping or time.monotonic() < self._database_retry_at:
            return
        try:
            await self._track(self._poll_tasks, self._poll_cycle)
            if self._database_retry:
                log.info("the database is usable again")
                self._database_retry = 0.0
        except DatabaseUnusable as exc:
            # Nothing this daemon does will fix the file: one line per cycle tried, and
            # cycles further and further apart, instead of a traceback every tick.
            self._database_retry = min(
                DATABASE_RETRY_MAX, max(DATABASE_RETRY, 2 * self._database_retry)
            )
            self._database_retry_at = time.monotonic() + self._database_retry
            self._last_line = f"database unusable: {exc.message}"
            log.error(
                "poll cycle failed: %s; next try in %.0fs", exc.one_line(), self._database_retry
            )
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            log.info("poll cycle interrupted by stop; finished feeds are stored")
        except Exception:
            # A bug, or the database gone: logged with its traceback, the next tick retries.
            log.exception("poll cycle failed")

    async def _poll_cycle(self) -> None:
        await self._reload_if_changed()
        assert self.pool is not None
        if self.registry.version != self._pool_version:
            self.pool.update(self.registry.matcher)
            self._pool_version = self.registry.version
        due = await asyncio.to_thread(feed_store.count_due_feeds, self.store, utcnow())
        if not due:
            return
        polling = asyncio.ensure_future(
            pipeline.poll_due(
                self.settings,
                self.store,
                self.registry.matcher,
                pool=self.pool,
                instance=self.instance,
                stories=self.stories,
            )
        )
        try:
            while not (await asyncio.wait({polling}, timeout=LONG_CYCLE_FLUSH))[0]:
                # A long cycle (thousands of feeds, slow hosts): alerts for the hits stored
                # so far go out now rather than when the last feed answers.
                if self._mails_at_once() and not self._stopping:
                    await asyncio.shield(self._track(self._send_tasks, lambda: self._send(None)))
        except asyncio.CancelledError:
            polling.cancel()  # poll_due then releases its claims; a write under way completes
            with contextlib.suppress(asyncio.CancelledError):
                await polling
            raise
        summary = polling.result()
        self._last_line = f"last cycle {_clock()}: {summary.line()}"
        if self.metrics is not None:
            self.metrics.observe_poll(
                fetched=summary.fetched,
                not_modified=summary.not_modified,
                failed=summary.failed,
                failure_kinds=summary.failure_kinds,
                latencies=summary.latencies,
                new_items=summary.new_items,
                hits_by_watchlist=summary.hits_by_watchlist,
            )
        self.notifier.status(self._status_line())
        if summary.new_hits and self._mails_at_once() and not self._stopping:
            # One run for everyone due: the cycle's hits go out batched, one mail each.
            # Shielded: a stop cancels the poll, never a mail conversation half-way.
            await asyncio.shield(self._track(self._send_tasks, lambda: self._send(None)))

    def _mails_at_once(self) -> bool:
        return any(
            s.schedule == "immediate" or s.immediate_priority for s in self.settings.subscribers
        ) or any(w.schedule == "immediate" for w in self.settings.webhooks)

    async def _outbox_job(self) -> None:
        if not self._stopping:
            await asyncio.shield(self._track(self._send_tasks, lambda: self._send(None)))

    async def _heartbeat_job(self) -> None:
        try:
            await asyncio.to_thread(instance_store.heartbeat, self.store, self.instance)
        except DatabaseUnusable as exc:
            log.warning("heartbeat not recorded: %s", exc.message)

    async def _digest_job(self, email: str) -> None:
        if self._stopping:
            return
        await asyncio.shield(self._track(self._send_tasks, lambda: self._send([email])))
        subscriber = self._subscriber(email)
        if subscriber is not None and not self._stopping:
            self._arm_digest(subscriber, datetime.now(UTC))

    async def _send(self, emails: list[str] | None) -> None:
        """Queue what is due (for ``emails``, else for everyone) and deliver what is queued
        and due, retries included: ``pipeline.send_digests`` decides what is due."""
        sent = 0
        targets: list[str | None] = [None] if emails is None else list(emails)
        for email in targets:
            if self._stopping:
                break
            try:
                summary = await pipeline.send_digests(
                    self.settings, self.store, subscriber=email, watchlists=self.registry.watchlists
                )
            except MonitorError as exc:
                log.error("digests for %s: %s", email or "subscribers", exc.one_line())
                continue
            except Exception:
                log.exception("digests for %s failed", email or "subscribers")
                continue
            sent += summary.sent
        hooks_sent = 0
        if emails is None and self.settings.webhooks and not self._stopping:
            try:  # webhooks due by their schedules, and their retries
                hooks_sent = (
                    await pipeline.send_webhooks(
                        self.settings, self.store, watchlists=self.registry.watchlists
                    )
                ).sent
            except MonitorError as exc:
                log.error("webhooks: %s", exc.one_line())
            except Exception:
                log.exception("webhooks failed")
        if self.metrics is not None:
            self.metrics.observe_digests(sent, hooks_sent)

    # -- digest schedules

    def _subscriber(self, email: str) -> SubscriberConfig | None:
        return next((s for s in self.settings.subscribers if s.email == email), None)

    async def _schedule_digests(self) -> None:
        """One job per scheduled subscriber; jobs of subscribers gone from the config go."""
        assert self.scheduler is not None
        wanted = {s.email: s for s in self.settings.subscribers if s.schedule != "immediate"}
        for job in self.scheduler.get_jobs():
            if job.id.startswith("digest:") and job.id[len("digest:") :] not in wanted:
                job.remove()
        for subscriber in wanted.values():
            state = await asyncio.to_thread(
                outbox_store.subscriber_state, self.store, subscriber.email
            )
            base = (state.last_digest_at or state.created_at) if state else datetime.now(UTC)
            self._arm_digest(subscriber, base)

    def _arm_digest(self, subscriber: SubscriberConfig, after: datetime) -> None:
        assert self.scheduler is not None
        when = next_digest_time(subscriber, after)
        now = datetime.now(UTC)
        if when < now:
            log.info("digest for %s was due at %s: sending now", subscriber.email, _clock(when))
            when = now
        self.scheduler.add_job(
            self._digest_job,
            DateTrigger(run_date=when, timezone=UTC),
            args=(subscriber.email,),
            id=f"digest:{subscriber.email}",
            replace_existing=True,
            misfire_grace_time=None,  # a late digest is still sent
        )
        log.debug("next digest for %s at %s", subscriber.email, when.isoformat())

    # -- reloading

    def request_reload(self) -> None:
        log.info("SIGHUP: reloading the config and watchlists")
        self.notifier.reloading()
        asyncio.get_running_loop().create_task(self._reload(force=True))

    async def _reload_if_changed(self) -> None:
        if _stamp(self._config_path) != self._config_stamp:
            await self._reload(force=False)
        else:
            async with self._reload_lock:
                await asyncio.to_thread(self.registry.refresh)

    async def _reload(self, *, force: bool) -> None:
        async with self._reload_lock:
            try:
                await self._reload_locked(force)
            finally:
                self.notifier.send(ready=1, status=self._status_line())

    async def _reload_locked(self, force: bool) -> None:
        self._config_stamp = _stamp(self._config_path)
        try:
            settings = await asyncio.to_thread(load_settings, self.config)
        except MonitorError as exc:
            log.error("config not reloaded, keeping the running one: %s", exc.one_line())
            settings = self.settings
        else:
            for key in RESTART_ONLY:
                if settings[key] != self.settings[key]:
                    log.warning("%s changed: restart monitor to apply it", key)
            tick_changed = settings["polling.tick"] != self.settings["polling.tick"]
            web_changed = _web_view(settings) != _web_view(self.settings)
            self.settings = settings
            await asyncio.to_thread(self._sync_config)
            if self.scheduler is not None and not self._stopping:
                if tick_changed:
                    self._schedule_poll()
                await self._schedule_digests()
            if web_changed and self.web is not None and not self._stopping:
                try:  # the view reads the config when it starts
                    await self.web.restart()
                except MonitorError as exc:
                    log.error("%s", exc.one_line())
            log.info(
                "config reloaded from %s: %s, %s",
                settings.source,
                plural(len(settings.feeds), "feed"),
                plural(len(settings.subscribers), "subscriber"),
            )
        if Path(settings.watchlists_dir) != Path(self.registry.directory):
            try:
                self.registry = await asyncio.to_thread(
                    pipeline.watchlist_registry, settings.watchlists_dir
                )
            except MonitorError as exc:
                log.error("watchlists not reloaded from %s: %s", settings.watchlists_dir, exc)
            else:
                self._pool_version = -1  # a new registry: update the pool at the next cycle
            return
        problems = await asyncio.to_thread(self.registry.refresh)
        if force and problems:
            log.error(
                "watchlists: %d problems; still matching with version %d",
                len(problems),
                self.registry.version,
            )

    def _sync_config(self) -> None:
        pipeline.sync_config(self.settings, self.store)

    def _status_line(self) -> str:
        return (
            f"{plural(len(self.registry.watchlists), 'watchlist')} (v{self.registry.version}); "
            f"{self._last_line}"
        )


def _web_view(settings: Settings) -> tuple[Any, ...]:
    """What the web view's child reads of the config and a reload may change."""
    return settings["web.base_url"], settings["web.nice"], settings.subscribers


def _stamp(path: Path | None) -> tuple[int, int] | None:
    if path is None:
        return None
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


def _clock(at: datetime | None = None) -> str:
    return (at or datetime.now(UTC)).astimezone(UTC).strftime("%H:%M:%S UTC")
