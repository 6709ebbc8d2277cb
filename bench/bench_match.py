"""Matching throughput against a naive baseline run beside it. Prints figures; asserts nothing.

    .venv/bin/python bench/bench_match.py [--items 2000] [--runs 3] [--mix-items 3000]
                                          [--only base|mix]

Texts: deterministic, news-like, ~3 KB (title, summary, content) with curly quotes, dashes
and line breaks. Watchlists: 100, 1,000 and 10,000 generated entries (mostly phrase lists;
one in ten boolean, one in ten proximity), written as YAML files and loaded like the real
ones. Baseline: one compiled regex per entry (the alternation of its positive terms,
IGNORECASE, word boundaries) searched in each field; that is cheaper than a full naive
evaluation of boolean/proximity entries, so the ratio is if anything understated. At 1,000
and 10,000 entries the baseline runs on a subset of the items and is scaled.

The multilingual mix (printed first): feed-size items (title and summary) in English,
Russian, Kazakh and Uzbek (both scripts), whose names carry the endings of their language
(Зувоева, Зувоевдың, Zuvoevning); 1,000 and 10,000 entries of such names with
``forms: true``, beside the same lists without it. "cold" is the first run, before the
word caches fill.
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


# -- the multilingual mix: word forms on vs off ------------------------------------------

CYR_SYLLABLES = "ка ра та на са ма ла ба да га ко ро то но со мо ло бо до го ки ри ти ни".split()
CYR_NAME_SYLLABLES = "зу ву хе жу фе ве жа во ху же фи ви ха цу ше".split()
#: language: (share of items, script, endings a name takes in that language)
MIX = {
    "en": (0.4, "latn", ["", "", "", "'s"]),
    "ru": (0.3, "cyrl", ["", "а", "у", "ым", "е", "ой"]),
    "kk": (0.1, "cyrl", ["", "дың", "ға", "мен", "ды", "та"]),
    "uz-Latn": (0.1, "latn", ["", "ning", "ga", "dan", "ni", "da"]),
    "uz-Cyrl": (0.1, "cyrl", ["", "нинг", "га", "дан", "ни", "да"]),
}
MIX_COMMON = {
    "latn": COMMON,
    "cyrl": (
        "и в на с по для что это как от из за президент министр переговоры торговля энергия "
        "безопасность саммит регион сотрудничество соглашение және мен бойынша үшін ва билан "
        "бўйича учун ҳамкорлик"
    ).split(),
}


def make_mix_vocabulary(rng: random.Random) -> dict[str, tuple[list[str], list[str]]]:
    """Per script: common words and proper names ("First Surname", Cyrillic ones in -ов/-ев)."""
    out: dict[str, tuple[list[str], list[str]]] = {}
    for script, syl, name_syl in (
        ("latn", SYLLABLES, NAME_SYLLABLES),
        ("cyrl", CYR_SYLLABLES, CYR_NAME_SYLLABLES),
    ):
        words = sorted({make_word(rng, rng.randint(2, 4), syl) for _ in range(5000)})
        rng.shuffle(words)
        tail = ["ov", "ev", "in"] if script == "latn" else ["ов", "ев", "ин"]
        names = sorted(
            {
                f"{make_word(rng, 2, name_syl).capitalize()} "
                f"{make_word(rng, rng.randint(2, 3), name_syl).capitalize()}{rng.choice(tail)}"
                for _ in range(8000)
            }
        )
        out[script] = (words, names)
    return out


def make_mix_items(n: int, vocab: dict[str, tuple[list[str], list[str]]]) -> list[dict[str, str]]:
    """Feed-size items (title ~10 words, summary ~45 words), languages mixed as in MIX;
    names appear in the endings of the item's language."""
    rng = random.Random(SEED + 1)
    langs = list(MIX)
    weights = [MIX[lang][0] for lang in langs]

    def text(lang: str, n_words: int) -> str:
        _, script, endings = MIX[lang]
        words, names = vocab[script]
        out: list[str] = []
        for _ in range(n_words):
            r = rng.random()
            if r < 0.4:
                out.append(rng.choice(MIX_COMMON[script]))
            elif r < 0.96:
                out.append(words[int(len(words) ** rng.random()) - 1])
            else:
                first, last = rng.choice(names).split()
                out.append(f"{first} {last}{rng.choice(endings)}")
        return " ".join(out)

    items = []
    for _ in range(n):
        lang = rng.choices(langs, weights)[0]
        items.append({"title": text(lang, 10), "summary": text(lang, 45)})
    return items


def make_mix_entries(
    n: int, vocab: dict[str, tuple[list[str], list[str]]], forms: bool
) -> list[dict[str, object]]:
    rng = random.Random(SEED + n)
    entries: list[dict[str, object]] = []
    for i in range(n):
        script = "cyrl" if i % 2 else "latn"
        names = vocab[script][1]
        terms = [rng.choice(names) for _ in range(rng.randint(1, 3))]
        entries.append(
            {
                "id": f"m{i}",
                "terms": [{"text": t, "forms": True} for t in terms] if forms else terms,
            }
        )
    return entries


def bench_mix(
    n: int,
    items: Sequence[dict[str, str]],
    vocab: dict[str, tuple[list[str], list[str]]],
    runs: int,
) -> dict[str, float]:
    """Both matchers built, then timed in turns (plain, forms, plain, ...), so that the
    load of a shared machine weighs on both alike; medians of the turns after the first."""
    out: dict[str, float] = {"entries": n}
    matchers = {}
    for key, forms in (("plain", False), ("forms", True)):
        with tempfile.TemporaryDirectory() as tmp:
            directory = Path(tmp)
            write_watchlists(directory, make_mix_entries(n, vocab, forms), per_file=500)
            t0 = time.perf_counter()
            matchers[key] = compile_watchlists(load_watchlists(directory))
            out[f"{key}_load"] = time.perf_counter() - t0
    times: dict[str, list[float]] = {"plain": [], "forms": []}
    for _ in range(runs + 1):
        for key, matcher in matchers.items():
            t0 = time.perf_counter()
            hits = sum(len(matcher.match_fields(item)) for item in items)
            times[key].append(time.perf_counter() - t0)
            out[f"{key}_hits"] = hits / len(items)
    for key, spent in times.items():
        out[f"{key}_cold"] = len(items) / spent[0]  # word caches empty
        out[key] = len(items) / statistics.median(spent[1:])
    return out


def main_mix(args: argparse.Namespace) -> None:
    rng = random.Random(SEED)
    vocab = make_mix_vocabulary(rng)
    items = make_mix_items(args.mix_items, vocab)
    size = statistics.mean(sum(len(v) for v in it.values()) for it in items)
    shares = ", ".join(f"{lang} {share:.0%}" for lang, (share, _, _) in MIX.items())
    print(
        f"\nmultilingual mix: {len(items)} feed-size items (title + summary, mean {size:.0f} "
        f"characters; {shares});\nthe same generated name lists with `forms: true` and "
        f"without, timed in turns; medians of {args.runs} runs after a cold first run, one core"
    )
    print(
        f"{'entries':>8} {'forms/s':>9} {'plain/s':>9} {'ratio':>7} {'cold forms/s':>13} "
        f"{'hits/item forms':>16} {'plain':>6} {'compile forms':>14} {'plain':>7}"
    )
    for n in (1_000, 10_000):
        r = bench_mix(n, items, vocab, args.runs)
        print(
            f"{n:>8} {r['forms']:>9.0f} {r['plain']:>9.0f} {r['forms'] / r['plain']:>6.2f}x "
            f"{r['forms_cold']:>13.0f} {r['forms_hits']:>16.2f} {r['plain_hits']:>6.2f} "
            f"{r['forms_load']:>13.2f}s {r['plain_load']:>6.2f}s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mix-items", type=int, default=3000)
    parser.add_argument(
        "--only", choices=("base", "mix"), help="run only the base table or only the mix"
    )
    args = parser.parse_args()
    if args.only != "base":
        main_mix(args)
    if args.only == "mix":
        return
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
