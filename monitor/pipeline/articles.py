"""Articles: read the page behind new headline-only items, match its text, store it.

A poll stores each new item with its feed-text hits first, marked ``article='pending'``
when its page is to be read (:func:`monitor.article.needs_article`). Then, in the same
run, :class:`ArticleRunner` fetches the pages (:class:`monitor.article.ArticleFetcher`:
fetch's rules, robots.txt, a per-host pace), extracts and matches them in the parse
workers (:func:`extract_and_match`; never on the event loop) and stores the text as the
item's ``content`` with its extra hits, or records why the page was not used, counted on
the feed (:func:`monitor.store.articles.save_articles`, group-committed from the writer
thread). Items a crash or a stop left pending are picked up by the next run; an item
leaves "pending" once, so no page is fetched twice.

Each host gets at most ``polling.per_host`` workers, so one host's queue (and its pace)
never holds up another's, and at most ``polling.concurrency`` pages are held in memory
between fetch and store.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from monitor.article import ArticleFetcher, Extracted, Page, article_options, extract
from monitor.config import Settings
from monitor.fetch import FetchOptions, fetch
from monitor.models import Item, Match
from monitor.store import Store
from monitor.store import articles as article_store

if TYPE_CHECKING:
    from monitor.match import Matcher
    from monitor.pipeline.poll import ParsePool

log = logging.getLogger(__name__)


def extract_and_match(
    body: bytes,
    headers: dict[str, str],
    url: str,
    item: Item,
    min_text: int,
    max_text: int,
    matcher: Matcher | None = None,
) -> tuple[Extracted, list[Match]]:
    """Extract a page's main text and match the item with it as its ``content``: the
    CPU-bound part of reading an article, run in a parse worker."""
    if matcher is None:
        from monitor.pipeline import parsing

        matcher = parsing.worker_matcher()
    extracted = extract(body, headers, url, min_text=min_text, max_text=max_text)
    if extracted.text is None:
        return extracted, []
    return extracted, matcher.match(replace(item, content=extracted.text))


@dataclass
class ArticleSummary:
    """What a run's article reading did."""

    read: int = 0  # pages whose text now stands for the item
    failed: int = 0  # pages not used (the reason is on the item and its feed)
    left: int = 0  # items still pending when the run's budget ran out (read next run)
    new_hits: int = 0
    hits_by_watchlist: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Job:
    item_id: int
    feed_id: int | None
    item: Item


class ArticleRunner:
    """Reads the articles of one poll run: :meth:`submit` as items are stored,
    :meth:`close` to wait for all of them (or :meth:`abort` to leave them pending)."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        session: Any,  # aiohttp.ClientSession
        options: FetchOptions,
        pool: ParsePool,
        writer: Executor,
    ) -> None:
        self._store = store
        self._pool = pool
        self._writer = writer
        self._min_text = int(settings["fulltext.min_text"])
        self._max_text = int(settings["fulltext.max_text"])
        self._per_host = max(1, options.max_per_host)
        self.fetcher = ArticleFetcher(
            fetch,
            session,
            article_options(
                options,
                max_page=settings["fulltext.max_page"],
                timeout=settings["fulltext.timeout"],
            ),
            pace=float(settings["fulltext.pace"]),
            robots=bool(settings["fulltext.robots"]),
        )
        self._held = asyncio.Semaphore(max(1, options.max_connections))
        self._queues: dict[str, deque[_Job]] = {}
        self._workers: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending: list[article_store.ArticleWrite] = []
        self._flushing: asyncio.Task[None] | None = None
        self._seen: set[int] = set()
        self.summary = ArticleSummary()

    def submit(self, feed_id: int | None, articles: Sequence[tuple[int, Item]]) -> None:
        """Queue stored items (id, item) for reading; an item already queued is skipped."""
        for item_id, item in articles:
            if item_id in self._seen:
                continue
            self._seen.add(item_id)
            job = _Job(item_id, feed_id, item)
            host = _host_key(item.link or "")
            self._queues.setdefault(host, deque()).append(job)
            while self._workers.get(host, 0) < min(self._per_host, len(self._queues[host])):
                self._workers[host] = self._workers.get(host, 0) + 1
                task = asyncio.create_task(self._work(host))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def close(self, budget: float | None = None) -> ArticleSummary:
        """Wait until every queued article is read and stored, or ``budget`` seconds: what
        is not read by then stays pending for the next run."""
        if self._tasks:
            _, late = await asyncio.wait(set(self._tasks), timeout=budget)
            if late:
                for task in late:
                    task.cancel()
                await asyncio.gather(*late, return_exceptions=True)
        while self._flushing is not None or self._pending:
            if self._flushing is None:
                self._flushing = asyncio.create_task(self._flush())
            await asyncio.shield(self._flushing)
        s = self.summary
        s.left = max(0, len(self._seen) - s.read - s.failed)
        if s.left:
            log.info("%d article pages left for the next poll (fulltext.budget)", s.left)
        return s

    async def abort(self) -> None:
        """Stop reading (the items stay pending for the next run); keep what is stored."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._flushing is not None:
            await asyncio.gather(asyncio.shield(self._flushing), return_exceptions=True)

    async def _work(self, host: str) -> None:
        queue = self._queues[host]
        try:
            while queue:
                job = queue.popleft()
                async with self._held:
                    write = await self._read(job)
                self._pending.append(write)
                if self._flushing is None:
                    self._flushing = asyncio.create_task(self._flush())
        finally:
            self._workers[host] -= 1

    async def _read(self, job: _Job) -> article_store.ArticleWrite:
        link = job.item.link or ""
        try:
            page = await self.fetcher.fetch(link)
            extracted, matches = await self._extract(page, job.item)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # one article must never stop the others
            log.exception("article %s: could not be read", link)
            extracted, matches = Extracted(None, f"could not be read: {exc!r}"[:300]), []
        if extracted.text is None:
            log.debug("article %s: feed text kept: %s", link, extracted.error)
        return article_store.ArticleWrite(
            job.item_id, job.feed_id, extracted.text, extracted.error, matches
        )

    async def _extract(self, page: Page, item: Item) -> tuple[Extracted, list[Match]]:
        if not page.ok:
            return Extracted(None, page.error), []
        assert page.result is not None
        return await self._pool.call(
            extract_and_match,
            page.result.body,
            dict(page.result.headers),
            page.result.final_url,
            item,
            self._min_text,
            self._max_text,
        )

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    saved = await loop.run_in_executor(
                        self._writer, article_store.save_articles, self._store, batch
                    )
                except Exception:  # the items stay pending; the next run reads them again
                    log.exception("could not store %d articles", len(batch))
                    continue
                s = self.summary
                s.read += saved.done
                s.failed += saved.failed
                s.new_hits += saved.new_hits
                for watchlist, n in saved.hits_by_watchlist.items():
                    s.hits_by_watchlist[watchlist] = s.hits_by_watchlist.get(watchlist, 0) + n
        finally:
            self._flushing = None


def _host_key(url: str) -> str:
    from yarl import URL

    try:
        return (URL(url).raw_host or "").lower()
    except (ValueError, UnicodeError):
        return ""
