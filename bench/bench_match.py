"""Matching throughput against a naive baseline run beside it. Prints figures; asserts nothing.

    .venv/bin/python bench/bench_match.py [--items 2000] [--runs 3]

Texts: deterministic, news-like, ~3 KB (title, summary, content) with curly quotes, dashes
and line breaks. Watchlists: 100, 1,000 and 10,000 generated entries (mostly phrase lists;
one in ten boolean, one in ten proximity), written as YAML files and loaded like the real
ones. Baseline: one compiled regex per entry (the alternation of its positive terms,
IGNORECASE, word boundaries) searched in each field; that is cheaper than a full naive
evaluation of boolean/proximity entries, so the ratio is if anything understated. At 1,000
and 10,000 entries the baseline runs on a subset of the items and is scaled.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.match import compile_watchlists
from monitor.watchlists import load_watchlists

SEED = 20251106
SYLLABLES = (
    "ka ra ta na sa ma la ba da ga ko ro to no so mo lo bo do go ki ri ti ni si mi li".split()
)
COMMON = (
    "the of and to in a is that for on with as by at from its was said will has be are an "
    "this which or have not were their more been also after new but two first over than "
    "government president minister talks trade energy security summit region cooperation "
    "agreement foreign state week year officials meeting deal investment route development"
).split()


NAME_SYLLABLES = "zu vu ye xe qi ju fe we zha vo ya xu qo je fi wo zhe vi yu xa".split()


def make_word(rng: random.Random, syllables: int, pool: list[str] = SYLLABLES) -> str:
    return "".join(rng.choice(pool) for _ in range(syllables))


def make_vocabulary(rng: random.Random) -> tuple[list[str], list[str]]:
    """Common words (Zipf-distributed in texts) and proper names (rarer, from their own
    syllables so that a name never equals a common word)."""
    words = sorted({make_word(rng, rng.randint(2, 4)) for _ in range(6000)})
    rng.shuffle(words)
    names = sorted(
        {make_word(rng, rng.randint(2, 3), NAME_SYLLABLES).capitalize() for _ in range(20000)}
    )
    return words, names


def make_text(rng: random.Random, words: list[str], names: list[str], n_words: int) -> str:
    out: list[str] = []
    for i in range(n_words):
        r = rng.random()
        if r < 0.45:
            out.append(rng.choice(COMMON))
        elif r < 0.97:
            out.append(words[int(len(words) ** rng.random()) - 1])  # Zipf-like
        else:
            out.append(rng.choice(names))
        if i % 17 == 16:
            out[-1] += rng.choice([".", ",", ";", " —", "’s", "."])
        if i % 90 == 89:
            out[-1] += "\n\n"
        if i % 53 == 0:
            out[-1] = f"“{out[-1]}”"
    return " ".join(out)


def make_items(n: int, words: list[str], names: list[str]) -> list[dict[str, str]]:
    rng = random.Random(SEED)
    return [
        {
            "title": make_text(rng, words, names, 9),
            "summary": make_text(rng, words, names, 40),
            "content": make_text(rng, words, names, 430),
        }
        for _ in range(n)
    ]


def make_entries(n: int, words: list[str], names: list[str]) -> list[dict[str, object]]:
    rng = random.Random(SEED + n)

    def phrase() -> str:
        size = rng.choice((1, 2, 2, 2, 2, 3, 3, 3))  # mostly names of two or three words
        parts = [rng.choice(names)] + [rng.choice(words) for _ in range(size - 1)]
        return " ".join(parts)

    entries: list[dict[str, object]] = []
    for i in range(n):
        kind = i % 10
        if kind == 0:
            entries.append(
                {
                    "id": f"e{i}",
                    "all": [
                        {"any": [phrase(), phrase()]},
                        {"any": [rng.choice(names), rng.choice(names)]},
                        {"not": [phrase()]},
                    ],
                }
            )
        elif kind == 1:
            entries.append(
                {
                    "id": f"e{i}",
                    "near": {"terms": [rng.choice(names), rng.choice(names)], "window": 8},
                }
            )
        else:
            entries.append({"id": f"e{i}", "terms": [phrase() for _ in range(rng.randint(1, 4))]})
    return entries


def positive_terms(entry: dict[str, object]) -> list[str]:
    if "terms" in entry:
        return list(entry["terms"])  # type: ignore[call-overload]
    if "near" in entry:
        return list(entry["near"]["terms"])  # type: ignore[index]
    groups = entry["all"]
    return [t for g in groups if "any" in g for t in g["any"]]  # type: ignore[union-attr]


def write_watchlists(directory: Path, entries: list[dict[str, object]], per_file: int) -> None:
    for start in range(0, len(entries), per_file):
        doc = {"name": f"bench {start}", "entries": entries[start : start + per_file]}
        path = directory / f"bench-{start // per_file:03d}.yaml"
        path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")


def median_time(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_size(
    n: int, items: Sequence[dict[str, str]], words: list[str], names: list[str], runs: int
) -> dict[str, float]:
    entries = make_entries(n, words, names)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        write_watchlists(directory, entries, per_file=500)
        load = median_time(lambda: compile_watchlists(load_watchlists(directory)), runs)
        matcher = compile_watchlists(load_watchlists(directory))

    hits = 0

    def run_engine() -> None:
        nonlocal hits
        hits = sum(len(matcher.match_fields(item)) for item in items)

    engine = len(items) / median_time(run_engine, runs)

    regexes = [
        re.compile(r"\b(?:" + "|".join(re.escape(t) for t in positive_terms(e)) + r")\b", re.I)
        for e in entries
    ]
    subset = items[: max(3, min(len(items), 20_000 // n))]

    def run_baseline() -> None:
        for item in subset:
            for rx in regexes:
                for text in item.values():
                    if rx.search(text):
                        break

    baseline = len(subset) / median_time(run_baseline, runs)
    return {
        "entries": n,
        "load": load,
        "engine": engine,
        "baseline": baseline,
        "subset": len(subset),
        "hits": hits / len(items),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rng = random.Random(SEED)
    words, names = make_vocabulary(rng)
    items = make_items(args.items, words, names)
    size = statistics.mean(sum(len(v) for v in it.values()) for it in items)
    print(f"{len(items)} items, mean {size:.0f} characters; medians of {args.runs} runs, one core")
    print(
        f"{'entries':>8} {'items/s':>9} {'baseline/s':>11} {'ratio':>8} "
        f"{'hits/item':>9} {'load+compile':>13}"
    )
    results = []
    for n in (100, 1_000, 10_000):
        r = bench_size(n, items, words, names, args.runs)
        results.append(r)
        print(
            f"{n:>8} {r['engine']:>9.0f} {r['baseline']:>11.2f} "
            f"{r['engine'] / r['baseline']:>7.0f}x {r['hits']:>9.2f} {r['load']:>12.3f}s"
            f"   (baseline on {r['subset']:.0f} items)"
        )
    slowdown = results[0]["engine"] / results[-1]["engine"]
    print(f"slowdown 100 -> 10,000 entries: {slowdown:.2f}x")
    print(f"load + compile at 10,000 entries (YAML on disk): {results[-1]['load']:.3f}s")


if __name__ == "__main__":
    main()
