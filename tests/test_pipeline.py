"""The poll pipeline end to end: feeds served on 127.0.0.1, the real parser and matcher,
a real SQLite file (and PostgreSQL where ``store`` runs on it)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp import web
from httpserver import FeedServer

from monitor import pipeline
from monitor.config import Settings, settings_from_mapping
from monitor.match import Matcher, compile_watchlists
from monitor.models import FetchResult, Item, Match, Outcome, ParsedFeed
from monitor.store import Store, open_store
from monitor.store import feeds as fs
from monitor.watchlists import load_watchlists

REPO = Path(__file__).resolve().parents[1]
WATCHLISTS = load_watchlists(REPO / "watchlists")
MATCHER = compile_watchlists(WATCHLISTS)


def rss(*items: tuple[str, str, str]) -> bytes:
    body = "".join(
        f"<item><title>{title}</title><link>https://news.test/{guid}</link>"
        f"<guid>https://news.test/{guid}</guid><description>{text}</description></item>"
        for guid, title, text in items
    )
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>Test feed</title>{body}</channel></rss>'.encode()


GOR = (
    "gor-1",
    "Sergio Gor meets Tokayev in Astana",
    "The U.S. Special Envoy discussed the C5+1 summit.",
)
GORE = ("gore-1", "Al Gore speaks on climate", "The former vice president spoke in Nairobi.")
PLAIN = ("plain-1", "Wheat harvest up", "Farmers report a good year.")


def make_settings(feeds: list[str], workers: int = 1) -> Settings:
    return settings_from_mapping(
        {
            "polling": {"allow_private_addresses": True, "parse_workers": workers, "timeout": "5s"},
            "feeds": [{"url": u} for u in feeds],
        },
        environ={},
    )


def poll(settings: Settings, store: Store, everything: bool = False) -> pipeline.PollSummary:
    pipeline.sync_config(settings, store)
    return asyncio.run(
        pipeline.poll_due(settings, store, MATCHER, everything=everything)
    )


def test_first_poll_stores_items_and_hits_and_a_repoll_costs_a_304(store: Store) -> None:
    with FeedServer() as server:
        server.serve(
            "/a.xml",
            rss(GOR, GORE, PLAIN),
            headers={"ETag": '"v1"', "Content-Type": "application/rss+xml"},
        )
        settings = make_settings([server.url("/a.xml")])
        first = poll(settings, store)
        assert (first.feeds, first.fetched, first.failed, first.new_items) == (1, 1, 0, 3)
        hits = fs.list_hits(store)
        assert {h.watchlist for h in hits} >= {"gor", "c5plus1"}
        assert all("Gore" not in h.title for h in hits), "Al Gore must not be a hit"
        gor = next(h for h in hits if h.watchlist == "gor")
        span = gor.matches[0]["spans"][0]
        assert getattr(gor, span["field"])[span["start"] : span["end"]] == span["text"]
        # Not due again yet; with --all it is polled and answers 304 to the stored ETag.
        assert poll(settings, store).feeds == 0
        server.serve("/a.xml", b"", status=304)
        again = poll(settings, store, everything=True)
        assert (again.not_modified, again.new_items, again.new_hits) == (1, 0, 0)
        assert server.requests("/a.xml")[-1].headers["If-None-Match"] == '"v1"'
        assert len(fs.list_hits(store)) == len(hits)


def test_the_watchlists_are_compiled_when_a_feed_is_to_be_parsed_not_for_304s(
    store: Store,
) -> None:
    """Given a function that compiles the watchlists, a poll calls it once, at its first
    parse (in a worker process too); a poll in which every feed answers 304 never does."""
    compiled: list[int] = []

    def compile_now() -> Matcher:
        compiled.append(1)
        return MATCHER

    with FeedServer() as server:
        for path in ("/a.xml", "/b.xml"):
            server.serve(path, rss(GOR, PLAIN), headers={"ETag": '"v1"'})
        for workers in (1, 2):
            compiled.clear()
            settings = make_settings([server.url("/a.xml"), server.url("/b.xml")], workers)
            pipeline.sync_config(settings, store)
            first = asyncio.run(
                pipeline.poll_due(settings, store, compile_now, everything=True)
            )
            assert first.fetched == 2 and compiled == [1]
            for path in ("/a.xml", "/b.xml"):
                server.serve(path, b"", status=304)
            again = asyncio.run(
                pipeline.poll_due(settings, store, compile_now, everything=True)
            )
            assert again.not_modified == 2 and compiled == [1]
            for path in ("/a.xml", "/b.xml"):
                server.serve(path, rss(GOR, PLAIN), headers={"ETag": '"v2"'})
    assert len(fs.list_hits(store)) > 0


class RecordingPool(pipeline.ParsePool):
    """The real parse pool (in this process), noting what each parse was given and gave."""

    def __init__(self) -> None:
        super().__init__(1, MATCHER)
        self.runs: list[tuple[frozenset[str], list[Item], dict[str, list[Match]]]] = []

    async def run(
        self, result: FetchResult, max_items: int | None = None, known: frozenset[str] = frozenset()
    ) -> tuple[ParsedFeed, dict[str, list[Match]]]:
        parsed, matches = await super().run(result, max_items, known)
        self.runs.append((known, parsed.items, matches))
        return parsed, matches


def test_a_feed_moved_on_by_two_items_parses_on_only_the_new_ones(store: Store) -> None:
    """The second poll's worker is told what the first stored: it detects and matches only
    the two new items, the store gets only those, and a stored item edited on the feed
    stays as it was stored (same identity, skipped as always)."""
    gor_edited = (GOR[0], "Sergio Gor meets Tokayev again", "Now with a Gor interview.")
    gor_2 = ("gor-2", "Sergio Gor lands in Tashkent", "The envoy met officials.")
    plain_2 = ("plain-2", "Cotton prices fall", "The traders expect a slow season.")
    with FeedServer() as server:
        server.serve("/a.xml", rss(GOR, GORE, PLAIN))
        settings = make_settings([server.url("/a.xml")])
        pool = RecordingPool()

        def poll_with_pool() -> pipeline.PollSummary:
            pipeline.sync_config(settings, store)
            return asyncio.run(
                pipeline.poll_due(settings, store, MATCHER, everything=True, pool=pool)
            )

        first = poll_with_pool()
        stored = {it.identity: it for it in fs.iter_items(store)}
        assert first.new_items == 3 and pool.runs[0][0] == frozenset()
        # the feed moves on: two new items (one repeated), and the first one edited
        server.serve("/a.xml", rss(gor_2, gor_edited, GORE, plain_2, PLAIN, plain_2))
        second = poll_with_pool()
        known, parsed, matches = pool.runs[1]
        assert known == frozenset(stored)
        new = {it.identity for it in parsed}
        assert len(parsed) == 3 and len(new) == 2 and not new & known  # plain_2 twice
        assert {it.title for it in parsed} == {gor_2[1], plain_2[1]}
        assert all(it.lang == "en" for it in parsed)  # detected: for the new items only
        assert set(matches) == {next(it.identity for it in parsed if it.title == gor_2[1])}
        assert (second.fetched, second.new_items) == (1, 2)
        assert second.hits_by_watchlist == {"gor": 1} and second.new_hits == 1
        after = {it.identity: it for it in fs.iter_items(store)}
        assert len(after) == 5
        for identity, item in stored.items():
            assert after[identity] == item  # the edited one included: stored as first seen
        assert [h.title for h in fs.list_hits(store) if h.watchlist == "gor"] == [
            GOR[1],
            gor_2[1],
        ]
        feed = fs.list_feeds(store)[0]
        assert feed.quiet_polls == 0
        # nothing new at all: nothing comes back from the worker, the poll is a quiet one
        third = poll_with_pool()
        assert pool.runs[2][0] == frozenset(after) and pool.runs[2][1] == []
        assert (third.fetched, third.new_items, third.new_hits) == (1, 0, 0)
        assert fs.list_feeds(store)[0].quiet_polls == 1


def test_failures_are_recorded_and_the_run_goes_on(store: Store) -> None:
    with FeedServer() as server:
        server.serve("/ok.xml", rss(GOR))
        server.serve(
            "/broken.xml",
            b"<rss><channel><item><title>Sergio Gor in Tashkent</title></item><item><title>",
        )
        server.serve("/gone.xml", b"", status=410)
        server.serve("/busy.xml", b"", status=429, headers={"Retry-After": "3600"})
        server.serve("/moved.xml", b"", status=301, headers={"Location": server.url("/ok2.xml")})
        server.serve("/ok2.xml", rss(PLAIN))
        urls = [
            server.url(p)
            for p in ("/ok.xml", "/broken.xml", "/gone.xml", "/busy.xml", "/moved.xml")
        ]
        settings = make_settings([*urls, "http://127.0.0.1:9/closed.xml"])
        summary = poll(settings, store)
        assert summary.feeds == 6
        assert (summary.fetched, summary.failed) == (3, 3)
        assert {u for u, _ in summary.failures} == {
            urls[2],
            urls[3],
            "http://127.0.0.1:9/closed.xml",
        }
        by_url = {f.url: f for f in fs.list_feeds(store)}
        assert by_url[urls[2]].retired_at is not None  # 410 retires
        busy = by_url[urls[3]]
        assert busy.consecutive_failures == 1 and busy.last_status == 429
        assert busy.next_due_at is not None and busy.next_due_at - busy.last_polled_at >= timedelta(
            seconds=3599
        )
        assert by_url["http://127.0.0.1:9/closed.xml"].last_error_kind == "connection"
        assert server.url("/ok2.xml") in by_url  # the permanent redirect moved the feed
        broken = by_url[urls[1]]
        assert broken.last_outcome == Outcome.OK and broken.warnings
        assert any(h.title == "Sergio Gor in Tashkent" for h in fs.list_hits(store))


def test_parse_workers_in_processes_give_the_same_result(sqlite_url: str) -> None:
    from monitor.store import open_store

    store = open_store(sqlite_url, upgrade=True)
    with FeedServer() as server:
        for n in range(6):
            server.serve(
                f"/{n}.xml",
                rss((f"g{n}", f"Sergio Gor visit {n}", "Envoy talks"), (f"p{n}", "Other", "x")),
            )
        settings = make_settings([server.url(f"/{n}.xml") for n in range(6)], workers=2)
        summary = poll(settings, store)
        assert (summary.fetched, summary.new_items) == (6, 12)
        assert summary.hits_by_watchlist.get("gor") == 6
        # each feed one item on: the workers get the stored identities and skip those
        for n in range(6):
            server.serve(
                f"/{n}.xml",
                rss((f"g{n}-2", f"Sergio Gor again {n}", "More talks"), (f"g{n}", "Sergio Gor", "")),
            )
        again = poll(settings, store, everything=True)
    assert (again.fetched, again.new_items, again.hits_by_watchlist) == (6, 6, {"gor": 6})
    assert len(list(fs.iter_items(store))) == 18


POLL_PROBE = """
import json, sys
from monitor.cli import main
sys.argv = ["monitor", *sys.argv[1:]]
try:
    main()
finally:
    sys.stdout.flush()
    print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def test_a_run_of_304s_makes_no_story_window_and_starts_no_parser(tmp_path: Path) -> None:
    """Re-polling feeds that all answer 304 stores their state and nothing else: no parse
    worker, no story window (NumPy) and no window filled from the store."""
    async def conditional(request: web.Request) -> web.Response:
        if request.headers.get("If-None-Match") == '"v1"':
            return web.Response(status=304, headers={"ETag": '"v1"'})
        n = request.path.strip("/.xml")
        body = rss((f"g{n}", f"Sergio Gor visit {n}", "Envoy talks"), (f"p{n}", "Other", "x"))
        return web.Response(body=body, headers={"ETag": '"v1"'})

    def run(*args: str) -> tuple[str, set[str]]:
        proc = subprocess.run(
            [sys.executable, "-c", POLL_PROBE, "--config", str(config), "poll", "--once", *args],
            capture_output=True, text=True, timeout=120, cwd=tmp_path,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        return proc.stdout, set(json.loads(proc.stderr.splitlines()[-1]))

    with FeedServer() as server:
        for n in range(3):
            server.route(f"/{n}.xml", conditional)
        config = tmp_path / "monitor.toml"
        config.write_text(
            f'[database]\nurl = "sqlite:///{tmp_path}/m.db"\n'
            f'[watchlists]\ndir = "{REPO}/watchlists"\n'
            "[polling]\nallow_private_addresses = true\nparse_workers = 2\n"
            '[fulltext]\nmode = "never"\n'
            + "".join(f'[[feeds]]\nurl = "{server.url(f"/{n}.xml")}"\n' for n in range(3))
        )
        out, loaded = run()
        assert out.startswith("3 feeds: 3 fetched") and "6 new items" in out, out
        # the workers parsed, and the window was made for the new items
        assert {"numpy", "monitor.cluster", "multiprocessing.popen_spawn_posix"} <= loaded
        assert "datasketch" not in loaded  # what the window takes of it is worked out
        out, loaded = run("--all")
    assert out.startswith("3 feeds: 0 fetched, 3 not modified, 0 failed; 0 new items"), out
    assert not {"numpy", "monitor.cluster", "multiprocessing.popen_spawn_posix"} & loaded
    store = open_store(f"sqlite:///{tmp_path}/m.db")
    stored = fs.list_feeds(store)
    assert [f.last_outcome for f in stored] == ["not_modified"] * 3
    assert all(f.etag == '"v1"' and f.consecutive_failures == 0 for f in stored)


def test_private_addresses_refused_by_default(store: Store) -> None:
    with FeedServer() as server:
        server.serve("/a.xml", rss(GOR))
        settings = settings_from_mapping({"feeds": [{"url": server.url("/a.xml")}]}, environ={})
        summary = poll(settings, store)
        assert summary.failed == 1 and server.count() == 0
        assert fs.list_feeds(store)[0].last_error_kind == "refused_address"


def test_opml_import_checks_addresses_and_export_round_trips(store: Store, tmp_path: Path) -> None:
    # A literal public address: checked without a DNS lookup, never fetched.
    opml = tmp_path / "subs.opml"
    opml.write_text(
        '<?xml version="1.0"?><opml version="2.0"><head><title>x</title></head><body>'
        '<outline text="Region"><outline text="Astana Times" xmlUrl="http://93.184.215.14/feed/" '
        'htmlUrl="http://93.184.215.14/"/></outline>'
        '<outline text="Local" xmlUrl="http://127.0.0.1:8080/feed"/>'
        '<outline text="Meta" xmlUrl="http://169.254.169.254/latest"/>'
        '<outline text="Files" xmlUrl="file:///etc/passwd"/></body></opml>'
    )
    settings = make_settings([])
    strict = settings_from_mapping({}, environ={})
    summary = pipeline.import_opml(strict, store, opml)
    assert summary.added == 1 and len(summary.refused) == 3
    assert pipeline.import_opml(strict, store, opml).known == 1
    assert pipeline.import_opml(settings, store, opml).added == 1  # private allowed: 127.0.0.1
    exported = {f.url for f in pipeline.export_feeds(store)}
    assert exported == {"http://93.184.215.14/feed/", "http://127.0.0.1:8080/feed"}


def test_import_errors_name_the_file(tmp_path: Path, store: Store) -> None:
    from monitor.errors import FeedError

    bad = tmp_path / "bad.opml"
    bad.write_text("<opml><body><outline")
    with pytest.raises(FeedError, match=r"bad\.opml: not well-formed XML"):
        pipeline.import_opml(make_settings([]), store, bad)


def test_group_writer_batches_and_isolates_a_failing_feed(store: Store) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from monitor.models import FetchResult, Item, ParsedFeed

    fs.sync_config_feeds(store, [fs.FeedSpec(f"http://f{n}.test/") for n in range(5)])
    feeds = fs.list_feeds(store)
    now = fs.utcnow()

    def write(feed: fs.FeedRecord, broken: bool = False) -> fs.PollWrite:
        def match(item: Item) -> list:  # type: ignore[type-arg]
            if broken:
                raise RuntimeError("bad feed")
            return []

        result = FetchResult(outcome=Outcome.OK, url=feed.url, final_url=feed.url, status=200)
        parsed = ParsedFeed(items=[Item(f"id-{feed.id}", "title")])
        return fs.PollWrite(feed, result, parsed, now + timedelta(hours=1), None, match, now)

    async def main() -> list[object]:
        executor = ThreadPoolExecutor(1)
        group = pipeline.GroupWriter(store, executor)
        try:
            jobs = [group.save(write(f, broken=(i == 2))) for i, f in enumerate(feeds)]
            results = await asyncio.gather(*jobs, return_exceptions=True)
            await group.close()
            return results
        finally:
            executor.shutdown()

    results = asyncio.run(main())
    assert isinstance(results[2], RuntimeError)
    assert [r.new_items for i, r in enumerate(results) if i != 2] == [1, 1, 1, 1]  # type: ignore[union-attr]
    polled = {f.id: f.last_polled_at for f in fs.list_feeds(store)}
    assert polled[feeds[2].id] is None and all(polled[f.id] for i, f in enumerate(feeds) if i != 2)
