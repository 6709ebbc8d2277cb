"""`monitor status`: health read from the database alone, as text and as JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import event

from monitor.cli import cli
from monitor.config import SubscriberConfig
from monitor.models import FetchResult, Item, Match, Outcome, ParsedFeed, Span
from monitor.store import Store, instances, open_store, outbox
from monitor.store import feeds as fs
from monitor.store import lock as store_lock
from monitor.store.status import status_report


def zebra(item: Item) -> list[Match]:
    if "Zebra" not in item.title:
        return []
    start = item.title.index("Zebra")
    return [Match("zoo", "zebra", ("Zebra",), (Span("title", start, start + 5, "Zebra"),))]


def populate(store: Store) -> None:
    fs.sync_config_feeds(store, [fs.FeedSpec("http://ok.test/"), fs.FeedSpec("http://bad.test/")])
    ok, bad = sorted(fs.list_feeds(store), key=lambda f: f.url != "http://ok.test/")
    run = fs.start_poll_run(store, instance="host:1")
    outbox.sync_subscribers(store, [SubscriberConfig("a@example.org")])
    now = fs.utcnow()
    parsed = ParsedFeed(items=[Item("z1", "Zebra one"), Item("z2", "Zebra two"), Item("x", "x")])
    result = FetchResult(outcome=Outcome.OK, url=ok.url, final_url=ok.url, status=200)
    fs.save_poll(store, ok, result, parsed, next_due_at=now, hint_s=None, match=zebra)
    failed = FetchResult(
        outcome=Outcome.FAILED, url=bad.url, final_url=bad.url, error="connection refused",
        error_kind="connection",
    )  # fmt: skip
    fs.save_poll(store, bad, failed, None, next_due_at=now, hint_s=None, match=zebra)
    counts = {"feeds": 2, "fetched": 1, "not_modified": 0, "failed": 1, "new_items": 3,
              "new_hits": 2}  # fmt: skip
    fs.finish_poll_run(store, run, counts)
    first = fs.list_hits(store)[0]
    outbox.enqueue_digest(
        store, subscriber="a@example.org", message_id="<1@test>", subject="s", message=b"m",
        hit_ids=[first.id], now=now - timedelta(minutes=30),
    )  # fmt: skip
    instances.register(store, "host:1", "host", 1)


def test_status_report_from_the_database(sqlite_url: str) -> None:
    store = open_store(sqlite_url, upgrade=True)
    try:
        populate(store)
        report = status_report(store)
        assert report.last_run is not None and report.last_run["new_hits"] == 2
        assert report.active_feeds == 2
        assert [(f.url, f.last_error) for f in report.failing] == [
            ("http://bad.test/", "connection refused")
        ]
        assert report.hits_today == 2 and report.hits_today_by_watchlist == {"zoo": 2}
        assert report.outbox.queued == 1 and report.outbox.failed == 0
        assert report.outbox.oldest_queued_at is not None
        age = datetime.now(UTC) - report.outbox.oldest_queued_at
        assert timedelta(minutes=29) < age < timedelta(minutes=31)
        assert [i.id for i in report.instances] == ["host:1"]
        assert report.stories is not None  # three items stored today, a story each
        assert (report.stories.today, report.stories.items_per_story_7d) == (3, 1.0)
        # Hits of earlier UTC days are not today's.
        tomorrow = datetime.now(UTC) + timedelta(days=1)
        assert status_report(store, now=tomorrow).hits_today == 0
    finally:
        store.dispose()


@pytest.mark.postgres
def test_status_on_postgresql_is_one_snapshot(pg_url: str) -> None:
    """Every part of the report is as of one moment: a feed that starts failing, a
    delivery queued and a poll run finished while the report is being read (right after
    its first statement) are in none of its parts, and all in the next report."""
    store = open_store(pg_url, upgrade=True)
    other = open_store(pg_url)
    try:
        populate(store)
        started: list[str] = []

        def meanwhile(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
            if started:
                return
            started.append(statement)
            fs.sync_config_feeds(other, [fs.FeedSpec(u) for u in
                                         ("http://ok.test/", "http://bad.test/", "http://new.test/")])  # fmt: skip
            new = next(f for f in fs.list_feeds(other) if f.url == "http://new.test/")
            failed = FetchResult(outcome=Outcome.FAILED, url=new.url, final_url=new.url,
                                 error="timed out", error_kind="timeout")  # fmt: skip
            fs.save_poll(other, new, failed, None, next_due_at=None, hint_s=None, match=zebra)
            run = fs.start_poll_run(other, instance="host:2")
            fs.finish_poll_run(other, run, {"feeds": 3, "fetched": 0, "not_modified": 0,
                                            "failed": 3, "new_items": 0, "new_hits": 0})  # fmt: skip
            hit = fs.list_hits(other)[1]
            outbox.enqueue_digest(other, subscriber="a@example.org", message_id="<2@test>",
                                  subject="t", message=b"m", hit_ids=[hit.id])  # fmt: skip

        event.listen(store.engine, "after_cursor_execute", meanwhile)
        report = status_report(store)
        event.remove(store.engine, "after_cursor_execute", meanwhile)
        assert started, "the report read the database"
        assert report.active_feeds == 2
        assert [f.url for f in report.failing] == ["http://bad.test/"]
        assert report.last_run is not None and report.last_run["new_hits"] == 2
        assert report.outbox.queued == 1
        after = status_report(store)
        assert after.active_feeds == 3
        assert {f.url for f in after.failing} == {"http://bad.test/", "http://new.test/"}
        assert after.last_run is not None and after.last_run["failed"] == 3
        assert after.outbox.queued == 2
    finally:
        other.dispose()
        store.dispose()


def test_status_command_text_and_json(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    store = open_store(f"sqlite:///{db}", upgrade=True)
    try:
        populate(store)
    finally:
        store.dispose()
    cfg = tmp_path / "monitor.toml"
    cfg.write_text(f'[database]\nurl = "sqlite:///{db}"\n')
    runner = CliRunner()
    text = runner.invoke(cli, ["--config", str(cfg), "status"])
    assert text.exit_code == 0, text.output
    out = text.output
    assert "daemon: host:1" in out  # no lock held here: the registered instance is shown
    assert "holds 0 feeds, 0 deliveries" in out  # mail and webhook deliveries, counted together
    assert "last poll cycle:" in out and "2 feeds, 1 fetched" in out and "2 new hits" in out
    assert "feeds: 2 active, 1 failing" in out
    assert "failing(1)   http://bad.test/: connection refused" in out
    assert "hits today (UTC): 2 (zoo 2)" in out
    assert "outbox: 1 queued, oldest 30m" in out
    assert "stories today (UTC): 3; last 7 days: 0.4 a day, 1.0 items per story" in out
    as_json = runner.invoke(cli, ["--config", str(cfg), "status", "--json"])
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.output)
    assert data["hits_today_utc"] == 2 and data["outbox_queued"] == 1
    assert (data["stories_today_utc"], data["items_per_story_7d"]) == (3, 1.0)
    assert 1790 <= data["outbox_oldest_age_s"] <= 1810
    assert data["failing_feeds"][0]["last_error"] == "connection refused"
    assert data["last_poll"]["new_hits"] == 2 and data["daemon_pid"] is None


def test_run_lock_is_exclusive_and_reports_the_holder(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    held = store_lock.acquire(url)
    assert held is not None
    try:
        assert store_lock.holder(url) is not None
    finally:
        held.release()
    assert store_lock.holder(url) is None
    assert store_lock.acquire("postgresql+psycopg://u@h/db") is None  # no lock there
