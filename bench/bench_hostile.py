"""Benchmark: `monitor poll --once` on hostile feeds, each beside a plain feed of its size.

Each case is one feed served on 127.0.0.1 (gzip-encoded, as a hostile server would send
it to pass ``polling.max_body``), polled by the real `monitor poll --once` against a fresh
SQLite file. Beside each hostile feed, in the same run, a plain RSS feed of about the
same size in bytes is polled the same way: the baseline.

Cases:

- ``entities``: ~100 KB declaring one 50,000-character internal entity and referencing it
  2,000 times in a title (100 million characters if expanded);
- ``items``: 100,000 items, one with a 5 MB description (~28 MB decoded); the plain feed
  beside it has 1,000 items of the same total size;
- ``items-feedparser``: the same with a DOCTYPE, which the fast reader refuses, so that
  feedparser reads it;
- ``big-field``: one item whose description is 30 MB of text.

Prints, per case, wall time (median of ``--runs``) and peak RSS (the whole process tree,
sampled every 50 ms: monitor and its parse workers; the maximum over runs), and the
hostile/plain ratios. Asserts nothing.

    .venv/bin/python bench/bench_hostile.py [--runs 3]
"""

from __future__ import annotations

import argparse
import gzip
import multiprocessing
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_poll import run_sampled
from feedgen import rss_feed
from localserver import serve_app

MONITOR = str(Path(sys.executable).with_name("monitor"))


def entities_feed() -> bytes:
    value = "A" * 50_000
    refs = "&big;" * 2_000
    return (
        '<?xml version="1.0"?>\n<!DOCTYPE rss [\n'
        f'<!ENTITY big "{value}">\n]>\n'
        '<rss version="2.0"><channel><title>Entities</title>'
        f"<item><title>{refs}</title><link>https://e.example/1</link></item>"
        "</channel></rss>"
    ).encode()


def many_items_feed(items: int = 100_000, description: int = 5_000_000) -> bytes:
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel>'
        "<title>Many items</title><link>https://m.example/</link>"
    ]
    big = "Sergio Gor visited Astana. " * (description // 27)
    for i in range(items):
        day = 1 + i % 28
        text = big if i == items // 2 else f"Item {i} about the Middle Corridor and trade."
        parts.append(
            f"<item><title>Item {i}</title><link>https://m.example/{i}</link>"
            f"<guid>https://m.example/{i}</guid>"
            f"<pubDate>Sun, {day:02d} Nov 2026 {i % 24:02d}:00:00 GMT</pubDate>"
            f"<description>{text}</description></item>"
        )
    parts.append("</channel></rss>")
    return "".join(parts).encode()


def big_field_feed(size: int = 30_000_000) -> bytes:
    text = "Sergio Gor visited Astana. " * (size // 27)
    return (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>Big</title>'
        f"<item><title>Big</title><link>https://b.example/1</link>"
        f"<description>{text}</description></item></channel></rss>"
    ).encode()


def plain_feed(size: int) -> bytes:
    """An ordinary RSS feed (feedgen's news-like items) of about ``size`` bytes."""
    items = max(10, min(1_000, size // 2_000))
    return rss_feed(1, items=items, target_bytes=size)


def serve(port_queue: multiprocessing.Queue, bodies: dict[str, bytes]) -> None:  # type: ignore[type-arg]
    from aiohttp import web

    packed = {name: gzip.compress(body, 6) for name, body in bodies.items()}

    async def handler(request: web.Request) -> web.Response:
        body = packed[request.match_info["name"]]
        return web.Response(
            body=body,
            headers={"Content-Type": "application/rss+xml", "Content-Encoding": "gzip"},
        )

    serve_app(port_queue, "/{name}.xml", handler)


def poll_once(url: str) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="monitor-bench-hostile-"))
    try:
        (work / "watchlists").symlink_to(Path(__file__).resolve().parents[1] / "watchlists")
        config = work / "bench.toml"
        config.write_text(
            f'[database]\nurl = "sqlite:///{work}/bench.db"\n'
            f'[watchlists]\ndir = "{work}/watchlists"\n'
            "[polling]\nallow_private_addresses = true\n"
            f'[[feeds]]\nurl = "{url}"\n'
        )
        out, wall, peak = run_sampled([MONITOR, "--config", str(config), "poll", "--once"], 0.05)
        lines = out.splitlines()
        return {
            "wall": wall,
            "rss": peak / 1024,
            "summary": lines[0] if lines else "",
            "warning": next((w for w in lines if w.startswith("warning:")), ""),
        }
    finally:
        shutil.rmtree(work)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="repeat; medians of wall time")
    opts = parser.parse_args()

    items = many_items_feed()
    hostile = {
        "entities": entities_feed(),
        "items": items,
        "items-feedparser": items.replace(b"<rss ", b"<!DOCTYPE rss>\n<rss ", 1),
        "big-field": big_field_feed(),
    }
    bodies = dict(hostile)
    for name, body in hostile.items():
        bodies[f"plain-{name}"] = plain_feed(len(body))

    ctx = multiprocessing.get_context("spawn")
    ports: multiprocessing.Queue = ctx.Queue()  # type: ignore[type-arg]
    server = ctx.Process(target=serve, args=(ports, bodies), daemon=True)
    server.start()
    port = ports.get(timeout=120)
    try:
        for name in hostile:
            results: dict[str, list[dict[str, object]]] = {}
            for kind in (f"plain-{name}", name):
                url = f"http://127.0.0.1:{port}/{kind}.xml"
                results[kind] = [poll_once(url) for _ in range(opts.runs)]
            plain, bad = results[f"plain-{name}"], results[name]
            pw = statistics.median(float(r["wall"]) for r in plain)  # type: ignore[arg-type]
            bw = statistics.median(float(r["wall"]) for r in bad)  # type: ignore[arg-type]
            pr = max(float(r["rss"]) for r in plain)  # type: ignore[arg-type]
            br = max(float(r["rss"]) for r in bad)  # type: ignore[arg-type]
            print(f"{name}: {len(hostile[name]) / 1e6:.2f} MB decoded; plain feed "
                  f"{len(bodies[f'plain-{name}']) / 1e6:.2f} MB")  # fmt: skip
            print(f"  plain   wall {pw:6.2f} s  peak RSS {pr:6.0f} MiB  {plain[-1]['summary']}")
            print(f"  hostile wall {bw:6.2f} s  peak RSS {br:6.0f} MiB  {bad[-1]['summary']}")
            if bad[-1]["warning"]:
                print(f"    {str(bad[-1]['warning'])[:160]}")
            print(f"  ratios hostile/plain: wall {bw / pw:.2f}, peak RSS {br / pr:.2f}"
                  f"  (peak RSS target < 400 MiB)")  # fmt: skip
    finally:
        server.terminate()
        server.join(10)


if __name__ == "__main__":
    main()
