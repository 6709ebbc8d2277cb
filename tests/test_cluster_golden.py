"""Story assignment (monitor/cluster.py) on golden cases from files: tests/stories/*.yaml.

Each file lists items in arrival order (feed, published, title, summary) and the stories
they must form (``expect``: lists of item ids). Watchlist hits come from the shipped
watchlists and the real matcher, as in the pipeline. Every case also runs twice to show
that the same items in the same order give the same stories.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.cluster import StoryIndex
from monitor.match import compile_watchlists
from monitor.models import Item
from monitor.watchlists import load_watchlists

REPO = Path(__file__).resolve().parents[1]
CASES = sorted((REPO / "tests" / "stories").glob("*.yaml"))
MATCHER = compile_watchlists(load_watchlists(REPO / "watchlists"))


def _when(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def assign(case: dict[str, Any]) -> dict[str, int]:
    """Item id -> story id (the first item id of the story), as the store would assign."""
    index = StoryIndex()
    stories: dict[str, int] = {}
    for n, raw in enumerate(case["items"], start=1):
        item = Item(raw["id"], raw["title"], link=f"{raw['feed']}#{raw['id']}",
                    summary=raw.get("summary", ""), published=_when(raw["published"]))  # fmt: skip
        watchlists = sorted({m.watchlist for m in MATCHER.match(item)})
        decision = index.assign(n, item.title, item.summary, watchlists, _when(raw["published"]))
        story = decision.story if decision.story is not None else n
        index.commit(n, story, n)
        stories[raw["id"]] = story
    return stories


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_golden_stories(path: Path) -> None:
    case = yaml.safe_load(path.read_text(encoding="utf-8"))
    got = assign(case)
    groups: dict[int, set[str]] = {}
    for ident, story in got.items():
        groups.setdefault(story, set()).add(ident)
    want = sorted(sorted(g) for g in case["expect"])
    assert sorted(sorted(g) for g in groups.values()) == want
    assert assign(case) == got  # deterministic


def test_the_cases_are_there() -> None:
    assert {p.stem for p in CASES} >= {
        "copies", "near_copies", "two_gor_meetings", "seeds", "russian_english"}  # fmt: skip
