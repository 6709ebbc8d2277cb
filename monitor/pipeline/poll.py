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
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from monitor import schedule_policy
from monitor.article import needs_article
from monitor.config import Settings
from monitor.errors import DatabaseUnusable
from monitor.fetch import FetchOptions, fetch, make_session
from monitor.match import Matcher
from monitor.models import FetchResult, Item, Match, Outcome, ParsedFeed
from monitor.pipeline import parsing
from monitor.pipeline.articles import ArticleRunner
from monitor.pipeline.parsing import ItemMatches
from monitor.store import Store
from monitor.store import articles as article_store
from monitor.store import feeds as feed_store
from monitor.store import instances as instance_store
from monitor.store.db import utcnow
from monitor.store.stories import StoryAssigner
from monitor.wording import plural

if TYPE_CHECKING:
    from monitor.cluster import StoryIndex

log = logging.getLogger(__name__)
T = TypeVar("T")


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
        options = replace(options, user_agent=agent)
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


class ParsePool:
    """Where parse_and_match runs: worker processes, or this process when ``workers == 1``.

    Workers are started on first use (an all-304 poll starts none) and get the compiled
    watchlists at start (compiled once, here: not again in each worker, which would then
    also load the Russian morphology's dictionaries before its first feed); :meth:`update`
    restarts them when the watchlists change. ``matcher`` may be a function that compiles
    them: it is called at first use, so a poll that parses nothing compiles nothing
    (~0.1 s of a `monitor poll --once` in which every feed answers 304).
    """

    def __init__(self, workers: int, matcher: Matcher | Callable[[], Matcher]) -> None:
        self.workers = workers if workers > 0 else (os.cpu_count() or 1)
        self._source = matcher
        self._executor: Executor | None = None

    @property
    def _matcher(self) -> Matcher:
        if not isinstance(self._source, Matcher):
            self._source = self._source()
        return self._source

    def update(self, matcher: Matcher | Callable[[], Matcher]) -> None:
        self._source = matcher
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
                    initializer=parsing.init_worker,
                    initargs=(self._matcher, os.getpid()),
                )
        return self._executor

    async def run(
        self,
        result: FetchResult,
        max_items: int | None = None,
        known: frozenset[str] = frozenset(),
    ) -> tuple[ParsedFeed, ItemMatches]:
        """Parse and match ``result``'s body, less the items with a ``known`` identity
        (see :func:`parsing.parse_and_match`)."""
        loop = asyncio.get_running_loop()
        matcher = self._matcher if self.workers == 1 else None
        return await loop.run_in_executor(
            self._ensure(),
            parsing.parse_and_match,
            result.body,
            dict(result.headers),
            # The feed's own URL, not where redirects ended: feed-scoped item identities
            # must not change when a server bounces requests around.
            result.url,
            matcher,
            max_items,
            known,
        )

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args, matcher)`` in a worker; ``matcher`` is None in worker processes,
        which use their own (:func:`worker_matcher`)."""
        loop = asyncio.get_running_loop()
        matcher = self._matcher if self.workers == 1 else None
        call: Callable[..., T] = partial(fn, *args, matcher)
        return await loop.run_in_executor(self._ensure(), call)

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
    #: Due feeds not polled because another running instance holds them.
    held_elsewhere: int = 0
    #: Claims freed at the start: left by instances on this host whose process is gone.
    freed_claims: int = 0
    not_due: int = 0  # active feeds left alone because their next poll is ahead
    next_due_at: datetime | None = None  # the earliest of those
    failures: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    hits_by_watchlist: dict[str, int] = field(default_factory=dict)
    failure_kinds: dict[str, int] = field(default_factory=dict)  # error_kind -> count
    latencies: list[float] = field(default_factory=list)  # seconds per fetch that answered
    articles_read: int = 0  # article pages whose text now stands for their item
    articles_failed: int = 0  # article pages not used (the feed text kept; reason stored)
    articles_left: int = 0  # article pages left pending for the next poll (budget spent)

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
        line = (
            f"{plural(self.feeds, 'feed')}: {self.fetched} fetched, {self.not_modified} not "
            f"modified, {self.failed} failed; {plural(self.new_items, 'new item')}, "
            f"{plural(self.new_hits, 'new hit')}"
        )
        if self.articles_read or self.articles_failed or self.articles_left:
            line += f"; {plural(self.articles_read, 'article')} read, {self.articles_failed} not"
            if self.articles_left:
                line += f", {self.articles_left} left for the next poll"
        return line


class StoryWindow:
    """A run's story window, made when the first poll with items needs it.

    Making one imports NumPy, and a new window then learns the
    store's recent items (``store.stories.warm``, in ``save_polls``): seconds of CPU that
    a run in which every feed answers 304 never needs. It is made in ``executor`` (the
    writer thread), so the event loop never waits on it.
    """

    def __init__(
        self,
        make: Callable[[], StoryAssigner],
        executor: Executor,
        ready: StoryAssigner | None = None,
    ) -> None:
        self._make = make
        self._executor = executor
        self._ready = ready
        self._making: asyncio.Future[StoryAssigner] | None = None

    @property
    def made(self) -> StoryAssigner | None:
        return self._ready

    async def get(self) -> StoryAssigner:
        if self._ready is None:
            if self._making is None:
                loop = asyncio.get_running_loop()
                self._making = loop.run_in_executor(self._executor, self._make)
            # Shielded: a poll cancelled while waiting must not cancel it for the others.
            self._ready = await asyncio.shield(self._making)
        return self._ready


@dataclass
class PollContext:
    """What every feed's poll in a run shares: built once per run."""

    settings: Settings
    store: Store
    options: FetchOptions
    session: Any  # aiohttp.ClientSession
    pool: ParsePool
    writer: GroupWriter
    stories: StoryAssigner | StoryWindow | None = None
    articles: ArticleRunner | None = None
    known: KnownItems | None = None

    async def assigner(self, parsed: ParsedFeed | None) -> StoryAssigner | None:
        """The story window for a poll that parsed ``parsed``; None when it has no items
        (nothing to assign, so a window need not be made for it)."""
        if isinstance(self.stories, StoryWindow):
            if parsed is None or not parsed.items:
                return self.stories.made
            return await self.stories.get()
        return self.stories


class KnownItems:
    """The identities of each feed's recently stored items, looked up for a poll whose
    fetch brought a body (``store.feeds.recent_identities``), so that its parse worker
    drops the items the store would skip anyway.

    A poll run's polls mostly find a feed moved on by a few items: without this, every
    item of every changed feed would be detected, matched and sent back to this process
    only for the store to find its identity taken. A 304 looks nothing up. Lookups run
    in ``executor`` (the writer thread, the one that uses the store); the polls that ask
    while it is busy are answered together by one read.
    """

    def __init__(self, store: Store, executor: Executor, limit: int) -> None:
        self._store = store
        self._executor = executor
        #: As many as a poll keeps of one body (``polling.max_items``): the items of a
        #: body that were stored are among the feed's last that many.
        self._limit = limit
        self._queue: dict[int, list[asyncio.Future[frozenset[str]]]] = {}
        self._task: asyncio.Task[None] | None = None

    async def of(self, feed_id: int) -> frozenset[str]:
        future: asyncio.Future[frozenset[str]] = asyncio.get_running_loop().create_future()
        self._queue.setdefault(feed_id, []).append(future)
        if self._task is None:
            self._task = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                batch, self._queue = self._queue, {}
                try:
                    found = await loop.run_in_executor(
                        self._executor,
                        feed_store.recent_identities,
                        self._store,
                        list(batch),
                        self._limit,
                    )
                except Exception:
                    # Nothing is known then: the polls parse and match every item, and
                    # the store skips the stored ones, as it always does.
                    log.exception("could not look up the feeds' stored items")
                    found = {}
                for feed_id, futures in batch.items():
                    for future in futures:
                        if not future.done():
                            future.set_result(found.get(feed_id, frozenset()))
        finally:
            self._task = None


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
        # A feed never polled has stored nothing: its first poll looks nothing up.
        first = feed.last_polled_at is None
        known = frozenset() if first or ctx.known is None else await ctx.known.of(feed.id)
        parsed, matches = await ctx.pool.run(result, ctx.settings["polling.max_items"], known)
    now = utcnow()
    due, hint = next_due(ctx.settings, feed, result, parsed, now)

    def lookup(item: Item) -> list[Match]:
        return matches.get(item.identity, [])

    def reschedule(new_items: int) -> datetime:
        return next_due(ctx.settings, feed, result, parsed, now, new_items=new_items)[0]

    mode = feed.fulltext or ctx.settings["fulltext.mode"]
    short_text = int(ctx.settings["fulltext.short_text"])

    def wants_article(item: Item) -> bool:
        return needs_article(item, mode, short_text)

    stories = await ctx.assigner(parsed)
    saved = await ctx.writer.save(
        feed_store.PollWrite(
            feed, result, parsed, due, hint, lookup, now, reschedule, stories,
            wants_article if ctx.articles is not None and mode != "never" else None,
        )
    )  # fmt: skip
    if ctx.articles is not None and saved.articles:
        ctx.articles.submit(feed.id, saved.articles)
    return result, parsed, saved


async def poll_due(
    settings: Settings,
    store: Store,
    matcher: Matcher | Callable[[], Matcher],
    *,
    everything: bool = False,
    progress: Callable[[int, int], None] | None = None,
    pool: ParsePool | None = None,
    instance: str | None = None,
    log_results: bool = True,
    stories: StoryAssigner | None = None,
    window_file: Path | None = None,
) -> PollSummary:
    """Poll every due feed (every feed with ``everything``), match and store.

    Feeds are claimed from the database in batches with a lease (``polling.lease``, see
    ``store.feeds.claim_due_feeds``), so several processes sharing one database poll each
    feed once; a feed's claim ends when its poll is stored. While the run goes on its
    claims are renewed every third of the lease, so only an instance that died (or
    stalled for a whole lease) loses its feeds to another. Feeds that fail are counted
    and listed in the summary; the run goes on. ``log_results`` logs the summary and each
    failure (the daemon's report); a caller that prints the summary turns it off.

    ``matcher``: the compiled watchlists, or a function that compiles them, called when
    the first feed is parsed (see :class:`ParsePool`).

    New items get their stories from ``stories`` (a daemon keeps one window for its
    life, see :func:`story_index`); without it, a window is made for this run when the
    first new items arrive (a run of 304s makes none, see :class:`StoryWindow`); with
    ``window_file``, that window is loaded from the file if an earlier run saved one there
    that may be used, and saved there at the end (``pipeline.window_file``).

    New items whose article page is to be read (``[fulltext]``, a feed's ``fulltext``) are
    stored as pending with their feed-text hits, then read in the same run by
    :class:`~monitor.pipeline.articles.ArticleRunner`, which also takes the items earlier
    runs left pending; the run waits for them up to ``fulltext.budget``.
    """
    loop = asyncio.get_running_loop()
    writer = ThreadPoolExecutor(1, thread_name_prefix="monitor-store")
    instance = instance or instance_name()
    started = utcnow()

    def in_writer(fn: Callable[[], Any]) -> asyncio.Future[Any]:
        return loop.run_in_executor(writer, fn)

    try:
        # Claims of a killed instance on this host (kill -9, OOM) would keep their feeds
        # from being polled until the lease runs out: they are freed first.
        freed = await in_writer(
            lambda: instance_store.release_dead_claims(store, socket.gethostname())
        )
        if freed:
            log.info("freed %d claims left by stopped instances on this host", freed)
        expected = await in_writer(
            lambda: feed_store.count_due_feeds(store, started, everything=everything)
        )
        held = await in_writer(
            lambda: feed_store.count_held_feeds(
                store, started, instance=instance, everything=everything
            )
        )
        not_due, next_due_at = (
            (0, None)
            if everything
            else await in_writer(lambda: feed_store.not_due_feeds(store, started))
        )
        run_id = await in_writer(lambda: feed_store.start_poll_run(store, instance=instance))
        # Without a window of the caller's, one is made for this run when the first new
        # items arrive; the first write with items fills it from the store (save_polls).
        make_window: Callable[[], StoryAssigner] = partial(story_index, settings)
        loaded: list[int | None] = []  # the watermark of a window loaded from window_file
        if window_file is not None and stories is None:
            make_window = partial(_saved_or_new_window, settings, store, window_file, loaded)
        window = StoryWindow(make_window, writer, stories)
        summary = PollSummary(
            held_elsewhere=held, freed_claims=freed, not_due=not_due, next_due_at=next_due_at
        )
        own_pool = pool is None
        pool = pool or ParsePool(settings["polling.parse_workers"], matcher)
        options = fetch_options(settings)
        # Feeds in flight: enough to keep every connection and parser busy, few enough
        # that fetched bodies never pile up in memory waiting for a parser.
        batch = options.max_connections + 2 * pool.workers
        lease = timedelta(seconds=float(settings["polling.lease"]))
        try:
            async with make_session(options) as session:
                group = GroupWriter(store, writer)
                articles = ArticleRunner(settings, store, session, options, pool, writer)
                known = KnownItems(store, writer, settings["polling.max_items"])
                ctx = PollContext(
                    settings, store, options, session, pool, group, window, articles, known
                )
                # Articles a stopped or killed run left unread are read first.
                for left in await in_writer(lambda: article_store.pending_articles(store)):
                    articles.submit(left.feed_id, [(left.item_id, left.item)])
                # A fetch's deadline includes waiting for a connection, so feeds of one
                # host queue here, before their clock starts, not inside the connector.
                hosts: dict[str, asyncio.Semaphore] = {}

                async def one(feed: feed_store.FeedRecord) -> _Polled:
                    host = urlsplit(feed.url).netloc.lower()
                    async with hosts.setdefault(host, asyncio.Semaphore(options.max_per_host)):
                        try:
                            return (feed, *await poll_feed(ctx, feed))
                        except DatabaseUnusable:
                            raise  # the file itself: no other feed can be stored either
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
                # Feeds claimed and not started yet: up to a batch, claimed again once
                # fewer than half a batch wait, while the feeds before them are polled,
                # so that a feed's end starts the next at once. Were the claim made when
                # the running feeds ran low, connections would wait for it (behind the
                # writer's saves), and a poll of 2,000 feeds answering 304 would take
                # about a tenth longer (bench/bench_poll.py's re-poll).
                claimed: deque[feed_store.FeedRecord] = deque()
                claiming: asyncio.Future[Any] | None = None
                exhausted = False
                try:
                    while True:
                        while claimed and len(running) < batch:
                            running.add(asyncio.create_task(one(claimed.popleft())))
                        if claiming is None and not exhausted and len(claimed) < batch // 2:
                            claiming = in_writer(partial(claim, batch - len(claimed)))
                        if not running and claiming is None:
                            break
                        waiting: set[asyncio.Future[Any]] = set(running)
                        if claiming is not None:
                            waiting.add(claiming)
                        finished, _ = await asyncio.wait(
                            waiting, return_when=asyncio.FIRST_COMPLETED
                        )
                        if claiming is not None and claiming in finished:
                            more = claiming.result()
                            claiming = None
                            exhausted = not more
                            claimed.extend(more)
                        for task in running & finished:
                            running.discard(task)
                            _tally(summary, *task.result(), log_failure=log_results)
                            if progress is not None:
                                progress(summary.feeds, max(expected, summary.feeds))
                    read = await articles.close(float(settings["fulltext.budget"]))
                    summary.articles_read, summary.articles_failed = read.read, read.failed
                    summary.articles_left = read.left
                    summary.new_hits += read.new_hits
                    for watchlist, n in read.hits_by_watchlist.items():
                        by = summary.hits_by_watchlist
                        by[watchlist] = by.get(watchlist, 0) + n
                finally:
                    renewing.cancel()
                    for task in running:
                        task.cancel()
                    # A claim in flight ends in the writer (its feeds are released below).
                    pending = [renewing, *running, *([claiming] if claiming else [])]
                    await asyncio.gather(*pending, return_exceptions=True)
                    await group.close()
                    await articles.abort()
        finally:
            if own_pool:
                pool.close()
            await in_writer(lambda: feed_store.release_claims(store, instance))
        await in_writer(lambda: feed_store.finish_poll_run(store, run_id, summary.counts()))
        made = window.made
        # Saved for the next run, unless it is as it was loaded.
        if window_file and stories is None and made is not None and loaded != [made.watermark]:
            from monitor.pipeline import window_file as saved_windows

            await in_writer(partial(saved_windows.save_quietly, window_file, made, store))
        if log_results:
            log.info("poll: %s", summary.line())
        return summary
    finally:
        writer.shutdown(wait=True)


_Polled = tuple[feed_store.FeedRecord, FetchResult, ParsedFeed | None, feed_store.PollSaved]


def _saved_or_new_window(
    settings: Settings, store: Store, path: Path, loaded: list[int | None]
) -> StoryAssigner:
    """The story window an earlier run saved at ``path``, if it may be used (noting its
    watermark in ``loaded``), else a new one (``pipeline.window_file``)."""
    from monitor.pipeline import window_file as saved_windows

    made = story_index(settings)
    index = saved_windows.load(path, store, made.params)
    if index is None:
        return made
    loaded.append(index.watermark)
    return index


def _tally(
    summary: PollSummary,
    feed: feed_store.FeedRecord,
    result: FetchResult,
    parsed: ParsedFeed | None,
    saved: feed_store.PollSaved,
    *,
    log_failure: bool = True,
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
        if log_failure:
            log.warning("feed failed: %s: %s", feed.url, reason)
    if result.status is not None:
        summary.latencies.append(result.elapsed)
    if parsed is not None and parsed.warnings:
        summary.warnings.append((feed.url, "; ".join(parsed.warnings)))
    summary.new_items += saved.new_items
    summary.new_hits += saved.new_hits
    for watchlist, n in saved.hits_by_watchlist.items():
        summary.hits_by_watchlist[watchlist] = summary.hits_by_watchlist.get(watchlist, 0) + n
