"""Benchmark: 1, 2 and 3 `monitor run` instances sharing 5,000 feeds on one PostgreSQL
database, beside one instance on SQLite.

Serves N feeds (default 5,000) from a separate process on 127.0.0.1, each small (three
items, ~1 KB) and answering after an injected latency (100-200 ms, fixed per feed). Each
scenario starts the real daemons on a fresh store (a new PostgreSQL schema, or a new
SQLite file), waits until every feed has been polled once, stops them with SIGTERM and
reports feeds polled per second, measured between the first and the last poll stored
(so process start-up is left out), the CPU the daemons used (user+sys, as a share of the
machine's cores) and how many feeds were requested more than once (should be 0).

The load is meant to be latency-bound, which is what a deployment with thousands of feeds
on slow servers sees: small feeds, high latency, modest concurrency per instance
(``--concurrency``, default 16). On a machine with few cores, more instances add
throughput only while the CPU share stays well below 100 %; the output says so.

    .venv/bin/python bench/bench_cluster.py [--feeds 5000] [--concurrency 16]
        [--latency 0.1 0.2] [--instances 1 2 3] [--pg postgresql+psycopg://...]

Prints figures; asserts nothing. Keep the whole run under ~5 minutes at the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from localserver import serve_app
from sqlalchemy import create_engine, text

MONITOR = str(Path(sys.executable).with_name("monitor"))
PG = os.environ.get("MONITOR_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def serve(port_queue: Any, hits: Any, feeds: int, low: float, high: float) -> None:
    from aiohttp import web

    def body(n: int) -> bytes:
        items = "".join(
            f"<item><title>Item {k} of feed {n}: regional trade and transport news</title>"
            f"<link>https://news.test/{n}/{k}</link><guid>https://news.test/{n}/{k}</guid>"
            f"<description>Talks on the corridor, day {k}.</description></item>"
            for k in range(3)
        )
        return (
            f'<?xml version="1.0"?><rss version="2.0"><channel><title>Feed {n}</title>'
            f"<link>https://news.test/{n}</link>{items}</channel></rss>"
        ).encode()

    bodies = [body(n) for n in range(feeds)]
    delays = [low + (high - low) * ((n * 7919) % 1000) / 999 for n in range(feeds)]

    async def handler(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        with hits.get_lock():
            hits.value += 1
        await asyncio.sleep(delays[n])
        return web.Response(body=bodies[n], content_type="application/rss+xml")

    serve_app(port_queue, "/{run}/feed/{n}.xml", handler)


def postgres_cpu() -> float | None:
    """CPU seconds (user+sys) used so far by this machine's PostgreSQL server processes;
    None when none is visible (a server elsewhere, or in another container)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    seen = False
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                name, rest = fh.read().split(") ", 1)
        except OSError:
            continue
        if name.endswith("(postgres"):
            seen = True
            fields = rest.split()
            # own time, plus that of exited children (connection backends) waited for
            total += sum(int(f) for f in fields[11:15])
    return total / tick if seen else None


def write_config(work: Path, url: str, port: int, run: str, args: argparse.Namespace) -> Path:
    lines = [
        "[database]", f'url = "{url}"',
        "[watchlists]", f'dir = "{Path(__file__).resolve().parents[1] / "watchlists"}"',
        "[polling]", "allow_private_addresses = true", 'interval = "6h"',
        'min_interval = "6h"', 'max_interval = "12h"', 'tick = "0.5s"', 'timeout = "30s"',
        f"concurrency = {args.concurrency}", f"per_host = {args.concurrency}",
        "parse_workers = 1",
        "[delivery]", f'dir = "{work / "outbox"}"',
        "[log]", 'level = "warning"',
    ]  # fmt: skip
    lines += [
        f'[[feeds]]\nurl = "http://127.0.0.1:{port}/{run}/feed/{n}.xml"' for n in range(args.feeds)
    ]
    path = work / f"{run}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def scenario(
    label: str, url: str, instances: int, port: int, hits: Any, args: argparse.Namespace
) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    run = uuid.uuid4().hex[:8]
    cfg = write_config(work, url, port, run, args)
    engine = create_engine(url)
    before_hits = hits.value
    before_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    before_pg = postgres_cpu()
    procs: list[subprocess.Popen[bytes]] = []
    logs = []
    try:
        for n in range(instances):
            log = (work / f"daemon{n}.log").open("wb")
            logs.append(log)
            procs.append(
                subprocess.Popen(
                    [MONITOR, "--config", str(cfg), "run"], cwd=work, stdout=log, stderr=log
                )
            )
        deadline = time.monotonic() + args.timeout
        polled = 0
        while time.monotonic() < deadline:
            time.sleep(0.5)
            try:
                with engine.connect() as conn:
                    polled = int(
                        conn.execute(
                            text("SELECT count(*) FROM feeds WHERE last_polled_at IS NOT NULL")
                        ).scalar_one()
                    )
            except Exception:  # the schema is still being created
                continue
            if polled >= args.feeds:
                break
            if any(p.poll() is not None for p in procs):
                break
        with engine.connect() as conn:
            first, last = conn.execute(
                text("SELECT min(last_polled_at), max(last_polled_at) FROM feeds")
            ).one()
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
        for log in logs:
            log.close()
        engine.dispose()
    after_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    after_pg = postgres_cpu()
    pg_cpu = after_pg - before_pg if after_pg is not None and before_pg is not None else None
    cpu = (after_cpu.ru_utime - before_cpu.ru_utime) + (after_cpu.ru_stime - before_cpu.ru_stime)
    first, last = (datetime.fromisoformat(v) if isinstance(v, str) else v for v in (first, last))
    span = (last - first).total_seconds() if first and last else float("nan")
    wall_total = span  # CPU is over the processes' whole life; share of the busy span
    requests = hits.value - before_hits
    shutil.rmtree(work, ignore_errors=True)
    return {
        "label": label,
        "instances": instances,
        "polled": polled,
        "span": span,
        "rate": polled / span if span and span == span else float("nan"),
        "cpu": cpu,
        "cpu_share": cpu / wall_total / (os.cpu_count() or 1) if wall_total else float("nan"),
        "pg_cpu": pg_cpu,
        "all_share": (cpu + (pg_cpu or 0.0)) / wall_total / (os.cpu_count() or 1)
        if wall_total
        else float("nan"),
        "repeats": requests - polled,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=5000)
    parser.add_argument(
        "--concurrency", type=int, default=16, help="requests in flight per instance"
    )
    parser.add_argument(
        "--latency", type=float, nargs=2, default=(0.1, 0.2), metavar=("MIN", "MAX")
    )
    parser.add_argument("--instances", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--pg", default=PG, help="PostgreSQL URL (a schema is made per run)")
    parser.add_argument("--timeout", type=float, default=150.0, help="seconds per scenario")
    args = parser.parse_args()

    ctx = multiprocessing.get_context("spawn")
    ports = ctx.Queue()
    hits = ctx.Value("l", 0)
    server = ctx.Process(target=serve, args=(ports, hits, args.feeds, *args.latency), daemon=True)
    server.start()
    port = ports.get(timeout=60)
    low, high = args.latency
    print(
        f"{args.feeds} feeds of 3 items on 127.0.0.1, {low * 1000:.0f}-{high * 1000:.0f} ms "
        f"latency, {args.concurrency} requests in flight per instance; "
        f"{os.cpu_count()} CPU cores"
    )
    ideal = args.concurrency / ((low + high) / 2)
    print(f"latency bound of one instance: ~{ideal:.0f} feeds/s\n")
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-sqlite-") as tmp:
            results.append(scenario("SQLite", f"sqlite:///{tmp}/monitor.db", 1, port, hits, args))
        admin = create_engine(args.pg)
        for n in args.instances:
            schema = f"bench_{uuid.uuid4().hex[:10]}"
            with admin.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            try:
                url = f"{args.pg}?options=-csearch_path%3D{schema}"
                results.append(scenario("PostgreSQL", url, n, port, hits, args))
            finally:
                with admin.begin() as conn:
                    conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
    finally:
        server.kill()
        server.join(10)

    base = results[0]["rate"]
    print(f"{'store':<11} {'instances':>9} {'polled':>7} {'seconds':>8} {'feeds/s':>8} "
          f"{'vs SQLite':>9} {'CPU s':>6} {'PG CPU s':>8} {'CPU share':>9} {'repeats':>7}")  # fmt: skip
    for r in results:
        pg = "n/a" if r["pg_cpu"] is None else f"{r['pg_cpu']:.0f}"
        print(
            f"{r['label']:<11} {r['instances']:>9} {r['polled']:>7} {r['span']:>8.1f} "
            f"{r['rate']:>8.0f} {r['rate'] / base:>8.2f}x {r['cpu']:>6.0f} {pg:>8} "
            f"{r['all_share']:>8.0%} {r['repeats']:>7}"
        )
    print(
        "\nfeeds/s: feeds polled between the first and the last poll stored. CPU s: the "
        "daemons' user+sys time (start-up included); PG CPU s: the PostgreSQL server's on "
        "this machine, n/a when its processes are not visible from here. CPU share: both over the span, "
        "as a share of all cores. Where more instances add little while the latency bound "
        "is far, each instance's one writer thread and the database "
        "server on the same cores are the limit; on separate machines with the database on "
        "its own, each instance brings its own cores. repeats: requests beyond one per "
        "feed (0: no feed polled twice)."
    )


if __name__ == "__main__":
    main()
