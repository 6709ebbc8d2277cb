"""Golden sentences per language through `monitor match` and through a real poll.

tests/golden/lang/<lang>.yaml: positives (must match exactly the listed watchlists of the
shipped set) and traps (must match none), each detected as the file's language.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

import pytest
import yaml
from httpserver import FeedServer
from test_cli import REPO, config, run

from monitor.lang import _WordTest, detect

GOLDEN = Path(__file__).parent / "golden" / "lang"
LANGS = ("ru", "kk", "uz-Latn", "uz-Cyrl")


def cases(lang: str) -> list[tuple[str, set[str]]]:
    data = yaml.safe_load((GOLDEN / f"{lang}.yaml").read_text(encoding="utf-8"))
    assert data["lang"] == lang
    positives = [(c["text"], set(c["expect"])) for c in data["positives"]]
    return positives + [(text, set()) for text in data["traps"]]


@pytest.mark.parametrize("lang", LANGS)
def test_golden_files_hold_30_sentences_and_traps(lang: str) -> None:
    found = cases(lang)
    assert len(found) >= 30 and sum(1 for _, expect in found if not expect) >= 8


def test_word_test_remembers_words_and_forgets_past_its_limit() -> None:
    asked: list[str] = []

    def ends_in_x(word: str) -> bool:
        asked.append(word)
        return word.endswith("x")

    test = _WordTest(ends_in_x, limit=2)
    assert [test[w] for w in ("ax", "b", "ax", "cx", "b")] == [1, 0, 1, 1, 0]
    assert asked == ["ax", "b", "cx", "b"]  # "ax" remembered; full at "cx": forgotten
    assert len(test) <= 2


@pytest.mark.parametrize("lang", LANGS)
def test_detected_language(lang: str) -> None:
    assert {text: detect(text) for text, _ in cases(lang)} == {
        text: lang for text, _ in cases(lang)
    }


@pytest.mark.parametrize("lang", LANGS)
def test_golden_through_monitor_match(tmp_path: Path, lang: str) -> None:
    found = cases(lang)
    stdin = "".join(
        json.dumps({"id": n, "title": text}, ensure_ascii=False) + "\n"
        for n, (text, _) in enumerate(found)
    )
    out = run("match", "--watchlists", str(REPO / "watchlists"), cwd=tmp_path, stdin=stdin)
    assert out.returncode == 0, out.stderr
    results = [json.loads(line) for line in out.stdout.splitlines()]
    got = {found[r["id"]][0]: set(r["watchlists"]) for r in results}
    assert got == dict(found)
    for r in results:
        text = found[r["id"]][0]
        assert r["lang"] == lang
        for match in r["matches"]:
            for span in match["spans"]:  # highlighted spans map back to the text exactly
                assert span["field"] == "title"
                assert text[span["start"] : span["end"]] == span["text"]


def test_golden_through_a_real_poll(tmp_path: Path) -> None:
    every = [(lang, text, expect) for lang in LANGS for text, expect in cases(lang)]
    items = "".join(
        f"<item><title>{escape(text)}</title><link>https://news.test/{n}</link>"
        f"<guid>https://news.test/{n}</guid></item>"
        for n, (_, text, _) in enumerate(every)
    )
    feed = (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>Region</title>{items}</channel></rss>"
    )
    with FeedServer() as server:
        server.serve("/feed.xml", feed.encode("utf-8"))
        cfg = config(tmp_path, [server.url("/feed.xml")])
        polled = run("--config", str(cfg), "poll", "--once", cwd=tmp_path)
    assert polled.returncode == 0, polled.stderr
    assert f"{len(every)} new items" in polled.stdout
    out = run("--config", str(cfg), "hits", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    got: dict[str, set[str]] = {}
    langs: dict[str, str] = {}
    for line in out.stdout.splitlines():
        hit = json.loads(line)
        got.setdefault(hit["title"], set()).add(hit["watchlist"])
        langs[hit["title"]] = hit["lang"]
    assert got == {text: expect for _, text, expect in every if expect}
    assert langs == {text: lang for lang, text, expect in every if expect}
