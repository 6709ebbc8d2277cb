"""Benchmark: the HTTP client for the fetch stage, aiohttp against httpx.

Serves N small feeds on 127.0.0.1 with a fixed latency from a separate process, then
fetches all of them with each client at the same concurrency, three rounds each,
interleaved, and prints the median wall and CPU time per client. Asserts nothing.
httpx is not a dependency of monitor: install it to run this (`pip install httpx`).

    .venv/bin/python bench/bench_clients.py [--feeds 2000] [--concurrency 100] [--latency 0.05]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from localserver import serve_app

BODY = (
    b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
    + b"<item><title>x</title></item>" * 50
    + b"</channel></rss>"
)


def serve(port_queue: multiprocessing.Queue, latency: float) -> None:  # type: ignore[type-arg]
    from aiohttp import web

    async def handler(request: web.Request) -> web.Response:
        await asyncio.sleep(latency)
        return web.Response(body=BODY, content_type="application/rss+xml")

    serve_app(port_queue, "/feed/{n}.xml", handler)


async def with_aiohttp(urls: list[str], concurrency: int) -> int:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def get(url: str) -> int:
            async with session.get(url) as response:
                return len(await response.read())

        return sum(await asyncio.gather(*(get(u) for u in urls)))


async def with_httpx(urls: list[str], concurrency: int) -> int:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    timeout = httpx.Timeout(60.0, pool=None)  # waiting for a pooled connection: unbounded
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:

        async def get(url: str) -> int:
            return len((await client.get(url)).content)

        return sum(await asyncio.gather(*(get(u) for u in urls)))


def measure(
    fn: Callable[[list[str], int], Awaitable[int]], urls: list[str], concurrency: int
) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    total = asyncio.run(fn(urls, concurrency))  # type: ignore[arg-type]
    assert total == len(BODY) * len(urls)
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--feeds", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--rounds", type=int, default=3)
    opts = parser.parse_args()
    clients: dict[str, Callable[[list[str], int], Awaitable[int]]] = {"aiohttp": with_aiohttp}
    try:
        import httpx  # noqa: F401

        clients["httpx"] = with_httpx
    except ImportError:
        print("httpx is not installed: measuring aiohttp only (pip install httpx)")
    ctx = multiprocessing.get_context("spawn")
    ports: multiprocessing.Queue = ctx.Queue()  # type: ignore[type-arg]
    server = ctx.Process(target=serve, args=(ports, opts.latency), daemon=True)
    server.start()
    try:
        port = ports.get(timeout=60)
        urls = [f"http://127.0.0.1:{port}/feed/{n}.xml" for n in range(opts.feeds)]
        floor = opts.feeds / opts.concurrency * opts.latency
        print(
            f"{opts.feeds} requests, {opts.concurrency} in flight, {opts.latency * 1000:.0f} ms latency "
            f"(latency floor {floor:.1f} s)"
        )
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in clients}
        for _ in range(opts.rounds):
            for name, fn in clients.items():
                results[name].append(measure(fn, urls, opts.concurrency))
        for name, rows in results.items():
            wall = statistics.median(r[0] for r in rows)
            cpu = statistics.median(r[1] for r in rows)
            print(f"{name:8} wall {wall:6.2f} s  CPU {cpu:6.2f} s  {opts.feeds / wall:7.0f} req/s")
    finally:
        server.terminate()
        server.join(10)


if __name__ == "__main__":
    main()
