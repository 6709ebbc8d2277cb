"""The web view under load: search and story pages over a generated store.

    .venv/bin/python bench/bench_web.py [--items 1000000] [--hits 100000] [--requests 500]
                                        [--clients 16] [--backends sqlite,postgresql]
                                        [--client-nice 0] [--cache DIR] [--no-cache]

A store of N items (1,000 feeds, stories of 1-5 items, short titles and summaries drawn
from a Zipf-distributed vocabulary) and M hits over 30 days is written with bulk inserts
(SQLite: executemany; PostgreSQL: COPY) at the schema before the search migration; then
the migration runs and indexes every existing row (its time is printed). ``monitor web``
serves it in a process of its own on 127.0.0.1; 16 clients send 500 requests per kind:
``/search?q=`` (a frequent word, a rare one, two words), ``/stories/ID`` (stories with a
hit), ``/`` (the stories of the last 7 days) and, as the baseline measured in the same
run, ``/healthz`` (HTTP and one trivial query). Then poll cycles (`monitor poll --once`
over 200 new local feeds of 50 items, 50 ms latency) are timed alone and while the 16 clients
load the view, in the order alone, loaded, loaded, alone (target: the loaded ones' total
within 10 % of the alone ones'). Prints the p50 of one client alone (the
service time), then p50/p95/max and errors per kind under load,
beside the targets (search p95 <= 200 ms, pages p95 <= 100 ms, no errors); asserts nothing.
The clients beside the poll run in a process of their own; ``--client-nice 19`` lowers
its priority (they stand for browsers on other machines, whose CPU the poll would not
share).
PostgreSQL is the server on 127.0.0.1:5432 (``MONITOR_TEST_PG``).

The generated store is kept in ``--cache`` (default ``~/.cache/monitor-bench``), keyed by
the sizes and the schema head, since building it takes minutes: a SQLite file, and a
PostgreSQL database used as the template of each run's copy (``CREATE DATABASE ...
TEMPLATE``; the copy is dropped afterwards). ``--no-cache`` builds both anew (and times
the search migration again).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from monitor.store import open_store  # noqa: E402
from monitor.store.db import _alembic_config  # noqa: E402
from monitor.store.migrations import SCHEMA_HEAD  # noqa: E402

PG_URL = os.environ.get("MONITOR_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
NOW = datetime.now(UTC).replace(microsecond=0)
WATCHLISTS = ["gor", "landau", "c5plus1", "middle-corridor", "tokayev", "mirziyoyev",
              "japarov", "caspian", "critical-minerals", "jackson-vanik"]  # fmt: skip
FEEDS = 1000


def vocabulary(rng: random.Random, size: int = 20000) -> tuple[list[str], list[float]]:
    syll = ["ka", "ta", "shi", "ro", "mun", "zel", "gor", "lan", "dau", "tas", "hk", "ent",
            "ast", "ana", "bi", "sh", "kek", "tur", "kme", "nis", "tan", "ber", "dy", "mir"]  # fmt: skip
    words: dict[str, None] = {}
    while len(words) < size:
        words["".join(rng.choices(syll, k=rng.randint(2, 4)))] = None
    ranked = list(words)
    weights = [1.0 / (i + 1) for i in range(size)]  # Zipf: a few words in most items
    cum = []
    total = 0.0
    for w in weights:
        total += w
        cum.append(total)
    return ranked, cum


def generate(n_items: int, n_hits: int, seed: int = 7) -> Iterator[tuple[str, Any]]:
    """Rows in insertion order: ("feeds"|"stories"|"items"|"hits", row dict)."""
    rng = random.Random(seed)
    words, cum = vocabulary(rng)
    for f in range(1, FEEDS + 1):
        yield "feeds", {"id": f, "url": f"http://127.0.0.1:9/feed{f}.xml", "title": f"Outlet {f}",
                        "source": "config", "headers": "{}", "consecutive_failures": 0,
                        "quiet_polls": 0, "created_at": NOW - timedelta(days=60)}  # fmt: skip
    span = timedelta(days=30).total_seconds()
    item_id = 0
    story_id = 0
    hit_items = set(rng.sample(range(1, n_items + 1), n_hits))
    while item_id < n_items:
        story_id += 1
        size = min(rng.choice((1, 1, 1, 2, 2, 3, 5)), n_items - item_id)
        first = NOW - timedelta(seconds=span * (1 - (item_id + 1) / n_items))
        title = " ".join(rng.choices(words, cum_weights=cum, k=8)).capitalize()
        lead = item_id + 1
        yield "stories", {"id": story_id, "title": title, "first_seen_at": first,
                          "last_seen_at": first + timedelta(minutes=size - 1),
                          "item_count": size, "lead_item_id": lead}  # fmt: skip
        for k in range(size):
            item_id += 1
            seen = first + timedelta(minutes=k)
            summary = " ".join(rng.choices(words, cum_weights=cum, k=30))
            yield "items", {
                "id": item_id, "identity": f"bench-{item_id}", "feed_id": rng.randint(1, FEEDS),
                "guid": f"urn:bench:{item_id}", "link": f"https://news.example/{item_id}",
                "title": title if k == 0 else " ".join(rng.choices(words, cum_weights=cum, k=8)),
                "summary": summary, "content": "", "published_at": seen, "first_seen_at": seen,
                "story_id": story_id, "story_seq": item_id,
            }  # fmt: skip
            if item_id in hit_items:
                wl = rng.choice(WATCHLISTS)
                term = summary.split()[0]
                yield "hits", {
                    "item_id": item_id, "watchlist": wl, "created_at": seen,
                    "matches": json.dumps([{"watchlist": wl, "entry": "e", "terms": [term],
                                            "spans": [{"field": "summary", "start": 0,
                                                       "end": len(term), "text": term}]}]),
                }  # fmt: skip


COLUMNS = {
    "feeds": ["id", "url", "title", "source", "headers", "consecutive_failures", "quiet_polls",
              "created_at"],
    "stories": ["id", "title", "first_seen_at", "last_seen_at", "item_count", "lead_item_id"],
    "items": ["id", "identity", "feed_id", "guid", "link", "title", "summary", "content",
              "published_at", "first_seen_at", "story_id", "story_seq"],
    "hits": ["item_id", "watchlist", "created_at", "matches"],
}  # fmt: skip


def migrate_to_before_search(url: str) -> None:
    from alembic import command
    from alembic.script import ScriptDirectory

    before = ScriptDirectory.from_config(_alembic_config(None)).get_revision("0006").down_revision
    store = open_store(url)
    with store.engine.begin() as conn:
        command.upgrade(_alembic_config(conn), str(before))
    store.dispose()


def fill_sqlite(path: Path, n_items: int, n_hits: int) -> None:
    def naive(v: Any) -> Any:
        return v.replace(tzinfo=None).isoformat(sep=" ") if isinstance(v, datetime) else v

    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous = OFF")
    batches: dict[str, list[tuple[Any, ...]]] = {t: [] for t in COLUMNS}

    def flush(table: str) -> None:
        cols = COLUMNS[table]
        conn.executemany(
            f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
            batches[table],
        )
        batches[table].clear()

    for table, row in generate(n_items, n_hits):
        batches[table].append(tuple(naive(row[c]) for c in COLUMNS[table]))
        if len(batches[table]) >= 20000:
            flush(table)
    for table in COLUMNS:
        flush(table)
    conn.commit()
    conn.execute("ANALYZE")
    conn.close()


def fill_postgres(url: str, source: Path) -> None:
    """Copy the generated SQLite store's rows into PostgreSQL with COPY."""
    import psycopg

    lite = sqlite3.connect(source)
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as conn:
        with conn.cursor() as cur:
            for table, cols in COLUMNS.items():
                names = ", ".join(cols)
                with cur.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                    for row in lite.execute(f"SELECT {names} FROM {table} ORDER BY rowid"):
                        copy.write_row(row)
            for table in COLUMNS:
                # COPY gave explicit ids: move the sequences past them for later inserts.
                cur.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT max(id) FROM {table}))"
                )
        conn.commit()
    lite.close()


def pg_admin(sql: str) -> list[tuple[Any, ...]]:
    """One statement outside a transaction (CREATE/DROP DATABASE) on the server's admin db."""
    import psycopg

    with psycopg.connect(PG_URL.replace("postgresql+psycopg", "postgresql"), autocommit=True) as c:
        cur = c.execute(sql)
        return list(cur.fetchall()) if cur.description else []


def pg_url(database: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(PG_URL).set(database=database).render_as_string(hide_password=False)


def cache_key(args: argparse.Namespace) -> str:
    return f"web_{args.items}_{args.hits}_{SCHEMA_HEAD}"


def sqlite_store(args: argparse.Namespace) -> Path:
    """The generated SQLite store, migrated to the head (built once, then cached)."""
    cached = args.cache / f"{cache_key(args)}.db"
    if cached.exists() and (not args.rebuild or "sqlite" in args.rebuild_done):
        return cached
    args.cache.mkdir(parents=True, exist_ok=True)
    building = cached.with_suffix(".building")
    building.unlink(missing_ok=True)
    started = time.perf_counter()
    migrate_to_before_search(f"sqlite:///{building}")
    fill_sqlite(building, args.items, args.hits)
    print(f"generated in {time.perf_counter() - started:.0f} s", flush=True)
    started = time.perf_counter()
    store = open_store(f"sqlite:///{building}")
    store.upgrade()
    store.dispose()
    print(f"migration 0006 (search index over existing rows): "
          f"{time.perf_counter() - started:.1f} s", flush=True)  # fmt: skip
    building.rename(cached)
    args.rebuild_done.add("sqlite")
    return cached


def postgres_template(args: argparse.Namespace) -> str:
    """The generated PostgreSQL store's database, migrated to the head (built once)."""
    name = f"monitor_bench_{cache_key(args)}"
    exists = pg_admin(f"SELECT 1 FROM pg_database WHERE datname = '{name}'")
    if exists and not args.rebuild:
        return name
    pg_admin(f'DROP DATABASE IF EXISTS "{name}"')
    pg_admin(f'CREATE DATABASE "{name}"')
    source = sqlite_store(args)
    url = pg_url(name)
    started = time.perf_counter()
    migrate_to_before_search(url)
    fill_postgres(url, source)
    print(f"generated in {time.perf_counter() - started:.0f} s", flush=True)
    started = time.perf_counter()
    store = open_store(url)
    store.upgrade()
    store.dispose()
    print(f"migration 0006 (search index over existing rows): "
          f"{time.perf_counter() - started:.1f} s", flush=True)  # fmt: skip
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as c:
        c.execute("VACUUM ANALYZE")
    return name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_web(base: str, server: Any, seconds: float = 60.0) -> None:
    """Return when ``monitor web`` at ``base`` answers ``/healthz``; raise if the process
    ``server`` ends or ``seconds`` pass first."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(base + "/healthz", timeout=2).read()
            return
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("monitor web did not start") from None
            time.sleep(0.2)


def hit_stories(url: str) -> list[int]:
    engine = create_engine(url)
    with engine.connect() as conn:
        story_ids = [r[0] for r in conn.execute(text(
            "SELECT DISTINCT items.story_id FROM hits JOIN items ON items.id = hits.item_id "
            "ORDER BY 1 LIMIT 20000"))]  # fmt: skip
    engine.dispose()
    return story_ids


def pick_paths(story_ids: list[int], n: int, seed: int = 11) -> dict[str, list[str]]:
    """Requests of each kind; each seed draws other searches and story pages, so the view's
    kept pages help only where requests repeat by chance (frequent words, the front page)."""
    rng = random.Random(seed)
    words, _ = vocabulary(random.Random(7))
    queries = []
    for i in range(n):
        kind = i % 3
        if kind == 0:
            q = words[rng.randint(0, 20)]  # frequent: in a large share of items
        elif kind == 1:
            q = words[rng.randint(2000, 19999)]  # rare
        else:
            q = f"{words[rng.randint(0, 50)]} {words[rng.randint(100, 2000)]}"
        queries.append("/search?q=" + urllib.request.quote(q))
    return {
        "healthz (baseline)": ["/healthz"] * n,
        "search": queries,
        "story page": [f"/stories/{rng.choice(story_ids)}" for _ in range(n)],
        "stories (/)": ["/?since=7d"] * n,
    }


async def load(base: str, paths: list[str], clients: int) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = 0
    queue: asyncio.Queue[str] = asyncio.Queue()
    for p in paths:
        queue.put_nowait(p)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=clients), timeout=timeout
    ) as session:

        async def worker() -> None:
            nonlocal errors
            while not queue.empty():
                path = queue.get_nowait()
                started = time.perf_counter()
                try:
                    async with session.get(base + path) as resp:
                        await resp.read()
                        if resp.status != 200:
                            errors += 1
                except (aiohttp.ClientError, TimeoutError):
                    errors += 1
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(worker() for _ in range(clients)))
    return latencies, errors


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] * 1000


def poll_seconds(url: str, feed_port: int, first: int, count: int, tmp: Path) -> float:
    """Wall time of `monitor poll --once` over ``count`` new local feeds into the store."""
    feeds = "".join(
        f'[[feeds]]\nurl = "http://127.0.0.1:{feed_port}/feed/{n}.xml"\n'
        for n in range(first, first + count)
    )
    config = tmp / f"poll-{first}.toml"
    config.write_text(
        f'[database]\nurl = "{url}"\n[watchlists]\ndir = "{REPO / "watchlists"}"\n'
        "[polling]\nallow_private_addresses = true\nper_host = 100\nconcurrency = 100\n" + feeds
    )
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "monitor", "--config", str(config), "poll", "--once"],
        capture_output=True, text=True, cwd=tmp, timeout=600,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"monitor poll --once failed: {done.stderr.strip()[-500:]}")
    return time.perf_counter() - started


def hammer(base: str, paths: list[str], clients: int, nice: int, stop: Any, served: Any) -> None:
    """The load beside the poll, in a process of its own (at ``nice``: the clients stand for
    browsers elsewhere, and need not take the CPU from the poll they are measured beside)."""
    if nice:
        os.nice(nice)
    while not stop.is_set():
        lat, _ = asyncio.run(load(base, paths, clients))
        with served.get_lock():
            served.value += len(lat)


def polling_beside_load(
    url: str, base: str, paths: dict[str, list[str]], args: argparse.Namespace, tmp: Path
) -> None:
    """Poll cycles alone and while 16 clients load the view, in the order alone, loaded,
    loaded, alone: each cycle stores new items, so a later one works on a larger store and
    story window, and this order gives both kinds the same mean position (a loaded cycle
    run only after an alone one would be charged for the growth)."""
    import multiprocessing

    from bench_poll import serve

    order = ("alone", "loaded", "loaded", "alone")
    ctx = multiprocessing.get_context("spawn")
    ports: Any = ctx.Queue()
    feed_server = ctx.Process(
        target=serve, args=(ports, args.poll_feeds * len(order), 0.05, 1), daemon=True
    )
    feed_server.start()
    try:
        port = ports.get(timeout=300)
        mixed = paths["search"] + paths["story page"] + paths["stories (/)"]
        taken: list[tuple[str, float]] = []
        served = ctx.Value("q", 0)
        for n, kind in enumerate(order):
            first = n * args.poll_feeds
            if kind == "alone":
                taken.append((kind, poll_seconds(url, port, first, args.poll_feeds, tmp)))
                continue
            stop = ctx.Event()
            loader = ctx.Process(
                target=hammer,
                args=(base, mixed[:160], args.clients, args.client_nice, stop, served),
            )
            loader.start()
            try:
                taken.append((kind, poll_seconds(url, port, first, args.poll_feeds, tmp)))
            finally:
                stop.set()
                loader.join()
        alone = sum(t for kind, t in taken if kind == "alone")
        loaded = sum(t for kind, t in taken if kind == "loaded")
        each = ", ".join(f"{kind} {t:.1f}" for kind, t in taken)
        clients = f", clients at nice {args.client_nice}" if args.client_nice else ""
        print(f"poll cycles, {args.poll_feeds} new feeds x 50 items each: {each} s "
              f"({served.value} requests served meanwhile{clients}): loaded/alone "
              f"x{loaded / alone:.2f} (target: within x1.10)", flush=True)  # fmt: skip
    finally:
        feed_server.terminate()


def run_backend(name: str, url: str, args: argparse.Namespace, tmp: Path) -> None:
    print(f"\n== {name}: {args.items:,} items, {args.hits:,} hits ==", flush=True)
    port = free_port()
    config = tmp / f"{name}.toml"
    config.write_text(f'[database]\nurl = "{url}"\n[watchlists]\ndir = "{REPO / "watchlists"}"\n')
    server = subprocess.Popen(
        [sys.executable, "-m", "monitor", "--config", str(config), "web",
         "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_web(base, server)
        story_ids = hit_stories(url)
        warm = pick_paths(story_ids, 50, seed=1)
        asyncio.run(load(base, warm["search"] + warm["story page"], args.clients))
        print(f"{'kind':<20}{'1 client p50':>13}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}"
              f"{'errors':>8}  target")  # fmt: skip
        single = pick_paths(story_ids, 50, seed=2)
        runs = [pick_paths(story_ids, args.requests, seed=11 + r) for r in range(args.runs)]
        for kind in single:
            alone, _ = asyncio.run(load(base, single[kind], 1))
            p50s, p95s, maxes, errs = [], [], [], 0
            for paths in runs:
                lat, e = asyncio.run(load(base, paths[kind], args.clients))
                p50s.append(pct(lat, 50))
                p95s.append(pct(lat, 95))
                maxes.append(max(lat) * 1000)
                errs += e
            target = {"search": 200.0, "story page": 100.0, "stories (/)": 100.0}.get(kind)
            p95 = statistics.median(p95s)
            verdict = "" if target is None else (
                f"p95 <= {target:.0f}: {'met' if p95 <= target and not errs else 'MISSED'}")
            print(f"{kind:<20}{pct(alone, 50):>13.1f}{statistics.median(p50s):>9.1f}{p95:>9.1f}"
                  f"{statistics.median(maxes):>9.1f}{errs:>8}  {verdict}", flush=True)  # fmt: skip
        if args.poll_feeds:
            polling_beside_load(url, base, runs[0], args, tmp)
    finally:
        server.terminate()
        server.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--hits", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3, help="repeats; medians are printed")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--poll-feeds", type=int, default=200,
                        help="feeds of the poll cycle timed alone and beside the load; 0: skip")  # fmt: skip
    parser.add_argument("--client-nice", type=int, default=0,
                        help="scheduling priority lowered for the clients beside the poll")  # fmt: skip
    cache = Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache") / "monitor-bench"
    parser.add_argument("--cache", type=Path, default=cache,
                        help="where the generated stores are kept (default: %(default)s)")  # fmt: skip
    parser.add_argument("--no-cache", dest="rebuild", action="store_true",
                        help="build the generated stores anew")  # fmt: skip
    args = parser.parse_args()
    print(f"{args.requests} requests per kind, {args.clients} clients, "
          f"median of {args.runs} runs; {os.cpu_count()} CPUs shared with whatever else runs")  # fmt: skip
    args.cache = args.cache.expanduser()
    args.rebuild_done = set()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for backend in args.backends.split(","):
            if backend == "sqlite":
                copy = tmp / "bench.db"
                shutil.copy(sqlite_store(args), copy)
                run_backend("sqlite", f"sqlite:///{copy}", args, tmp)
            else:
                template = postgres_template(args)
                run = f"monitor_bench_run_{uuid.uuid4().hex[:10]}"
                pg_admin(f'CREATE DATABASE "{run}" TEMPLATE "{template}" STRATEGY FILE_COPY')
                try:
                    run_backend("postgresql", pg_url(run), args, tmp)
                finally:
                    pg_admin(f'DROP DATABASE IF EXISTS "{run}" WITH (FORCE)')

if __name__ == "__main__":
    main()
