"""The aiohttp application: pages, Atom feeds, the JSON API and ``/healthz``.

Read-only: the store is opened read-only (the database refuses writes on its
connections), the "try a text" form only runs the matcher. Database reads run in a small
thread pool of their own, so a slow page never blocks the event loop. A small pool: on
PostgreSQL the queries run in the server's processes, which the view's lower priority
does not reach, so two at a time at most, however many readers come at once (the rest
wait their turn, and the poller keeps its share of the server), and while a poll stores
items, one at a time with pauses between them (see :func:`_db`); on SQLite they run in
this process, at its priority, and four threads let readers overlap. The pages read most
are kept until the store changes (:mod:`.cache`).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, urlencode

import jinja2
from aiohttp import web
from sqlalchemy.exc import DBAPIError

from monitor.config import SINCE_EXPECTED, Settings, parse_since
from monitor.lang import TAGS as LANGUAGES
from monitor.lang import detect as detect_language
from monitor.records import hit_record, item_record
from monitor.store import Store, browse
from monitor.store import feeds as feed_store
from monitor.store import outbox as outbox_store
from monitor.store import stories as stories_store
from monitor.store.stories import StoryRecord
from monitor.web import render
from monitor.web.atom import AtomEntry, atom_feed
from monitor.web.cache import PageCache
from monitor.web.security import middleware

if TYPE_CHECKING:
    from monitor.match import Matcher
    from monitor.watchlists import Watchlist

log = logging.getLogger(__name__)
T = TypeVar("T")

PAGE_SIZE = 50
SEARCH_PAGE = 25
STORIES_PAGE = 40
STORY_ITEMS = 500
ATOM_ENTRIES = 50
API_LIMIT = 1000
API_STORIES = 200
MAX_TRY_TEXT = 100_000
CHART_DAYS = 30


@dataclass
class WebContext:
    store: Store
    #: The watchlists and their matcher as they stand (re-read when the files change).
    watchlists: Callable[[], tuple[list[Watchlist], Matcher]]
    settings: Callable[[], Settings]
    token: str | None = None
    threads: int = 0  # 0: by the backend (see the module's docstring)
    executor: ThreadPoolExecutor = field(init=False)
    generations: ThreadPoolExecutor = field(init=False)
    pages: PageCache = field(init=False)
    storing_gate: asyncio.Semaphore = field(init=False)

    _names: tuple[float, dict[str, str]] = (0.0, {})

    def __post_init__(self) -> None:
        self.threads = self.threads or (4 if self.store.is_sqlite else 2)
        self.storing_gate = asyncio.Semaphore(1)
        self.executor = ThreadPoolExecutor(self.threads, thread_name_prefix="web")
        # A thread of its own: a kept page is never held up by the queries queued for
        # pages that are not.
        self.generations = ThreadPoolExecutor(1, thread_name_prefix="web-generation")
        self.pages = PageCache(self._generation)

    async def _generation(self) -> tuple[int, int]:
        return await self.run(functools.partial(browse.generation, self.store), self.generations)

    async def run(self, call: Callable[[], T], executor: ThreadPoolExecutor | None = None) -> T:
        """``call()`` on a database thread, and once more if it found its connection gone
        (a database restart): the store's pool has let go of its old connections then."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(executor or self.executor, call)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            log.warning("web: the database connection was lost; reading again")
            return await loop.run_in_executor(executor or self.executor, call)


#: Feed names are read again after this many seconds (they change when a feed is added).
NAMES_TTL = 60.0


async def _feed_names(request: web.Request) -> dict[str, str]:
    ctx = request.app[CTX]
    loaded, names = ctx._names
    if time.monotonic() - loaded > NAMES_TTL or not names:
        names = await _db(request, browse.feed_names, ctx.store)
        ctx._names = (time.monotonic(), names)
    return names


CTX = web.AppKey("ctx", WebContext)
ENV = web.AppKey("env", jinja2.Environment)


def create_app(ctx: WebContext) -> web.Application:
    settings = ctx.settings()
    app = web.Application(
        middlewares=[middleware(ctx.token, settings["web.trust_proxy_auth"])],
        client_max_size=MAX_TRY_TEXT * 4,
    )
    app[CTX] = ctx
    app[ENV] = render.environment()
    r = app.router
    r.add_get("/", _cached(index))
    r.add_get("/search", _cached(search))
    r.add_get("/stories/{id}", _cached(story_page))
    r.add_get("/watchlists", watchlist_index)
    r.add_get(r"/watchlists/{id:[^/]+}.atom", _cached(watchlist_atom))
    r.add_get("/watchlists/{id}", _cached(watchlist_page))
    r.add_get(r"/subscribers/{email:[^/]+}.atom", _cached(subscriber_atom))
    r.add_get("/feeds", feeds_page)
    r.add_get("/outbox", outbox_page)
    r.add_get("/try", try_form)
    r.add_post("/try", try_form)
    r.add_get("/api/hits", api_hits)
    r.add_get("/api/items", api_items)
    r.add_get("/api/stories", api_stories)
    r.add_get("/healthz", healthz)
    r.add_get("/static/{name}", static)
    r.add_get("/favicon.ico", favicon)

    async def close(_app: web.Application) -> None:
        ctx.executor.shutdown(wait=False, cancel_futures=True)
        ctx.generations.shutdown(wait=False, cancel_futures=True)

    app.on_cleanup.append(close)
    return app


# ------------------------------------------------------------------ helpers


def _cached(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """``handler``'s answers kept until the store changes (see :mod:`.cache`): keyed by
    the path and query, the watchlists in the navigation and the base of absolute links
    (Atom's)."""

    async def serve(request: web.Request) -> web.StreamResponse:
        ctx = request.app[CTX]
        watchlists, _ = ctx.watchlists()
        key = (
            request.path_qs,
            tuple((w.id, w.name) for w in watchlists),
            _base(request),
        )
        return await ctx.pages.answer(key, lambda: handler(request))

    functools.update_wrapper(serve, handler)
    return serve


#: While a poll stores items, the share of the time the view's queries may keep a
#: PostgreSQL backend busy (see :func:`_db`).
STORING_SHARE = 0.25


async def _db(request: web.Request, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` on a database thread.

    On PostgreSQL, while a poll stores items (the store's generation moves), the view's
    queries run one at a time, and after each the next waits so that the view keeps a
    backend busy at most ``STORING_SHARE`` of the time: the backends run at the server's
    priority, not the view's, and would take the CPU the poll's writes (and their index
    upkeep) need. A query that takes longer on a busy machine makes the next wait longer.
    """
    ctx = request.app[CTX]
    call = functools.partial(fn, *args, **kwargs)
    if ctx.store.is_sqlite or not ctx.pages.storing():
        return await ctx.run(call)
    gate = ctx.storing_gate
    await gate.acquire()
    started = time.monotonic()
    try:
        return await ctx.run(call)
    finally:
        took = time.monotonic() - started
        asyncio.get_running_loop().call_later(took * (1 / STORING_SHARE - 1), gate.release)


def _page(request: web.Request, template: str, status: int = 200, **values: Any) -> web.Response:
    env = request.app[ENV]
    ctx = request.app[CTX]
    watchlists, _matcher = ctx.watchlists()
    body = env.get_template(template).render(
        nav_watchlists=[(w.id, w.name) for w in watchlists],
        path=request.path,
        q=request.query.get("q", ""),
        **values,
    )
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")


def _since(value: str | None) -> datetime | None:
    """``?since=``: ``7d`` (that long ago) or an ISO date/time (UTC unless it says otherwise)."""
    if not value:
        return None
    try:
        return parse_since(value)
    except ValueError:
        raise web.HTTPBadRequest(text=f"since={value!r}: expected {SINCE_EXPECTED}\n") from None


def _int_arg(request: web.Request, name: str, default: int | None, *, top: int) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name}={raw!r}: expected a whole number\n") from None
    if value < 1:
        raise web.HTTPBadRequest(text=f"{name}: expected 1 or more\n")
    return min(value, top)


def _known_watchlist(request: web.Request, wid: str | None) -> Watchlist | None:
    if not wid:
        return None
    watchlists, _ = request.app[CTX].watchlists()
    for w in watchlists:
        if w.id == wid:
            return w
    raise web.HTTPNotFound(text=f"no watchlist {wid!r}\n")


def _outlets(story: StoryRecord, names: dict[str, str]) -> list[str]:
    """The names of the feeds that told ``story``, each once, in the order of its items."""
    return list(dict.fromkeys(names.get(i.feed or "", i.feed or "?") for i in story.items))


def _json(data: Any) -> web.Response:
    return web.Response(text=json.dumps(data, ensure_ascii=False), content_type="application/json")


def _base(request: web.Request) -> str:
    configured = request.app[CTX].settings()["web.base_url"]
    return str(configured) if configured else f"{request.scheme}://{request.host}"


# ------------------------------------------------------------------ pages


async def index(request: web.Request) -> web.Response:
    """Stories of the last days with a hit, grouped by watchlist, newest and largest first."""
    wl = _known_watchlist(request, request.query.get("watchlist"))
    feed_id = _int_arg(request, "feed", None, top=2**62)
    lang = request.query.get("lang") or None
    if lang is not None and lang not in LANGUAGES:
        raise web.HTTPBadRequest(text=f"lang: one of {', '.join(LANGUAGES)}\n")
    since_arg = request.query.get("since") or "7d"
    since = _since(since_arg)
    store = request.app[CTX].store
    watchlists, _ = request.app[CTX].watchlists()
    found = await _db(
        request,
        browse.matched_stories,
        store,
        since=since,
        watchlists=[wl.id] if wl else None,
        feed_id=feed_id,
        lang=lang,
        limit=STORIES_PAGE,
    )
    names = await _feed_names(request)
    order = {w.id: i for i, w in enumerate(watchlists)}
    groups: dict[str, list[tuple[StoryRecord, list[str], list[str]]]] = {}
    for story in found:
        matched = sorted(story.watchlists, key=lambda w: (order.get(w, len(order)), w))
        if not matched:
            continue
        home = wl.id if wl else matched[0]
        outlets = _outlets(story, names)
        groups.setdefault(home, []).append((story, outlets, [w for w in matched if w != home]))
    for rows in groups.values():
        rows.sort(key=lambda r: (r[0].last_seen.date(), len(r[0].items)), reverse=True)
    wl_names = {w.id: w.name for w in watchlists}
    ordered = sorted(groups.items(), key=lambda g: (order.get(g[0], len(order)), g[0]))
    return _page(
        request,
        "index.html.j2",
        groups=[(wid, wl_names.get(wid, wid), rows) for wid, rows in ordered],
        watchlist=wl,
        since=since_arg,
        feed_id=feed_id,
        lang=lang,
        languages=LANGUAGES,
        full=len(found) == STORIES_PAGE,
    )


async def story_page(request: web.Request) -> web.Response:
    try:
        story_id = int(request.match_info["id"])
    except ValueError:
        raise web.HTTPNotFound(text="no such story\n") from None
    story = await _db(request, browse.story_page, request.app[CTX].store, story_id,
                      limit=STORY_ITEMS)  # fmt: skip
    if story is None:
        raise web.HTTPNotFound(text=f"no story {story_id}\n")
    rows = story.items
    shown = [(row, render.snippet(row.summary or row.content, row.marks)) for row in rows]
    terms: dict[str, dict[str, None]] = {}
    for row in rows:
        for wid, ts in row.watchlists.items():
            terms.setdefault(wid, {}).update(dict.fromkeys(ts))
    return _page(
        request,
        "story.html.j2",
        story=story,
        items=shown,
        outlets=list(dict.fromkeys(row.outlet for row in rows)),
        terms=[(wid, list(ts)) for wid, ts in terms.items()],
        more=story.item_count - len(rows),
    )


async def search(request: web.Request) -> web.Response:
    q = request.query.get("q", "").strip()
    wl = _known_watchlist(request, request.query.get("watchlist"))
    rows: list[browse.ItemRow] = []
    older = None
    if q:
        rows = await _db(
            request,
            browse.list_items,
            request.app[CTX].store,
            q=q,
            watchlist=wl.id if wl else None,
            since=_since(request.query.get("since")),
            before_id=_int_arg(request, "before", None, top=2**62),
            limit=SEARCH_PAGE,
        )
        if len(rows) == SEARCH_PAGE:
            params = {k: v for k, v in request.query.items() if k != "before"}
            older = "/search?" + urlencode({**params, "before": rows[-1].id})
    words = browse.query_words(q)
    results = [(row, render.snippet(row.summary or row.content, words)) for row in rows]
    return _page(
        request,
        "search.html.j2",
        results=results,
        words=words,
        watchlist=wl,
        searched=bool(q),
        older=older,
    )


async def watchlist_index(request: web.Request) -> web.Response:
    watchlists, _ = request.app[CTX].watchlists()
    return _page(request, "watchlists.html.j2", watchlists=watchlists)


def _entry_terms(rule: Any) -> list[str]:
    """The terms of a rule, as written in the file, in order."""
    out: list[str] = []
    for name in ("text", "pattern"):
        value = getattr(rule, name, None)
        if isinstance(value, str):
            out.append(value + ("*" if getattr(rule, "prefix", False) else ""))
    for child in getattr(rule, "children", ()):
        out.extend(_entry_terms(child))
    for operand in getattr(rule, "operands", ()):
        for term in operand:
            out.extend(_entry_terms(term))
    return out


async def watchlist_page(request: web.Request) -> web.Response:
    wl = _known_watchlist(request, request.match_info["id"])
    assert wl is not None
    store = request.app[CTX].store
    today = datetime.now(UTC).date()
    series = await _db(request, browse.hits_per_day, store, wl.id, days=CHART_DAYS, today=today)
    outlets = await _db(
        request, browse.top_outlets, store, wl.id, since=datetime.now(UTC) - timedelta(days=30)
    )
    recent = await _db(request, browse.list_items, store, watchlist=wl.id, limit=20)
    chart = render.bar_chart(series, label=f"{wl.name}: hits per day, last {CHART_DAYS} days (UTC)")
    entries = [(e, _entry_terms(e.rule)) for e in wl.entries]
    return _page(
        request,
        "watchlist.html.j2",
        watchlist=wl,
        entries=entries,
        chart=chart,
        total=sum(n for _, n in series),
        series=series,
        outlets=outlets,
        recent=recent,
    )


async def feeds_page(request: web.Request) -> web.Response:
    rows = await _db(request, feed_store.list_feeds, request.app[CTX].store)
    return _page(request, "feeds.html.j2", feeds=[(f, _feed_state(f)) for f in rows])


def _feed_state(f: feed_store.FeedRecord) -> str:
    if f.retired_at is not None:
        return "retired"
    if f.last_polled_at is None:
        return "new"
    if f.consecutive_failures:
        return f"failing ({f.consecutive_failures})"
    return "ok"


async def outbox_page(request: web.Request) -> web.Response:
    """Mail and webhook deliveries queued or failed: each row's kind and receiver (a
    webhook's scheme, host and port only, as ``monitor outbox`` shows it)."""
    entries = await _db(request, outbox_store.list_outbox, request.app[CTX].store)
    target = outbox_store.target_namer(request.app[CTX].settings().webhooks)
    return _page(request, "outbox.html.j2", rows=[(e, target(e)) for e in entries])


async def try_form(request: web.Request) -> web.Response:
    """Run the watchlists on a pasted title and text; nothing is stored."""
    title = text = ""
    lang: str | None = None
    results: list[tuple[str, str, list[str]]] | None = None
    marked: dict[str, list[tuple[str, bool]]] = {}
    if request.method == "POST":
        form = await request.post()
        title = str(form.get("title", ""))[:MAX_TRY_TEXT]
        text = str(form.get("text", ""))[:MAX_TRY_TEXT]
        _, matcher = request.app[CTX].watchlists()
        fields = {"title": title, "summary": text}
        # The language as the poller detects it, so that a watchlist kept to other
        # languages matches here what it matches there (as `monitor match` does).
        lang = detect_language(title, text)
        matches = matcher.match_fields(fields, lang=lang)
        results = [(m.watchlist, m.entry, list(m.terms)) for m in matches]
        for name, value in fields.items():
            spans = sorted({(s.start, s.end) for m in matches for s in m.spans if s.field == name})
            marked[name] = _mark(value, spans)
    return _page(
        request, "try.html.j2", title=title, text=text, lang=lang, results=results, marked=marked
    )


def _mark(text: str, spans: list[tuple[int, int]]) -> list[tuple[str, bool]]:
    pieces: list[tuple[str, bool]] = []
    pos = 0
    for start, end in spans:
        if start < pos:
            continue
        pieces.append((text[pos:start], False))
        pieces.append((text[start:end], True))
        pos = end
    pieces.append((text[pos:], False))
    return [p for p in pieces if p[0]]


# ------------------------------------------------------------------ Atom


def _story_entries(
    request: web.Request, found: list[StoryRecord], names: dict[str, str]
) -> list[AtomEntry]:
    base = _base(request)
    out = []
    for story in found:
        outlets = _outlets(story, names)
        lead = story.items[0] if story.items else None
        summary = f"{len(story.items)} items from {', '.join(outlets)}"
        if story.watchlists:
            summary += "; watchlists: " + ", ".join(story.watchlists)
        out.append(
            AtomEntry(
                id=f"{base}/stories/{story.id}",
                title=story.title,
                updated=story.last_seen,
                published=story.first_seen,
                link=f"{base}/stories/{story.id}",
                related=render.safe_href(lead.link) if lead else None,
                summary=summary,
            )
        )
    return out


async def _atom(
    request: web.Request, path: str, title: str, alternate: str, followed: list[str]
) -> web.Response:
    store = request.app[CTX].store
    found = await _db(
        request, browse.matched_stories, store, watchlists=followed, limit=ATOM_ENTRIES
    )
    names = await _feed_names(request)
    base = _base(request)
    body = atom_feed(
        feed_id=f"{base}{path}",
        title=title,
        self_url=f"{base}{path}",
        alternate_url=f"{base}{alternate}",
        entries=_story_entries(request, found, names),
        updated=found[0].last_seen if found else datetime.now(UTC),
    )
    return web.Response(body=body, content_type="application/atom+xml", charset="utf-8")


async def watchlist_atom(request: web.Request) -> web.Response:
    wl = _known_watchlist(request, request.match_info["id"])
    assert wl is not None
    wid = quote(wl.id)
    return await _atom(
        request, f"/watchlists/{wid}.atom", f"monitor: {wl.name}", f"/watchlists/{wid}", [wl.id]
    )


async def subscriber_atom(request: web.Request) -> web.Response:
    email = request.match_info["email"]
    settings = request.app[CTX].settings()
    sub = next((s for s in settings.subscribers if s.email.lower() == email.lower()), None)
    if sub is None:
        raise web.HTTPNotFound(text=f"no subscriber {email!r}\n")
    watchlists, _ = request.app[CTX].watchlists()
    followed = [w.id for w in watchlists if sub.follows(w.id)]
    return await _atom(
        request, f"/subscribers/{quote(sub.email)}.atom", f"monitor: {sub.email}", "/", followed
    )


# ------------------------------------------------------------------ API


async def api_hits(request: web.Request) -> web.Response:
    wl = _known_watchlist(request, request.query.get("watchlist"))
    limit = _int_arg(request, "limit", API_LIMIT, top=API_LIMIT)
    if request.query.get("q"):
        raise web.HTTPBadRequest(text="q: search items with /api/items?q=...\n")
    hits = await _db(
        request,
        feed_store.list_hits,
        request.app[CTX].store,
        since=_since(request.query.get("since")),
        watchlists=[wl.id] if wl else None,
        limit=limit,
        newest_first=True,
    )
    return _json([hit_record(h) for h in hits])


async def api_items(request: web.Request) -> web.Response:
    wl = _known_watchlist(request, request.query.get("watchlist"))
    limit = _int_arg(request, "limit", API_LIMIT, top=API_LIMIT)
    rows = await _db(
        request,
        browse.list_items,
        request.app[CTX].store,
        q=request.query.get("q") or None,
        since=_since(request.query.get("since")),
        watchlist=wl.id if wl else None,
        limit=limit or API_LIMIT,
    )
    return _json([item_record(r) for r in rows])


async def api_stories(request: web.Request) -> web.Response:
    """Stories as ``monitor stories --json`` prints them, the most recently seen first."""
    wl = _known_watchlist(request, request.query.get("watchlist"))
    limit = _int_arg(request, "limit", API_STORIES, top=API_STORIES) or API_STORIES
    since = _since(request.query.get("since"))
    store = request.app[CTX].store
    q = request.query.get("q") or None
    if q is None:
        found = await _db(
            request,
            stories_store.list_stories,
            store,
            since=since,
            watchlist=wl.id if wl else None,
            limit=limit,
        )
    else:
        found = await _db(
            request,
            browse.matched_stories,
            store,
            since=since,
            watchlists=[wl.id] if wl else None,
            q=q,
            limit=limit,
        )
    return _json([s.to_dict() for s in found])


async def healthz(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    try:  # not held back while a poll stores (see _db): one trivial query
        await ctx.run(functools.partial(feed_store.feed_count, ctx.store))
    except Exception as exc:  # the point of /healthz is to say so, not to crash
        log.warning("healthz: database: %s", exc)
        return web.json_response({"status": "error", "database": "unreachable"}, status=503)
    return web.json_response({"status": "ok"})


STATIC_FILES = {"style.css": "text/css", "favicon.svg": "image/svg+xml"}


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in STATIC_FILES:
        raise web.HTTPNotFound(text="not found\n")
    return web.Response(
        body=_static_body(name),
        content_type=STATIC_FILES[name],
        headers={"Cache-Control": "max-age=3600"},
    )


@functools.cache
def _static_body(name: str) -> bytes:
    """A file of ``static/``, read once (they ship with the package)."""
    return (render.STATIC / name).read_bytes()


async def favicon(request: web.Request) -> web.Response:
    raise web.HTTPMovedPermanently("/static/favicon.svg")
