"""The real-news labelled set of the story benchmark (bench/stories_real.py) reads whole."""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import stories_real  # noqa: E402


def test_every_line_is_an_item_with_its_source() -> None:
    lines = [ln for ln in stories_real.DATA.read_text(encoding="utf-8").splitlines() if ln.strip()]
    items = stories_real.load()
    assert len(items) == len(lines) >= 250
    assert len({it.id for it in items}) == len(items), "one item per report address"
    assert all(re.match(r"https?://[^/]+\.[a-z]+", it.id) for it in items)
    assert all(it.feed == stories_real.outlet(it.id) for it in items)
    assert all(it.title.strip() and it.summary.strip() and it.event for it in items)


def test_items_arrive_in_time_order() -> None:
    items = stories_real.load()
    keys = [(it.published, it.id) for it in items]
    assert keys == sorted(keys)
    assert all(it.published.utcoffset() is not None for it in items)


def test_stories_are_many_and_of_every_size() -> None:
    sizes = Counter(it.event for it in stories_real.load())
    assert len(sizes) >= 40
    assert max(sizes.values()) >= 10, "a story told by many outlets"
    assert sum(1 for n in sizes.values() if n == 1) >= 10, "stories of one report"


def test_russian_items_are_written_in_russian() -> None:
    for r in stories_real.reports():
        cyrillic = bool(re.search("[а-яё]", r.title + r.summary, re.IGNORECASE))
        assert cyrillic == (r.lang == "ru"), r.source


def test_a_date_alone_is_noon_utc_and_a_time_needs_its_offset(tmp_path: Path) -> None:
    row = {"event": "e", "source": "https://a.example/1", "lang": "en", "title": "t", "summary": "s"}
    path = tmp_path / "set.jsonl"
    path.write_text(
        json.dumps({**row, "published": "2025-11-06"})
        + "\n"
        + json.dumps({**row, "source": "https://a.example/2", "published": "2025-11-06T08:00:00+05:00"})
        + "\n",
        encoding="utf-8",
    )
    first, second = stories_real.reports(path)
    assert (first.published.hour, second.published.hour) == (3, 12)
    path.write_text(json.dumps({**row, "published": "2025-11-06T08:00:00"}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="offset"):
        stories_real.reports(path)
    path.write_text(json.dumps({**row, "published": "2025-11-06", "lede": "x"}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="unknown keys"):
        stories_real.reports(path)
