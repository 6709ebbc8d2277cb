"""The only place the stages meet: poll a feed, poll what is due, send digests.

``monitor poll --once``, ``monitor digest --send-now`` and the daemon call these same
functions; nothing else wires fetch, parse, match, store, digest and deliver together.

Polling work is split so that both cores are used: fetching waits on the network in the
event loop; parsing *and* matching run in a process pool (feedparser and matching are
CPU-bound); storing runs in one writer thread, which writes the polls that finish
while it is busy together in its next transaction (see :class:`GroupWriter`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import parseaddr
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from monitor import schedule_policy
from monitor.config import Settings, SubscriberConfig
from monitor.deliver import (
    Deliverer,
    PermanentFailure,
    TemporaryFailure,
    deliverer_from_settings,
)
from monitor.digest import DigestOptions, DigestRenderer, RenderedDigest, new_message_id
from monitor.errors import AddressRefused, ConfigError, DeliveryError, FeedError, MonitorError
from monitor.fetch import FetchOptions, fetch, make_session
from monitor.match import Matcher, compile_watchlists
from monitor.models import FetchResult, Item, Match, Outcome, ParsedFeed
from monitor.opml import OpmlFeed, read_opml
from monitor.parse import parse
from monitor.schedules import in_quiet_hours, next_digest_time
from monitor.store import Store
from monitor.store import feeds as feed_store
from monitor.store import outbox as outbox_store
from monitor.store.feeds import StoredHit
from monitor.watchlists import Watchlist

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


def sync_config(settings: Settings, store: Store, *, now: datetime | None = None) -> None:
    """Bring the config's [[feeds]] and [[subscribers]] into the database.

    Feeds imported from OPML live there beside the config's. A subscriber is recorded
    before any hit is stored for it, so the first poll's hits reach its first digest.
    """
    outbox_store.sync_subscribers(store, settings.subscribers, now=now)
    feed_store.sync_config_feeds(
        store,
        [
            feed_store.FeedSpec(
                url=f.url,
                title=f.title,
                interval_s=None if f.interval is None else round(f.interval),
                headers=f.headers,
            )
            for f in settings.feeds
        ],
    )


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
    now = feed_store.utcnow()
    due, hint = next_due(ctx.settings, feed, result, parsed, now)

    def lookup(item: Item) -> list[Match]:
        return matches.get(item.identity, [])

    def reschedule(new_items: int) -> datetime:
        return next_due(ctx.settings, feed, result, parsed, now, new_items=new_items)[0]

    saved = await ctx.writer.save(
        feed_store.PollWrite(feed, result, parsed, due, hint, lookup, now, reschedule)
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
) -> PollSummary:
    """Poll every due feed (every feed with ``everything``), match and store.

    Feeds are claimed from the database in batches with a lease (``polling.lease``, see
    ``store.feeds.claim_due_feeds``), so several processes sharing one database poll each
    feed once; a feed's claim ends when its poll is stored. While the run goes on its
    claims are renewed every third of the lease, so only an instance that died (or
    stalled for a whole lease) loses its feeds to another. Feeds that fail are counted
    and listed in the summary; the run goes on.
    """
    loop = asyncio.get_running_loop()
    writer = ThreadPoolExecutor(1, thread_name_prefix="monitor-store")
    instance = instance or instance_name()
    started = feed_store.utcnow()

    def in_writer(fn: Callable[[], Any]) -> asyncio.Future[Any]:
        return loop.run_in_executor(writer, fn)

    try:
        expected = await in_writer(
            lambda: feed_store.count_due_feeds(store, started, everything=everything)
        )
        run_id = await in_writer(lambda: feed_store.start_poll_run(store, instance=instance))
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
                ctx = PollContext(settings, store, options, session, pool, group)
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
                        now=feed_store.utcnow(),
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
                                store, instance, now=feed_store.utcnow(), lease=lease
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


# --------------------------------------------------------------------------- feed list


def check_feed_url(url: str, settings: Settings) -> None:
    """Refuse a feed URL that is not http(s) or resolves to a refused address.

    The same rule as the fetcher's (which checks every connection again); this gives the
    operator the error at import time instead of at the first poll. A host that does not
    resolve now is accepted: the fetcher will record the failure on the feed.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FeedError(f"{url}: not an http:// or https:// URL")
    options = fetch_options(settings)
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 80, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return
    addresses = {str(info[4][0]).split("%")[0] for info in infos}
    refused = sorted(a for a in addresses if not options.allows(ipaddress.ip_address(a)))
    if refused:
        raise AddressRefused(f"{url}: resolves to a refused address ({', '.join(refused)})")


@dataclass
class ImportSummary:
    added: int = 0
    known: int = 0
    refused: list[tuple[str, str]] = field(default_factory=list)


def import_opml(settings: Settings, store: Store, path: Path) -> ImportSummary:
    """Add the feeds of an OPML file (URLs already known are left as they are)."""
    summary = ImportSummary()
    for entry in read_opml(path):
        try:
            check_feed_url(entry.url, settings)
        except FeedError as exc:
            summary.refused.append((entry.url, exc.message))
            continue
        spec = feed_store.FeedSpec(url=entry.url, title=entry.title)
        if feed_store.add_feed(store, spec, source="opml"):
            summary.added += 1
        else:
            summary.known += 1
    return summary


def export_feeds(store: Store) -> list[OpmlFeed]:
    return [
        OpmlFeed(url=f.url, title=f.title, site_url=f.site_url)
        for f in feed_store.list_feeds(store, include_retired=False)
    ]


def instance_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# --- digests ---
# Pending hits -> digest (render) -> outbox (one transaction) -> deliver -> mark. The
# outbox guarantees are in ``store/outbox.py``; the mail's rules in ``digest.py``.
# Rendering runs in a worker thread while the event loop talks to the mail server, so a
# digest is being built while the previous one is on the wire.


#: Pending hits read per watchlist for one digest: the cap, times this, to leave room
#: for stories that turn out to be shown under another group.
_PENDING_SLACK = 2
#: Rendered digests waiting for the sender; bounds the memory a run holds.
_HANDOFF = 16


@dataclass
class DigestRunSummary:
    """What one ``send_digests`` did."""

    queued: int = 0  # digests put in the outbox by this run
    sent: int = 0  # messages the server (or folder) accepted
    failed: list[tuple[str, str]] = field(default_factory=list)  # (email, reason): for good
    retrying: list[tuple[str, str]] = field(default_factory=list)  # (email, reason): queued
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (email, why not now)
    delivered_to: str = ""

    def line(self) -> str:
        parts = [f"{self.queued} digests queued", f"{self.sent} sent"]
        if self.retrying:
            parts.append(f"{len(self.retrying)} still queued (will retry)")
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        text = ", ".join(parts)
        return f"{text} ({self.delivered_to})" if self.delivered_to else text


def delivery_lease(settings: Settings) -> timedelta:
    """How long mail taken for sending stays reserved to this instance."""
    return timedelta(seconds=float(settings["delivery.lease"]))


def _digest_options(settings: Settings) -> DigestOptions:
    templates = settings["digest.templates_dir"]
    return DigestOptions(
        sender=settings["smtp.sender"],
        unsubscribe=settings["digest.unsubscribe"],
        max_items_per_watchlist=settings["digest.max_items_per_watchlist"],
        templates_dir=Path(templates) if templates else None,
    )


def _watchlist_facts(settings: Settings) -> tuple[dict[str, str], set[str]]:
    """Display names and high-priority ids of the watchlists (ids alone if they are broken:
    a bad watchlist edit must not stop the mail)."""
    from monitor.watchlists import load_watchlists

    try:
        found = load_watchlists(settings.watchlists_dir)
    except MonitorError as exc:
        log.warning("digests use watchlist ids: %s", exc.one_line())
        return {}, set()
    return {w.id: w.name for w in found}, {w.id for w in found if w.priority == "high"}


def _chosen_subscribers(settings: Settings, email: str | None) -> list[SubscriberConfig]:
    if email is None:
        return list(settings.subscribers)
    chosen = [s for s in settings.subscribers if s.email.lower() == email.strip().lower()]
    if not chosen:
        raise ConfigError(
            f"{email} is not a subscriber in {settings.source}",
            hint="add it as a [[subscribers]] table, or check the spelling",
        )
    return chosen


class _DigestBuilder:
    """Renders and queues digests; what a run shares is computed once (templates, feed
    health, volumes per time zone, and each hit: subscribers mostly share their news)."""

    def __init__(self, settings: Settings, store: Store, now: datetime) -> None:
        self.settings, self.store, self.now = settings, store, now
        self.options = _digest_options(settings)
        self.renderer = DigestRenderer(self.options)
        self.names, self.priority = _watchlist_facts(settings)
        self.failing = outbox_store.failing_feeds(store)
        self._volumes: dict[tuple[str, tuple[str, ...]], dict[str, Any]] = {}
        self._hits: dict[int, StoredHit] = {}

    def volumes(self, timezone: str, watchlists: Sequence[str]) -> dict[str, Any]:
        key = (timezone, tuple(sorted(set(watchlists))))
        if key not in self._volumes:
            self._volumes[key] = outbox_store.watchlist_volume(
                self.store, key[1], timezone=timezone, now=self.now
            )
        return self._volumes[key]

    def render(self, sub: SubscriberConfig, watchlists: list[str] | None) -> RenderedDigest | None:
        plan = outbox_store.pending_plan(
            self.store,
            sub.email,
            watchlists,
            limit_per_watchlist=self.options.max_items_per_watchlist * _PENDING_SLACK,
        )
        if not plan.hit_ids:
            return None
        _let_the_sender_run()
        missing = [i for i in plan.hit_ids if i not in self._hits]
        if missing:
            if len(self._hits) > 50_000:
                self._hits.clear()
                missing = plan.hit_ids
            self._hits.update(outbox_store.hits_by_id(self.store, missing))
        hits = [self._hits[i] for i in plan.hit_ids if i in self._hits]
        return self.renderer.render(
            sub,
            hits,
            now=self.now,
            message_id=new_message_id(self.options.sender),
            names=self.names,
            volumes=self.volumes(sub.timezone, [h.watchlist for h in hits]),
            failing_feeds=self.failing,
            pending_counts=plan.counts,
        )

    def scope(
        self, sub: SubscriberConfig, force: bool
    ) -> tuple[list[str] | None, bool, str | None]:
        """(watchlists to mail now, whether the full digest is due, why nothing is due)."""
        followed = None if "*" in sub.watchlists else list(sub.watchlists)
        if force:
            return followed, True, None
        quiet_until = in_quiet_hours(sub, self.now)
        if quiet_until is not None:
            return followed, False, f"quiet hours until {quiet_until:%H:%M} UTC"
        state = outbox_store.subscriber_state(self.store, sub.email)
        if state is None:
            return followed, False, "not yet subscribed"
        due_at = next_digest_time(sub, state.last_digest_at or state.created_at)
        if due_at <= self.now:
            return followed, True, None
        if sub.immediate_priority and self.priority:
            urgent = [w for w in (followed or sorted(self.priority)) if w in self.priority]
            if urgent:
                return urgent, False, None
        return followed, False, f"next digest at {due_at:%Y-%m-%d %H:%M} UTC"

    def queue(
        self, sub: SubscriberConfig, force: bool, summary: DigestRunSummary, claim_for: str
    ) -> outbox_store.OutboxMessage | None:
        """Queue the subscriber's digest if one is due and something is pending; it comes
        back leased to ``claim_for``, ready to send."""
        watchlists, due, why_not = self.scope(sub, force)
        if why_not is not None:
            summary.skipped.append((sub.email, why_not))
            return None
        for _ in range(3):  # another sender may queue some of the same hits meanwhile
            rendered = self.render(sub, watchlists)
            _let_the_sender_run()
            if rendered is None:
                if due and not force:
                    outbox_store.set_last_digest(self.store, sub.email, self.now)
                return None
            outbox_id = outbox_store.enqueue_digest(
                self.store,
                subscriber=sub.email,
                message_id=rendered.message_id,
                subject=rendered.subject,
                message=rendered.data,
                hit_ids=sorted(rendered.hit_ids),
                now=self.now,
                claim_for=claim_for,
                lease=delivery_lease(self.settings),
            )
            if outbox_id is not None:
                summary.queued += 1
                log.info(
                    "queued digest %d for %s: %s (%d hits)",
                    outbox_id, sub.email, rendered.subject, len(rendered.hit_ids),
                )  # fmt: skip
                return outbox_store.OutboxMessage(
                    id=outbox_id,
                    subscriber=sub.email,
                    message_id=rendered.message_id,
                    subject=rendered.subject,
                    message=rendered.data,
                    attempts=0,
                    created_at=self.now,
                )
        log.warning("digest for %s: hits kept being queued by another sender", sub.email)
        return None


def _let_the_sender_run() -> None:
    """Release the GIL between the worker's steps, so that the event loop answers the
    mail server at once instead of after a whole switch interval (5 ms, several times
    per message)."""
    time.sleep(0)


def _produce(
    builder_args: tuple[Settings, Store, datetime],
    subscribers: Sequence[SubscriberConfig],
    force: bool,
    summary: DigestRunSummary,
    instance: str,
    handoff: queue.Queue[outbox_store.OutboxMessage | None],
    stop: threading.Event,
) -> None:
    """Worker thread: sync subscribers, queue each due digest, hand it to the sender.
    Always ends the hand-off with None."""
    settings, store, now = builder_args
    try:
        outbox_store.sync_subscribers(store, settings.subscribers, now=now)
        if not subscribers:
            return
        builder = _DigestBuilder(settings, store, now)
        for sub in subscribers:
            if stop.is_set():
                return
            message = builder.queue(sub, force, summary, instance)
            _let_the_sender_run()
            if message is not None:
                handoff.put(message)
    finally:
        handoff.put(None)


class _Sender:
    """Sends leased outbox messages over one deliverer and records each outcome."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        deliverer: Deliverer,
        clock: Callable[[], datetime],
        summary: DigestRunSummary,
    ) -> None:
        self.store, self.deliverer, self.clock, self.summary = store, deliverer, clock, summary
        self.sender = parseaddr(settings["smtp.sender"])[1] or settings["smtp.sender"]
        self.opened = False
        self.down: str | None = None  # set when the server is unreachable: the rest waits
        self.connection_failures = 0

    async def _retry(self, m: outbox_store.OutboxMessage, reason: str, *, attempted: bool) -> None:
        due = await asyncio.to_thread(
            outbox_store.mark_retry,
            self.store,
            m.id,
            reason,
            now=self.clock(),
            count_attempt=attempted,
        )
        self.summary.retrying.append((m.subscriber, reason))
        log.warning(
            "digest %d to %s stays queued, next try %s: %s",
            m.id, m.subscriber, due.isoformat(timespec="seconds"), reason,
        )  # fmt: skip

    async def send(self, m: outbox_store.OutboxMessage) -> None:
        if self.down is not None:
            await self._retry(m, f"not attempted: {self.down}", attempted=False)
            return
        if not self.opened:
            self.summary.delivered_to = self.deliverer.description
            try:
                await self.deliverer.open()
            except TemporaryFailure as exc:
                self.down = exc.message
                await self._retry(m, exc.message, attempted=True)
                return
            self.opened = True
        try:
            reply = await self.deliverer.send(self.sender, m.subscriber, m.message)
        except PermanentFailure as exc:
            await asyncio.to_thread(
                outbox_store.mark_failed, self.store, m.id, exc.message, now=self.clock()
            )
            self.summary.failed.append((m.subscriber, exc.message))
            log.error("digest %d to %s refused: %s", m.id, m.subscriber, exc.message)
            return
        except TemporaryFailure as exc:
            await self._retry(m, exc.message, attempted=True)
            self.connection_failures = self.connection_failures + 1 if exc.reconnect else 0
            if self.connection_failures >= 2:  # reconnecting did not help: the rest waits
                self.down = exc.message
            return
        self.connection_failures = 0
        await asyncio.to_thread(outbox_store.mark_sent, self.store, m.id, now=self.clock())
        self.summary.sent += 1
        log.info("sent digest %d to %s: %s", m.id, m.subscriber, reply)

    async def close(self) -> None:
        if self.opened:
            await self.deliverer.close()


async def send_digests(
    settings: Settings,
    store: Store,
    *,
    now: datetime | None = None,
    subscriber: str | None = None,
    force: bool = False,
    deliverer: Deliverer | None = None,
) -> DigestRunSummary:
    """Deliver what is queued and due (``force``: retries too, without waiting for their
    backoff), then queue and deliver the digests that are due (``force``: every subscriber
    with pending hits, whatever the schedule or quiet hours). ``subscriber`` limits both
    to one email. Nothing pending: no mail.

    Delivery failures are in the summary (and on the outbox rows), not raised. A template
    error is raised (:class:`~monitor.errors.TemplateError`) after the mail already queued
    has gone.
    """
    from monitor.store.feeds import utcnow

    fixed = now
    now = now or utcnow()
    summary = DigestRunSummary()
    chosen = _chosen_subscribers(settings, subscriber)
    instance = instance_name()
    sender = _Sender(
        settings,
        store,
        deliverer if deliverer is not None else deliverer_from_settings(settings),
        (lambda: fixed) if fixed is not None else utcnow,
        summary,
    )
    backlog = await asyncio.to_thread(
        outbox_store.claim_due,
        store,
        instance=instance,
        now=now,
        subscribers_only=[s.email for s in chosen] if subscriber is not None else None,
        ignore_backoff=force,
        lease=delivery_lease(settings),
    )
    handoff: queue.Queue[outbox_store.OutboxMessage | None] = queue.Queue(maxsize=_HANDOFF)
    stop = threading.Event()
    producer = asyncio.ensure_future(
        asyncio.to_thread(
            _produce, (settings, store, now), chosen, force, summary, instance, handoff, stop
        )
    )
    pending = list(backlog)
    reached_end = False
    try:
        while pending:
            await sender.send(pending.pop(0))
        while (message := await asyncio.to_thread(handoff.get)) is not None:
            await sender.send(message)
        reached_end = True
    finally:
        unsent = [m.id for m in pending]
        if not reached_end:  # stopping early: let the worker finish, give back its mail
            stop.set()
            while (left := await asyncio.to_thread(handoff.get)) is not None:
                unsent.append(left.id)
        if unsent:
            await asyncio.to_thread(outbox_store.release_claims, store, unsent)
        await sender.close()
    await producer  # re-raises a template or store error from the worker
    return summary


def preview_digest(
    settings: Settings, store: Store, email: str, *, now: datetime | None = None
) -> EmailMessage | None:
    """The digest ``email`` would get now for everything pending, rendered but neither
    queued nor sent (its Message-ID is not the one a real send will use). None: nothing
    pending."""
    from monitor.store.feeds import utcnow

    now = now or utcnow()
    sub = _chosen_subscribers(settings, email)[0]
    outbox_store.sync_subscribers(store, settings.subscribers, now=now)
    builder = _DigestBuilder(settings, store, now)
    rendered = builder.render(sub, None if "*" in sub.watchlists else list(sub.watchlists))
    return rendered.message if rendered is not None else None


def undelivered_error(summary: DigestRunSummary) -> DeliveryError | None:
    """A one-line error for the CLI when some digest was not delivered."""
    problems = summary.failed + summary.retrying
    if not problems:
        return None
    email_, reason = problems[0]
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return DeliveryError(f"digest to {email_} not delivered: {reason}{more}")
