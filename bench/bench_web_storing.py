"""The CPU the web view's PostgreSQL backends take while a poll stores items.

    .venv/bin/python bench/bench_web_storing.py [--seconds 45] [--clients 16]

Uses bench_web's generated store (run bench_web.py once first: it builds the template
database). A copy of it is served by ``monitor web``; one item is stored every second
(the store's generation moves, as during a poll) while 16 clients ask distinct searches.
Prints the requests served and the CPU seconds the view's backends used (from /proc:
the server must run on this machine), per second of wall time: the share of the server
the view takes from the poll. CPU seconds, not wall times: the figure holds on a busy
machine better than bench_web's poll cycle does.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import aiohttp
import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from bench_web import (  # noqa: E402
    cache_key,
    free_port,
    pg_admin,
    pg_url,
    pick_paths,
    wait_for_web,
)


def cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime + stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=45.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--hits", type=int, default=100_000)
    args = parser.parse_args()
    template = f"monitor_bench_{cache_key(args)}"
    if not pg_admin(f"SELECT 1 FROM pg_database WHERE datname = '{template}'"):
        sys.exit(f"no {template}: run bench/bench_web.py --backends postgresql first")
    name = f"monitor_bench_run_{uuid.uuid4().hex[:10]}"
    pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY FILE_COPY')
    url = pg_url(name)
    raw = url.replace("postgresql+psycopg", "postgresql")
    tmp = Path(f"/tmp/{name}")
    tmp.mkdir()
    config = tmp / "web.toml"
    config.write_text(f'[database]\nurl = "{url}"\n[watchlists]\ndir = "{REPO / "watchlists"}"\n')
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "monitor", "--config", str(config), "web", "--listen",
         f"127.0.0.1:{port}"],
        cwd=tmp, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    stop = threading.Event()

    def store_items() -> None:  # one item a second: the generation moves
        with psycopg.connect(raw, autocommit=True) as conn:
            n = 0
            while not stop.is_set():
                n += 1
                conn.execute(
                    "INSERT INTO items (identity, guid, link, title, summary, content, "
                    "first_seen_at) VALUES (%s, %s, 'https://x.example/', 'probe', 'probe', "
                    "'', now())",
                    (f"storing-{n}-{uuid.uuid4().hex}", f"storing-{n}"),
                )
                stop.wait(1.0)

    def view_backends() -> list[int]:
        with psycopg.connect(raw, autocommit=True) as conn:
            return [
                r[0]
                for r in conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid() AND query NOT LIKE 'INSERT INTO items%%'"
                )
            ]

    try:
        wait_for_web(base, server)
        threading.Thread(target=store_items, daemon=True).start()
        time.sleep(2)
        paths = list(dict.fromkeys(pick_paths([1], 3000, seed=99)["search"]))
        first: dict[int, int] = {}
        last: dict[int, int] = {}
        sampling = threading.Event()

        def sample() -> None:  # backends the pool opens meanwhile count too
            while not sampling.is_set():
                for pid in view_backends():
                    first.setdefault(pid, cpu_ticks(pid))
                for pid in first:
                    last[pid] = cpu_ticks(pid) or last.get(pid, first[pid])
                sampling.wait(0.5)

        for pid in view_backends():
            first[pid] = cpu_ticks(pid)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()

        async def load() -> int:
            served = 0
            end = time.monotonic() + args.seconds
            async with aiohttp.ClientSession() as session:

                async def client(i: int) -> None:
                    nonlocal served
                    while time.monotonic() < end:
                        async with session.get(base + paths[i % len(paths)]) as resp:
                            await resp.read()
                        served += 1
                        i += args.clients

                await asyncio.gather(*(client(i) for i in range(args.clients)))
            return served

        started = time.perf_counter()
        served = asyncio.run(load())
        wall = time.perf_counter() - started
        sampling.set()
        sampler.join()
        used = sum(last.get(p, t) - t for p, t in first.items()) / os.sysconf("SC_CLK_TCK")
        print(f"{wall:.0f} s while the store is written, {args.clients} clients: {served} "
              f"searches served; the view's backends used {used:.1f} CPU-s = {used / wall:.2f} "
              f"cores (load {os.getloadavg()[0]:.1f})")  # fmt: skip
    finally:
        stop.set()
        server.terminate()
        server.wait(10)
        pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
