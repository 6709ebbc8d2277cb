"""The web view on a real server on 127.0.0.1 over a real store (SQLite and PostgreSQL):
pages, search, Atom (parsed by feedparser), the JSON API, auth, and pages rendered in
headless chromium."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import feedparser
import pytest
from browser import CHROMIUM, Browser
from conftest import REPO
from sqlalchemy import text

from monitor.config import settings_from_mapping
from monitor.errors import ConfigError
from monitor.models import FetchResult, Item, Outcome, ParsedFeed
from monitor.pipeline import watchlist_registry
from monitor.store import Store, open_store
from monitor.store import feeds as fs
from monitor.store import outbox as ob
from monitor.watchlists import WatchlistRegistry
from monitor.web import WebServer

HOSTILE = '<script>alert(1)</script><img src=x onerror=alert(2)> Sergio Gor "quoted" & co'
NOW = fs.utcnow()
#: A Slack-style incoming webhook: its path and query are the secret.
HOOK_URL = "https://hooks.example:8443/services/T0SECRET/B0SECRET/xoxSECRET?token=qSECRET"


def ok(url: str) -> FetchResult:
    return FetchResult(outcome=Outcome.OK, url=url, final_url=url, status=200)


def seed(store: Store, registry: WatchlistRegistry) -> None:
    """Two feeds, items through the real write path and the real matcher."""
    fs.sync_config_feeds(
        store,
        [fs.FeedSpec("http://127.0.0.1:9/wire.xml", title="Wire"),
         fs.FeedSpec("http://127.0.0.1:9/daily.xml", title="Daily")],
    )  # fmt: skip
    wire, daily = sorted(fs.list_feeds(store), key=lambda f: f.id)
    batches = [
        (wire, [
            Item("w1", "US envoy Sergio Gor arrives in Tashkent for C5+1 talks",
                 link="https://wire.example/gor-tashkent",
                 summary="Special Envoy Sergio Gor met President Mirziyoyev in Tashkent on Monday.",
                 lang="en"),
            Item("w2", HOSTILE, link="javascript:alert(3)",
                 summary="Ambassador Sergio Gor <b>spoke</b> in Almaty."),
            Item("w3", "Grain prices steady", link="https://wire.example/grain",
                 summary="Nothing about diplomacy here; Tashkent market report."),
        ]),
        (daily, [
            Item("d1", "Christopher Landau visits Astana", link="https://daily.example/landau",
                 summary="Deputy Secretary of State Christopher Landau discussed the Middle Corridor."),
        ]),
    ]  # fmt: skip
    for feed, batch in batches:
        fs.save_poll(
            store, feed, ok(feed.url), ParsedFeed(items=batch),
            next_due_at=NOW + timedelta(minutes=15), hint_s=None,
            match=registry.matcher.match,
        )  # fmt: skip


class Served:
    """A WebServer on 127.0.0.1 (a port of its own) in a thread with its own loop."""

    def __init__(self, store: Store, registry: WatchlistRegistry, config: dict[str, Any]) -> None:
        settings = settings_from_mapping(config, {})
        self.server = WebServer(
            "127.0.0.1:0", store, lambda: (registry.watchlists, registry.matcher),
            lambda: settings,
        )  # fmt: skip
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._started.wait(10)
        self.base = f"http://127.0.0.1:{self.server.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self.server.start())
        self._started.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self.server.stop())
        self._loop.close()

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def get(self, path: str, headers: dict[str, str] | None = None,
            data: bytes | None = None) -> tuple[int, dict[str, str], str]:  # fmt: skip
        req = urllib.request.Request(self.base + path, headers=headers or {}, data=data)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, dict(resp.headers), resp.read().decode("utf-8")
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read().decode("utf-8")


@pytest.fixture
def registry() -> WatchlistRegistry:
    return watchlist_registry(REPO / "watchlists")


@pytest.fixture
def site(store: Store, store_url: str, registry: WatchlistRegistry) -> Iterator[Served]:
    seed(store, registry)
    reader = open_store(store_url, read_only=True)
    served = Served(reader, registry, {
        "subscribers": [{"email": "analyst@example.org", "watchlists": ["gor"]}],
        "webhooks": [{"url": HOOK_URL, "name": "desk", "watchlists": ["gor"]}],
    })
    try:
        yield served
    finally:
        served.stop()
        reader.dispose()


def test_pages_search_and_api(site: Served, store: Store) -> None:
    status, headers, body = site.get("/")
    assert status == 200
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert "script-src" not in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert "US envoy Sergio Gor arrives in Tashkent" in body
    assert "Christopher Landau visits Astana" in body
    assert "Grain prices" not in body  # matched nothing
    # Hostile feed text is inert: escaped, and its javascript: link is not a link.
    assert "<script>alert(1)" not in body and "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "javascript:" not in body
    assert "<script" not in body and "style=" not in body  # nothing inline at all

    story = json.loads(site.get("/api/stories?watchlist=gor")[2])
    assert [s["title"] for s in story] == [HOSTILE, "US envoy Sergio Gor arrives in Tashkent for C5+1 talks"]
    assert {"story", "title", "first_seen", "items"} <= set(story[0])
    assert f'href="/stories/{story[1]["story"]}"' in body
    status, _, page = site.get(f"/stories/{story[1]['story']}")
    assert status == 200
    assert "US envoy Sergio Gor arrives in Tashkent for C5+1 talks" in page
    assert 'href="https://wire.example/gor-tashkent"' in page and "Wire" in page
    assert "<mark>Sergio Gor</mark> met President" in page  # the matched words, highlighted
    assert site.get("/stories/999999")[0] == 404 and site.get("/stories/x")[0] == 404
    assert json.loads(site.get("/api/stories?q=almaty")[2])[0]["title"] == HOSTILE

    status, _, body = site.get("/search?q=" + urllib.parse.quote("tashkent"))
    assert status == 200
    assert "Sergio Gor arrives in Tashkent" in body and "Grain prices steady" in body
    assert "<mark>Tashkent</mark>" in body
    _, _, body = site.get("/search?q=" + urllib.parse.quote("gor mirziyoyev"))
    assert "arrives in Tashkent" in body and "Grain" not in body  # every word must occur
    _, _, body = site.get("/search?q=" + urllib.parse.quote('"AND OR NEAR( * -'))
    assert "No items contain" in body  # query syntax is just text

    status, _, body = site.get("/watchlists/gor")
    assert status == 200
    assert "Hits per day" in body and "<svg" in body and "Wire" in body
    assert "Sergio Gor by full name" in body
    assert site.get("/watchlists/nope")[0] == 404

    _, _, body = site.get("/feeds")
    assert "Wire" in body and "Daily" in body and "ok" in body
    assert "recovered since" not in body
    # A feed that failed once and recovered keeps its last error, said to be past.
    with store.write() as conn:
        conn.execute(text("UPDATE feeds SET last_error = 'HTTP 503', last_error_at = created_at "
                          "WHERE title = 'Wire'"))  # fmt: skip
    _, _, body = site.get("/feeds")
    assert "recovered since; it was:</small> HTTP 503" in body
    _, _, body = site.get("/outbox")
    assert "Nothing queued or failed" in body
    # A queued webhook body and a mail: each row's kind and receiver, the webhook's by
    # scheme, host and port only (its path and query are the secret); text escaped.
    with store.read() as conn:
        hit_ids = conn.execute(text("SELECT id FROM hits ORDER BY id")).scalars().all()
    ob.enqueue_digest(store, subscriber="webhook:desk", message_id="delivery-1",
                      subject=HOSTILE, message=b'{"stories": []}', hit_ids=hit_ids[:1],
                      kind="webhook")  # fmt: skip
    ob.enqueue_digest(store, subscriber="analyst@example.org", message_id="<m1@example.org>",
                      subject="1 story: gor", message=b"mail", hit_ids=hit_ids[1:2])  # fmt: skip
    status, _, body = site.get("/outbox")
    assert status == 200 and "Nothing queued" not in body
    assert "<td>webhook</td>" in body and "webhook:desk" in body
    assert "https://hooks.example:8443/…" in body
    assert "SECRET" not in body and "/services" not in body and "token" not in body
    assert "<td>mail</td>" in body and "analyst@example.org" in body
    assert "<script>alert(1)" not in body and "&lt;script&gt;alert(1)&lt;/script&gt;" in body

    form = urllib.parse.urlencode({"title": "Sergio Gor lands in Bishkek", "text": "x"}).encode()
    status, _, body = site.get("/try", data=form)
    assert status == 200 and "gor" in body and "<mark>Sergio Gor</mark>" in body

    status, headers, body = site.get("/api/items?q=tashkent")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    records = json.loads(body)
    assert {r["title"] for r in records} == {
        "US envoy Sergio Gor arrives in Tashkent for C5+1 talks", "Grain prices steady"}
    assert {"id", "feed", "title", "link", "guid", "published", "first_seen"} <= set(records[0])
    assert {"feed_title", "story", "lang", "text", "text_source", "summary", "watchlists"} <= set(
        records[0]
    )  # as README lists them
    hits = json.loads(site.get("/api/hits?watchlist=gor&since=1d")[2])
    assert {h["watchlist"] for h in hits} == {"gor"} and len(hits) == 2
    assert {"watchlist", "title", "link", "guid", "feed", "terms", "first_seen"} <= set(hits[0])
    assert site.get("/api/hits?since=soon")[0] == 400
    assert json.loads(site.get("/healthz")[2]) == {"status": "ok"}
    for _ in range(2):  # read once, served alike after
        status, headers, css = site.get("/static/style.css")
        assert status == 200 and headers["Content-Type"].startswith("text/css")
        assert css == (REPO / "monitor/web/static/style.css").read_text(encoding="utf-8")
    assert site.get("/static/app.py")[0] == 404 and site.get("/static/..%2Fapp.py")[0] == 404


def test_try_keeps_a_watchlist_to_its_languages(
    store: Store, store_url: str, tmp_path: Path
) -> None:
    """The form detects the text's language as the poller does: a watchlist kept to
    other languages does not match it there either."""
    (tmp_path / "ru.yaml").write_text(
        "languages: [ru, kk]\nentries:\n  - id: g\n    terms: [{text: Гор, forms: true}]\n",
        encoding="utf-8",
    )
    (tmp_path / "uz.yaml").write_text(
        "languages: [uz]\nentries:\n  - id: g\n    terms: [{text: Гор, lang: uz}]\n",
        encoding="utf-8",
    )
    registry = watchlist_registry(tmp_path)
    served = Served(store, registry, {})
    try:
        form = urllib.parse.urlencode(
            {"title": "Горнинг ташрифи", "text": "Тошкентда ҳамкорлик ўрганилди"}
        ).encode()
        status, _, body = served.get("/try", data=form)
    finally:
        served.stop()
    assert status == 200 and "Language: uz-Cyrl" in body
    assert 'href="/watchlists/uz"' in body and 'href="/watchlists/ru"' not in body
    assert body.count("<td>g</td>") == 1  # one entry matched: uz's
    assert "1 match<" in body and "1 matches" not in body


def test_atom_feeds_parse_cleanly(site: Served) -> None:
    status, headers, body = site.get("/watchlists/gor.atom")
    assert status == 200 and headers["Content-Type"].startswith("application/atom+xml")
    parsed = feedparser.parse(body.encode())
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version == "atom10"
    titles = [e.title for e in parsed.entries]
    assert titles[0] == HOSTILE  # newest first; text, not markup
    assert "US envoy Sergio Gor arrives in Tashkent for C5+1 talks" in titles
    assert all(not e.get("link", "").startswith("javascript") for e in parsed.entries)
    sub = feedparser.parse(site.get("/subscribers/analyst@example.org.atom")[2].encode())
    assert not sub.bozo and len(sub.entries) == 2
    assert site.get("/subscribers/nobody@example.org.atom")[0] == 404


def test_search_index_covers_rows_stored_before_the_migration(
    store_url: str, registry: WatchlistRegistry
) -> None:
    from alembic import command
    from alembic.script import ScriptDirectory

    from monitor.store.db import _alembic_config

    before = ScriptDirectory.from_config(_alembic_config(None)).get_revision("0006").down_revision
    store = open_store(store_url)
    try:
        with store.engine.begin() as conn:
            command.upgrade(_alembic_config(conn), str(before))
        seed(store, registry)
        store.upgrade()
        from monitor.store import browse

        found = browse.list_items(store, q="Almaty")
        assert [r.title for r in found] == [HOSTILE]
        # ...and kept in sync by the writes after it, in the same transaction.
        feed = fs.list_feeds(store)[0]
        fs.save_poll(store, feed, ok(feed.url), ParsedFeed(items=[Item("n1", "Almaty again")]),
                     next_due_at=NOW, hint_s=None, match=registry.matcher.match)  # fmt: skip
        assert len(browse.list_items(store, q="almaty")) == 2
        with store.write() as conn:
            conn.execute(text("DELETE FROM items WHERE identity = 'n1'"))
        assert len(browse.list_items(store, q="almaty")) == 1
    finally:
        store.dispose()


def test_read_only_store_refuses_writes(store: Store, store_url: str) -> None:
    reader = open_store(store_url, read_only=True)
    try:
        with pytest.raises(Exception, match=r"(?i)read.?only"), reader.read() as conn:
            conn.execute(text("DELETE FROM feeds"))
    finally:
        reader.dispose()


def test_credentials(tmp_path: Path, sqlite_url: str, registry: WatchlistRegistry) -> None:
    store = open_store(sqlite_url, upgrade=True)
    try:
        settings = settings_from_mapping({}, {})
        with pytest.raises(ConfigError, match=r"refusing to serve on 0\.0\.0\.0:8470"):
            WebServer("0.0.0.0:8470", store, lambda: ([], registry.matcher), lambda: settings)
        token = tmp_path / "token"
        token.write_text("s3cret-token\n")
        site = Served(store, registry, {"web": {"token_file": str(token)}})
        try:
            assert site.get("/")[0] == 401
            assert site.get("/", {"Authorization": "Bearer wrong"})[0] == 401
            status, headers, _ = site.get("/api/items", {"Authorization": "Bearer nope"})
            assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
            assert site.get("/", {"Authorization": "Bearer s3cret-token"})[0] == 200
            basic = base64.b64encode(b"anyone:s3cret-token").decode()
            assert site.get("/feeds", {"Authorization": f"Basic {basic}"})[0] == 200
            assert site.get("/healthz")[0] == 200  # for load balancers, says nothing
        finally:
            site.stop()
        site = Served(store, registry, {"web": {"trust_proxy_auth": "X-Remote-User"}})
        try:
            assert site.get("/")[0] == 401
            assert site.get("/", {"X-Remote-User": "analyst"})[0] == 200
        finally:
            site.stop()
    finally:
        store.dispose()


def test_cli_refuses_an_exposed_bind_without_credentials(tmp_path: Path) -> None:
    config = tmp_path / "monitor.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "m.db"}"\n'
        f'[watchlists]\ndir = "{REPO / "watchlists"}"\n[web]\nlisten = "0.0.0.0:8470"\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "monitor", "--config", str(config), "web"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "MONITOR_CONFIG": ""},
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith(
        "monitor: error: web: refusing to serve on 0.0.0.0:8470 without credentials"
    )


def test_cli_says_once_where_it_listens(tmp_path: Path) -> None:
    config = tmp_path / "monitor.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "m.db"}"\n'
        f'[watchlists]\ndir = "{REPO / "watchlists"}"\n'
    )
    with socket.socket() as probe:  # a free port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", "--config", str(config), "web", "--listen", f"127.0.0.1:{port}"],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "MONITOR_CONFIG": ""},
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            assert line, f"monitor web ended: {lines}"
            lines.append(line)
            if line.startswith("monitor web: http://"):
                break
        url = lines[-1].split()[2]
        assert url == f"http://127.0.0.1:{port}/", lines
        with urllib.request.urlopen(url + "healthz", timeout=10) as answer:
            assert answer.status == 200
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=30)[1]
        assert proc.returncode == 0
        said = "".join(lines) + rest
        assert said.count("127.0.0.1") == 1, said  # the address is said once, not logged again
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
@pytest.mark.timeout(120)
def test_pages_in_headless_chromium(site: Served, tmp_path: Path, store_url: str) -> None:
    if not store_url.startswith("sqlite"):
        pytest.skip("rendering does not depend on the backend; run once")

    async def visit() -> None:
        async with Browser(tmp_path / "profile") as b:
            await b.open(site.base + "/")
            await b.screenshot(tmp_path / "index.png")
            page = await b.text()
            assert "US envoy Sergio Gor arrives in Tashkent" in page
            assert HOSTILE.split(">")[-1].strip() in page  # shown as text...
            assert await b.js("document.querySelectorAll('script, img').length") == 0  # ...inert
            assert await b.js("window.alerted === undefined")
            links = await b.links()
            assert "/watchlists/gor" in links
            story = next(h for h in links if h.startswith("/stories/"))
            assert not [h for h in links if h and h.lower().startswith("javascript")]
            # Keyboard: the first Tab reaches the skip link, the next ones the navigation.
            assert await b.tab() == "A #main"
            assert (await b.tab()).startswith("A /")
            assert (await b.tab()).startswith("A /watchlists")
            await b.press("Enter", 13)
            await asyncio.sleep(0.5)
            assert await b.js("location.pathname") == "/watchlists"

            for path, expected in [
                (story, "Coverage"),
                ("/watchlists/gor", "Hits per day"),
                ("/search?q=tashkent", "Grain prices steady"),
                ("/feeds", "Wire"),
                ("/outbox", "Nothing queued"),
                ("/try", "Nothing is stored"),
            ]:
                await b.open(site.base + path)
                name = path.strip("/").split("?")[0].split("/")[0]
                await b.screenshot(tmp_path / f"{name}.png")
                assert expected in await b.text(), path
            assert await b.js("document.querySelector('svg.chart') === null")  # on /try
            await b.open(site.base + "/watchlists/gor")
            bars = await b.js("document.querySelectorAll('svg.chart rect.bar').length")
            assert bars == 30
            assert await b.js("getComputedStyle(document.querySelector('rect.bar')).fill") != ""

        assert b.console == [], b.console  # no errors, no CSP violations
        outside = [u for u in b.requests if not u.startswith(site.base + "/")]
        assert outside == [], outside

    asyncio.run(visit())
    for shot in ("index", "stories", "watchlists", "search", "feeds", "outbox", "try"):
        png = tmp_path / f"{shot}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5_000


def test_stories_filtered_by_language(site: Served) -> None:
    status, _, page = site.get("/?lang=en")
    assert status == 200
    assert "arrives in Tashkent" in page and "Landau visits Astana" not in page
    assert '<option value="en" selected>' in page
    status, _, page = site.get("/")
    assert "arrives in Tashkent" in page and "Landau visits Astana" in page
    status, _, text = site.get("/?lang=fr")
    assert status == 400 and "lang: one of en, ru, kk, uz-Latn, uz-Cyrl" in text


def test_pages_are_kept_until_the_store_changes(
    site: Served, store: Store, registry: WatchlistRegistry
) -> None:
    pages = site.server.context.pages
    pages.every = 0.0  # read the store's generation on every request
    _, _, before = site.get("/search?q=okapi")
    assert "No items contain" in before
    again = site.get("/search?q=okapi")
    assert again[2] == before and pages.hits == 1
    assert "default-src 'none'" in again[1]["Content-Security-Policy"]  # headers as ever
    # A poll stores an item: the kept page is stale, the next reader sees the item.
    feed = fs.list_feeds(store)[0]
    fs.save_poll(store, feed, ok(feed.url), ParsedFeed(items=[Item("o1", "Okapi in Almaty")]),
                 next_due_at=NOW, hint_s=None, match=registry.matcher.match)  # fmt: skip
    _, _, after = site.get("/search?q=okapi")
    assert "Okapi in Almaty" in after and pages.hits == 1
    # Not kept: what is not a page of stored news, and what is not a plain 200.
    assert site.get("/stories/999999")[0] == 404 and site.get("/stories/999999")[0] == 404
    site.get("/feeds")
    site.get("/feeds")
    assert pages.hits == 1


def test_page_cache_is_bounded_and_shares_one_answer() -> None:
    from aiohttp import web

    from monitor.web.cache import PageCache

    async def scenario() -> None:
        generation = [1]
        made: list[str] = []

        async def current() -> int:
            return generation[0]

        cache = PageCache(current, max_bytes=8000, every=0.0)

        def page(name: str, size: int = 900) -> Any:
            async def make() -> web.StreamResponse:
                made.append(name)
                await asyncio.sleep(0.01)  # a database query's wait
                return web.Response(text=name * size, content_type="text/html")

            return make

        # Identical requests arriving together: one query, one answer for all.
        answers = await asyncio.gather(*(cache.answer("/", page("a")) for _ in range(5)))
        assert made == ["a"] and {a.body for a in answers} == {b"a" * 900}  # type: ignore[attr-defined]
        # Bounded: 8,000 bytes hold 8 pages of 900; the least recently used go first.
        for name in "bcdefghij":
            await cache.answer(f"/{name}", page(name))
        assert len(cache) == 8 and cache._bytes <= 8000
        await cache.answer("/", page("a"))
        assert made[-1] == "a"  # "/" was the oldest: it had been dropped
        made.clear()
        await cache.answer("/j", page("j"))
        assert made == []
        generation[0] = 2  # the store changed: every kept answer goes
        await cache.answer("/j", page("j"))
        assert made == ["j"] and len(cache) == 1
        await cache.answer("/big", page("x", 2000))  # bigger than an eighth: never kept
        await cache.answer("/big", page("x", 2000))
        assert made == ["j", "x", "x"]

    asyncio.run(scenario())


def test_postgres_search_plans_by_the_index_statistics(
    pg_url: str, registry: WatchlistRegistry
) -> None:
    from monitor.store import browse

    store = open_store(pg_url, upgrade=True)
    reader = open_store(pg_url, read_only=True)  # the web view's: autocommit
    try:
        with store.write() as conn:  # statistics only when the test says so
            conn.execute(text("ALTER TABLE items SET (autovacuum_enabled = false)"))
        fs.sync_config_feeds(store, [fs.FeedSpec("http://127.0.0.1:9/bulk.xml")])
        feed = fs.list_feeds(store)[0]
        batch = [Item(f"b{n}", f"Caspian shipping report {n}",
                      summary="pipeline" if n % 2 else "tanker " + ("okapi" if n == 8 else ""))
                 for n in range(400)]  # fmt: skip
        fs.save_poll(store, feed, ok(feed.url), ParsedFeed(items=batch), next_due_at=NOW,
                     hint_s=None, match=registry.matcher.match)  # fmt: skip
        # Before any ANALYZE: no statistics, the time-boxed walk.
        with store.read() as conn:
            assert browse._pg_share(store, conn, ["caspian"]) is None
        assert len(browse.list_items(store, q="shipping tanker", limit=500)) == 200
        assert len(browse.list_items(reader, q="shipping tanker", limit=500)) == 200
        with reader.read() as conn:  # the walk's time budget is not left behind
            assert conn.execute(text("SHOW statement_timeout")).scalar() == "30s"
            assert conn.execute(text("SHOW transaction_read_only")).scalar() == "on"
        with store.write() as conn:
            conn.execute(text("ANALYZE items"))
        browse._pg_stats.clear()
        with store.read() as conn:
            assert browse._pg_share(store, conn, ["Caspian"]) == pytest.approx(1.0)
            assert browse._pg_share(store, conn, ["tanker", "shipping"]) == pytest.approx(0.5)
            okapi = browse._pg_share(store, conn, ["okapi"])
            assert okapi == pytest.approx(1 / 400) and 25 / okapi > browse.PG_WALK_ROWS
            assert browse._pg_share(store, conn, ["okapi", "zebra"]) == 0.0  # not kept
        # Both plans find the same items, newest first, below the cursor.
        walked = browse.list_items(store, q="caspian", limit=25)
        assert [r.title for r in walked] == [f"Caspian shipping report {n}" for n in
                                             range(399, 374, -1)]  # fmt: skip
        (rare,) = browse.list_items(store, q="okapi")
        assert rare.title == "Caspian shipping report 8"
        older = browse.list_items(store, q="tanker", before_id=walked[-1].id, limit=500)
        assert len(older) == 188 and all(int(r.title.rsplit(" ", 1)[1]) % 2 == 0 for r in older)
    finally:
        reader.dispose()
        store.dispose()


@pytest.mark.postgres
def test_pages_answer_after_the_database_dropped_their_connections(
    pg_url: str, registry: WatchlistRegistry
) -> None:
    """The view's PostgreSQL connections are not pinged before each read: a read that
    finds its connection gone (a database restart) is made again on a new one."""
    store = open_store(pg_url, upgrade=True)
    seed(store, registry)
    reader = open_store(pg_url, read_only=True)
    served = Served(reader, registry, {})
    try:
        assert "Landau visits Astana" in served.get("/search?q=landau")[2]
        with reader.read() as conn:  # the view's one connection: its requests came in turn
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        assert reader.engine.pool.checkedin() == 1  # type: ignore[attr-defined]
        with store.read() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
        status, _, page = served.get("/search?q=tashkent")
        assert status == 200 and "arrives in Tashkent" in page
        status, _, _ = served.get("/healthz")
        assert status == 200
    finally:
        served.stop()
        reader.dispose()
        store.dispose()


def test_page_cache_says_when_the_store_is_being_written() -> None:
    from monitor.web.cache import PageCache

    async def scenario() -> None:
        generation = [1]

        async def current() -> int:
            return generation[0]

        cache = PageCache(current, every=0.0)
        await cache.generation()
        assert not cache.storing()  # the first reading is no change
        await cache.generation()
        assert not cache.storing()
        generation[0] = 2
        await cache.generation()
        assert cache.storing()
        cache.moved_at -= 2 * cache.every + 2  # long ago
        assert not cache.storing()

    asyncio.run(scenario())


@pytest.mark.postgres
def test_postgres_reads_take_turns_while_a_poll_stores(
    pg_url: str, registry: WatchlistRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the store's generation moves, the view's queries on PostgreSQL run one at
    a time (their backends are not the view's to lower in priority)."""
    from monitor.store import browse

    real = browse.list_items
    running: list[int] = []
    most = [0]
    lock = threading.Lock()

    def counted(*args: Any, **kwargs: Any) -> Any:
        with lock:
            running.append(1)
            most[0] = max(most[0], len(running))
        try:
            time.sleep(0.05)  # a query's wait, so that overlapping calls would overlap
            return real(*args, **kwargs)
        finally:
            with lock:
                running.pop()

    monkeypatch.setattr(browse, "list_items", counted)
    store = open_store(pg_url, upgrade=True)
    seed(store, registry)
    reader = open_store(pg_url, read_only=True)
    served = Served(reader, registry, {})
    try:
        served.server.context.pages.every = 0.0
        assert served.get("/search?q=tashkent")[0] == 200
        assert not served.server.context.pages.storing()
        feed = fs.list_feeds(store)[0]
        fs.save_poll(store, feed, ok(feed.url), ParsedFeed(items=[Item("o1", "Okapi in Almaty")]),
                     next_due_at=NOW, hint_s=None, match=registry.matcher.match)  # fmt: skip
        assert "Okapi in Almaty" in served.get("/search?q=okapi")[2]
        assert served.server.context.pages.storing()
        served.server.context.pages.every = 60.0  # no further reading: storing it stays
        words = ["almaty", "landau", "astana", "grain", "gor", "envoy"]
        answers: list[tuple[int, str]] = []

        def fetch(word: str) -> None:
            status, _, page = served.get(f"/search?q={word}")
            answers.append((status, page))

        threads = [threading.Thread(target=fetch, args=(w,)) for w in words]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert [s for s, _ in answers] == [200] * len(words) and most[0] == 1
        assert sum("Okapi in Almaty" in page for _, page in answers) == 1
    finally:
        served.stop()
        reader.dispose()
        store.dispose()
