"""Several instances on one PostgreSQL database: nothing done twice, nothing lost.

First the races one by one, with real concurrent transactions (processes or threads with
engines of their own): migrations, config sync, enqueueing a digest, claiming mail,
storing the same items. Then `monitor run` itself: three daemons share 500 feeds, and a
daemon killed with SIGKILL loses its feeds to another once their lease runs out.
Every test has a schema of its own (the ``pg_url`` fixture); every wait is bounded.
"""

from __future__ import annotations

import json
import multiprocessing
import re
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from httpserver import FeedServer
from smtpserver import SMTPServer
from sqlalchemy import create_engine, func, select, text
from test_daemon import MONITOR, ZOO, Daemon, wait_for

from monitor.config import SubscriberConfig
from monitor.models import FetchResult, Item, Match, Outcome, ParsedFeed, Span
from monitor.store import Store, open_store
from monitor.store import feeds as fs
from monitor.store import outbox as ob
from monitor.store.migrations import SCHEMA_HEAD
from monitor.store.schema import deliveries, feeds, hits, items, outbox, subscribers

pytestmark = pytest.mark.postgres

CTX = multiprocessing.get_context("spawn")
ZEBRA = [Match("zoo", "zebra", ("Zebra",), (Span("title", 0, 5, "Zebra"),))]


def _together(target: Callable[..., None], args: list[tuple[Any, ...]]) -> list[Any]:
    """Run ``target(go, out, *a)`` in one process per ``a``; they start work at one signal.
    Returns what each put on ``out`` (an exception's text for a failure)."""
    go = CTX.Event()
    out = CTX.Queue()
    procs = [CTX.Process(target=target, args=(go, out, *a)) for a in args]
    for p in procs:
        p.start()
    try:
        time.sleep(1.0)  # let every process import and connect before the signal
        go.set()
        return [out.get(timeout=60) for _ in procs]
    finally:
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()


def _migrate(go: Any, out: Any, url: str) -> None:
    try:
        go.wait(30)
        store = open_store(url, upgrade=True)
        out.put(store.current_revision())
        store.dispose()
    except Exception as exc:
        out.put(f"error: {exc!r}")


def test_instances_migrating_an_empty_database_at_once_all_succeed(pg_url: str) -> None:
    results = _together(_migrate, [(pg_url,)] * 3)
    assert results == [SCHEMA_HEAD] * 3


SUBSCRIBERS = [SubscriberConfig(email=f"s{n}@example.org") for n in range(5)]
SPECS = [fs.FeedSpec(f"http://f{n}.test/", title=f"F{n}") for n in range(300)]


def _sync(go: Any, out: Any, url: str) -> None:
    try:
        store = open_store(url)
        go.wait(30)
        for _ in range(3):
            ob.sync_subscribers(store, SUBSCRIBERS)
            fs.sync_config_feeds(store, SPECS)
        store.dispose()
        out.put("ok")
    except Exception as exc:
        out.put(f"error: {exc!r}")


def test_config_sync_by_instances_starting_together_adds_each_row_once(pg_url: str) -> None:
    open_store(pg_url, upgrade=True).dispose()
    assert _together(_sync, [(pg_url,)] * 3) == ["ok"] * 3
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(feeds)).scalar_one() == 300
            assert conn.execute(select(func.count()).select_from(subscribers)).scalar_one() == 5
    finally:
        engine.dispose()


def _claim_mail(go: Any, out: Any, url: str, name: str) -> None:
    try:
        store = open_store(url)
        go.wait(30)
        got: list[int] = []
        while batch := ob.claim_due(store, instance=name, limit=3):
            got += [m.id for m in batch]
        store.dispose()
        out.put(got)
    except Exception as exc:
        out.put(f"error: {exc!r}")


def _stored_hits(store: Store, n: int, *, prefix: str = "h") -> list[int]:
    """``n`` items with one hit each; returns the hit ids."""
    fs.sync_config_feeds(store, [fs.FeedSpec(f"http://{prefix}.test/")])
    (feed,) = fs.list_feeds(store)
    batch = [Item(identity=f"{prefix}-{i}", title=f"Zebra {i}") for i in range(n)]
    fs.save_poll(
        store,
        feed,
        FetchResult(Outcome.OK, feed.url, feed.url, 200),
        ParsedFeed(items=batch),
        next_due_at=fs.utcnow() + timedelta(hours=1),
        hint_s=None,
        match=lambda item: ZEBRA,
    )
    return [h.id for h in fs.list_hits(store)]


def test_instances_claiming_mail_at_once_never_take_the_same_message(pg_url: str) -> None:
    store = open_store(pg_url, upgrade=True)
    try:
        ob.sync_subscribers(store, [SubscriberConfig(email="a@example.org")])
        for n, hit in enumerate(_stored_hits(store, 90)):
            ob.enqueue_digest(
                store, subscriber="a@example.org", message_id=f"<m{n}@test>",
                subject="s", message=b"x", hit_ids=[hit],
            )  # fmt: skip
    finally:
        store.dispose()
    results = _together(_claim_mail, [(pg_url, f"i{n}") for n in range(3)])
    claimed = [i for r in results for i in r]
    assert len(claimed) == 90 and len(set(claimed)) == 90, results


def _at_once(*calls: Callable[[], Any]) -> list[Any]:
    """Run each call in a thread of its own, released together; results (or exceptions)."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(n: int) -> None:
        barrier.wait(10)
        try:
            results[n] = calls[n]()
        except Exception as exc:
            results[n] = exc

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


@pytest.mark.parametrize("lock", ["advisory lock", "unique key alone"])
def test_two_instances_enqueueing_one_subscribers_digest_at_once_queue_it_once(
    pg_url: str, lock: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both render the same pending hits; one digest is queued, the other sender is told
    to rebuild (and finds nothing left): no error, no second mail. Without the
    per-subscriber lock both may pass the check; the unique key then rolls the loser
    back whole, still without an error."""
    if lock == "unique key alone":
        monkeypatch.setattr(ob, "_lock_subscriber", lambda conn, dialect, subscriber: None)
    stores = [open_store(pg_url, upgrade=True), open_store(pg_url)]

    def enqueue(store: Store, message_id: str, ids: list[int]) -> Callable[[], int | None]:
        return lambda: ob.enqueue_digest(
            store, subscriber="a@example.org", message_id=message_id, subject="s",
            message=b"x", hit_ids=ids,
        )  # fmt: skip

    try:
        ob.sync_subscribers(stores[0], [SubscriberConfig(email="a@example.org")])
        hit_ids = _stored_hits(stores[0], 20)
        for r in range(10):
            ids = hit_ids[2 * r : 2 * r + 2]
            results = _at_once(*(enqueue(s, f"<r{r}-{n}@test>", ids) for n, s in enumerate(stores)))
            assert sum(isinstance(x, int) for x in results) == 1, results
            assert sum(x is None for x in results) == 1, results
        with stores[0].read() as conn:
            assert conn.execute(select(func.count()).select_from(outbox)).scalar_one() == 10
            assert conn.execute(select(func.count()).select_from(deliveries)).scalar_one() == 20
        assert not [r for r in caplog.records if r.levelname in ("ERROR", "WARNING")]
    finally:
        for s in stores:
            s.dispose()


def test_two_instances_storing_the_same_items_at_once_store_each_once(pg_url: str) -> None:
    """Two feeds carry the same stories and are saved by two instances at the same
    moment: the loser's insert waits, skips the rows and records no hit for them."""
    stores = [open_store(pg_url, upgrade=True), open_store(pg_url)]

    def save(store: Store, feed: fs.FeedRecord, batch: list[Item]) -> Callable[[], Any]:
        return lambda: fs.save_poll(
            store, feed, FetchResult(Outcome.OK, feed.url, feed.url, 200),
            ParsedFeed(items=batch), next_due_at=fs.utcnow(), hint_s=None,
            match=lambda item: ZEBRA,
        )  # fmt: skip

    try:
        fs.sync_config_feeds(
            stores[0], [fs.FeedSpec("http://a.test/"), fs.FeedSpec("http://b.test/")]
        )
        pair = fs.list_feeds(stores[0])
        for r in range(10):
            batch = [Item(identity=f"r{r}-{i}", title=f"Zebra {i}") for i in range(30)]
            saved = _at_once(*(save(s, f, batch) for s, f in zip(stores, pair, strict=True)))
            assert all(isinstance(x, fs.PollSaved) for x in saved), saved
            assert sum(x.new_items for x in saved) == 30
            assert sum(x.new_hits for x in saved) == 30
        with stores[0].read() as conn:
            assert conn.execute(select(func.count()).select_from(items)).scalar_one() == 300
            assert conn.execute(select(func.count()).select_from(hits)).scalar_one() == 300
    finally:
        for s in stores:
            s.dispose()


# --------------------------------------------------------------------------- daemons


class Feeds:
    """Many feeds on one FeedServer; each request's wall-clock time is recorded."""

    def __init__(self, server: FeedServer, count: int, *, delay: float = 0.0) -> None:
        self.delay = delay
        self.paths = [f"/f{n:04d}.xml" for n in range(count)]
        self.times: dict[str, list[float]] = {p: [] for p in self.paths}
        self._lock = threading.Lock()
        for p in self.paths:
            server.route(p, self.handler)
        self.urls = [server.url(p) for p in self.paths]

    @staticmethod
    def title(path: str) -> str | None:
        n = int(path[2:6])
        return f"Zebra sighting #{n:04d}." if n % 10 == 0 else None

    async def handler(self, request: web.Request) -> web.StreamResponse:
        import asyncio

        with self._lock:
            self.times[request.path].append(time.time())
        delay = self.delay
        if delay:
            await asyncio.sleep(delay)
        path = request.path
        entries = [
            f"<item><title>Weather report {path}</title><guid>https://news.test{path}/w</guid></item>",
            # every feed carries one story also carried by all the others
            "<item><title>Zebra sighting #shared.</title><guid>https://news.test/shared</guid></item>",
        ]
        if (title := self.title(path)) is not None:
            entries.append(
                f"<item><title>{title}</title><guid>https://news.test{path}/z</guid></item>"
            )
        body = (
            f'<?xml version="1.0"?><rss version="2.0"><channel><title>{path}</title>'
            f"{''.join(entries)}</channel></rss>"
        )
        return web.Response(body=body.encode(), content_type="application/rss+xml")

    def expected_titles(self) -> set[str]:
        return {t for p in self.paths if (t := self.title(p))} | {"Zebra sighting #shared."}


def cluster_config(
    tmp_path: Path, url: str, feed_urls: list[str], smtp_port: int, *, polling: str,
    subscribers: int = 2,
) -> Path:  # fmt: skip
    watchlists = tmp_path / "watchlists"
    watchlists.mkdir(exist_ok=True)
    (watchlists / "zoo.yaml").write_text(ZOO)
    lines = [
        "[database]", f'url = "{url}"',
        "[watchlists]", f'dir = "{watchlists}"',
        "[polling]", "allow_private_addresses = true", "parse_workers = 1", 'tick = "0.2s"',
        polling,
        "[smtp]", 'host = "127.0.0.1"', f"port = {smtp_port}", 'security = "none"',
        'sender = "Monitor <monitor@example.org>"',
        "[digest]", "max_items_per_watchlist = 200",
    ]  # fmt: skip
    for n in range(subscribers):
        lines += ["[[subscribers]]", f'email = "analyst{n}@example.org"', 'watchlists = ["*"]',
                  'schedule = "immediate"']  # fmt: skip
    lines += [f'[[feeds]]\nurl = "{u}"' for u in feed_urls]
    path = tmp_path / "monitor.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


class Db:
    """Read-only queries on the test's schema."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(text(sql), params).scalar()

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(text(sql), params))


@pytest.fixture
def db(pg_url: str) -> Iterator[Db]:
    d = Db(pg_url)
    try:
        yield d
    finally:
        d.engine.dispose()


TITLE = re.compile(r"Zebra sighting #(?:\d{4}|shared)\.")


def mailed_titles(smtp: SMTPServer) -> dict[str, Counter[str]]:
    """Per recipient: how many times each story title arrived (plain-text parts)."""
    out: dict[str, Counter[str]] = {}
    for received in smtp.messages:
        body = received.message.get_body(("plain",))
        assert body is not None
        found = TITLE.findall(str(body.get_content()).replace("*", ""))
        for rcpt in received.rcpt_tos:
            out.setdefault(rcpt, Counter()).update(found)
    return out


def status_json(cfg: Path) -> dict[str, Any]:
    done = subprocess.run(
        [MONITOR, "--config", str(cfg), "status", "--json"],
        capture_output=True, text=True, timeout=30, cwd=cfg.parent,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def assert_each_hit_once(db: Db, smtp: SMTPServer, expected: set[str], subscribers: int) -> None:
    stored = [r[0] for r in db.rows("SELECT i.title FROM hits h JOIN items i ON i.id = h.item_id")]
    assert sorted(stored) == sorted(expected)  # every hit stored, each once
    assert db.scalar("SELECT count(*) FROM items WHERE title = 'Zebra sighting #shared.'") == 1
    mailed = mailed_titles(smtp)
    assert len(mailed) == subscribers
    for rcpt, counts in mailed.items():
        assert set(counts) == expected, rcpt
        assert set(counts.values()) == {1}, (rcpt, [t for t, n in counts.items() if n > 1])
    ids = Counter(m.message["Message-ID"] for m in smtp.messages)
    assert set(ids.values()) == {1}
    assert db.scalar("SELECT count(*) FROM outbox WHERE status <> 'sent'") == 0
    assert db.scalar("SELECT count(*) FROM outbox") == len(smtp.messages)


def test_three_daemons_share_500_feeds_each_polled_once_each_hit_mailed_once(
    tmp_path: Path, pg_url: str, db: Db
) -> None:
    with ExitStack() as stack:
        server = stack.enter_context(FeedServer())
        smtp = stack.enter_context(SMTPServer())
        feeds_ = Feeds(server, 500, delay=0.3)
        # 120 s intervals (jitter keeps them >= 108 s) against a run of ~15 s (a minute or
        # more on a loaded machine, where three daemons and their parse workers share a
        # few cores): a second request for any feed would be a feed polled twice within
        # its interval. The waits below are generous for the same reason; the bound that
        # matters is the window's, asserted at the end.
        cfg = cluster_config(
            tmp_path, pg_url, feeds_.urls, smtp.port,
            polling='interval = "120s"\nmin_interval = "120s"\nmax_interval = "240s"\n'
            'timeout = "10s"\nconcurrency = 10\nper_host = 100\nlease = "30s"',
        )  # fmt: skip
        started = time.monotonic()
        daemons = []
        for _ in range(3):
            d = Daemon(cfg)
            stack.callback(d.kill)
            daemons.append(d)

        def polled() -> int:
            try:
                return int(db.scalar("SELECT count(*) FROM feeds WHERE last_polled_at IS NOT NULL"))
            except Exception:  # the schema is still being created
                return 0

        wait_for("a third of the feeds", lambda: polled() >= 150, 60)
        status = status_json(cfg)
        alive = [i for i in status["instances"] if i["alive"]]
        assert sorted(i["pid"] for i in alive) == sorted(d.proc.pid for d in daemons)
        assert {"feeds_claimed", "outbox_claimed", "host", "heartbeat"} <= set(alive[0])

        wait_for("every feed polled", lambda: polled() == 500, 60)
        expected = feeds_.expected_titles()

        def all_mailed() -> bool:
            mailed = mailed_titles(smtp)
            return len(mailed) == 2 and all(set(c) == expected for c in mailed.values())

        wait_for("every hit mailed to both", all_mailed, 45)
        time.sleep(1.0)  # a few more ticks: nothing may be polled or mailed again
        for d in daemons:
            code, _took = d.stop()
            assert code == 0, d.log()
        window = time.monotonic() - started
        assert window < 108, window  # shorter than any feed's interval

        counts = {p: len(t) for p, t in feeds_.times.items()}
        assert set(counts.values()) == {1}, [p for p, n in counts.items() if n != 1][:10]
        assert_each_hit_once(db, smtp, expected, 2)
        per_instance = dict(
            db.rows("SELECT instance, sum(feeds) FROM poll_runs GROUP BY instance")  # type: ignore[arg-type]
        )
        assert len(per_instance) == 3 and all(n > 0 for n in per_instance.values()), per_instance
        assert sum(per_instance.values()) == 500
        for d in daemons:
            assert "Traceback" not in d.log() and "ERROR" not in d.log(), d.log()


def test_a_killed_daemons_feeds_are_taken_over_after_the_lease_not_before(
    tmp_path: Path, pg_url: str, db: Db
) -> None:
    lease = 6.0  # renewed every third of it: long enough for a loaded machine
    with ExitStack() as stack:
        server = stack.enter_context(FeedServer())
        smtp = stack.enter_context(SMTPServer())
        feeds_ = Feeds(server, 30, delay=30.0)  # the victim's fetches never finish
        cfg = cluster_config(
            tmp_path, pg_url, feeds_.urls, smtp.port, subscribers=1,
            polling='interval = "60s"\nmin_interval = "60s"\nmax_interval = "120s"\n'
            f'timeout = "40s"\nconcurrency = 12\nper_host = 50\nlease = "{lease}s"',
        )  # fmt: skip
        victim = Daemon(cfg)
        stack.callback(victim.kill)

        def claimed_by_victim() -> set[str]:
            try:
                rows = db.rows(
                    "SELECT f.url FROM feeds f JOIN instances i ON f.claimed_by = i.id "
                    "WHERE i.pid = :p",
                    p=victim.proc.pid,
                )
            except Exception:  # the schema is still being created
                return set()
            return {"/" + url.rsplit("/", 1)[1] for (url,) in rows}

        def requested() -> set[str]:
            return {p for p, t in feeds_.times.items() if t}

        # The victim claims one batch (concurrency + 2 parse slots = 14 feeds) and the
        # next one ahead (14 more, to start as soon as feeds of the first end), and hangs
        # on the 12 it has connections for.
        wait_for("the victim's batches", lambda: len(claimed_by_victim()) == 28, 20)
        wait_for("its requests", lambda: len(requested()) == 12, 10)
        held = claimed_by_victim()
        feeds_.delay = 0.0
        survivor = Daemon(cfg)  # started while the victim lives: it frees nothing at start
        stack.callback(survivor.kill)
        others = set(feeds_.paths) - held
        wait_for("the survivor's share", lambda: requested() >= others, 30)
        status = status_json(cfg)
        by_pid = {i["pid"]: i for i in status["instances"]}
        assert by_pid[victim.proc.pid]["feeds_claimed"] == 28
        assert by_pid[victim.proc.pid]["alive"] and by_pid[survivor.proc.pid]["alive"]
        assert by_pid[survivor.proc.pid]["feeds_claimed"] == 0
        held_by = by_pid[victim.proc.pid]["id"]

        victim.proc.kill()
        victim.proc.wait(10)
        killed_at = time.time()
        rows = db.rows(
            "SELECT url, extract(epoch FROM claim_expires_at) FROM feeds WHERE claimed_by = :h",
            h=held_by,
        )
        expires = {"/" + url.rsplit("/", 1)[1]: float(at) for url, at in rows}
        assert set(expires) == held
        assert all(killed_at - 0.5 < at <= killed_at + lease + 0.5 for at in expires.values())

        def after_kill(path: str) -> list[float]:
            return [t for t in feeds_.times[path] if t > killed_at]

        wait_for("the take-over", lambda: all(after_kill(p) for p in held), lease + 20)
        for path, at in expires.items():
            (again,) = after_kill(path)
            assert again >= at - 0.05, (path, again - at)  # not before the lease ran out
            assert again <= at + 10, (path, again - at)  # and soon after
        expected = feeds_.expected_titles()
        wait_for(
            "every hit mailed",
            lambda: set(mailed_titles(smtp).get("analyst0@example.org", {})) == expected,
            30,
        )
        time.sleep(1.0)
        code, _took = survivor.stop()
        assert code == 0, survivor.log()
        counts = {len(t) for p, t in feeds_.times.items() if p not in held}
        assert counts == {1}  # the survivor's own feeds: once
        for path in held:  # the victim's: its unanswered request, then the survivor's
            assert len(after_kill(path)) == 1
        assert_each_hit_once(db, smtp, expected, 1)
        assert "Traceback" not in survivor.log()
