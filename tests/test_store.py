"""The store on a real SQLite file and on the real PostgreSQL (``store_url`` runs both)."""

from __future__ import annotations

import multiprocessing
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import DateTime, func, select
from sqlalchemy.dialects import sqlite

from monitor.errors import StoreError
from monitor.models import FetchResult, Item, Match, Outcome, ParsedFeed, Span
from monitor.store import Store, open_store
from monitor.store import feeds as fs
from monitor.store.schema import UTCDateTime, hits, items

NOW = fs.utcnow()


def ok(url: str, **kw: object) -> FetchResult:
    return FetchResult(outcome=Outcome.OK, url=url, final_url=url, status=200, **kw)  # type: ignore[arg-type]


def gor_matcher(item: Item) -> list[Match]:
    if "Gor" not in item.title:
        return []
    start = item.title.index("Gor")
    return [Match("gor", "sergio-gor", ("Sergio Gor",), (Span("title", start, start + 3, "Gor"),))]


def no_match(item: Item) -> list[Match]:
    return []


def save(store, feed, parsed, result=None, match=no_match):  # type: ignore[no-untyped-def]
    return fs.save_poll(
        store, feed, result or ok(feed.url), parsed, next_due_at=NOW, hint_s=None, match=match
    )


def one_feed(store, url: str = "http://feeds.test/a.xml") -> fs.FeedRecord:  # type: ignore[no-untyped-def]
    fs.sync_config_feeds(store, [fs.FeedSpec(url)])
    return next(f for f in fs.list_feeds(store) if f.url == url)


def test_migrations_create_schema_and_are_idempotent(store_url: str) -> None:
    store = open_store(store_url)
    try:
        assert store.needs_upgrade()
        store.upgrade()
        assert not store.needs_upgrade()
        store.upgrade()  # again: nothing to do, no error
        assert store.current_revision() == store.head_revision()
    finally:
        store.dispose()


def test_repoll_and_duplicates_store_each_item_once(store: Store) -> None:
    feed = one_feed(store)
    batch = ParsedFeed(items=[Item("id-1", "Sergio Gor in Astana"), Item("id-2", "Other news"),
                              Item("id-1", "Sergio Gor in Astana (repeated entry)")])  # fmt: skip
    first = save(store, feed, batch, match=gor_matcher)
    assert (first.new_items, first.new_hits) == (2, 1)
    again = save(store, feed, batch, match=gor_matcher)
    assert (again.new_items, again.new_hits) == (0, 0)
    stored = fs.list_hits(store)
    assert [h.title for h in stored] == ["Sergio Gor in Astana"]
    assert stored[0].terms == ["Sergio Gor"]
    assert stored[0].matches[0]["spans"][0] == {
        "field": "title",
        "start": 7,
        "end": 10,
        "text": "Gor",
    }


def test_two_feeds_carrying_the_same_item_store_it_once(store: Store) -> None:
    fs.sync_config_feeds(
        store, [fs.FeedSpec("http://a.test/rss"), fs.FeedSpec("http://b.test/rss")]
    )
    a, b = fs.list_feeds(store)
    shared = ParsedFeed(items=[Item("https://news.test/story", "Sergio Gor meets Tokayev")])
    assert save(store, a, shared, match=gor_matcher).new_hits == 1
    assert save(store, b, shared, match=gor_matcher).new_items == 0
    with store.read() as conn:
        assert conn.execute(select(func.count()).select_from(items)).scalar_one() == 1
        assert conn.execute(select(func.count()).select_from(hits)).scalar_one() == 1


def test_recent_identities_are_each_feeds_last_stored_items(store: Store) -> None:
    fs.sync_config_feeds(store, [fs.FeedSpec("http://a.test/rss"), fs.FeedSpec("http://b.test/rss")])
    a, b = fs.list_feeds(store)
    save(store, a, ParsedFeed(items=[Item(f"a-{n}", f"A {n}") for n in range(5)]))
    # b's copy of a-4 stays a's item: b's own items are b-1 and b-2 only
    save(store, b, ParsedFeed(items=[Item("b-1", "B 1"), Item("a-4", "A 4"), Item("b-2", "B 2")]))
    save(store, a, ParsedFeed(items=[Item("a-5", "A 5"), Item("a-4", "A 4")]))
    known = fs.recent_identities(store, [a.id, b.id, a.id + b.id + 1], limit=3)
    assert known == {
        a.id: frozenset({"a-5", "a-4", "a-3"}),
        b.id: frozenset({"b-1", "b-2"}),
        a.id + b.id + 1: frozenset(),
    }


def test_a_feeds_newest_items_are_read_from_the_index_not_sorted(store: Store) -> None:
    """Migration 0011: the schema's indexes are all there after the migrations, items by
    (feed_id, id) among them, and a feed's newest items are read from that index's end
    (on PostgreSQL an index on feed_id alone made every poll read and sort all the
    items a feed ever had)."""
    from sqlalchemy import inspect, text

    from monitor.store.schema import metadata

    with store.read() as conn:
        found = {ix["name"]: ix["column_names"] for ix in inspect(conn).get_indexes("items")}
        assert found["ix_items_feed_id_id"] == ["feed_id", "id"]
        assert "ix_items_feed_id" not in found
        for table in metadata.tables.values():
            have = {ix["name"] for ix in inspect(conn).get_indexes(table.name)}
            assert {ix.name for ix in table.indexes} <= have, table.name
        query = "SELECT identity FROM items WHERE feed_id = 1 ORDER BY id DESC LIMIT 50"
        if store.is_sqlite:
            plan = " ".join(str(r[-1]) for r in conn.execute(text("EXPLAIN QUERY PLAN " + query)))
            assert "ix_items_feed_id_id" in plan and "TEMP B-TREE" not in plan, plan
        else:
            conn.execute(text("SET LOCAL enable_seqscan = off"))
            plan = " ".join(r[0] for r in conn.execute(text("EXPLAIN " + query)))
            assert "Index Scan Backward using ix_items_feed_id_id" in plan, plan
            assert "Sort" not in plan, plan


def test_a_crash_mid_feed_leaves_nothing_half_written(store: Store) -> None:
    feed = one_feed(store)

    def crash(item: Item) -> list[Match]:
        raise RuntimeError("power cut")

    with pytest.raises(RuntimeError):
        save(
            store,
            feed,
            ParsedFeed(items=[Item("x", "Sergio Gor")]),
            result=ok(feed.url, etag='"v2"'),
            match=crash,
        )
    after = fs.list_feeds(store)[0]
    assert after.etag is None and after.last_polled_at is None
    with store.read() as conn:
        assert conn.execute(select(func.count()).select_from(items)).scalar_one() == 0
    # The next poll stores the item and its hit as if nothing had happened.
    assert (
        save(store, feed, ParsedFeed(items=[Item("x", "Sergio Gor")]), match=gor_matcher).new_hits
        == 1
    )


def test_feed_state_records_failures_success_moves_and_gone(store: Store) -> None:
    feed = one_feed(store)
    failed = FetchResult(outcome=Outcome.FAILED, url=feed.url, final_url=feed.url, status=503,
                         error="HTTP 503 Service Unavailable", error_kind="http_5xx")  # fmt: skip
    save(store, feed, None, result=failed)
    feed = fs.list_feeds(store)[0]
    save(store, feed, None, result=failed)
    feed = fs.list_feeds(store)[0]
    assert feed.consecutive_failures == 2 and feed.last_error == "HTTP 503 Service Unavailable"
    assert feed.last_error_kind == "http_5xx" and feed.last_error_at is not None
    moved = ok(feed.url, etag='"e"', last_modified="Mon, 23 Nov 2026 08:00:00 GMT",
               permanent_url="https://new.test/feed")  # fmt: skip
    save(
        store,
        feed,
        ParsedFeed(items=[], warnings=["2 entries unreadable"], title="New Title"),
        result=moved,
    )
    feed = fs.list_feeds(store)[0]
    assert feed.url == "https://new.test/feed" and feed.consecutive_failures == 0
    assert (feed.etag, feed.title, feed.warnings) == ('"e"', "New Title", "2 entries unreadable")
    gone = FetchResult(
        outcome=Outcome.GONE, url=feed.url, final_url=feed.url, status=410, error="410 Gone"
    )
    save(store, feed, None, result=gone)
    feed = fs.list_feeds(store)[0]
    assert feed.retired_at is not None and feed.retired_reason == "410 Gone"
    assert fs.due_feeds(store, NOW + timedelta(days=30), everything=True) == []


def test_config_sync_adds_retires_and_restores(store: Store) -> None:
    fs.sync_config_feeds(store, [fs.FeedSpec("http://a.test/", title="A", interval_s=300),
                                 fs.FeedSpec("http://b.test/")])  # fmt: skip
    assert fs.add_feed(store, fs.FeedSpec("http://c.test/"), source="opml")
    assert not fs.add_feed(store, fs.FeedSpec("http://a.test/"), source="opml")
    fs.sync_config_feeds(store, [fs.FeedSpec("http://a.test/", interval_s=60)])
    by_url = {f.url: f for f in fs.list_feeds(store)}
    assert by_url["http://a.test/"].interval_s == 60 and by_url["http://a.test/"].title == "A"
    assert by_url["http://b.test/"].retired_reason == fs.REMOVED_FROM_CONFIG
    assert by_url["http://c.test/"].retired_at is None  # imported feeds are not the config's
    fs.sync_config_feeds(store, [fs.FeedSpec("http://a.test/"), fs.FeedSpec("http://b.test/")])
    assert {f.url for f in fs.due_feeds(store, NOW)} == {
        "http://a.test/",
        "http://b.test/",
        "http://c.test/",
    }


def test_due_feeds_respects_next_due(store: Store) -> None:
    feed = one_feed(store)
    fs.save_poll(store, feed, ok(feed.url), None, next_due_at=NOW + timedelta(minutes=15),
                 hint_s=None, match=no_match)  # fmt: skip
    assert fs.due_feeds(store, NOW) == []
    assert len(fs.due_feeds(store, NOW, everything=True)) == 1
    assert len(fs.due_feeds(store, NOW + timedelta(minutes=16))) == 1


def _hammer(url: str, worker: int, rounds: int) -> None:
    store = open_store(url)
    feed = next(f for f in fs.list_feeds(store) if f.url == "http://a.test/")
    for r in range(rounds):
        batch = ParsedFeed(items=[Item(f"w{worker}-r{r}-{i}", f"Sergio Gor {i}") for i in range(5)])
        fs.save_poll(
            store,
            feed,
            ok(feed.url),
            batch,
            next_due_at=fs.utcnow(),
            hint_s=None,
            match=gor_matcher,
        )


def test_sqlite_concurrent_writers_never_hit_database_is_locked(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'busy.db'}"
    store = open_store(url, upgrade=True)
    fs.sync_config_feeds(store, [fs.FeedSpec("http://a.test/")])
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_hammer, args=(url, w, 40)) for w in range(2)]
    threads = [threading.Thread(target=_hammer, args=(url, 10 + t, 40)) for t in range(2)]
    for p in procs:
        p.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with store.read() as conn:
        assert conn.execute(select(func.count()).select_from(items)).scalar_one() == 4 * 40 * 5
        assert conn.execute(select(func.count()).select_from(hits)).scalar_one() == 4 * 40 * 5


def test_sqlite_uses_wal(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'wal.db'}", upgrade=True)
    with store.read() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_sqlite_times_are_stored_as_sqlalchemys_datetime_writes_them(tmp_path: Path) -> None:
    # UTCDateTime writes SQLite's text itself (one step, not two): the same text as
    # SQLAlchemy's DATETIME after process_bind_param, so stored rows compare and sort as before.
    dialect = sqlite.dialect()
    ours = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    theirs = DateTime().dialect_impl(dialect).bind_processor(dialect)
    assert ours is not None and theirs is not None
    east = timezone(timedelta(hours=5, minutes=30))
    times = [
        datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC),  # no microseconds
        datetime(2026, 3, 1, 12, 0, 0, 7, tzinfo=UTC),
        datetime(2026, 3, 1, 2, 0, 0, 999999, tzinfo=east),  # the day before in UTC
        datetime(999, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
    ]
    for when in [*times, times[0], times[0], times[2]]:  # the last value's text is kept
        assert ours(when) == theirs(UTCDateTime().process_bind_param(when, dialect))
    assert ours(None) is None
    with pytest.raises(ValueError, match="naive datetime"):
        ours(datetime(2026, 3, 1, 12, 0))
    store = open_store(f"sqlite:///{tmp_path / 'times.db'}", upgrade=True)
    feed = one_feed(store)
    when = datetime(2026, 3, 1, 2, 0, 0, 5, tzinfo=east)
    save(store, feed, ParsedFeed(items=[Item("id-1", "One", published=when)]))
    with store.read() as conn:
        assert conn.exec_driver_sql("SELECT published_at FROM items").scalar() == (
            "2026-02-28 20:30:00.000005"
        )
        assert conn.execute(select(items.c.published_at)).scalar() == when


def test_bad_urls_are_store_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="invalid database url"):
        open_store("not a url")
    with pytest.raises(StoreError, match="folder for the SQLite database does not exist"):
        open_store(f"sqlite:///{tmp_path / 'missing' / 'x.db'}")
    with pytest.raises(StoreError, match="cannot open the database"):
        open_store("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")


def test_claims_are_exclusive_until_released_or_expired(store: Store) -> None:
    fs.sync_config_feeds(store, [fs.FeedSpec(f"http://f{n}.test/") for n in range(10)])
    lease = timedelta(minutes=5)
    a = fs.claim_due_feeds(store, instance="a", now=NOW, lease=lease, limit=6, run_started=NOW)
    b = fs.claim_due_feeds(store, instance="b", now=NOW, lease=lease, limit=6, run_started=NOW)
    assert len(a) == 6 and len(b) == 4
    assert not {f.id for f in a} & {f.id for f in b}
    assert (
        fs.claim_due_feeds(store, instance="c", now=NOW, lease=lease, limit=6, run_started=NOW)
        == []
    )
    # Storing a poll releases the claim; the feed is then not due until next_due_at.
    fs.save_poll(
        store,
        a[0],
        ok(a[0].url),
        None,
        next_due_at=NOW + timedelta(minutes=15),
        hint_s=None,
        match=no_match,
    )
    assert (
        fs.claim_due_feeds(store, instance="c", now=NOW, lease=lease, limit=6, run_started=NOW)
        == []
    )
    # A holder that died: its claims expire after the lease and another instance takes over.
    later = NOW + lease + timedelta(seconds=1)
    taken = fs.claim_due_feeds(
        store, instance="c", now=later, lease=lease, limit=20, run_started=later
    )
    assert {f.id for f in taken} == {f.id for f in a[1:] + b}
    assert fs.release_claims(store, "c") == 9


def test_held_feeds_are_counted_for_other_instances_only(store: Store) -> None:
    fs.sync_config_feeds(store, [fs.FeedSpec(f"http://f{n}.test/") for n in range(5)])
    lease = timedelta(minutes=5)
    fs.claim_due_feeds(store, instance="a", now=NOW, lease=lease, limit=3, run_started=NOW)
    assert fs.count_held_feeds(store, NOW, instance="b") == 3
    assert fs.count_held_feeds(store, NOW, instance="a") == 0
    assert fs.count_held_feeds(store, NOW + lease + timedelta(seconds=1), instance="b") == 0


def test_claim_everything_takes_each_feed_once_per_run(store: Store) -> None:
    fs.sync_config_feeds(store, [fs.FeedSpec(f"http://f{n}.test/") for n in range(3)])
    lease = timedelta(minutes=5)
    for f in fs.claim_due_feeds(
        store, instance="a", now=NOW, lease=lease, limit=9, run_started=NOW
    ):
        fs.save_poll(
            store, f, ok(f.url), None, next_due_at=NOW, hint_s=None, match=no_match, now=NOW
        )
    run = NOW + timedelta(seconds=5)
    first = fs.claim_due_feeds(
        store, instance="a", now=run, lease=lease, limit=9, run_started=run, everything=True
    )
    assert len(first) == 3
    for f in first:
        fs.save_poll(
            store,
            f,
            ok(f.url),
            None,
            next_due_at=run,
            hint_s=None,
            match=no_match,
            now=run + timedelta(seconds=1),
        )
    assert (
        fs.claim_due_feeds(
            store, instance="a", now=run, lease=lease, limit=9, run_started=run, everything=True
        )
        == []
    )


def _claimer(url: str, name: str, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    store = open_store(url)
    got: list[int] = []
    while True:
        now = fs.utcnow()
        batch = fs.claim_due_feeds(
            store, instance=name, now=now, lease=timedelta(minutes=5), limit=7, run_started=now
        )
        if not batch:
            break
        got += [f.id for f in batch]
    store.dispose()
    out.put(got)


def test_concurrent_claimers_in_processes_never_share_a_feed(store_url: str) -> None:
    store = open_store(store_url, upgrade=True)
    try:
        fs.sync_config_feeds(store, [fs.FeedSpec(f"http://f{n}.test/") for n in range(200)])
        ctx = multiprocessing.get_context("spawn")
        out = ctx.Queue()
        procs = [ctx.Process(target=_claimer, args=(store_url, f"i{n}", out)) for n in range(3)]
        for p in procs:
            p.start()
        results = [out.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(30)
        claimed = [i for r in results for i in r]
        assert len(claimed) == 200 and len(set(claimed)) == 200
    finally:
        store.dispose()


def test_schema_head_constant_is_alembics_head() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from monitor.store.db import MIGRATIONS
    from monitor.store.migrations import SCHEMA_HEAD

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(cfg).get_current_head() == SCHEMA_HEAD, (
        "a migration was added: set SCHEMA_HEAD in monitor/store/migrations/__init__.py"
    )


def test_item_language_migration_fills_existing_rows(store_url: str) -> None:
    from alembic import command
    from sqlalchemy import insert

    from monitor.store.db import _alembic_config

    store = open_store(store_url)
    try:
        with store.engine.begin() as conn:
            command.upgrade(_alembic_config(conn), "0004")
            titles = ["Тоқаев Ландаумен кездесті", "Gor met Tokayev in Astana", "2025"]
            for n, title in enumerate(titles):
                conn.execute(insert(items).values(identity=f"i{n}", title=title, first_seen_at=NOW))
        store.upgrade()
        with store.read() as conn:
            langs = conn.execute(select(items.c.lang).order_by(items.c.identity)).scalars().all()
        assert langs == ["kk", "en", None]
    finally:
        store.dispose()
