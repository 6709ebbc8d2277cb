"""Benchmark: `monitor poll --once` over many feeds served on 127.0.0.1.

Serves N feeds (default 2,000) of 50 items (~100 KB each, HTML descriptions) from a
separate process with a fixed latency per response (default 50 ms), then runs the real
`monitor poll --once` twice against a fresh SQLite file: the first poll, and a re-poll
(`--all`) in which every feed answers 304. Beside them, in the same run, it measures the
baseline: plain ``feedparser.parse`` with its defaults over the same bytes, one after
another, in this process.

By default all feeds are served from one host, so the run sets ``per_host`` as high as
``concurrency`` (100): as many requests in flight as a deployment polling 2,000 feeds on
many hosts would have. With ``--hosts N`` the feeds are spread over N loopback addresses
(127.0.0.1 ... 127.0.0.N) and the polling settings are the defaults: ``--feeds 300
--hosts 8`` is a small deployment, where the fixed costs of a run (start-up, workers,
config sync) weigh most.

Then a third poll (`--all`) in which every feed has moved on by ``--later`` items (default 2:
its oldest gone, new ones in), as between two polls of a live news feed: the daemon's usual
cycle, which reads every entry of a changed feed up to its identity but detects, matches,
stores (and groups into stories) only the new items.

Prints wall time, CPU time (user+sys of monitor and its parse workers), peak RSS (sum over
the process tree, sampled), and ratios against the baseline. Asserts nothing.

With ``--split`` it also measures, in this process and on the same bodies, the per-item
stages of a poll one after another (CPU time, medians over ``--runs``): parse, language,
match (in the parse workers during a poll), store (items, hits and a story row each, in
the writer thread) and stories (deciding which story an item joins: the same store
with the story window, less the store alone). Each is printed per item and against the
baseline, so the reader sees where the CPU goes; the same for the next poll (its parse
given the identities the first one stored, as a poll is), with the share of the stories
stage in each.

    .venv/bin/python bench/bench_poll.py [--feeds 2000] [--hosts 1] [--latency 0.05] [--runs 1]
    .venv/bin/python bench/bench_poll.py --feeds 300 --hosts 8 --runs 3 [--later 2] [--split]
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import multiprocessing
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from feedgen import SPICE_RATE, rss_feed
from localserver import serve_app

MONITOR = str(Path(sys.executable).with_name("monitor"))


def serve(
    port_queue: multiprocessing.Queue,  # type: ignore[type-arg]
    feeds: int,
    latency: float,
    hosts: int,
    later: Any = None,
) -> None:
    """Serve ``feeds`` bench feeds; with ``later`` (a shared integer), each feed as it is
    ``later.value`` items on (see ``feedgen.rss_feed``), under its own ETag."""
    from aiohttp import web

    bodies: dict[tuple[int, int], bytes] = {}

    async def handler(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        k = later.value if later is not None else 0
        await asyncio.sleep(latency)
        etag = f'"bench-{n}-{k}"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        body = bodies.get((n, k))
        if body is None:
            body = bodies[n, k] = rss_feed(n, later=k)
        return web.Response(body=body, content_type="application/rss+xml", headers={"ETag": etag})

    for n in range(feeds):
        bodies[n, 0] = rss_feed(n)
    serve_app(port_queue, "/feed/{n}.xml", handler, hosts)


def _tree(root: int) -> list[int]:
    """``root`` and its descendants (pids)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, []))
    return found


def tree_rss_kib(root: int, cpu: dict[int, float] | None = None) -> int:
    """Resident memory of ``root`` and its descendants, in KiB. With ``cpu``, also
    records each one's CPU seconds so far (user+sys) in it, by pid."""
    total = 0
    for pid in _tree(root):
        try:
            with open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            if cpu is not None:
                with open(f"/proc/{pid}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
                cpu[pid] = (int(fields[11]) + int(fields[12])) / _TICKS
        except (OSError, IndexError, ValueError):
            pass
    return total


_TICKS = os.sysconf("SC_CLK_TCK")


def run_sampled(
    argv: list[str], every: float = 0.1, cpu: dict[int, float] | None = None
) -> tuple[str, float, int]:
    """Run ``argv`` to its end, sampling the resident memory of its process tree every
    ``every`` seconds: its stdout, wall time and peak RSS (KiB). Exits on a failure.
    With ``cpu``, each process's CPU seconds as last sampled are put there, by pid (the
    command's own first)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss_kib(proc.pid, cpu))
            done.wait(every)

    sampler = threading.Thread(target=sample)
    sampler.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"monitor failed ({proc.returncode}):\n{out}\n{err}")
    return out, wall, peak


def run_monitor(config: Path, *args: str) -> dict[str, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    sampled: dict[int, float] = {}
    argv = [MONITOR, "--config", str(config), "poll", "--once", *args]
    out, wall, peak = run_sampled(argv, cpu=sampled)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    # The parse workers' CPU as last sampled (up to one sampling period short each);
    # the rest is the main process (fetching, storing, stories).
    workers = sum(list(sampled.values())[1:])
    return {
        "wall": wall,
        "cpu": cpu,
        "workers_cpu": workers,
        "main_cpu": cpu - workers,
        "rss_mb": peak / 1024,
        "summary": out.splitlines()[0],  # type: ignore[dict-item]
    }


def baseline_cpu(feeds: int) -> float:
    import feedparser

    bodies = [rss_feed(n) for n in range(feeds)]
    start = time.process_time()
    for body in bodies:
        feedparser.parse(body)
    return time.process_time() - start


def stage_split(feeds: int, watchlists: Path, later: int) -> list[dict[str, float]]:
    """CPU seconds of each per-item stage of a poll over ``feeds`` bench feeds, measured
    one stage after another in this process (see the module docstring): for the first
    poll, and for the next one, in which each feed is ``later`` items on."""
    from monitor.config import settings_from_mapping
    from monitor.match import compile_watchlists
    from monitor.models import FetchResult, Outcome
    from monitor.parse import parse
    from monitor.pipeline.parsing import with_language
    from monitor.pipeline.poll import story_index
    from monitor.store import feeds as feed_store
    from monitor.store.db import open_store, utcnow
    from monitor.watchlists import load_watchlists

    settings = settings_from_mapping({}, {})
    headers = {"content-type": "application/rss+xml"}
    urls = [f"http://127.0.0.1/feed/{n}.xml" for n in range(feeds)]
    matcher = compile_watchlists(load_watchlists(watchlists))
    cycles: list[dict[str, float]] = []
    polls: list[tuple[list[Any], list[dict[str, Any]]]] = []
    # What the first poll stored, by feed: the next poll's worker is given it (as a poll
    # is, see store.feeds.recent_identities) and leaves those items out.
    known: list[frozenset[str]] = [frozenset()] * feeds
    for k in (0, later):
        bodies = [rss_feed(n, later=k) for n in range(feeds)]
        cpu: dict[str, float] = {}
        start = time.process_time()
        parsed = [
            parse(body, headers, url=url, max_items=settings["polling.max_items"], known=seen)
            for body, url, seen in zip(bodies, urls, known, strict=True)
        ]
        parsed = [
            replace(p, items=[item for item in p.items if item.identity not in seen])
            for p, seen in zip(parsed, known, strict=True)
        ]
        cpu["parse"] = time.process_time() - start
        cpu["items"] = float(sum(len(p.items) for p in parsed)) if k == 0 else cycles[0]["items"]
        known = [frozenset(item.identity for item in p.items) for p in parsed]
        start = time.process_time()
        parsed = [replace(p, items=[with_language(item) for item in p.items]) for p in parsed]
        cpu["language"] = time.process_time() - start
        start = time.process_time()
        found = [{item.identity: matcher.match(item) for item in p.items} for p in parsed]
        cpu["match"] = time.process_time() - start
        polls.append((parsed, found))
        cycles.append(cpu)

    def store(stories: bool) -> list[float]:
        """CPU seconds of storing each poll, the one after the other, into one store."""
        spent = []
        with tempfile.TemporaryDirectory(prefix="monitor-bench-") as work:
            db = open_store(f"sqlite:///{work}/split.db", upgrade=True)
            feed_store.sync_config_feeds(db, [feed_store.FeedSpec(url=url) for url in urls])
            index = story_index(settings) if stories else None
            for parsed, found in polls:
                records = {r.url: r for r in feed_store.list_feeds(db)}
                now = utcnow()
                writes = [
                    feed_store.PollWrite(
                        records[url],
                        FetchResult(outcome=Outcome.OK, url=url, final_url=url, status=200),
                        p,
                        now,
                        None,
                        lambda item, f=f: f.get(item.identity, []),  # type: ignore[misc]
                        now,
                        stories=index,
                    )
                    for url, p, f in zip(urls, parsed, found, strict=True)
                ]
                begin = time.process_time()
                for i in range(0, len(writes), 10):
                    feed_store.save_polls(db, writes[i : i + 10])
                spent.append(time.process_time() - begin)
            db.engine.dispose()
        return spent

    alone, with_stories = store(stories=False), store(stories=True)
    for cpu, plain, full in zip(cycles, alone, with_stories, strict=True):
        cpu["store"] = plain
        cpu["stories"] = max(0.0, full - plain)
    cycles[1]["new"] = float(feeds * min(later, settings["polling.max_items"]))
    return cycles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--feeds", type=int, default=2000)
    parser.add_argument("--hosts", type=int, default=1, help="spread feeds over N addresses")
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--runs", type=int, default=1, help="repeat and take medians")
    parser.add_argument("--later", type=int, default=2,
                        help="new items in each feed at the next poll")  # fmt: skip
    parser.add_argument("--split", action="store_true", help="also measure each stage alone")
    opts = parser.parse_args()

    ctx = multiprocessing.get_context("spawn")
    ports: multiprocessing.Queue = ctx.Queue()  # type: ignore[type-arg]
    later = ctx.Value("i", 0)
    server = ctx.Process(target=serve, args=(ports, opts.feeds, opts.latency, opts.hosts, later),
                         daemon=True)  # fmt: skip
    server.start()
    port = ports.get(timeout=300)
    print(
        f"serving {opts.feeds} feeds on {opts.hosts} host(s) 127.0.0.1-{opts.hosts}:{port}, "
        f"{opts.latency * 1000:.0f} ms latency"
    )
    size = len(rss_feed(0))
    print(
        f"feed size ~{size / 1000:.0f} KB, 50 items each, {SPICE_RATE:.0%} of items name a watched subject or a look-alike"
    )

    # The project's modules compiled to bytecode first, as `pip install` leaves them: with
    # PYTHONDONTWRITEBYTECODE set (as on some machines) an editable install would compile
    # every module from source in each `monitor` run (~0.07 s of each re-poll here).
    compileall.compile_dir(str(Path(__file__).resolve().parents[1] / "monitor"), quiet=1)
    base = statistics.median(baseline_cpu(opts.feeds) for _ in range(opts.runs))
    print(f"baseline: feedparser.parse (defaults), sequential: {base:.1f} s CPU")

    firsts, repolls, nexts = [], [], []
    try:
        for _ in range(opts.runs):
            work = Path(tempfile.mkdtemp(prefix="monitor-bench-"))
            (work / "watchlists").symlink_to(Path(__file__).resolve().parents[1] / "watchlists")
            feeds = "".join(
                f'[[feeds]]\nurl = "http://127.0.0.{1 + n % opts.hosts}:{port}/feed/{n}.xml"\n'
                for n in range(opts.feeds)
            )
            config = work / "bench.toml"
            config.write_text(
                f'[database]\nurl = "sqlite:///{work}/bench.db"\n'
                f'[watchlists]\ndir = "{work}/watchlists"\n'
                "[polling]\nallow_private_addresses = true\n"
                + ("per_host = 100\nconcurrency = 100\n" if opts.hosts == 1 else "")
                + feeds
            )
            later.value = 0
            firsts.append(run_monitor(config))
            repolls.append(run_monitor(config, "--all"))
            later.value = opts.later
            nexts.append(run_monitor(config, "--all"))
            shutil.rmtree(work)
    finally:
        server.terminate()
        server.join(10)

    def med(rows: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    fw, fc, fr = med(firsts, "wall"), med(firsts, "cpu"), max(r["rss_mb"] for r in firsts)
    rw, rc, rr = med(repolls, "wall"), med(repolls, "cpu"), max(r["rss_mb"] for r in repolls)
    nw, nc = med(nexts, "wall"), med(nexts, "cpu")
    print(f"first poll: {firsts[-1]['summary']}")
    print(f"  wall {fw:.1f} s, CPU {fc:.1f} s, peak RSS {fr:.0f} MB")
    fm, fk = med(firsts, "main_cpu"), med(firsts, "workers_cpu")
    print(f"  CPU: main process {fm:.1f} s ({fm / base:.2f}x baseline), ", end="")
    print(f"parse workers {fk:.1f} s ({fk / base:.2f}x baseline)")
    print(f"re-poll (all 304): {repolls[-1]['summary']}")
    print(f"  wall {rw:.2f} s, CPU {rc:.2f} s, peak RSS {rr:.0f} MB")
    print(f"next poll (each feed {opts.later} items on): {nexts[-1]['summary']}")
    print(f"  wall {nw:.1f} s, CPU {nc:.1f} s ({nc / base:.2f}x baseline)")
    nm, nk = med(nexts, "main_cpu"), med(nexts, "workers_cpu")
    print(f"  CPU: main process {nm:.1f} s ({nm / base:.2f}x baseline), ", end="")
    print(f"parse workers {nk:.1f} s ({nk / base:.2f}x baseline)")
    print("ratios (target):")
    print(f"  first-poll CPU / baseline CPU   {fc / base:.2f}  (<= 0.80)")
    print(f"  first-poll wall / baseline      {fw / base:.2f}  (<= 0.60)")
    print(f"  re-poll wall / first-poll wall  {rw / fw:.3f} (< 0.05)")
    print(f"  peak RSS                        {max(fr, rr):.0f} MB (< 400)")
    if opts.split:
        watchlists = Path(__file__).resolve().parents[1] / "watchlists"
        splits = [stage_split(opts.feeds, watchlists, opts.later) for _ in range(opts.runs)]
        for n_cycle, title in enumerate(("first poll", f"next poll, each feed {opts.later} items on")):
            cycle = [split[n_cycle] for split in splits]
            n, new = cycle[0]["items"], cycle[0].get("new", cycle[0]["items"])
            print(f"per-item stages of the {title}, one after another in this process "
                  f"({n:.0f} items parsed, {new:.0f} new):")  # fmt: skip
            total = 0.0
            stages = [k for k in cycle[0] if k not in ("items", "new")]
            for stage in stages:
                cpu = statistics.median(c[stage] for c in cycle)
                total += cpu
                each, unit = (n, "item") if stage == "parse" else (new, "new item")
                print(f"  {stage:10s} {cpu:6.2f} s CPU  {cpu / each * 1e6:6.0f} us/{unit:8s}  "
                      f"{cpu / base:.2f}x baseline")  # fmt: skip
            stories = statistics.median(c["stories"] for c in cycle)
            print(f"  {'together':10s} {total:6.2f} s CPU  {total / base:.2f}x baseline; "
                  f"stories {stories / total:.0%} of it")  # fmt: skip
        print(f"  (baseline: {base / n * 1e6:.0f} us/item; first poll: {fc / n * 1e6:.0f} us/item)")


if __name__ == "__main__":
    main()
