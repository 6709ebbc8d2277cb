"""Digest throughput: 1,000 subscribers x 50 hits, rendered, queued and sent over SMTP.

    .venv/bin/python bench/bench_digest.py [--subscribers 1000] [--hits 50] [--runs 3]

The SMTP server is aiosmtpd on 127.0.0.1 in a process of its own (it accepts and discards).
Each run starts from the same database (every digest pending) and times
``pipeline.send_digests(force=True)``: pending hits, grouping, Jinja2 + css-inline,
the outbox transaction, one SMTP connection, marking each message sent. The baseline,
in the same run, sends the very same message bytes with aiosmtplib over one connection
and nothing else. Prints medians and the ratio; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiosmtplib
from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.config import settings_from_mapping
from monitor.pipeline import send_digests
from monitor.store import open_store
from monitor.store import outbox as ob
from monitor.store.schema import feeds, hits, items

T0 = datetime(2025, 3, 3, 6, 0, tzinfo=UTC)
SENDER = "monitor@example.org"

SERVER = """
import sys, time
from aiosmtpd.controller import Controller
class Discard:
    async def handle_DATA(self, server, session, envelope):
        return "250 2.0.0 OK"
c = Controller(Discard(), hostname="127.0.0.1", port=int(sys.argv[1]),
               data_size_limit=0, ready_timeout=10)
c.start()
print("ready", flush=True)
sys.stdin.read()
c.stop()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def seed(db: Path, subscribers: int, per: int, watchdir: Path) -> Any:
    """A database where every subscriber has ``per`` hits pending (half gor, half c5plus1)."""
    watchdir.mkdir()
    for wid, name in (("gor", "Sergio Gor"), ("c5plus1", "C5+1")):
        (watchdir / f"{wid}.yaml").write_text(
            f"id: {wid}\nname: {name}\nentries:\n  - id: e\n    terms: [{name}]\n"
        )
    emails = [f"analyst{i:04d}@example.org" for i in range(subscribers)]
    settings = settings_from_mapping(
        {
            "database": {"url": f"sqlite:///{db}"},
            "watchlists": {"dir": str(watchdir)},
            "digest": {"max_items_per_watchlist": per},
            "subscribers": [{"email": e, "schedule": "immediate"} for e in emails],
        },
        {},
    )
    store = open_store(settings.database_url, upgrade=True)
    ob.sync_subscribers(store, settings.subscribers, now=T0)
    with store.write() as conn:
        feed = conn.execute(
            insert(feeds)
            .values(url="https://news.example/rss", title="Example News", headers={},
                    created_at=T0)
            .returning(feeds.c.id)
        ).scalar_one()  # fmt: skip
        for k in range(per):
            watchlist, term = ("gor", "Sergio Gor") if k % 2 else ("c5plus1", "C5+1")
            title = f"Story {k}: {term} meets Central Asian foreign ministers in Astana"
            summary = (
                f"ASTANA — {term} and the foreign ministers of Kazakhstan, Kyrgyzstan, "
                "Tajikistan, Turkmenistan and Uzbekistan discussed the Middle Corridor, "
                "critical minerals and visa rules on Tuesday, officials said. " * 3
            )
            start = summary.index(term)
            item = conn.execute(
                insert(items)
                .values(identity=f"i{k}", feed_id=feed, title=title, summary=summary,
                        link=f"https://news.example/story/{k}", first_seen_at=T0,
                        published_at=T0 - timedelta(minutes=k))
                .returning(items.c.id)
            ).scalar_one()  # fmt: skip
            spans = [{"field": "summary", "start": start, "end": start + len(term), "text": term}]
            conn.execute(
                insert(hits).values(
                    item_id=item,
                    watchlist=watchlist,
                    matches=[{"watchlist": watchlist, "entry": "e", "terms": [term],
                              "spans": spans}],
                    created_at=T0 + timedelta(seconds=k),
                )
            )  # fmt: skip
    store.dispose()
    return settings


async def baseline(port: int, messages: list[tuple[str, bytes]]) -> float:
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=30)
    await client.connect()
    started = time.perf_counter()
    for recipient, data in messages:
        await client.sendmail(SENDER, [recipient], data)
    elapsed = time.perf_counter() - started
    await client.quit()
    return len(messages) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--hits", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-digest-"))
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        template_db = work / "seed.db"
        settings = seed(template_db, args.subscribers, args.hits, work / "watchlists")
        ours: list[float] = []
        base: list[float] = []
        sizes: list[int] = []
        for run in range(args.runs):
            db = work / f"run{run}.db"
            shutil.copy(template_db, db)
            run_settings = settings_from_mapping(
                {
                    "database": {"url": f"sqlite:///{db}"},
                    "watchlists": {"dir": str(work / "watchlists")},
                    "digest": {"max_items_per_watchlist": args.hits},
                    "smtp": {"host": "127.0.0.1", "port": port, "security": "none",
                             "sender": f"Monitor <{SENDER}>"},
                    "subscribers": [{"email": s.email, "schedule": "immediate"}
                                    for s in settings.subscribers],
                },
                {},
            )  # fmt: skip
            store = open_store(run_settings.database_url)
            started = time.perf_counter()
            summary = asyncio.run(
                send_digests(run_settings, store, now=T0 + timedelta(hours=1), force=True)
            )
            elapsed = time.perf_counter() - started
            assert summary.sent == args.subscribers, summary.line()
            ours.append(summary.sent / elapsed)
            with store.read() as conn:
                from sqlalchemy import select

                from monitor.store.schema import outbox

                rows = conn.execute(select(outbox.c.subscriber, outbox.c.message)).all()
            store.dispose()
            messages = [(r.subscriber, bytes(r.message)) for r in rows]
            sizes = [len(m) for _, m in messages]
            base.append(asyncio.run(baseline(port, messages)))
            print(
                f"run {run + 1}: send_digests {ours[-1]:7.1f} msg/s   "
                f"baseline {base[-1]:7.1f} msg/s",
                flush=True,
            )
        mo, mb = statistics.median(ours), statistics.median(base)
        print(
            f"\n{args.subscribers} subscribers x {args.hits} hits, "
            f"median message {statistics.median(sizes) / 1024:.1f} KiB, {args.runs} runs"
        )
        print(f"send_digests (render + outbox + SMTP): {mo:7.1f} msg/s (median)")
        print(f"baseline (aiosmtplib, same bytes)    : {mb:7.1f} msg/s (median)")
        print(f"ratio: {mo / mb:.0%} of the baseline (target >= 50%)")
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
