"""The read-only commands' reader of SQLite files (``store/sqlite_read.py``) returns the
records the repository returns, on the same database."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Boolean, update
from sqlalchemy.engine import make_url

from monitor.cluster import StoryIndex
from monitor.config import SubscriberConfig
from monitor.errors import DatabaseUnusable
from monitor.models import FetchResult, Item, Match, Outcome, ParsedFeed, Span
from monitor.store import Store, articles, instances, open_store, outbox, sqlite_read, stories
from monitor.store import feeds as fs
from monitor.store.migrations import SCHEMA_HEAD
from monitor.store.rows import JSON_COLUMNS, FeedSpec, feed_sync_plan
from monitor.store.schema import JSON, UTCDateTime, feeds, metadata
from monitor.store.schema import outbox as outbox_rows
from monitor.store.sqlite_file import sqlite_database
from monitor.store.sqlite_read import SQLiteReader, open_reader
from monitor.store.status import status_report

SPECS = [
    FeedSpec("http://ok.test/", title="OK", interval_s=300, headers={"X-Key": "k"}),
    FeedSpec("http://bad.test/", fulltext="always"),
    FeedSpec("http://gone.test/"),
    FeedSpec("http://dropped.test/"),
]


def hits_of(item: Item) -> list[Match]:
    found = []
    for word, watchlist in (("Zebra", "zoo"), ("Corridor", "middle-corridor"), ("Astana", "gor")):
        if word in item.title:
            start = item.title.index(word)
            end = start + len(word)
            found.append(Match(watchlist, word.lower(), (word,), (Span("title", start, end, word),)))
    return found


def populate(store: Store) -> datetime:
    """Feeds in every state, items and hits over three days, stories, queued and failed
    mail, two instances (one stopped) and live claims, a finished poll run."""
    fs.sync_config_feeds(store, SPECS)
    fs.sync_config_feeds(store, SPECS[:3])  # http://dropped.test/ leaves the config
    fs.add_feed(store, FeedSpec("http://opml.test/", title="From OPML"), source="opml")
    by_url = {f.url: f for f in fs.list_feeds(store)}
    now = fs.utcnow()
    run = fs.start_poll_run(store, instance="host:1")
    outbox.sync_subscribers(store, [SubscriberConfig("a@example.org")])
    titles = ["Zebra in Astana", "Middle Corridor talks", "Zebra on the Corridor", "Other",
              "Astana summit", "Corridor freight"]  # fmt: skip
    window = StoryIndex()  # the same titles day after day: stories of several items
    for day in range(3):
        batch = [
            Item(f"d{day}-{n}", t, link=f"http://ok.test/{day}/{n}", guid=f"g{day}-{n}",
                 summary=f"summary {n}", published=now - timedelta(days=day, hours=n))
            for n, t in enumerate(titles)
        ]  # fmt: skip
        ok = by_url["http://ok.test/"]
        result = FetchResult(outcome=Outcome.OK, url=ok.url, final_url=ok.url, status=200)
        fs.save_poll(store, ok, result, ParsedFeed(items=batch), next_due_at=now, hint_s=None,
                     match=hits_of, stories=window)  # fmt: skip
    bad = by_url["http://bad.test/"]
    failed = FetchResult(outcome=Outcome.FAILED, url=bad.url, final_url=bad.url,
                         error="connection refused", error_kind="connection")  # fmt: skip
    for _ in range(2):
        fs.save_poll(store, bad, failed, None, next_due_at=now, hint_s=None, match=hits_of)
    gone = by_url["http://gone.test/"]
    result = FetchResult(outcome=Outcome.GONE, url=gone.url, final_url=gone.url, status=410,
                         error="410 Gone")  # fmt: skip
    fs.save_poll(store, gone, result, None, next_due_at=now, hint_s=None, match=hits_of)
    fs.finish_poll_run(store, run, {"feeds": 3, "fetched": 1, "not_modified": 0, "failed": 2,
                                    "new_items": 18, "new_hits": 5})  # fmt: skip
    hit_ids = [h.id for h in fs.list_hits(store)]
    for n, hid in enumerate(hit_ids[:3]):
        oid = outbox.enqueue_digest(
            store, subscriber="a@example.org", message_id=f"<{n}@test>", subject=f"s{n}",
            message=b"m", hit_ids=[hid], now=now - timedelta(minutes=30 + n),
        )  # fmt: skip
        if n == 0 and oid is not None:
            outbox.mark_failed(store, oid, "550 no such user")
        if n == 1 and oid is not None:
            outbox.mark_sent(store, oid)
    outbox.enqueue_digest(
        store, subscriber="hook", message_id="<hook@test>", subject="w", message=b"{}",
        hit_ids=hit_ids[3:5], now=now - timedelta(minutes=5), kind=outbox.WEBHOOK,
    )  # fmt: skip
    instances.register(store, "host:1", "host", 1)
    instances.register(store, "host:2", "host", 2)
    with store.write() as conn:
        lease = {"claim_expires_at": now + timedelta(minutes=5)}
        for url, holder in (("http://opml.test/", "gone:9"), ("http://ok.test/", "host:1")):
            conn.execute(update(feeds).where(feeds.c.url == url)
                         .values(claimed_by=holder, **lease))  # fmt: skip
        conn.execute(update(feeds).where(feeds.c.url == "http://gone.test/")
                     .values(claimed_by="gone:8", claim_expires_at=now - timedelta(minutes=1)))
        conn.execute(update(outbox_rows).where(outbox_rows.c.status == "queued")
                     .values(claimed_by="host:2", **lease))  # fmt: skip
        conn.execute(
            update(feeds)
            .where(feeds.c.url == "http://ok.test/")
            .values(article_failures=2, article_last_error="403 Forbidden",
                    article_last_error_at=now - timedelta(hours=1), warnings="odd date\nmore")
        )  # fmt: skip
    return now


@pytest.fixture
def both(sqlite_url: str) -> tuple[Store, SQLiteReader, datetime]:
    store = open_store(sqlite_url, upgrade=True)
    now = populate(store)
    reader = open_reader(sqlite_url)
    assert reader is not None
    yield store, reader, now  # type: ignore[misc]
    reader.close()
    store.dispose()


def test_hits_are_the_repositorys(both: tuple[Store, SQLiteReader, datetime]) -> None:
    store, reader, now = both
    everything = fs.list_hits(store)
    assert len(everything) >= 10 and len({h.watchlist for h in everything}) == 3
    assert reader.list_hits() == everything
    for since, watchlists, limit in (
        (now - timedelta(days=1), None, None),
        (now - timedelta(days=2, hours=3), ["zoo", "gor"], None),
        (None, ["middle-corridor"], 2),
        (None, None, 1),
        (now + timedelta(days=1), None, None),
        (None, ["nothing"], None),
    ):
        expected = fs.list_hits(store, since=since, watchlists=watchlists, limit=limit)
        assert reader.list_hits(since=since, watchlists=watchlists, limit=limit) == expected
    hit = reader.list_hits()[0]
    assert hit.created_at.tzinfo is UTC and isinstance(hit.matches, list) and hit.terms


def test_feeds_are_the_repositorys(both: tuple[Store, SQLiteReader, datetime]) -> None:
    store, reader, _ = both
    expected = fs.list_feeds(store)
    assert {f.url for f in expected} >= {"http://dropped.test/", "http://opml.test/"}
    assert reader.list_feeds() == expected
    assert dict(expected[0].headers) == {"X-Key": "k"}


def test_stories_are_the_repositorys(
    both: tuple[Store, SQLiteReader, datetime], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, reader, now = both
    everything = stories.list_stories(store)
    assert len(everything) >= 6 and max(len(s.items) for s in everything) >= 3
    assert any(s.watchlists for s in everything)
    assert reader.list_stories() == everything
    for since, watchlist, limit in (
        (now - timedelta(days=1), None, None),
        (now - timedelta(hours=1), "zoo", None),
        (None, "middle-corridor", 2),
        (None, None, 1),
        (now + timedelta(days=1), None, None),
        (None, "nothing", None),
    ):
        expected = stories.list_stories(store, since=since, watchlist=watchlist, limit=limit)
        assert reader.list_stories(since=since, watchlist=watchlist, limit=limit) == expected
    # Story ids are read in chunks: one story a chunk gives the same.
    monkeypatch.setattr(sqlite_read, "_ID_CHUNK", 1)
    assert reader.list_stories() == everything
    story = reader.list_stories()[0]
    assert story.first_seen.tzinfo is UTC and story.items[0].first_seen.tzinfo is UTC


def test_items_are_the_repositorys(both: tuple[Store, SQLiteReader, datetime]) -> None:
    store, reader, now = both
    everything = articles.list_items(store)
    assert len(everything) == 18 and any(row.watchlists and row.marks for row in everything)
    assert reader.list_items() == everything
    for since, feed_url, limit in (
        (now - timedelta(days=1), None, None),
        (now - timedelta(days=1, hours=3), "http://ok.test/", 4),
        (None, None, 1),
        (None, "http://bad.test/", None),
        (now + timedelta(days=1), None, None),
    ):
        expected = articles.list_items(store, since=since, feed_url=feed_url, limit=limit)
        assert reader.list_items(since=since, feed_url=feed_url, limit=limit) == expected
    row = reader.list_items(limit=1)[0]
    assert row.first_seen.tzinfo is UTC and row.feed_url == "http://ok.test/"


def test_outbox_is_the_repositorys(both: tuple[Store, SQLiteReader, datetime]) -> None:
    store, reader, _ = both
    for statuses in (("queued", "failed"), ("queued", "failed", "sent"), ("sent",)):
        expected = outbox.list_outbox(store, statuses=statuses)
        assert reader.list_outbox(statuses=statuses) == expected
    every = reader.list_outbox(statuses=("queued", "failed", "sent"))
    assert {(e.kind, e.status) for e in every} == {
        ("mail", "failed"), ("mail", "sent"), ("mail", "queued"), ("webhook", "queued")
    }
    assert [e.hits for e in every if e.kind == "webhook"] == [2]
    assert all(e.created_at.tzinfo is UTC for e in every)


def test_status_is_the_repositorys(both: tuple[Store, SQLiteReader, datetime]) -> None:
    store, reader, now = both
    for when in (now, now + timedelta(minutes=10), now + timedelta(days=2)):
        expected = status_report(store, now=when)
        assert reader.status_report(now=when) == expected
    report = reader.status_report(now=now)
    assert report.failing and report.instances and report.article_failures
    assert report.outbox.queued == 2 and report.outbox.failed == 1
    assert report.outbox.by_kind["mail"].sent == 1 and report.outbox.by_kind["webhook"].queued == 1
    assert set(report.holdings) == {"host:1", "host:2", "gone:9"}
    assert report.holdings["host:2"].outbox == 2
    assert report.stories is not None and report.stories.today > 0


def test_sync_plan_says_whether_the_config_is_in_the_database(
    both: tuple[Store, SQLiteReader, datetime],
) -> None:
    _, reader, now = both
    assert not feed_sync_plan(reader.feed_sync_rows(), SPECS[:3], now)
    changed = [SPECS[0], FeedSpec("http://bad.test/"), SPECS[2]]  # fulltext dropped
    plan = feed_sync_plan(reader.feed_sync_rows(), changed, now)
    assert [values["fulltext"] for _, values in plan.changes] == [None] and not plan.new
    plan = feed_sync_plan(reader.feed_sync_rows(), SPECS, now)  # dropped.test/ is back
    assert plan.changes and plan.changes[0][1]["retired_reason"] is None
    plan = feed_sync_plan(reader.feed_sync_rows(), SPECS[1:3], now)  # retired ones stay so
    assert [f.url for f in reader.list_feeds() if f.id in plan.removed] == ["http://ok.test/"]


def test_only_a_sqlite_file_at_the_current_schema_is_read(tmp_path: Path) -> None:
    path = tmp_path / "monitor.db"
    url = f"sqlite:///{path}"
    assert open_reader(url) is None  # no file yet: open_store creates it
    open_store(url, upgrade=True).dispose()
    reader = open_reader(url)
    assert reader is not None
    reader.close()
    for other in (f"{url}?timeout=5", "sqlite://", "postgresql+psycopg://u@h/db"):
        assert open_reader(other) is None
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0001'")
    assert open_reader(url) is None  # open_store migrates it
    (tmp_path / "junk.db").write_bytes(b"not a database at all" * 100)
    assert open_reader(f"sqlite:///{tmp_path / 'junk.db'}") is None
    with pytest.raises(DatabaseUnusable, match="file is not a database"):
        open_store(f"sqlite:///{tmp_path / 'junk.db'}", upgrade=True)


def test_the_reader_leaves_the_database_as_it_was(both: tuple[Store, SQLiteReader, datetime]) -> None:
    _, reader, _ = both
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader._conn.execute("DELETE FROM hits")


@pytest.mark.parametrize(
    "url",
    ["sqlite:///monitor.db", "sqlite:////var/lib/monitor/monitor.db", "sqlite:///~/m.db",
     "sqlite+pysqlite:///x.db", "sqlite:///a b.db", "sqlite:///x#y.db"],
)  # fmt: skip
def test_plain_sqlite_urls_name_the_file_sqlalchemy_finds(url: str) -> None:
    assert sqlite_database(url) == make_url(url).database


@pytest.mark.parametrize(
    "url",
    ["sqlite://", "sqlite:///:memory:", "sqlite:///x.db?timeout=3", "sqlite:///a%20b.db",
     "sqlite:///file:x.db?mode=ro&uri=true", "postgresql+psycopg://u@h/db", "SQLITE:///x.db"],
)  # fmt: skip
def test_other_urls_are_left_to_sqlalchemy(url: str) -> None:
    assert sqlite_database(url) is None


def test_stored_values_are_read_by_the_column_name() -> None:
    """The reader converts by name: times are the ``*_at`` columns, JSON the listed ones."""
    for table in metadata.tables.values():
        for column in table.columns:
            is_time = isinstance(column.type, UTCDateTime)
            assert is_time == column.name.endswith("_at"), f"{table.name}.{column.name}"
            assert isinstance(column.type, JSON) == (column.name in JSON_COLUMNS), column.name
            assert not isinstance(column.type, Boolean), f"{table.name}.{column.name}"


def test_schema_head_is_in_the_database(sqlite_url: str) -> None:
    open_store(sqlite_url, upgrade=True).dispose()
    with sqlite3.connect(make_url(sqlite_url).database or "") as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == (SCHEMA_HEAD,)
