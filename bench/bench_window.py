"""Benchmark: the story window kept beside a SQLite database (``pipeline.window_file``).

Stores the first poll of N bench feeds (``feedgen.rss_feed``: 50 items of ~2 KB each,
their backlogs days long, as ``bench_poll.py`` serves them) into a fresh SQLite file
through the real parse and ``save_poll``, with a story window. Then times, in CPU: the
window saved to its file, the window rebuilt from the store as a new process without the
file would (``store.stories.warm``), and the window loaded from the file. Prints each
beside the rebuild it replaces, the file's bytes per item and what saving added to this
process's peak RSS. Asserts nothing.

    .venv/bin/python bench/bench_window.py [--feeds 300]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from feedgen import rss_feed

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--feeds", type=int, default=300)
    args = ap.parse_args()

    from monitor.cluster import StoryIndex
    from monitor.match import compile_watchlists
    from monitor.models import FetchResult, Outcome
    from monitor.pipeline import window_file
    from monitor.pipeline.parsing import parse_and_match
    from monitor.store import feeds as fs
    from monitor.store import open_store
    from monitor.store import stories as ss
    from monitor.watchlists import load_watchlists

    matcher = compile_watchlists(load_watchlists(REPO / "watchlists"))
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{tmp}/monitor.db", upgrade=True)
        specs = [fs.FeedSpec(f"https://news{k}.example/rss") for k in range(args.feeds)]
        fs.sync_config_feeds(store, specs)
        index = StoryIndex()
        now = datetime.now(UTC)
        for k, feed in enumerate(fs.list_feeds(store)):
            body = rss_feed(k)
            parsed, found = parse_and_match(body, {"content-type": "application/rss+xml"}, feed.url, matcher)
            fs.save_poll(
                store, feed, FetchResult(Outcome.OK, feed.url, feed.url, 200, body), parsed,
                next_due_at=now, hint_s=None, match=lambda i, m=found: m.get(i.identity, []),
                stories=index,
            )  # fmt: skip
        path = Path(tmp) / "monitor.db.stories"
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t = time.process_time()
        window_file.save(path, index, store)
        save = time.process_time() - t
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        rebuilt = StoryIndex()
        t = time.process_time()
        ss.warm(store, rebuilt, datetime.now(UTC))
        rebuild = time.process_time() - t
        t = time.process_time()
        loaded = window_file.load(path, store, rebuilt.params)
        load = time.process_time() - t
        assert loaded is not None and len(loaded) == len(index)
        print(f"{args.feeds} feeds, {args.feeds * 50} items stored; the window holds {len(index)}")
        print(f"  rebuilt from the store   {rebuild:6.2f} s CPU ({len(rebuilt)} items)")
        print(f"  loaded from its file     {load:6.2f} s CPU ({load / rebuild:.2f}x the rebuild)")
        print(f"  saved to its file        {save:6.2f} s CPU, {path.stat().st_size / len(index):.0f} B "
              f"an item, peak RSS +{grown / 1024:.0f} MB")  # fmt: skip
        store.dispose()


if __name__ == "__main__":
    main()
