"""Full text: article pages behind headline-only items, served on 127.0.0.1, read through
the real fetcher, trafilatura, the matcher and the store (SQLite and PostgreSQL), and the
`monitor` CLI killed with SIGKILL half-way."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from aiohttp import web
from articlepages import LAYOUTS, article_page, paywall_page
from httpserver import FeedServer

from monitor import pipeline
from monitor.article import extract, looks_truncated, needs_article
from monitor.config import Settings, settings_from_mapping
from monitor.match import compile_watchlists
from monitor.models import Item
from monitor.records import item_record
from monitor.store import Store
from monitor.store import articles as article_store
from monitor.store import feeds as fs
from monitor.store.status import status_report
from monitor.watchlists import load_watchlists

REPO = Path(__file__).resolve().parents[1]
WATCHLISTS = load_watchlists(REPO / "watchlists")
MATCHER = compile_watchlists(WATCHLISTS)
MONITOR = shutil.which("monitor", path=str(Path(sys.executable).parent)) or "monitor"

FILLER = [
    "Officials from both sides met on Wednesday in the capital to review a long list of "
    "projects in transport, energy and agriculture that were agreed over the past two years.",
    "The talks lasted more than four hours, according to people familiar with the meeting, "
    "and covered customs procedures, freight tariffs and the financing of new rolling stock.",
    "Business associations welcomed the meeting and said that predictable rules matter more "
    "to investors than any single announcement made at a press conference.",
    "Several agreements on water management and on the training of engineers were initialled, "
    "with signatures expected at a ministerial meeting early next year.",
    "Analysts noted that trade between the countries grew by almost a fifth last year, driven "
    "by grain, fertiliser and machinery, while tourism numbers also recovered.",
    "The delegation later visited a logistics hub on the outskirts of the city, where a new "
    "container terminal is due to open in the spring after two years of construction.",
    "Local officials said the terminal would cut waiting times for lorries at the border and "
    "create several hundred permanent jobs in the surrounding district.",
]
DEEP = "Christopher Landau told reporters after the visit that the partnership would deepen."
DEEP_PARAGRAPHS = [*FILLER, FILLER[0].replace("Wednesday", "Thursday"), DEEP, FILLER[3]]


def _records(store: Store) -> list[dict[str, object]]:
    """Stored items as ``monitor items --json`` prints them."""
    return [item_record(r) for r in article_store.list_items(store)]


def rss(items: list[tuple[str, str, str]], base: str) -> bytes:
    body = "".join(
        f"<item><title>{title}</title><link>{base}{path}</link><guid>{base}{path}</guid>"
        f"<description>{text}</description></item>"
        for path, title, text in items
    )
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>Herald</title>{body}</channel></rss>'.encode()


TEASER = "Officials met in the capital to discuss trade and transport. Read more…"


def make_settings(
    feeds: list[dict[str, object]], workers: int = 1, **fulltext: object
) -> Settings:
    return settings_from_mapping(
        {
            "polling": {"allow_private_addresses": True, "parse_workers": workers, "timeout": "5s"},
            "fulltext": {"pace": "0s", "timeout": "5s", **fulltext},
            "feeds": feeds,
            "subscribers": [{"email": "analyst@example.org"}],
        },
        environ={},
    )


def poll(settings: Settings, store: Store, everything: bool = False) -> pipeline.PollSummary:
    pipeline.sync_config(settings, store)
    return asyncio.run(
        pipeline.poll_due(settings, store, MATCHER, everything=everything)
    )


# --------------------------------------------------------------------------- units


def test_which_items_need_their_article() -> None:
    def item(text: str, link: str | None = "https://news.test/a") -> Item:
        return Item(identity="x", title="t", link=link, summary=text)

    long_text = "word " * 200
    assert needs_article(item("A short teaser."), "auto", 600)
    assert needs_article(item(long_text + " Read more"), "auto", 600)
    assert needs_article(item(long_text + " […]"), "auto", 600)
    assert not needs_article(item(long_text + "."), "auto", 600)
    assert needs_article(item(long_text), "always", 600)
    assert not needs_article(item("short"), "never", 600)
    assert not needs_article(item("short", link=None), "always", 600)
    assert not needs_article(item("short", link="ftp://news.test/a"), "auto", 600)
    assert looks_truncated("The minister said that…") and not looks_truncated("It ended.")


def test_extraction_keeps_the_article_and_drops_the_page_around_it() -> None:
    for variant in range(LAYOUTS):
        page = article_page("Envoys meet in Astana", DEEP_PARAGRAPHS, variant).encode()
        got = extract(page, {"content-type": "text/html; charset=utf-8"}, "https://news.test/a")
        assert got.error is None and got.text is not None, variant
        for paragraph in DEEP_PARAGRAPHS:
            assert paragraph in got.text, (variant, paragraph[:40])
        for boilerplate in ("cookies", "Related stories", "Finally some attention",
                            "All rights reserved", "morning briefing", "Share on",
                            "Read also", "Photo: press service"):  # fmt: skip
            assert boilerplate not in got.text, (variant, boilerplate)
    capped = extract(page, {}, "https://news.test/a", max_text=300)
    assert capped.text is not None and len(capped.text) <= 300
    assert capped.text.startswith(DEEP_PARAGRAPHS[0][:50])


def test_pages_that_are_not_articles_say_why() -> None:
    paywall = extract(paywall_page("Envoys meet").encode(), {"content-type": "text/html"}, "u")
    assert paywall.text is None and "paywall" in (paywall.error or "")
    pdf = extract(b"%PDF-1.7 ...", {"content-type": "application/pdf"}, "u")
    assert pdf.text is None and pdf.error == "not an HTML page (application/pdf)"
    assert extract(b"", {"content-type": "text/html"}, "u").text is None


# --------------------------------------------------------------------------- pipeline


def serve_site(server: FeedServer) -> list[tuple[str, str, str]]:
    """Article pages of every kind, and the feed items that link to them."""
    html = {"Content-Type": "text/html; charset=utf-8"}
    server.serve("/a/deep", article_page("Envoys meet in Astana", DEEP_PARAGRAPHS, 1), headers=html)
    server.serve("/a/paywall", paywall_page("Subscribers only"), headers=html)
    server.serve("/a/report.pdf", b"%PDF-1.7\n" + b"0" * 5000, headers={"Content-Type": "application/pdf"})
    server.serve("/a/huge", b"<html><body>" + b"<p>x</p>" * (30 * 1024 * 1024 // 8), headers=html)
    server.serve("/a/moved", b"", status=302, headers={"Location": "http://169.254.169.254/latest/meta-data/"})
    server.serve("/private/a", article_page("Hidden", DEEP_PARAGRAPHS), headers=html)
    server.serve("/robots.txt", "User-agent: *\nDisallow: /private/\n", headers={"Content-Type": "text/plain"})
    server.serve("/a/long", article_page("Long", DEEP_PARAGRAPHS), headers=html)
    return [
        ("/a/deep", "C5+1 preparations continue in Astana", TEASER),
        ("/a/paywall", "Subscribers only", TEASER),
        ("/a/report.pdf", "Annual report", TEASER),
        ("/a/huge", "A very long page", TEASER),
        ("/a/moved", "A page that moved", TEASER),
        ("/private/a", "A page robots.txt forbids", TEASER),
        ("/a/long", "A complete feed entry", " ".join(FILLER) + " The end."),
    ]


ARTICLE_PATHS = ["/a/deep", "/a/paywall", "/a/report.pdf", "/a/huge", "/a/moved", "/private/a", "/a/long"]


def test_a_name_deep_in_the_article_is_a_hit_and_no_page_is_read_twice(store: Store) -> None:
    with FeedServer() as server:
        items = serve_site(server)
        server.serve("/feed.xml", rss(items, server.url("")), headers={"Content-Type": "application/rss+xml"})
        settings = make_settings([{"url": server.url("/feed.xml")}], workers=2)
        first = poll(settings, store)
        assert (first.new_items, first.articles_read, first.articles_failed) == (7, 1, 5)
        assert "1 article read, 5 not" in first.line()
        hits = {(h.title, h.watchlist): h for h in fs.list_hits(store)}
        landau = hits[("C5+1 preparations continue in Astana", "landau")]
        assert ("C5+1 preparations continue in Astana", "c5plus1") in hits  # feed text
        span = landau.matches[0]["spans"][0]
        assert span["field"] == "content" and landau.content[span["start"]:span["end"]] == "Christopher Landau"
        assert first.hits_by_watchlist.get("landau") == 1

        records = {r["link"].removeprefix(server.url("")): r for r in _records(store)}
        deep = records["/a/deep"]
        assert deep["text_source"] == "article" and DEEP in deep["text"]
        assert "Comments" not in deep["text"] and "cookies" not in deep["text"]
        reasons = {path: records[path]["article_error"] for path in records}
        assert records["/a/long"]["text_source"] == "feed" and reasons["/a/long"] is None
        assert "paywall" in reasons["/a/paywall"]
        assert reasons["/a/report.pdf"] == "not an HTML page (application/pdf)"
        assert "cap" in reasons["/a/huge"]
        assert "refused" in reasons["/a/moved"] or "not polled" in reasons["/a/moved"]
        assert reasons["/private/a"] == "robots.txt disallows this page"
        assert server.count("/private/a") == 0 and server.count("/a/long") == 0
        assert server.count("/robots.txt") == 1
        assert all(r["text_source"] == "feed" for p, r in records.items() if p != "/a/deep")

        feed = fs.list_feeds(store)[0]
        assert feed.article_failures == 5 and feed.article_last_error
        [failing] = status_report(store).article_failures
        assert (failing.url, failing.count) == (feed.url, 5)
        # The digest's snippet comes from where the name is: deep in the article.
        message = pipeline.preview_digest(settings, store, "analyst@example.org")
        assert message is not None
        text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert "*Christopher Landau* told reporters" in " ".join(text.split())

        before = {p: server.count(p) for p in [*ARTICLE_PATHS, "/robots.txt"]}
        again = poll(settings, store, everything=True)
        assert (again.new_items, again.articles_read, again.articles_failed) == (0, 0, 0)
        assert {p: server.count(p) for p in before} == before
        assert fs.list_feeds(store)[0].article_failures == 5


def test_feed_modes_never_and_always(tmp_path: Path) -> None:
    from monitor.store import open_store

    store = open_store(f"sqlite:///{tmp_path / 'm.db'}", upgrade=True)
    try:
        with FeedServer() as server:
            html = {"Content-Type": "text/html"}
            server.serve("/a/1", article_page("One", DEEP_PARAGRAPHS), headers=html)
            server.serve("/a/2", article_page("Two", DEEP_PARAGRAPHS), headers=html)
            long_text = " ".join(FILLER)
            server.serve("/never.xml", rss([("/a/1", "One", TEASER)], server.url("")))
            server.serve("/always.xml", rss([("/a/2", "Two", long_text)], server.url("")))
            settings = make_settings(
                [{"url": server.url("/never.xml"), "fulltext": "never"},
                 {"url": server.url("/always.xml"), "fulltext": "always"}],
                mode="auto",
            )  # fmt: skip
            summary = poll(settings, store)
            assert (summary.articles_read, server.count("/a/1"), server.count("/a/2")) == (1, 0, 1)
            by_link = {r["link"]: r for r in _records(store)}
            assert by_link[server.url("/a/1")]["text_source"] == "feed"
            assert by_link[server.url("/a/2")]["text_source"] == "article"
    finally:
        store.dispose()


def test_the_pace_spaces_requests_to_one_host(tmp_path: Path) -> None:
    from monitor.store import open_store

    store = open_store(f"sqlite:///{tmp_path / 'm.db'}", upgrade=True)
    try:
        with FeedServer() as server:
            paths = [f"/a/{n}" for n in range(4)]
            for p in paths:
                server.serve(p, article_page(p, DEEP_PARAGRAPHS), headers={"Content-Type": "text/html"})
            server.serve("/feed.xml", rss([(p, f"Item {p}", TEASER) for p in paths], server.url("")))
            settings = make_settings([{"url": server.url("/feed.xml")}], pace="0.3s", robots=False)
            started = time.monotonic()
            assert poll(settings, store).articles_read == 4
            # four requests to one host at 0.3 s apart: at least 0.9 s, whatever per_host allows
            assert time.monotonic() - started >= 0.9
            assert server.count("/robots.txt") == 0
    finally:
        store.dispose()


# --------------------------------------------------------------------------- kill -9


def _cli(cfg: Path, *args: str, **kwargs: object) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    return subprocess.Popen(
        [MONITOR, "--config", str(cfg), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cfg.parent,
        **kwargs,  # type: ignore[call-overload]
    )  # fmt: skip


def test_kill_between_item_and_article_then_the_next_poll_completes_it(tmp_path: Path) -> None:
    release = threading.Event()

    async def held_article(request: web.Request) -> web.StreamResponse:
        while not release.is_set():
            await asyncio.sleep(0.02)
        return web.Response(
            text=article_page("Envoys meet in Astana", DEEP_PARAGRAPHS), content_type="text/html"
        )

    db = tmp_path / "monitor.db"
    with FeedServer() as server:
        server.route("/a/deep", held_article)
        server.serve("/feed.xml", rss([("/a/deep", "C5+1 preparations continue in Astana", TEASER)], server.url("")))
        cfg = tmp_path / "monitor.toml"
        cfg.write_text(
            f'[database]\nurl = "sqlite:///{db}"\n[watchlists]\ndir = "{REPO / "watchlists"}"\n'
            '[polling]\nallow_private_addresses = true\nparse_workers = 1\n'
            '[fulltext]\npace = "0s"\n'
            f'[[feeds]]\nurl = "{server.url("/feed.xml")}"\n',
            encoding="utf-8",
        )
        proc = _cli(cfg, "poll", "--once")
        deadline = time.monotonic() + 60
        while server.count("/a/deep") == 0:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the article was never requested"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
        with sqlite3.connect(db) as conn:
            article, source = conn.execute("SELECT article, text_source FROM items").fetchone()
            watchlists = [w for (w,) in conn.execute("SELECT watchlist FROM hits")]
        assert (article, source) == ("pending", "feed")
        assert watchlists == ["c5plus1"]  # the feed text's hit is stored already

        release.set()
        second = _cli(cfg, "poll", "--once")
        out, err = second.communicate(timeout=60)
        assert second.returncode == 0, err
        assert "1 article read, 0 not" in out and "landau: 1 new hit" in out
        listed = _cli(cfg, "items", "--json")
        lines, err = listed.communicate(timeout=60)
        assert listed.returncode == 0, err
        [record] = [json.loads(line) for line in lines.splitlines()]
        assert record["text_source"] == "article" and DEEP in record["text"]
        assert record["feed"] == server.url("/feed.xml") and record["title"].startswith("C5+1")
        assert {"id", "link", "guid", "published", "first_seen"} <= set(record)
        # One shape with /api/items: the watchlists that matched, with their terms.
        assert set(record["watchlists"]) == {"c5plus1", "landau"} and record["feed_title"]
        assert record["article"] == "done" and record["article_error"] is None
        assert server.count("/a/deep") == 2  # the killed request, and the one that completed it
        third = _cli(cfg, "poll", "--once", "--all")
        third.communicate(timeout=60)
        assert server.count("/a/deep") == 2


async def test_robots_txt_is_read_once_per_host_and_a_server_error_means_no_reading() -> None:
    from monitor.article import ArticleFetcher, article_options
    from monitor.fetch import FetchOptions, fetch, make_session

    with FeedServer() as server:
        server.serve("/robots.txt", "oops", status=503)
        server.serve("/a/1", article_page("One", DEEP_PARAGRAPHS), headers={"Content-Type": "text/html"})
        options = article_options(FetchOptions(allow_private_addresses=True), max_page=1 << 20, timeout=5)
        async with make_session(options) as session:
            fetcher = ArticleFetcher(fetch, session, options, pace=0)
            pages = await asyncio.gather(*(fetcher.fetch(server.url("/a/1")) for _ in range(3)))
        assert all(p.error and p.error.startswith("robots.txt unavailable (HTTP 503") for p in pages)
        assert server.count("/robots.txt") == 1 and server.count("/a/1") == 0
        assert server.requests("/robots.txt")[0].headers["User-Agent"].startswith("monitor/")

        server.serve("/robots.txt", "not found", status=404)
        async with make_session(options) as session:
            fetcher = ArticleFetcher(fetch, session, options, pace=0)
            page = await fetcher.fetch(server.url("/a/1"))
        assert page.ok and page.result is not None and b"Christopher Landau" in page.result.body
        assert "text/html" in server.requests("/a/1")[0].headers["Accept"]

        server.serve("/robots.txt", "User-agent: *\nCrawl-delay: 0.3\n")
        async with make_session(options) as session:
            fetcher = ArticleFetcher(fetch, session, options, pace=0)
            started = time.monotonic()
            pages = await asyncio.gather(*(fetcher.fetch(server.url("/a/1")) for _ in range(3)))
        assert all(p.ok for p in pages)
        assert time.monotonic() - started >= 0.6  # three pages 0.3 s apart


async def test_a_redirect_to_a_private_address_is_refused_whatever_the_host_name() -> None:
    import ipaddress

    from monitor.article import ArticleFetcher, article_options
    from monitor.fetch import FetchOptions, fetch, make_session

    loopback = ipaddress.ip_address("127.0.0.1")
    with FeedServer() as server:
        server.serve("/a/1", b"", status=302, headers={"Location": "http://10.1.2.3/internal"})
        options = article_options(
            FetchOptions(address_allowed=lambda ip: ip == loopback), max_page=1 << 20, timeout=5
        )
        async with make_session(options) as session:
            page = await ArticleFetcher(fetch, session, options, pace=0, robots=False).fetch(
                server.url("/a/1")
            )
        assert not page.ok and "10.1.2.3" in (page.error or "") and "not polled" in (page.error or "")


def test_pages_beyond_the_budget_are_left_pending_and_read_by_the_next_poll(tmp_path: Path) -> None:
    from monitor.store import open_store

    store = open_store(f"sqlite:///{tmp_path / 'm.db'}", upgrade=True)
    try:
        with FeedServer() as server:
            paths = [f"/a/{n}" for n in range(4)]
            for p in paths:
                server.serve(p, article_page(p, DEEP_PARAGRAPHS), headers={"Content-Type": "text/html"})
            server.serve("/feed.xml", rss([(p, f"Item {p}", TEASER) for p in paths], server.url("")))
            settings = make_settings([{"url": server.url("/feed.xml")}], pace="0.4s", robots=False, budget="0.6s")
            first = poll(settings, store)
            assert first.articles_left > 0 and first.articles_read + first.articles_left == 4
            assert "left for the next poll" in first.line()
            runs, read, cut_short = [first], first.articles_read, 1
            while runs[-1].articles_left and len(runs) < 10:  # each later poll reads on
                runs.append(poll(settings, store))
                assert runs[-1].new_items == 0
                read += runs[-1].articles_read
                cut_short += bool(runs[-1].articles_left)
            assert runs[-1].articles_left == 0 and read == 4
            assert {r["text_source"] for r in _records(store)} == {"article"}
            # a page is requested again only when its request was cut short by the budget
            assert sum(server.count(p) for p in paths) <= 4 + cut_short
    finally:
        store.dispose()
