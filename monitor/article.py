"""The article stage: read the page behind a headline-only item and extract its main text.

Three parts, used by ``pipeline/articles.py``:

- :func:`needs_article`: whether a new item's page is worth reading (the feed's mode; in
  ``auto``, when the feed's text is short or looks cut off);
- :class:`ArticleFetcher`: fetches pages with the fetch stage's ``fetch`` (handed in by the
  pipeline, so this stage imports no other) and every rule it enforces (http/https only,
  address checks on every hop, one deadline, body caps), on the run's shared session, plus
  robots.txt (read once per host with protego; its Crawl-delay honoured up to a minute)
  and a per-host pace (the least time between the starts of two requests to one host) on
  top of the per-host concurrency limit;
- :func:`extract`: the main text of a page with trafilatura (CPU-bound: run it in a worker,
  never on the event loop). Pages that are not articles (a PDF, a paywall or consent stub,
  an empty page) give a reason instead of text, and the item keeps its feed text.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from monitor.models import Feed, FetchResult, Item, Outcome

if TYPE_CHECKING:
    from protego import Protego

    from monitor.fetch import FetchOptions

#: The fetch stage's ``fetch(feed, session, options)``.
Fetch = Callable[[Feed, Any, "FetchOptions"], Awaitable[FetchResult]]

log = logging.getLogger(__name__)

HTML_ACCEPT = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5"
ROBOTS_MAX_BYTES = 512 * 1024  # robots.txt files larger than this are cut (Google: 500 KiB)
MAX_CRAWL_DELAY = 60.0  # a robots.txt Crawl-delay is honoured up to this many seconds

#: Endings that say a feed's text is a teaser cut from a longer article.
_TRUNCATED = re.compile(
    r"(…|\.\.\.|\[…\]|\[\.\.\.\]|\(…\)|read more|continue reading|read the full (story|article)"
    r"|full story|more\s*[»→]|подробнее|читать далее)\W*$",
    re.IGNORECASE,
)


def looks_truncated(text: str) -> bool:
    """Whether a feed text ends like a teaser ("…", "[…]", "Read more", ...)."""
    return bool(_TRUNCATED.search(text.strip()[-60:]))


def needs_article(item: Item, mode: str, short_text: int) -> bool:
    """Whether to read ``item``'s article page: never, always (when it links to one over
    http(s)), or in ``auto`` when the feed's text is shorter than ``short_text``
    characters or looks truncated."""
    link = item.link or ""
    if mode == "never" or not link.lower().startswith(("http://", "https://")):
        return False
    if mode == "always":
        return True
    text = max(item.summary, item.content, key=len).strip()
    return len(text) < short_text or looks_truncated(text)


# --------------------------------------------------------------------------- fetching


@dataclass(frozen=True, slots=True)
class Page:
    """A fetched article page, or the reason there is none (``error`` set)."""

    url: str
    result: FetchResult | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.result is not None


def article_options(
    options: FetchOptions, *, max_page: int, timeout: float
) -> FetchOptions:
    """The run's fetch options for article pages: HTML accepted, their own caps."""
    return replace(
        options,
        accept=HTML_ACCEPT,
        deadline=timeout,
        max_body_bytes=max_page,
        max_decoded_bytes=max_page,
    )


class _Host:
    """One host's pace and concurrency, and its robots.txt once read."""

    def __init__(self, per_host: int, pace: float) -> None:
        self.gate = asyncio.Semaphore(max(1, per_host))
        self.pace = pace
        self.next_start = 0.0
        self.robots: asyncio.Task[Protego | str | None] | None = None


class ArticleFetcher:
    """Fetches article pages for one poll run (hosts' robots.txt and pace live as long)."""

    def __init__(
        self,
        fetch: Fetch,
        session: Any,  # aiohttp.ClientSession
        options: FetchOptions,
        *,
        pace: float = 1.0,
        robots: bool = True,
        robots_agent: str = "monitor",
    ) -> None:
        self._fetch = fetch
        self._session = session
        self._options = options
        self._pace = pace
        self._robots = robots
        self._agent = robots_agent
        self._hosts: dict[str, _Host] = {}
        self.requests = 0  # pages and robots.txt files asked for

    async def fetch(self, url: str) -> Page:
        """GET one article page. Never raises for network, HTTP or robots trouble."""
        origin = _origin(url)
        if origin is None:
            return Page(url, error=f"not an http(s) URL: {url[:200]}")
        host = self._hosts.get(origin)
        if host is None:
            host = self._hosts[origin] = _Host(self._options.max_per_host, self._pace)
        if self._robots:
            if host.robots is None:
                host.robots = asyncio.create_task(self._read_robots(origin, host))
            rules = await asyncio.shield(host.robots)
            if isinstance(rules, str):
                return Page(url, error=rules)
            if rules is not None and not rules.can_fetch(url, self._agent):
                return Page(url, error="robots.txt disallows this page")
        result = await self._get(url, host)
        if result.outcome is not Outcome.OK:
            reason = result.error or result.error_kind or result.outcome.value
            return Page(url, result, error=f"page not read: {reason}")
        return Page(url, result)

    async def _get(self, url: str, host: _Host, options: FetchOptions | None = None) -> FetchResult:
        async with host.gate:
            now = time.monotonic()
            start = max(now, host.next_start)
            host.next_start = start + host.pace
            if start > now:
                await asyncio.sleep(start - now)
            self.requests += 1
            return await self._fetch(Feed(url=url), self._session, options or self._options)

    async def _read_robots(self, origin: str, host: _Host) -> Protego | str | None:
        """The host's robots.txt rules; None: everything allowed; a string: why nothing is."""
        from protego import Protego

        options = replace(
            self._options, accept="text/plain,*/*;q=0.5", max_body_bytes=ROBOTS_MAX_BYTES,
            max_decoded_bytes=ROBOTS_MAX_BYTES,
        )  # fmt: skip
        result = await self._get(f"{origin}/robots.txt", host, options)
        if result.outcome is Outcome.OK:
            try:
                rules = Protego.parse(result.body.decode("utf-8", "replace"))
                delay = rules.crawl_delay(self._agent)
            except Exception:  # an unreadable robots.txt is no robots.txt
                log.warning("robots.txt of %s is unreadable; treated as absent", origin)
                return None
            if delay:  # the site's own pace, when slower than ours
                host.pace = max(host.pace, min(float(delay), MAX_CRAWL_DELAY))
            return rules
        if result.status is not None and 400 <= result.status < 500:
            return None  # no robots.txt: everything is allowed
        # A server error or no answer: assume the site wants no crawling for now (RFC 9309).
        why = result.error or result.error_kind or result.outcome.value
        return f"robots.txt unavailable ({why}): page not read"


def _origin(url: str) -> str | None:
    from yarl import URL

    try:
        parsed = URL(url)
    except (ValueError, UnicodeError):
        return None
    if parsed.scheme not in ("http", "https") or not parsed.raw_host:
        return None
    return str(parsed.origin())


# --------------------------------------------------------------------------- extraction


@dataclass(frozen=True, slots=True)
class Extracted:
    """A page's main text (capped), or why the page is not an article."""

    text: str | None
    error: str | None = None


_HTML_TYPES = ("text/html", "application/xhtml+xml", "")


def extract(
    body: bytes,
    headers: dict[str, str],
    url: str,
    *,
    min_text: int = 250,
    max_text: int = 100_000,
) -> Extracted:
    """The main text of an article page, cut to ``max_text`` characters, with trafilatura.

    Not an article: a body that is not HTML (a PDF, an image), or a page whose main text
    is shorter than ``min_text`` characters (a paywall or consent stub, an index page).
    Never raises for what a page contains.
    """
    kind = headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in _HTML_TYPES or body[:5] == b"%PDF-":
        return Extracted(None, f"not an HTML page ({kind or 'PDF'})")
    try:
        text = extract_text(body, url)
    except Exception as exc:  # a page must never stop the run
        log.warning("extraction failed on %s: %r", url, exc)
        return Extracted(None, f"extraction failed: {exc!r}"[:300])
    text = (text or "").strip()
    if len(text) < min_text:
        return Extracted(
            None,
            f"no article text on the page ({len(text)} characters): "
            "a paywall, consent wall or not an article",
        )
    if len(text) > max_text:
        cut = text.rfind(" ", 0, max_text)
        text = text[: cut if cut > max_text // 2 else max_text]
    return Extracted(text)


def extract_text(body: bytes, url: str | None = None) -> str | None:
    """trafilatura's main text of a page: the article, without comments, navigation,
    footers or boilerplate (tables kept: results and schedules live in them)."""
    import trafilatura

    text: str | None = trafilatura.extract(
        body,
        url=url,
        include_comments=False,
        include_tables=True,
        output_format="txt",
    )
    return text
