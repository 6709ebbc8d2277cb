"""Webhooks: a real receiver on 127.0.0.1 (aiohttp.web), the real outbox on SQLite and
PostgreSQL, fetch's address rules refusing private targets before any traffic."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from httpserver import FeedServer
from sqlalchemy import func, insert, select, update

from monitor import webhook as wh
from monitor.config import Settings, settings_from_mapping
from monitor.fetch import make_session
from monitor.pipeline import send_digests, send_webhooks, webhook_fetch_options
from monitor.store import Store, open_store
from monitor.store import outbox as ob
from monitor.store.feeds import StoredHit
from monitor.store.schema import feeds, hits, items, outbox, stories

REPO = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
SECRET = b"correct horse battery staple"


@pytest.fixture
def sqlite_store(sqlite_url: str) -> Iterator[Store]:
    """For what does not depend on the backend (address rules)."""
    opened = open_store(sqlite_url, upgrade=True)
    try:
        yield opened
    finally:
        opened.dispose()


def settings(tmp_path: Path, url: str, **delivery: Any) -> Settings:
    (tmp_path / "hook-secret").write_bytes(SECRET + b"\n")
    return settings_from_mapping(
        {
            "watchlists": {"dir": str(REPO / "watchlists")},
            "delivery": {"webhook_allow_private_addresses": True, **delivery},
            "webhooks": [
                {"name": "desk", "url": url, "secret_file": str(tmp_path / "hook-secret")}
            ],
        },
        environ={},
    )


def add_story(store: Store, title: str, link: str, watchlists: list[str], at: datetime) -> int:
    """An item from a feed with one hit per watchlist; returns the item id."""
    with store.write() as conn:
        feed = conn.execute(select(feeds.c.id).where(feeds.c.url == "https://news.example/rss"))
        feed_id = feed.scalar()
        if feed_id is None:
            feed_id = conn.execute(
                insert(feeds)
                .values(url="https://news.example/rss", title="News Example", headers={},
                        created_at=T0)
                .returning(feeds.c.id)
            ).scalar_one()  # fmt: skip
        item_id = conn.execute(
            insert(items)
            .values(identity=title, feed_id=feed_id, title=title, link=link, first_seen_at=at)
            .returning(items.c.id)
        ).scalar_one()
        for w in watchlists:
            conn.execute(
                insert(hits).values(
                    item_id=item_id,
                    watchlist=w,
                    matches=[{"field": "title", "terms": [w.upper()], "start": 0, "end": 1}],
                    created_at=at,
                )
            )
    return int(item_id)


class Receiver:
    """/hook answers 500, then stalls past the client's deadline, then 200 for good;
    it keeps every request's headers and body."""

    def __init__(self, server: FeedServer) -> None:
        self.seen: list[tuple[dict[str, str], bytes, int]] = []
        self.accepted: list[dict[str, Any]] = []
        server.route("/hook", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        n = len(self.seen)
        status = 500 if n == 0 else 200
        self.seen.append((dict(request.headers), body, status))
        if n == 0:
            return web.Response(status=500, text="receiver\x1b[2J\n down")
        if n == 1:
            await asyncio.sleep(5)  # the client gives up first (webhook_timeout 1s)
        self.accepted.append(json.loads(body))
        return web.Response(text="ok")


async def test_stories_reach_a_flaky_receiver_exactly_once_signed(
    store: Store, tmp_path: Path
) -> None:
    with FeedServer() as server:
        receiver = Receiver(server)
        config = settings(tmp_path, server.url("/hook"), webhook_timeout="1s",
                          webhook_max_stories=2)  # fmt: skip
        first = await send_webhooks(config, store, now=T0)  # registers the webhook
        assert (first.queued, server.count()) == (0, 0)
        at = T0 + timedelta(minutes=1)
        add_story(store, "Gor meets C5 ministers", "https://news.example/1", ["gor", "c5plus1"], at)
        add_story(store, "Landau in Astana", "https://news.example/2", ["landau"], at)
        add_story(store, "Middle Corridor tariffs", "javascript:alert(1)", ["gor"], at)

        failed = await send_webhooks(config, store, now=T0 + timedelta(minutes=2))
        assert (failed.queued, failed.sent, len(failed.retrying)) == (1, 0, 1)
        assert failed.retrying[0][1] == "HTTP 500 Internal Server Error: receiver [2J down"
        (row,) = ob.list_outbox(store)
        assert (row.kind, row.subscriber, row.status, row.attempts) == (
            "webhook", "webhook:desk", "queued", 1,
        )  # fmt: skip
        early = await send_webhooks(config, store, now=T0 + timedelta(minutes=2, seconds=30))
        assert (early.sent, server.count("/hook")) == (0, 1)  # backoff: not yet

        timed_out = await send_webhooks(config, store, now=T0 + timedelta(minutes=4))
        assert (
            timed_out.sent == 0 and "no complete response within 1 s" in (timed_out.retrying[0][1])
        )
        done = await send_webhooks(config, store, now=T0 + timedelta(minutes=10))
        assert (done.sent, done.queued, done.stories) == (2, 1, 1)  # the retry, then the rest
        again = await send_webhooks(config, store, now=T0 + timedelta(minutes=20))
        assert (again.queued, again.sent) == (0, 0)

    # One body was tried three times with the same id and bytes; the second went once.
    ids = [h["X-Monitor-Delivery"] for h, _, _ in receiver.seen]
    assert len(receiver.seen) == 4 and ids[0] == ids[1] == ids[2] != ids[3]
    assert receiver.seen[0][1] == receiver.seen[2][1]
    for headers, body, _ in receiver.seen:
        assert headers["Content-Type"].startswith("application/json")
        expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
        assert headers["X-Monitor-Signature"] == expected
        assert wh.verify(body, SECRET, headers["X-Monitor-Signature"])
    assert [b["delivery"] for b in receiver.accepted] == [ids[0], ids[3]]
    stories = [s for b in receiver.accepted for s in b["stories"]]
    titles = [s["title"] for s in stories]
    assert sorted(titles) == ["Gor meets C5 ministers", "Landau in Astana",
                              "Middle Corridor tariffs"]  # fmt: skip
    gor = stories[titles.index("Gor meets C5 ministers")]
    assert gor["watchlists"] == ["gor", "c5plus1"]
    # The watchlists' display names come from their files.
    names = {w["id"]: w["name"] for b in receiver.accepted for w in b["watchlists"]}
    assert names["gor"] == "Sergio Gor"
    (item,) = gor["items"]
    assert (item["link"], item["feed"], item["feed_title"]) == (
        "https://news.example/1", "https://news.example/rss", "News Example",
    )  # fmt: skip
    assert item["terms"] == ["GOR", "C5PLUS1"] and item["first_seen"] == "2026-03-01T09:01:00+00:00"
    assert stories[titles.index("Middle Corridor tariffs")]["items"][0]["link"] is None
    text = receiver.accepted[0]["text"]
    assert text.startswith("Monitor: 2 new stories (")
    assert "• <https://news.example/1|Gor meets C5 ministers> — News Example" in text
    assert {r.status for r in ob.list_outbox(store, statuses=("queued", "sent", "failed"))} == {
        "sent"
    }
    with store.read() as conn:
        assert conn.execute(select(func.count()).select_from(outbox)).scalar_one() == 2
    # The mail sender never takes webhook rows.
    assert ob.claim_due(store, instance="mail", ignore_backoff=True) == []


def queue_bodies(store: Store, at: datetime, n: int) -> None:
    """``n`` webhook bodies queued for the desk (``body-0`` …), each with a story's hit."""
    for k in range(n):
        item = add_story(store, f"Gor {k}", f"https://news.example/r{k}", ["gor"], at)
        with store.read() as conn:
            hit = conn.execute(select(hits.c.id).where(hits.c.item_id == item)).scalar_one()
        ob.enqueue_digest(store, subscriber="webhook:desk", message_id=f"body-{k}",
                          subject="1 story: gor", message=b'{"stories": []}',
                          hit_ids=[hit], now=at, kind="webhook")  # fmt: skip


Answer = tuple[int, dict[str, str]]


def answering(
    answers: list[Answer | Callable[[], Answer]], text: str
) -> tuple[Callable[[web.Request], Awaitable[web.Response]], list[str]]:
    """A receiver that answers its first requests as ``answers`` say (a callable: made
    when the request comes), then 200; and the delivery ids it was sent, in order."""
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(request.headers["X-Monitor-Delivery"])
        if len(seen) > len(answers):
            return web.Response(text="ok")
        answer = answers[len(seen) - 1]
        status, headers = answer() if callable(answer) else answer
        return web.Response(status=status, headers=headers, text=text)

    return handle, seen


async def test_a_receiver_asking_to_wait_is_not_posted_to_sooner(
    store: Store, tmp_path: Path
) -> None:
    """429/503 with Retry-After (seconds, then an HTTP-date): the body and the webhook's
    other queued body wait at least that long, a day is cut to the cap, then both go in
    order."""
    def in_15_minutes() -> Answer:  # an HTTP-date, measured from Date
        sent = datetime.now(UTC).replace(microsecond=0)
        return 503, {"Date": format_datetime(sent, usegmt=True),
                     "Retry-After": format_datetime(sent + timedelta(minutes=15), usegmt=True)}  # fmt: skip

    handle, seen = answering(
        [
            (429, {"Retry-After": "600"}),
            in_15_minutes,
            (429, {"Retry-After": "86400"}),  # a day: cut to webhook_retry_after_max
        ],
        "slow down",
    )

    with FeedServer() as server:
        server.route("/hook", handle)
        config = settings(tmp_path, server.url("/hook"))
        await send_webhooks(config, store, now=T0)
        queue_bodies(store, T0 + timedelta(minutes=1), 2)  # two bodies queued already

        def due() -> list[tuple[str, datetime | None]]:
            return [(r.message_id, r.next_attempt_at) for r in ob.list_outbox(store)]

        async def run(at: datetime) -> int:
            before = len(seen)
            await send_webhooks(config, store, now=at)
            return len(seen) - before

        t = T0 + timedelta(minutes=2)
        assert await run(t) == 1  # the first body; the second waits behind it
        wait = t + timedelta(minutes=10)
        assert due() == [("body-0", wait), ("body-1", wait)]
        assert "HTTP 429 Too Many Requests: slow down (asked to retry after 600 s)" in (
            ob.list_outbox(store)[0].last_error or ""
        )
        assert await run(t + timedelta(minutes=3)) == 0  # past the 1-minute backoff: not yet
        assert await run(wait - timedelta(seconds=1)) == 0
        assert await run(wait) == 1  # 503 for 15 minutes (more than the 2-minute backoff)
        wait += timedelta(minutes=15)
        assert due() == [("body-0", wait), ("body-1", wait)]
        assert await run(wait - timedelta(minutes=1)) == 0
        assert await run(wait) == 1  # asks for a day: an hour, the cap
        assert due() == [(m, wait + timedelta(hours=1)) for m in ("body-0", "body-1")]
        assert await run(wait + timedelta(minutes=59)) == 0
        assert await run(wait + timedelta(hours=1)) == 2
    assert seen == ["body-0"] * 4 + ["body-1"]
    assert ob.list_outbox(store) == []


async def test_send_now_skips_our_backoff_but_not_the_receivers_retry_after(
    store: Store, tmp_path: Path
) -> None:
    """``digest --send-now`` (force) posts a body waiting for our backoff at once, but a
    body (and the one queued behind it) whose receiver asked to wait is not posted
    before the time it gave."""
    handle, seen = answering([(503, {}), (429, {"Retry-After": "600"})], "busy")

    with FeedServer() as server:
        server.route("/hook", handle)
        config = settings(tmp_path, server.url("/hook"))
        await send_webhooks(config, store, now=T0)
        queue_bodies(store, T0 + timedelta(minutes=1), 2)

        async def run(at: datetime, force: bool) -> int:
            before = len(seen)
            await send_webhooks(config, store, now=at, force=force)
            return len(seen) - before

        t = T0 + timedelta(minutes=2)
        assert await run(t, force=False) == 1  # 503 without Retry-After: our backoff
        assert await run(t + timedelta(seconds=10), force=False) == 0
        assert await run(t + timedelta(seconds=10), force=True) == 1  # skipped: 429, 600 s
        asked = t + timedelta(seconds=10 + 600)
        assert await run(t + timedelta(seconds=20), force=True) == 0  # both bodies held
        assert await run(asked - timedelta(seconds=1), force=True) == 0
        assert await run(asked, force=True) == 2
    assert seen == ["body-0"] * 3 + ["body-1"]
    assert ob.list_outbox(store) == []


@pytest.mark.parametrize(
    ("url", "allow_private"),
    [
        ("http://10.1.2.3/hook", False),
        ("http://169.254.169.254/latest/meta-data", True),  # metadata: refused even so
        ("http://[::ffff:10.0.0.1]/hook", False),
        ("file:///etc/passwd", False),
    ],
)
async def test_private_targets_are_refused_before_any_request(
    sqlite_store: Store, tmp_path: Path, url: str, allow_private: bool
) -> None:
    store = sqlite_store
    config = settings_from_mapping(
        {
            "watchlists": {"dir": str(REPO / "watchlists")},
            "delivery": {"webhook_allow_private_addresses": allow_private},
            "webhooks": [{"name": "desk", "url": "https://placeholder.example/"}],
        },
        environ={},
    )
    # file:// cannot be configured; a row queued for a URL changed by hand still stops.
    config = Settings(
        values=config.values,
        webhooks=(type(config.webhooks[0])(url=url, name="desk"),),
        source="test",
    )
    requests: list[str] = []

    async def on_request(*args: Any) -> None:
        requests.append(str(args[2].url))

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_request)
    trace.on_connection_create_start.append(on_request)
    await send_webhooks(config, store, now=T0)
    add_story(
        store, "Gor in Tashkent", "https://news.example/3", ["gor"], T0 + timedelta(seconds=1)
    )
    session = make_session(webhook_fetch_options(config), trace_configs=[trace])
    try:
        summary = await send_webhooks(config, store, now=T0 + timedelta(minutes=1), session=session)
    finally:
        await session.close()
    assert requests == []
    ((name, reason),) = summary.failed
    # Worded for a webhook, not for a feed.
    assert name == "desk" and (
        "address, which is not posted to" in reason
        or "only http and https URLs are posted to, not 'file'" in reason
    )
    assert "polled" not in reason and "fetched" not in reason
    (row,) = ob.list_outbox(store)
    assert (row.status, row.kind, row.hits) == ("failed", "webhook", 1)


async def test_a_host_name_resolving_to_loopback_is_refused(
    sqlite_store: Store, tmp_path: Path
) -> None:
    store = sqlite_store
    with FeedServer() as server:
        server.serve("/hook", "ok")
        config = settings_from_mapping(
            {
                "watchlists": {"dir": str(REPO / "watchlists")},
                "webhooks": [{"name": "desk", "url": f"http://localhost:{server.port}/hook"}],
            },
            environ={},
        )
        await send_webhooks(config, store, now=T0)
        add_story(store, "Gor", "https://news.example/4", ["gor"], T0 + timedelta(seconds=1))
        summary = await send_webhooks(config, store, now=T0 + timedelta(minutes=1))
        assert server.count() == 0
    reason = summary.failed[0][1]
    assert "resolves only to refused addresses" in reason and "polled" not in reason
    assert "private, loopback and link-local addresses are not posted to" in reason
    assert "allow_private_addresses = true in its [[webhooks]] table" in summary.failed[0][1]


async def test_one_webhook_may_post_to_a_private_address_the_others_not(
    sqlite_store: Store, tmp_path: Path
) -> None:
    """The [[webhooks]] key decides for its webhook, either way; [delivery]'s setting is
    the default of the others."""
    store = sqlite_store
    with FeedServer() as server:
        server.serve("/hook", "ok")
        url = f"http://localhost:{server.port}/hook"  # a host name resolving to loopback
        config = settings_from_mapping(
            {
                "watchlists": {"dir": str(REPO / "watchlists")},
                "delivery": {"webhook_allow_private_addresses": False},
                "webhooks": [
                    {"name": "internal", "url": url, "allow_private_addresses": True},
                    {"name": "default", "url": url + "?default"},
                    {"name": "closed", "url": f"http://127.0.0.1:{server.port}/hook?closed",
                     "allow_private_addresses": False},
                ],
            },
            environ={},
        )  # fmt: skip
        assert [w.allow_private_addresses for w in config.webhooks] == [True, None, False]
        await send_webhooks(config, store, now=T0)
        add_story(store, "Gor", "https://news.example/4", ["gor"], T0 + timedelta(seconds=1))
        summary = await send_webhooks(config, store, now=T0 + timedelta(minutes=1))
        assert (summary.sent, server.count("/hook")) == (1, 1)
        assert sorted(name for name, _ in summary.failed) == ["closed", "default"]
        # The global switch opens the webhooks without a key of their own, not "closed".
        opened = Settings(
            values={**config.values, "delivery.webhook_allow_private_addresses": True},
            webhooks=config.webhooks,
            source="test",
        )
        add_story(store, "Gor again", "https://news.example/5", ["gor"], T0 + timedelta(minutes=2))
        later = await send_webhooks(opened, store, now=T0 + timedelta(minutes=3))
        assert sorted(name for name, _ in later.failed) == ["closed"]
        assert later.sent == 2 and server.count("/hook") == 3


async def test_webhook_schedules_and_watchlists_are_kept(store: Store, tmp_path: Path) -> None:
    with FeedServer() as server:
        bodies: list[dict[str, Any]] = []

        async def handle(request: web.Request) -> web.Response:
            bodies.append(json.loads(await request.read()))
            return web.Response(status=204)

        server.route("/hook", handle)
        config = settings_from_mapping(
            {
                "watchlists": {"dir": str(REPO / "watchlists")},
                "delivery": {"webhook_allow_private_addresses": True},
                "webhooks": [{"name": "daily", "url": server.url("/hook"), "watchlists": ["gor"],
                              "schedule": "daily 08:00"}],
            },
            environ={},
        )  # fmt: skip
        await send_webhooks(config, store, now=T0)  # 09:00: registered after today's 08:00
        add_story(store, "Gor", "https://news.example/5", ["gor"], T0 + timedelta(minutes=1))
        add_story(store, "Landau", "https://news.example/6", ["landau"], T0 + timedelta(minutes=1))
        waiting = await send_webhooks(config, store, now=T0 + timedelta(hours=2))
        assert waiting.skipped == [("daily", "next delivery at 2026-03-02 08:00 UTC")]
        due = await send_webhooks(config, store, now=T0 + timedelta(hours=23, minutes=1))
        assert (due.sent, [s["title"] for b in bodies for s in b["stories"]]) == (1, ["Gor"])
        assert "X-Monitor-Signature" not in server.requests("/hook")[0].headers  # no secret


def test_feed_text_is_inert_in_the_chat_text() -> None:
    hit = StoredHit(
        id=1, watchlist="gor", matches=[], created_at=T0, item_id=7, identity="x", guid=None,
        link="https://evil.example/a|b>c",
        title="<!channel> @here & <script>alert(1)</script>", summary="", content="",
        published_at=None, first_seen_at=T0, feed_id=None, feed_url="https://evil.example/rss",
        feed_title="@channel",
    )  # fmt: skip
    body = wh.build_body(
        [wh.StoryInput(None, hit.title, T0, T0, [hit])], webhook="w", delivery="d", now=T0
    )
    doc = json.loads(body.data)
    text = doc["text"]
    assert "<!channel>" not in text and "<script>" not in text and "@here" not in text
    assert "&lt;!channel&gt; @\u200bhere &amp; &lt;script&gt;" in text
    assert "<https://evil.example/a%7Cb%3Ec|" in text
    assert doc["stories"][0]["title"] == hit.title  # the JSON keeps the text as it is
    assert body.hit_ids == {1} and body.summary == "1 story: gor"


async def test_mail_and_webhook_rows_keep_apart(store: Store, tmp_path: Path) -> None:
    """A digest run with subscribers leaves webhook rows alone, and the other way round."""
    config = settings_from_mapping(
        {
            "watchlists": {"dir": str(REPO / "watchlists")},
            "delivery": {"dir": str(tmp_path / "mail"), "webhook_allow_private_addresses": True},
            "subscribers": [{"email": "a@example.org", "schedule": "immediate"}],
            "webhooks": [{"name": "desk", "url": "http://127.0.0.1:9/hook"}],  # discard port
        },
        environ={},
    )
    await send_digests(config, store, now=T0)
    await send_webhooks(config, store, now=T0)
    add_story(store, "Gor", "https://news.example/7", ["gor"], T0 + timedelta(seconds=1))
    hooks = await send_webhooks(config, store, now=T0 + timedelta(minutes=1))
    assert hooks.retrying and "cannot connect" in hooks.retrying[0][1]
    mail = await send_digests(config, store, now=T0 + timedelta(minutes=1), force=True)
    assert (mail.queued, mail.sent) == (1, 1)  # the same hit, once per recipient
    assert len(list((tmp_path / "mail").glob("*.eml"))) == 1
    rows = {(r.kind, r.status) for r in ob.list_outbox(store, statuses=("queued", "sent"))}
    assert rows == {("mail", "sent"), ("webhook", "queued")}


def into_story(
    store: Store, title: str, item_ids: list[int], first: datetime, last: datetime
) -> int:
    with store.write() as conn:
        story = conn.execute(
            insert(stories)
            .values(title=title, first_seen_at=first, last_seen_at=last,
                    item_count=len(item_ids), lead_item_id=item_ids[0])
            .returning(stories.c.id)
        ).scalar_one()  # fmt: skip
        conn.execute(update(items).where(items.c.id.in_(item_ids)).values(story_id=story))
    return int(story)


async def test_a_story_goes_whole_once_and_again_only_with_new_items(
    store: Store, tmp_path: Path
) -> None:
    with FeedServer() as server:
        bodies: list[dict[str, Any]] = []

        async def handle(request: web.Request) -> web.Response:
            bodies.append(json.loads(await request.read()))
            return web.Response(text="ok")

        server.route("/hook", handle)
        config = settings(tmp_path, server.url("/hook"), webhook_max_stories=1)
        await send_webhooks(config, store, now=T0)
        at = T0 + timedelta(minutes=1)
        a = add_story(store, "C5+1 summit set", "https://a.example/1", ["c5plus1"], at)
        b = add_story(store, "Summit of C5+1 leaders", "https://b.example/1", ["gor"], at)
        other = add_story(store, "Landau in Bishkek", "https://c.example/1", ["landau"], at)
        summit = into_story(store, "C5+1 summit set", [a, b], at, at)
        first = await send_webhooks(config, store, now=T0 + timedelta(minutes=2))
        assert (first.sent, first.stories) == (2, 2)  # one story a body: the cap is 1
        later = T0 + timedelta(minutes=3)
        c = add_story(store, "C5+1 summit: the agenda", "https://d.example/1", ["c5plus1"], later)
        with store.write() as conn:  # the story grows
            conn.execute(update(items).where(items.c.id == c).values(story_id=summit))
            conn.execute(update(stories).values(last_seen_at=later, item_count=3))
        second = await send_webhooks(config, store, now=T0 + timedelta(minutes=4))
        assert second.sent == 1
    (s1,), (s2,), (s3,) = (b["stories"] for b in bodies)
    assert (s1["id"], s1["title"], s1["watchlists"]) == (summit, "C5+1 summit set",
                                                        ["c5plus1", "gor"])  # fmt: skip
    assert [i["link"] for i in s1["items"]] == ["https://a.example/1", "https://b.example/1"]
    assert (
        "<https://a.example/1|C5+1 summit set> — News Example · C5+1 and the Central Asia-US summit, Sergio Gor"
        in bodies[0]["text"]
    )
    assert s2["id"] is None and s2["items"][0]["id"] == other  # an item in no story
    assert s3["last_seen"] == "2026-03-01T09:03:00+00:00"
    assert (s3["id"], [i["id"] for i in s3["items"]]) == (summit, [c])  # the new item only


def stored_hit(n: int, *, item: int | None = None, title: str = "", link: str = "") -> StoredHit:
    return StoredHit(
        id=n, watchlist="gor", matches=[], created_at=T0, item_id=n if item is None else item,
        identity=str(n), guid=None, link=link or f"https://news.example/{n}/" + "p" * 150,
        title=title or "t" * 300, summary="", content="", published_at=None, first_seen_at=T0,
        feed_id=None, feed_url="https://news.example/rss", feed_title="News",
    )  # fmt: skip


def test_a_big_story_set_is_cut_into_bodies_within_the_caps() -> None:
    """What does not fit goes in the next body: every story once, in order, each body's
    text listing each of its stories, within both caps."""
    many = [
        wh.StoryInput(None, f"Story {n} " + "x" * 300, T0, T0, [stored_hit(n)])
        for n in range(100)
    ]
    left, bodies = many, []
    while left:
        body = wh.build_body(left, webhook="w", delivery=f"d{len(bodies)}", now=T0)
        bodies.append(body)
        left = left[body.story_count :]
    assert len(bodies) > 1
    seen = []
    for body in bodies:
        doc = json.loads(body.data)
        assert len(doc["text"]) <= wh.MAX_TEXT and len(body.data) <= wh.MAX_BYTES
        assert "more stories" not in doc["text"]
        assert doc["text"].startswith(f"Monitor: {len(doc['stories'])} new stories (gor)")
        for story in doc["stories"]:
            assert f"|{story['title'][:150]}" in doc["text"]
        assert body.hit_ids == {i["id"] for st in doc["stories"] for i in st["items"]}
        seen += [st["items"][0]["id"] for st in doc["stories"]]
    assert seen == list(range(100))
    # A tighter text cap makes more, smaller bodies; the byte cap alike.
    small = wh.build_body(many, webhook="w", delivery="d", now=T0, max_text=1000)
    assert len(json.loads(small.data)["text"]) <= 1000 and 1 < small.story_count < 5
    wide = [  # stories of 40 items each: a short text, a big JSON body
        wh.StoryInput(n, f"Story {n}", T0, T0,
                      [stored_hit(n * 100 + i, item=n * 100 + i) for i in range(40)])
        for n in range(20)
    ]  # fmt: skip
    body = wh.build_body(wide, webhook="w", delivery="d", now=T0, max_bytes=64 * 1024)
    assert len(body.data) <= 64 * 1024 and 1 < body.story_count < 20
    assert len(json.loads(body.data)["text"]) < 2000


def test_one_story_over_the_caps_goes_alone_its_line_cut() -> None:
    huge = wh.StoryInput(
        7, "&" * 300, T0, T0, [stored_hit(1, link="https://news.example/" + "&" * 1500)]
    )
    other = wh.StoryInput(8, "Next", T0, T0, [stored_hit(2)])
    body = wh.build_body([huge, other], webhook="w", delivery="d", now=T0, max_text=1000,
                         max_bytes=1000)  # fmt: skip
    doc = json.loads(body.data)
    assert body.story_count == 1 and body.hit_ids == {1} and len(doc["text"]) <= 1000
    assert doc["text"].endswith("…") and "&amp…" not in doc["text"] and "&…" not in doc["text"]
    assert doc["stories"][0]["items"][0]["link"].endswith("&" * 1500)  # the JSON has it whole


async def test_a_backlog_over_the_text_cap_goes_in_several_signed_deliveries(
    store: Store, tmp_path: Path
) -> None:
    with FeedServer() as server:
        seen: list[tuple[dict[str, str], bytes]] = []

        async def handle(request: web.Request) -> web.Response:
            seen.append((dict(request.headers), await request.read()))
            return web.Response(text="ok")

        server.route("/hook", handle)
        config = settings(tmp_path, server.url("/hook"), webhook_max_text=1000)
        await send_webhooks(config, store, now=T0)
        at = T0 + timedelta(minutes=1)
        for n in range(30):
            add_story(store, f"Gor story {n:02d} " + "y" * 100, f"https://news.example/s{n}",
                      ["gor"], at + timedelta(seconds=n))  # fmt: skip
        summary = await send_webhooks(config, store, now=T0 + timedelta(minutes=2))
        again = await send_webhooks(config, store, now=T0 + timedelta(minutes=3))
    assert summary.stories == 30 and summary.sent == summary.queued == len(seen) > 3
    assert (again.queued, again.sent) == (0, 0)
    titles = []
    for headers, body in seen:
        doc = json.loads(body)
        assert headers["X-Monitor-Delivery"] == doc["delivery"]
        assert wh.verify(body, SECRET, headers["X-Monitor-Signature"])
        assert len(doc["text"]) <= 1000
        assert doc["text"].count("\n• ") == len(doc["stories"])  # every story in the text
        titles += [st["title"] for st in doc["stories"]]
    assert titles == [f"Gor story {n:02d} " + "y" * 100 for n in range(30)]  # once, in order
    assert len({h["X-Monitor-Delivery"] for h, _ in seen}) == len(seen)
    rows = ob.list_outbox(store, statuses=("sent",))
    assert len(rows) == len(seen) and sum(r.hits for r in rows) == 30


async def test_rows_of_a_removed_webhook_wait_for_it(sqlite_store: Store, tmp_path: Path) -> None:
    store = sqlite_store

    def config(name: str) -> Settings:
        return settings_from_mapping(
            {
                "watchlists": {"dir": str(REPO / "watchlists")},
                "delivery": {"webhook_allow_private_addresses": True},
                "webhooks": [{"name": name, "url": "http://127.0.0.1:9/hook"}],  # refused
            },
            environ={},
        )

    await send_webhooks(config("desk"), store, now=T0)
    add_story(store, "Gor", "https://news.example/8", ["gor"], T0 + timedelta(seconds=1))
    await send_webhooks(config("desk"), store, now=T0 + timedelta(minutes=1))
    (before,) = ob.list_outbox(store)
    renamed = await send_webhooks(config("other"), store, now=T0 + timedelta(hours=1))
    (after,) = ob.list_outbox(store)
    assert renamed.retrying == [] and after == before  # untouched, still queued and shown
    assert (after.subscriber, after.status, after.attempts) == ("webhook:desk", "queued", 1)


async def test_a_failed_delivery_requeued_goes_again_as_it_was(
    store: Store, tmp_path: Path
) -> None:
    """A 4xx fails a delivery; `outbox retry` queues it again with its body and delivery
    id unchanged (a JSON body has no Message-ID to renew)."""
    seen: list[tuple[str, bytes]] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append((request.headers["X-Monitor-Delivery"], await request.read()))
        return web.Response(status=410 if len(seen) == 1 else 200)

    with FeedServer() as server:
        server.route("/hook", handle)
        config = settings(tmp_path, server.url("/hook"))
        await send_webhooks(config, store, now=T0)
        add_story(store, "Gor in Astana", "https://news.example/9", ["gor"], T0 + timedelta(1))
        first = await send_webhooks(config, store, now=T0 + timedelta(days=1, minutes=1))
        assert [name for name, _ in first.failed] == ["desk"]
        (row,) = ob.list_outbox(store)
        assert row.status == "failed"
        again = T0 + timedelta(days=1, minutes=1)
        assert ob.requeue_failed(store, lambda m: ("<unused@test>", m), now=again) == [row.id]
        await send_webhooks(config, store, now=T0 + timedelta(days=1, minutes=2))
    assert len(seen) == 2 and seen[0] == seen[1]
    json.loads(seen[1][1])  # still the JSON body, untouched
    (row,) = ob.list_outbox(store, statuses=("sent",))
    assert row.kind == "webhook"


async def test_status_outbox_and_metrics_tell_webhooks_from_mail(tmp_path: Path) -> None:
    """Queued, failed and sent per kind in `monitor status` (text and JSON) and in the
    metrics; `monitor outbox` shows each row's kind and a webhook's receiver without the
    secret path and query of its URL."""
    from click.testing import CliRunner

    from monitor.cli import cli
    from monitor.metrics import Metrics, OutboxFigures, OutboxProbe
    from monitor.store.status import outbox_state

    db = tmp_path / "m.db"
    with FeedServer() as server:
        server.route("/hooks/T000/s3cr3t", lambda request: web.Response(status=503))
        secret_url = server.url("/hooks/T000/s3cr3t") + "?token=hunter2"
        cfg = tmp_path / "monitor.toml"
        cfg.write_text(
            f'[database]\nurl = "sqlite:///{db}"\n'
            f'[watchlists]\ndir = "{REPO / "watchlists"}"\n'
            f'[delivery]\ndir = "{tmp_path / "mail"}"\n'
            '[[subscribers]]\nemail = "a@example.org"\nschedule = "immediate"\n'
            f'[[webhooks]]\nname = "desk"\nurl = "{secret_url}"\nallow_private_addresses = true\n'
            '[[webhooks]]\nname = "closed"\nurl = "http://10.0.0.1/hook"\n',
            encoding="utf-8",
        )
        from monitor.config import load_settings

        config = load_settings(cfg, environ={})
        store = open_store(f"sqlite:///{db}", upgrade=True)
        try:
            await send_digests(config, store)
            await send_webhooks(config, store)
            add_story(store, "Gor", "https://news.example/k", ["gor"], datetime.now(UTC))
            assert (await send_digests(config, store)).sent == 1
            hooks = await send_webhooks(config, store)
            assert [n for n, _ in hooks.retrying] == ["desk"]
            assert [n for n, _ in hooks.failed] == ["closed"]
            state = outbox_state(store)
        finally:
            store.dispose()
    assert (state.queued, state.failed) == (1, 1)
    mail, hook = state.by_kind["mail"], state.by_kind["webhook"]
    assert (mail.queued, mail.failed, mail.sent) == (0, 0, 1)
    assert (hook.queued, hook.failed, hook.sent) == (1, 1, 0) and hook.oldest_queued_at

    runner = CliRunner()
    text = runner.invoke(cli, ["--config", str(cfg), "status"])
    assert text.exit_code == 0, text.output
    assert re.search(r"outbox: 1 queued, oldest \d+s; 1 failed \(see `monitor outbox`\)",
                     text.output)  # fmt: skip
    assert "  mail: 0 queued, 0 failed, 1 sent\n" in text.output
    assert re.search(r"  webhooks: 1 queued \(oldest \d+s\), 1 failed, 0 sent\n", text.output)
    data = json.loads(runner.invoke(cli, ["--config", str(cfg), "status", "--json"]).output)
    assert data["outbox_by_kind"]["mail"] == {"queued": 0, "oldest_age_s": None, "failed": 0,
                                              "sent": 1}  # fmt: skip
    assert data["outbox_by_kind"]["webhook"]["queued"] == 1
    assert data["outbox_by_kind"]["webhook"]["failed"] == 1

    box = runner.invoke(cli, ["--config", str(cfg), "outbox", "--all"])
    assert box.exit_code == 0, box.output
    assert "sent   mail    a@example.org  1 hit" in box.output
    assert "queued webhook webhook:desk  1 hit, 1 attempt" in box.output
    assert f"      to: http://127.0.0.1:{server.port}/…\n" in box.output
    assert "failed webhook webhook:closed  1 hit" in box.output
    assert "      to: http://10.0.0.1/…\n" in box.output
    assert "s3cr3t" not in box.output and "hunter2" not in box.output
    rows = [json.loads(line) for line in runner.invoke(
        cli, ["--config", str(cfg), "outbox", "--all", "--json"]).output.splitlines()]  # fmt: skip
    assert [(r["kind"], r["target"]) for r in rows] == [
        ("mail", "a@example.org"),
        ("webhook", f"http://127.0.0.1:{server.port}/…"),
        ("webhook", "http://10.0.0.1/…"),
    ]

    metrics = Metrics(OutboxProbe(lambda: {
        kind: OutboxFigures(c.queued, c.oldest_queued_at, c.failed, c.sent)
        for kind, c in state.by_kind.items()
    }))  # fmt: skip
    metrics.observe_digests(1, webhooks_sent=2)
    scraped = metrics.render().decode()
    for line in ('monitor_outbox_queued{kind="mail"} 0.0', 'monitor_outbox_queued{kind="webhook"} 1.0',
                 'monitor_outbox_failed{kind="webhook"} 1.0', 'monitor_outbox_sent{kind="mail"} 1.0',
                 'monitor_outbox_sent{kind="webhook"} 0.0', "monitor_digests_sent_total 1.0",
                 "monitor_webhook_deliveries_sent_total 2.0"):  # fmt: skip
        assert line in scraped, line
    assert 'monitor_outbox_oldest_age_seconds{kind="mail"} 0.0' in scraped
