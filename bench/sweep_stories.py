"""Stories: a sweep of the clustering's knobs over the labelled sets. Prints a table.

    .venv/bin/python bench/sweep_stories.py [--real-half dev|test|all] [--seeds 1106 2025]
        [--set NAME=V1,V2,...]...

Each ``--set`` names a knob and the values to try; every combination of them is run.
A lower-case name is a field of ``cluster.StoryParams`` (``event_similarity=0.4,0.45``,
windows in hours: ``event_window=24,36,48``); an upper-case one a constant of
``monitor/cluster.py`` (``MIN_SHARED_TERMS=3,4``), set on the module for the run and put
back after. Without ``--set`` a default grid of the main knobs is run. The first row is
always the defaults.

For each setting: B-cubed precision and recall (see bench_stories.py) on each template
seed and on the real set's half (``--real-half``, dev by default: tune there, then judge
the chosen values on the test half with bench_stories.py ``--real-half test``), and the
lowest precision over the sets. Rows whose lowest precision is under 0.95 are marked.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from dataclasses import fields, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import stories_real
from bench_stories import bcubed, run_index, watchlist_hits
from stories_corpus import corpus

from monitor import cluster
from monitor.cluster import StoryParams

HOURS = {"duplicate_window", "event_window"}
DEFAULT_GRID = [
    "event_similarity=0.4,0.45,0.5",
    "entity_similarity=0.1,0.15,0.2",
    "MIN_SHARED_TERMS=3,4",
    "MIN_SHARED_WATCHLISTS=2,3",
]


def knob(spec: str) -> tuple[str, list[float]]:
    name, _, values = spec.partition("=")
    params = {f.name for f in fields(StoryParams)}
    if name not in params and not (name.isupper() and hasattr(cluster, name)):
        raise SystemExit(f"--set {spec}: {name} is neither a StoryParams field nor a constant")
    return name, [float(v) for v in values.split(",")]


def run(
    setting: dict[str, float], sets: list[tuple[str, list, list, list]]
) -> list[tuple[float, float]]:
    params = StoryParams()
    saved = {}
    for name, value in setting.items():
        if name.isupper():
            saved[name] = getattr(cluster, name)
            setattr(cluster, name, type(saved[name])(value))
        else:
            kind = type(getattr(params, name))
            params = replace(params, **{name: kind(value * 3600 if name in HOURS else value)})
    try:
        return [bcubed(run_index(items, wl, params), truth) for _, items, wl, truth in sets]
    finally:
        for name, value in saved.items():
            setattr(cluster, name, value)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--real-half", choices=stories_real.HALVES, default="dev")
    ap.add_argument("--seeds", type=int, nargs="*", default=[1106, 2025])
    ap.add_argument("--set", action="append", dest="knobs", metavar="NAME=V1,V2")
    args = ap.parse_args()
    knobs = [knob(s) for s in (args.knobs or DEFAULT_GRID)]
    sets = [(f"seed {seed}", corpus(seed)) for seed in args.seeds]
    sets.append((f"real {args.real_half}", stories_real.half(stories_real.load(), args.real_half)))
    prepared = [
        (name, items, watchlist_hits(items), [it.event for it in items]) for name, items in sets
    ]
    names = [k for k, _ in knobs]
    head = "  ".join(f"{n:>{max(len(n), 5)}}" for n in names)
    cols = "".join(f" {name:>15}" for name, *_ in prepared)
    print(f"{head}  {cols}  {'min P':>6} {'real R':>6}")
    print(f"{'':{len(head)}}  " + "".join(f" {'P':>7} {'R':>7}" for _ in prepared))
    rows = [{}] + [
        dict(zip(names, values, strict=True))
        for values in itertools.product(*(v for _, v in knobs))
    ]
    for setting in rows:
        scores = run(setting, prepared)
        lowest = min(p for p, _ in scores)
        label = "  ".join(
            f"{setting[n]:>{max(len(n), 5)}g}" if n in setting else f"{'(def)':>{max(len(n), 5)}}"
            for n in names
        )
        cells = "".join(f" {p:>7.3f} {r:>7.3f}" for p, r in scores)
        flag = "" if lowest >= 0.95 else "  P<0.95"
        print(f"{label}  {cells}  {lowest:>6.3f} {scores[-1][1]:>6.3f}{flag}", flush=True)


if __name__ == "__main__":
    main()
