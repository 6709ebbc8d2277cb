"""Benchmark: how fast the `monitor` command line answers.

Times the installed `monitor` as a user runs it (a fresh process each time, output to a
pipe), beside two baselines measured in the same run: a bare ``python -c pass`` and
``python -c "import click"`` (the least any click command line costs), and the same with
SQLAlchemy (the least a command that reads the database costs). Then builds a SQLite
database of 10,000 items (20 feeds, 1,000 hits over 30 days, stories of three items, a
poll run) and times the read commands on it.

Prints the median of ``--repeat`` runs of each and the ratios against the targets:
``--version`` and ``--help`` at most 3x ``import click``; ``hits``, ``status`` and
``feeds list`` on the 10k-item database at most 0.25 s (on SQLite they read through the
standard library's sqlite3, so they can beat the SQLAlchemy floor); ``stories``, ``items``
and ``outbox`` (read the same way) are printed beside them, without a target. Asserts
nothing.

    .venv/bin/python bench/bench_cli.py [--repeat 15] [--items 10000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MONITOR = str(Path(sys.executable).with_name("monitor"))


def timed(argv: list[str], repeat: int, env: dict[str, str]) -> float:
    """Median wall time of ``argv`` over ``repeat`` runs (after one warm-up run)."""
    times = []
    for n in range(repeat + 1):
        start = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, env=env, check=False)
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed:\n{proc.stderr.decode()}")
        if n:
            times.append(elapsed)
    return statistics.median(times)


def build_database(url: str, n_items: int) -> None:
    """``n_items`` items in 20 feeds, one hit per ten items, first seen over 30 days, in
    stories of three items each."""
    from monitor.store import feeds as feed_store
    from monitor.store import open_store
    from monitor.store.schema import feeds, hits, items, stories

    def seen(n: int) -> datetime:
        return now - timedelta(seconds=30 * 86400 * n / n_items)

    store = open_store(url, upgrade=True)
    now = datetime.now(UTC)
    with store.write() as conn:
        conn.execute(
            feeds.insert(),
            [
                {"url": f"https://news{n}.example/rss", "title": f"News {n}", "source": "config",
                 "headers": {}, "consecutive_failures": n % 7 == 3, "created_at": now,
                 "last_polled_at": now - timedelta(minutes=n), "last_status": 200,
                 "next_due_at": now + timedelta(minutes=15 - n % 15),
                 "last_error": "timeout" if n % 7 == 3 else None}
                for n in range(1, 21)
            ],
        )  # fmt: skip
        conn.execute(
            stories.insert(),
            [
                {"id": 1 + k, "title": f"Item {3 * k} on the Middle Corridor",
                 "first_seen_at": seen(min(3 * k + 2, n_items - 1)), "last_seen_at": seen(3 * k),
                 "item_count": len(range(3 * k, min(3 * k + 3, n_items))),
                 "lead_item_id": 1 + min(3 * k + 2, n_items - 1)}
                for k in range((n_items + 2) // 3)
            ],
        )  # fmt: skip
        conn.execute(
            items.insert(),
            [
                {"identity": f"id-{n}", "feed_id": 1 + n % 20, "guid": f"https://x.example/{n}",
                 "link": f"https://x.example/{n}", "title": f"Item {n} on the Middle Corridor",
                 "summary": "Talks in Astana on transport and trade. " * 8, "content": "",
                 "first_seen_at": seen(n), "published_at": seen(n),
                 "story_id": 1 + n // 3, "story_seq": n + 1}
                for n in range(n_items)
            ],
        )  # fmt: skip
        conn.execute(
            hits.insert(),
            [
                {"item_id": n + 1, "watchlist": ("gor", "c5plus1", "middle-corridor")[n % 3],
                 "matches": [{"watchlist": "middle-corridor", "entry": "mc",
                              "terms": ["Middle Corridor"], "field": "title"}],
                 "created_at": now - timedelta(seconds=30 * 86400 * n / n_items)}
                for n in range(0, n_items, 10)
            ],
        )  # fmt: skip
    run = feed_store.start_poll_run(store, instance="bench")
    feed_store.finish_poll_run(
        store,
        run,
        {"feeds": 20, "fetched": 17, "not_modified": 0, "failed": 3, "new_items": 500,
         "new_hits": 50},
    )  # fmt: skip
    store.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=15, help="runs per command (median)")
    parser.add_argument("--items", type=int, default=10_000)
    opts = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="monitor-bench-cli-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    try:
        url = f"sqlite:///{work / 'monitor.db'}"
        config = work / "monitor.toml"
        config.write_text(
            f'[database]\nurl = "{url}"\n[watchlists]\ndir = "{REPO / "watchlists"}"\n'
            + "".join(f'[[feeds]]\nurl = "https://news{n}.example/rss"\n' for n in range(1, 21))
        )
        build_database(url, opts.items)
        env["MONITOR_CONFIG"] = str(config)
        print(f"{opts.items} items, 20 feeds, {opts.items // 10} hits; median of {opts.repeat}")

        python = sys.executable
        bare = timed([python, "-c", "pass"], opts.repeat, env)
        click_base = timed([python, "-c", "import click"], opts.repeat, env)
        print(f"baseline: python -c pass            {bare * 1000:6.0f} ms")
        sqla = timed([python, "-c", "import click, sqlalchemy"], opts.repeat, env)
        print(f"baseline: python -c 'import click'  {click_base * 1000:6.0f} ms")
        print(f"baseline: python -c 'import click, sqlalchemy'  {sqla * 1000:6.0f} ms "
              "(the floor of a command that reads the database)")
        print("command                      median   ratio to `import click` (target)")
        for args in (["--version"], ["--help"]):
            t = timed([MONITOR, *args], opts.repeat, env)
            name = "monitor " + " ".join(args)
            print(f"  {name:<26} {t * 1000:5.0f} ms  {t / click_base:5.2f}x  (<= 3x)")
        print(f"on the {opts.items}-item database   median   ratio to `import click, sqlalchemy`")
        for args in (
            ["hits", "--since", "1d"],
            ["hits"],
            ["status"],
            ["feeds", "list"],
        ):
            t = timed([MONITOR, *args], opts.repeat, env)
            name = "monitor " + " ".join(args)
            print(f"  {name:<26} {t * 1000:5.0f} ms  {t / sqla:5.2f}x  (target <= 250 ms)")
        for args in (
            ["stories", "--since", "1d"],
            ["stories"],
            ["items", "--since", "1d"],
            ["items"],
            ["outbox", "--all"],
        ):
            t = timed([MONITOR, *args], opts.repeat, env)
            name = "monitor " + " ".join(args)
            print(f"  {name:<26} {t * 1000:5.0f} ms  {t / sqla:5.2f}x  (no target)")
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
