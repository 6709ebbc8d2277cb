"""Webhook throughput: 100 webhooks x 200 pending stories, queued and posted to 127.0.0.1.

    .venv/bin/python bench/bench_webhooks.py [--webhooks 100] [--stories 200] [--runs 3]
                                             [--long]

``--long``: titles of 280 characters and links of 400, so ``text`` reaches
``delivery.webhook_max_text`` before ``webhook_max_stories``: a big story set cut into
more, smaller deliveries.

The receiver is aiohttp.web on 127.0.0.1 in a process of its own (it reads each body and
answers 200). Each run starts from the same SQLite database (every story pending for every
webhook) and times ``pipeline.send_webhooks(force=True)``: choosing whole stories, building
and signing the JSON body, the outbox transaction with its delivery records, the POST
through fetch's address rules, marking each body sent. The baseline, in the same run,
posts the very same bodies with the same headers over one aiohttp session, one after the
other, and nothing else. Prints medians and the ratio; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from sqlalchemy import insert, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor import webhook as wh
from monitor.config import Settings, settings_from_mapping
from monitor.pipeline import send_webhooks
from monitor.store import open_store
from monitor.store.schema import feeds, hits, items, outbox
from monitor.store.webhooks import register_webhooks

T0 = datetime(2025, 3, 3, 6, 0, tzinfo=UTC)
SECRET = b"bench-secret"


def receive(port_queue: Any) -> None:
    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="ok")

    async def main() -> None:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/hook", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        port_queue.put(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        await asyncio.Event().wait()

    asyncio.run(main())


def config(db: Path, work: Path, port: int, webhooks: int, stories: int) -> Settings:
    return settings_from_mapping(
        {
            "database": {"url": f"sqlite:///{db}"},
            "watchlists": {"dir": str(work / "watchlists")},
            "delivery": {"webhook_allow_private_addresses": True},
            "webhooks": [
                {"name": f"hook{i:03d}", "url": f"http://127.0.0.1:{port}/hook",
                 "secret_file": str(work / "secret")}
                for i in range(webhooks)
            ],
        },
        {},
    )  # fmt: skip


def seed(settings: Settings, stories: int, long: bool = False) -> None:
    """Every webhook registered at T0, then ``stories`` items with hits (gor / c5plus1)."""
    store = open_store(settings.database_url, upgrade=True)
    register_webhooks(store, [h.key for h in settings.webhooks], now=T0)
    with store.write() as conn:
        feed = conn.execute(
            insert(feeds)
            .values(url="https://news.example/rss", title="Example News", headers={},
                    created_at=T0)
            .returning(feeds.c.id)
        ).scalar_one()  # fmt: skip
        pad = (" and the Middle Corridor" * 12)[:220] if long else ""
        path = "/" + "p" * 360 if long else ""
        for k in range(stories):
            watchlist, term = ("gor", "Sergio Gor") if k % 2 else ("c5plus1", "C5+1")
            item = conn.execute(
                insert(items)
                .values(identity=f"i{k}", feed_id=feed,
                        link=f"https://news.example/story/{k}{path}",
                        title=f"Story {k}: {term} meets Central Asian foreign ministers{pad}",
                        summary="ASTANA - talks on the Middle Corridor. " * 5,
                        first_seen_at=T0 + timedelta(seconds=k),
                        published_at=T0 - timedelta(minutes=k))
                .returning(items.c.id)
            ).scalar_one()  # fmt: skip
            conn.execute(
                insert(hits).values(
                    item_id=item, watchlist=watchlist, created_at=T0 + timedelta(seconds=k),
                    matches=[{"watchlist": watchlist, "entry": "e", "terms": [term]}],
                )
            )  # fmt: skip
    store.dispose()


async def baseline(url: str, bodies: list[tuple[str, bytes]]) -> float:
    async with aiohttp.ClientSession() as session:
        started = time.perf_counter()
        for delivery, body in bodies:
            headers = wh.request_headers(body, delivery, SECRET)
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                assert response.status == 200
        return len(bodies) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--webhooks", type=int, default=100)
    parser.add_argument("--stories", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--long", action="store_true", help="long titles and links")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-webhooks-"))
    (work / "secret").write_bytes(SECRET)
    (work / "watchlists").mkdir()
    for wid, name in (("gor", "Sergio Gor"), ("c5plus1", "C5+1")):
        (work / "watchlists" / f"{wid}.yaml").write_text(
            f"id: {wid}\nname: {name}\nentries:\n  - id: e\n    terms: [{name}]\n"
        )
    ports: Any = multiprocessing.Queue()
    server = multiprocessing.Process(target=receive, args=(ports,), daemon=True)
    server.start()
    try:
        port = ports.get(timeout=30)
        template = work / "seed.db"
        seed(config(template, work, port, args.webhooks, args.stories), args.stories, args.long)
        ours: list[float] = []
        base: list[float] = []
        sizes: list[int] = []
        for run in range(args.runs):
            db = work / f"run{run}.db"
            shutil.copy(template, db)
            settings = config(db, work, port, args.webhooks, args.stories)
            store = open_store(settings.database_url)
            started = time.perf_counter()
            summary = asyncio.run(
                send_webhooks(settings, store, now=T0 + timedelta(hours=1), force=True)
            )
            elapsed = time.perf_counter() - started
            assert summary.sent == summary.queued and not summary.retrying, summary.line()
            assert summary.stories == args.webhooks * args.stories, summary.stories
            per_hook = summary.sent / args.webhooks
            ours.append(summary.sent / elapsed)
            with store.read() as conn:
                rows = conn.execute(select(outbox.c.message_id, outbox.c.message)).all()
            store.dispose()
            bodies = [(r.message_id, bytes(r.message)) for r in rows]
            sizes = [len(b) for _, b in bodies]
            base.append(asyncio.run(baseline(f"http://127.0.0.1:{port}/hook", bodies)))
            print(
                f"run {run + 1}: send_webhooks {ours[-1]:7.1f} bodies/s "
                f"({ours[-1] * args.stories / per_hook:8.1f} stories/s)   "
                f"baseline {base[-1]:7.1f} bodies/s",
                flush=True,
            )
        mo, mb = statistics.median(ours), statistics.median(base)
        print(
            f"\n{args.webhooks} webhooks x {args.stories} stories, {len(sizes)} bodies, "
            f"median body {statistics.median(sizes) / 1024:.1f} KiB, {args.runs} runs"
            + (", long titles and links" if args.long else "")
        )
        print(f"send_webhooks (stories + body + outbox + POST): {mo:7.1f} bodies/s (median)")
        print(f"baseline (aiohttp POST, same bytes)           : {mb:7.1f} bodies/s (median)")
        print(f"ratio: {mo / mb:.0%} of the baseline")
    finally:
        server.kill()
        server.join(10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
