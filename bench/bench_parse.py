"""Benchmark: parse() CPU against plain feedparser over bench/feedgen.py feeds.

For N feeds (default 200) of 50 items (~100 KB each, HTML descriptions) it measures, in
this process and interleaved round by round, the CPU time (time.process_time) of:

- baseline: ``feedparser.parse(body)`` with its defaults,
- ``monitor.parse.parse_with_feedparser`` (the feedparser path, no fast path),
- ``monitor.parse.parse`` (fast path where it applies),
- ``monitor.parse_fast.read`` alone (reading without normalisation),

and prints medians and ratios to the baseline, plus the share of feeds the fast path took.
Asserts nothing.

    .venv/bin/python bench/bench_parse.py [--feeds 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import feedparser

sys.path.insert(0, str(Path(__file__).resolve().parent))
from feedgen import rss_feed

from monitor import parse_fast
from monitor.parse import _QUIRKS, parse, parse_with_feedparser

HEADERS = {"content-type": "application/rss+xml"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--feeds", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    opts = parser.parse_args()

    bodies = [rss_feed(n) for n in range(opts.feeds)]
    urls = [f"http://127.0.0.1/feed/{n}.xml" for n in range(opts.feeds)]
    runs: dict[str, Callable[[], object]] = {
        "feedparser.parse (defaults)": lambda: [feedparser.parse(b) for b in bodies],
        "parse_with_feedparser": lambda: [
            parse_with_feedparser(b, HEADERS, url=u) for b, u in zip(bodies, urls, strict=True)
        ],
        "parse": lambda: [parse(b, HEADERS, url=u) for b, u in zip(bodies, urls, strict=True)],
        "parse_fast.read alone": lambda: [parse_fast.read(b, "", _QUIRKS) for b in bodies],
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(opts.rounds):
        for name, run in runs.items():
            start = time.process_time()
            run()
            times[name].append(time.process_time() - start)

    taken = sum(parse_fast.read(b, "", _QUIRKS) is not None for b in bodies)
    base = statistics.median(times["feedparser.parse (defaults)"])
    print(f"{opts.feeds} feeds, ~{len(bodies[0]) / 1000:.0f} KB and 50 items each, ", end="")
    print(f"median of {opts.rounds} interleaved rounds (CPU seconds)")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:30s} {median:7.3f} s   {median / base:5.3f}x baseline")
    print(f"fast path taken: {taken}/{len(bodies)} feeds")


if __name__ == "__main__":
    main()
