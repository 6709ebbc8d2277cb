"""Polling: fetch every due feed, parse and match it, store it.

Work is split so that both cores are used: fetching waits on the network in the event
loop; parsing *and* matching run in a process pool (feedparser and matching are
CPU-bound); storing runs in one writer thread, which writes the polls that finish while
it is busy together in its next transaction (see :class:`GroupWriter`). Feeds are
claimed from the database with a lease, so several processes sharing one database poll
each feed once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from multiprocessing import get_context
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from monitor import schedule_policy
from monitor.config import Settings
from monitor.fetch import FetchOptions, fetch, make_session
from monitor.match import Matcher, compile_watchlists
from monitor.models import FetchResult, Item, Match, Outcome, ParsedFeed
from monitor.parse import parse
from monitor.store import Store
from monitor.store import feeds as feed_store
from monitor.store import stories as story_store
from monitor.store.db import utcnow
from monitor.store.stories import StoryAssigner
from monitor.watchlists import Watchlist

if TYPE_CHECKING:
    from monitor.cluster import StoryIndex

log = logging.getLogger(__name__)

#: Matches of a parsed feed's items, by item identity.
ItemMatches = dict[str, list[Match]]


# --------------------------------------------------------------------------- settings


def fetch_options(settings: Settings) -> FetchOptions:
    """The fetcher's options from the [polling] settings."""
    options = FetchOptions(
        deadline=settings["polling.timeout"],
        max_body_bytes=settings["polling.max_body"],
        max_decoded_bytes=settings["polling.max_decoded"],
        max_connections=settings["polling.concurrency"],
        max_per_host=settings["polling.per_host"],
        allow_private_addresses=settings["polling.allow_private_addresses"],
    )
    agent = settings["polling.user_agent"]
    if agent:
        options = FetchOptions(**{**options.__dict__, "user_agent": agent})
    return options


def story_index(settings: Settings) -> StoryIndex:
    """An empty story window with the [stories] thresholds; it fills itself from the
    store at its first use (see ``store.stories.catch_up``). Keep one per process."""
    from monitor.cluster import StoryIndex, StoryParams

    return StoryIndex(
        StoryParams(
            duplicate_similarity=settings["stories.duplicate_similarity"],
            duplicate_window=settings["stories.duplicate_window"],
            event_similarity=settings["stories.event_similarity"],
            entity_similarity=settings["stories.entity_similarity"],
            event_window=settings["stories.event_window"],
            max_items=settings["stories.max_items"],
        )
    )


def instance_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# --------------------------------------------------------------------------- parse + match


_worker_matcher: Matcher | None = None


def _init_worker(watchlists: Sequence[Watchlist]) -> None:
    global _worker_matcher
    _worker_matcher = compile_watchlists(watchlists)


def parse_and_match(
    body: bytes, headers: dict[str, str], url: str, matcher: Matcher | None = None
) -> tuple[ParsedFeed, ItemMatches]:
    """Parse a body and match every item: the CPU-bound part of a poll, run in a worker.

    Bad input is data: even a parser crash becomes a warning on the feed, never an
    exception that stops the run.
    """
    matcher = matcher or _worker_matcher
    assert matcher is not None, "parse_and_match needs a matcher (or a worker initialised)"
    try:
        parsed = parse(body, headers, url=url)
    except Exception as exc:  # a feed must never stop the run
        log.exception("parser failed on %s", url)
        return ParsedFeed(items=[], warnings=[f"parser failed: {exc!r}"]), {}
    found: ItemMatches = {}
    for item in parsed.items:
        matches = matcher.match(item)
        if matches:
            found[item.identity] = matches
    return parsed, found


class ParsePool:
    """Where parse_and_match runs: worker processes, or this process when ``workers == 1``.

    Workers are started on first use (an all-304 poll starts none) and get the watchlists
    at start; :meth:`update` restarts them when the watchlists change.
    """

    def __init__(self, workers: int, watchlists: Sequence[Watchlist], matcher: Matcher) -> None:
        self.workers = workers if workers > 0 else (os.cpu_count() or 1)
        self._watchlists = list(watchlists)
        self._matcher = matcher
        self._executor: Executor | None = None

    def update(self, watchlists: Sequence[Watchlist], matcher: Matcher) -> None:
        self._watchlists = list(watchlists)
        self._matcher = matcher
        self.close()

    def _ensure(self) -> Executor:
        if self._executor is None:
            if self.workers == 1:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="monitor-parse")
            else:
                # spawn, not fork: this process has threads (the writer, the resolver).
                self._executor = ProcessPoolExecutor(
                    self.workers,
                    mp_context=get_context("spawn"),
                    initializer=_init_worker,
                    initargs=(self._watchlists,),
                )
        return self._executor

    async def run(self, result: FetchResult) -> tuple[ParsedFeed, ItemMatches]:
        loop = asyncio.get_running_loop()
        matcher = self._matcher if self.workers == 1 else None
        return await loop.run_in_executor(
            self._ensure(),
            parse_and_match,
            result.body,
            dict(result.headers),
            # The feed's own URL, not where redirects ended: feed-scoped item identities
            # must not change when a server bounces requests around.
            result.url,
            matcher,
        )

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None


# --------------------------------------------------------------------------- scheduling


def _server_hint(result: FetchResult, parsed: ParsedFeed | None) -> int | None:
    """Seconds the server or feed asked us to wait between polls, if it said."""
    hints = [result.max_age]
    if parsed is not None and parsed.ttl:
        hints.append(parsed.ttl * 60.0)
    known = [h for h in hints if h]
    return round(max(known)) if known else None


def next_due(
    settings: Settings,
    feed: feed_store.FeedRecord,
    result: FetchResult,
    parsed: ParsedFeed | None,
    now: datetime,
    *,
    new_items: int = 0,
) -> tuple[datetime, int | None]:
    """When to poll ``feed`` next, and the server's hint (stored for the scheduler).

    The policy (adaptive interval, hints, bounds, jitter, backoff) is
    :mod:`monitor.schedule_policy`; ``new_items`` is how many items this poll stored.
    """
    hint = _server_hint(result, parsed)
    facts = schedule_policy.PollFacts(
        base_interval=float(feed.interval_s or settings["polling.interval"]),
        ok=result.outcome in (Outcome.OK, Outcome.NOT_MODIFIED),
        new_items=new_items,
        first_poll=feed.last_polled_at is None,
        quiet_polls=feed.quiet_polls,
        consecutive_failures=feed.consecutive_failures,
        server_hint=float(hint) if hint else None,
        retry_after=result.retry_after,
    )
    bounds = schedule_policy.Bounds(
        settings["polling.min_interval"], settings["polling.max_interval"]
    )
    delay = schedule_policy.next_poll_delay(facts, bounds)
    return now + timedelta(seconds=delay), hint


# --------------------------------------------------------------------------- polling


@dataclass
class PollSummary:
    """What one poll run did; ``failures`` lists (url, reason) for the report."""

    feeds: int = 0
    fetched: int = 0
    not_modified: int = 0
    failed: int = 0
    new_items: int = 0
    new_hits: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    hits_by_watchlist: dict[str, int] = field(default_factory=dict)
    failure_kinds: dict[str, int] = field(default_factory=dict)  # error_kind -> count
    latencies: list[float] = field(default_factory=list)  # seconds per fetch that answered

    def counts(self) -> dict[str, int]:
        return {
            "feeds": self.feeds,
            "fetched": self.fetched,
            "not_modified": self.not_modified,
            "failed": self.failed,
            "new_items": self.new_items,
            "new_hits": self.new_hits,
        }

    def line(self) -> str:
        return (
            f"{self.feeds} feeds: {self.fetched} fetched, {self.not_modified} not modified, "
            f"{self.failed} failed; {self.new_items} new items, {self.new_hits} new hits"
        )


@dataclass
class PollContext:
    """What every feed's poll in a run shares: built once per run."""

    settings: Settings
    store: Store
    options: FetchOptions
    session: Any  # aiohttp.ClientSession
    pool: ParsePool
    writer: GroupWriter
    stories: StoryAssigner | None = None


class GroupWriter:
    """Stores finished polls from the one writer thread, several feeds per transaction.

    While a transaction is being written, the polls that finish meanwhile queue up and the
    next transaction takes them all (group commit): with thousands of feeds, most of them
    answering 304, a commit per feed would cost more than the polls themselves. A batch
    that fails is written again one feed at a time, so one bad feed never costs the
    others their results. A write is never cancelled half-way: a caller that stops
    waiting (SIGTERM) leaves its poll to be stored or rolled back whole.
    """

    MAX_BATCH = 100

    def __init__(self, store: Store, executor: ThreadPoolExecutor) -> None:
        self._store = store
        self._executor = executor
        self._queue: list[tuple[feed_store.PollWrite, asyncio.Future[feed_store.PollSaved]]] = []
        self._task: asyncio.Task[None] | None = None

    async def save(self, write: feed_store.PollWrite) -> feed_store.PollSaved:
        future: asyncio.Future[feed_store.PollSaved] = asyncio.get_running_loop().create_future()
        self._queue.append((write, future))
        if self._task is None:
            self._task = asyncio.create_task(self._drain())
        return await future

    async def close(self) -> None:
        """Wait until everything queued is written."""
        while self._task is not None:
            await asyncio.shield(self._task)

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                batch = self._queue[: self.MAX_BATCH]
                del self._queue[: self.MAX_BATCH]
                writes = [w for w, _ in batch]
                try:
                    saved = await loop.run_in_executor(
                        self._executor, feed_store.save_polls, self._store, writes
                    )
                    outcomes: list[feed_store.PollSaved | BaseException] = list(saved)
                except Exception:
                    if len(batch) == 1:
                        raise
                    outcomes = [await self._one(w) for w in writes]
                for (_, future), outcome in zip(batch, outcomes, strict=True):
                    if future.done():
                        continue
                    if isinstance(outcome, BaseException):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
        finally:
            self._task = None

    async def _one(self, write: feed_store.PollWrite) -> feed_store.PollSaved | BaseException:
        loop = asyncio.get_running_loop()
        try:
            return (
                await loop.run_in_executor(
                    self._executor, feed_store.save_polls, self._store, [write]
                )
            )[0]
        except Exception as exc:
            return exc


async def poll_feed(
    ctx: PollContext, feed: feed_store.FeedRecord
) -> tuple[FetchResult, ParsedFeed | None, feed_store.PollSaved]:
    """Fetch, parse, match and store one feed. Never raises for a feed's own problems."""
    result = await fetch(feed.to_feed(), ctx.session, ctx.options)
    parsed: ParsedFeed | None = None
    matches: ItemMatches = {}
    if result.outcome is Outcome.OK:
        parsed, matches = await ctx.pool.run(result)
    now = utcnow()
    due, hint = next_due(ctx.settings, feed, result, parsed, now)

    def lookup(item: Item) -> list[Match]:
        return matches.get(item.identity, [])

    def reschedule(new_items: int) -> datetime:
        return next_due(ctx.settings, feed, result, parsed, now, new_items=new_items)[0]

    saved = await ctx.writer.save(
        feed_store.PollWrite(feed, result, parsed, due, hint, lookup, now, reschedule, ctx.stories)
    )
    return result, parsed, saved


async def poll_due(
    settings: Settings,
    store: Store,
    watchlists: Sequence[Watchlist],
    matcher: Matcher,
    *,
    everything: bool = False,
    progress: Callable[[int, int], None] | None = None,
    pool: ParsePool | None = None,
    instance: str | None = None,
    stories: StoryAssigner | None = None,
) -> PollSummary:
    """Poll every due feed (every feed with ``everything``), match and store.

    Feeds are claimed from the database in batches with a lease (``polling.lease``, see
    ``store.feeds.claim_due_feeds``), so several processes sharing one database poll each
    feed once; a feed's claim ends when its poll is stored. While the run goes on its
    claims are renewed every third of the lease, so only an instance that died (or
    stalled for a whole lease) loses its feeds to another. Feeds that fail are counted
    and listed in the summary; the run goes on.

    New items get their stories from ``stories`` (a daemon keeps one window for its
    life, see :func:`story_index`); without it, a window is made for this run.
    """
    loop = asyncio.get_running_loop()
    writer = ThreadPoolExecutor(1, thread_name_prefix="monitor-store")
    instance = instance or instance_name()
    started = utcnow()

    def in_writer(fn: Callable[[], Any]) -> asyncio.Future[Any]:
        return loop.run_in_executor(writer, fn)

    try:
        expected = await in_writer(
            lambda: feed_store.count_due_feeds(store, started, everything=everything)
        )
        run_id = await in_writer(lambda: feed_store.start_poll_run(store, instance=instance))
        stories = stories if stories is not None else story_index(settings)
        if stories.watermark is None:  # a new window: fill it before the first write
            await in_writer(lambda: story_store.warm(store, stories, utcnow()))
        summary = PollSummary()
        own_pool = pool is None
        pool = pool or ParsePool(settings["polling.parse_workers"], watchlists, matcher)
        options = fetch_options(settings)
        # Feeds in flight: enough to keep every connection and parser busy, few enough
        # that fetched bodies never pile up in memory waiting for a parser.
        batch = options.max_connections + 2 * pool.workers
        lease = timedelta(seconds=float(settings["polling.lease"]))
        try:
            async with make_session(options) as session:
                group = GroupWriter(store, writer)
                ctx = PollContext(
                    settings,
                    store,
                    options,
                    session,
                    pool,
                    group,
                    stories,
                )
                # A fetch's deadline includes waiting for a connection, so feeds of one
                # host queue here, before their clock starts, not inside the connector.
                hosts: dict[str, asyncio.Semaphore] = {}

                async def one(feed: feed_store.FeedRecord) -> _Polled:
                    host = urlsplit(feed.url).netloc.lower()
                    async with hosts.setdefault(host, asyncio.Semaphore(options.max_per_host)):
                        try:
                            return (feed, *await poll_feed(ctx, feed))
                        except Exception as exc:  # a store error for one feed ends its poll only
                            log.exception("feed %s: could not store its poll", feed.url)
                            failed = FetchResult(
                                outcome=Outcome.FAILED,
                                url=feed.url,
                                final_url=feed.url,
                                error=f"could not store the poll: {exc}",
                                error_kind="store",
                            )
                            return (feed, failed, None, feed_store.PollSaved(0, 0, {}))

                def claim(limit: int) -> list[feed_store.FeedRecord]:
                    return feed_store.claim_due_feeds(
                        store,
                        instance=instance,
                        now=utcnow(),
                        lease=lease,
                        limit=limit,
                        run_started=started,
                        everything=everything,
                    )

                async def renew() -> None:
                    while True:
                        await asyncio.sleep(lease.total_seconds() / 3)
                        await in_writer(
                            lambda: feed_store.renew_claims(
                                store, instance, now=utcnow(), lease=lease
                            )
                        )

                renewing = asyncio.create_task(renew())
                running: set[asyncio.Task[_Polled]] = set()
                exhausted = False
                try:
                    while True:
                        if not exhausted and len(running) <= batch // 2:
                            claimed = await in_writer(partial(claim, batch - len(running)))
                            exhausted = not claimed
                            running |= {asyncio.create_task(one(f)) for f in claimed}
                        if not running:
                            break
                        finished, running = await asyncio.wait(
                            running, return_when=asyncio.FIRST_COMPLETED
                        )
                        for task in finished:
                            _tally(summary, *task.result())
                            if progress is not None:
                                progress(summary.feeds, max(expected, summary.feeds))
                finally:
                    renewing.cancel()
                    for task in running:
                        task.cancel()
                    await asyncio.gather(renewing, *running, return_exceptions=True)
                    await group.close()
        finally:
            if own_pool:
                pool.close()
            await in_writer(lambda: feed_store.release_claims(store, instance))
        await in_writer(lambda: feed_store.finish_poll_run(store, run_id, summary.counts()))
        log.info("poll: %s", summary.line())
        return summary
    finally:
        writer.shutdown(wait=True)


_Polled = tuple[feed_store.FeedRecord, FetchResult, ParsedFeed | None, feed_store.PollSaved]


def _tally(
    summary: PollSummary,
    feed: feed_store.FeedRecord,
    result: FetchResult,
    parsed: ParsedFeed | None,
    saved: feed_store.PollSaved,
) -> None:
    summary.feeds += 1
    if result.outcome is Outcome.OK:
        summary.fetched += 1
    elif result.outcome is Outcome.NOT_MODIFIED:
        summary.not_modified += 1
    else:
        summary.failed += 1
        reason = result.error or result.error_kind or "failed"
        summary.failures.append((feed.url, reason))
        kind = result.error_kind or ("gone" if result.outcome is Outcome.GONE else "other")
        summary.failure_kinds[kind] = summary.failure_kinds.get(kind, 0) + 1
        log.warning("feed failed: %s: %s", feed.url, reason)
    if result.status is not None:
        summary.latencies.append(result.elapsed)
    if parsed is not None and parsed.warnings:
        summary.warnings.append((feed.url, "; ".join(parsed.warnings)))
    summary.new_items += saved.new_items
    summary.new_hits += saved.new_hits
    for watchlist, n in saved.hits_by_watchlist.items():
        summary.hits_by_watchlist[watchlist] = summary.hits_by_watchlist.get(watchlist, 0) + n
