"""The matching engine: semantics, spans, and golden cases from the seed articles."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from monitor.match import Matcher, compile_watchlists
from monitor.models import Item
from monitor.watchlists import load_watchlists

REPO = Path(__file__).parents[1]
SEEDS = REPO.parent / "shared" / "seeds"
GOLDEN = Path(__file__).parent / "golden"


def matcher(tmp_path: Path, entries: str, **top: str) -> Matcher:
    head = "".join(f"{k}: {v}\n" for k, v in top.items())
    body = textwrap.indent(textwrap.dedent(entries).strip(), "  ")
    (tmp_path / "w.yaml").write_text(f"{head}entries:\n{body}\n", encoding="utf-8")
    return compile_watchlists(load_watchlists(tmp_path))


def entries_hit(m: Matcher, text: str, field: str = "content") -> list[str]:
    return [x.entry for x in m.match_fields({field: text})]


def test_phrases_on_word_boundaries(tmp_path: Path) -> None:
    m = matcher(tmp_path, "- {id: gor, terms: [Gor]}\n- {id: c5, terms: [C5+1]}")
    assert entries_hit(m, "Envoy Gor arrived.") == ["gor"]
    assert entries_hit(m, "Gore, Gorbachev, Gor-Tex? no: Igor") == ["gor"]  # only "Gor-"
    assert entries_hit(m, "Gorbachev and Igor") == []
    assert entries_hit(m, "the C5+1 format") == ["c5"]
    assert entries_hit(m, "AC5+1 or C5+10") == []


def test_prefix_terms(tmp_path: Path) -> None:
    m = matcher(tmp_path, "- {id: s, terms: [shrink*]}")
    (match,) = m.match_fields({"content": "The sea is shrinking."})
    assert match.spans[0].term == "shrinking"
    assert match.terms == ("shrink*",)
    assert entries_hit(m, "preshrink") == []


def test_boolean_groups(tmp_path: Path) -> None:
    m = matcher(
        tmp_path,
        """
        - id: b
          all:
            - any: [critical minerals, rare earths]
            - any: [Kazakhstan, Uzbekistan]
            - not: [video game, board game]
        """,
    )
    assert entries_hit(m, "Kazakhstan and rare earths") == ["b"]
    assert entries_hit(m, "Rare earths in China") == []
    assert entries_hit(m, "Kazakhstan critical minerals video game") == []
    (match,) = m.match_fields({"title": "Uzbekistan", "content": "critical minerals"})
    assert [(s.field, s.term) for s in match.spans] == [
        ("title", "Uzbekistan"),
        ("content", "critical minerals"),
    ]


def test_near_window(tmp_path: Path) -> None:
    m = matcher(tmp_path, "- id: n\n  near: {terms: [Caspian, [shrinking, level]], window: 2}")
    assert entries_hit(m, "the shrinking Caspian") == ["n"]
    assert entries_hit(m, "the Caspian is fast shrinking") == ["n"]  # two words between
    assert entries_hit(m, "the Caspian is now very fast shrinking") == []
    assert entries_hit(m, "the Caspian. Shrinking", field="title") == ["n"]
    # both sides must be in the same field
    assert [x.entry for x in m.match_fields({"title": "Caspian", "content": "shrinking"})] == []


def test_context_window(tmp_path: Path) -> None:
    m = matcher(
        tmp_path,
        """
        - id: gor
          terms: [Gor]
          context: {terms: [envoy, {text: US, case_sensitive: true}], window: 3}
        - id: gor-field
          terms: [Gor]
          context: {terms: [Washington], window: field}
        - id: gor-item
          terms: [Gor]
          context: {terms: [Tashkent], window: item}
        """,
    )
    assert entries_hit(m, "the envoy, Mr Gor, said") == ["gor"]
    assert entries_hit(m, "the envoy went home. Much later that day Gor said") == []
    assert entries_hit(m, "let us hear Gor") == []  # "us" is not "US"
    assert entries_hit(m, "US envoy Gor") == ["gor"]
    assert entries_hit(m, "Gor ... (forty words) ... Washington") == ["gor-field"]
    both = {"title": "Gor in talks", "content": "In Tashkent"}
    assert [x.entry for x in m.match_fields(both)] == ["gor-item"]


def test_exclusion_cancels_only_the_overlapped_occurrence(tmp_path: Path) -> None:
    m = matcher(tmp_path, "- {id: gor, terms: [Gor, Gore], exclude: [Al Gore, Gor Mahia]}")
    assert entries_hit(m, "Al Gore and Gor Mahia") == []
    text = "Al Gore met Sergio Gor."
    (match,) = m.match_fields({"content": text})
    assert [(s.start, s.end, s.term) for s in match.spans] == [(19, 22, "Gor")]


def test_exclude_if_vetoes_the_watchlist(tmp_path: Path) -> None:
    m = matcher(tmp_path, "- {id: a, terms: [Gor]}", exclude_if="[football]")
    assert entries_hit(m, "Gor scored; football news") == []
    assert entries_hit(m, "Gor arrived") == ["a"]


def test_case_sensitive_terms(tmp_path: Path) -> None:
    m = matcher(tmp_path, "- id: titr\n  terms: [{text: TITR, case_sensitive: true}]")
    assert entries_hit(m, "Cargo on the TITR grew") == ["titr"]
    assert entries_hit(m, "the titr of the solution") == []
    assert entries_hit(m, "Cargo on the ТITR grew") == ["titr"]  # Cyrillic Т
    assert entries_hit(m, "Straße: TITR") == ["titr"]  # casefold changes the length here
    assert entries_hit(m, "Straße: titr") == []


def test_fields_restriction(tmp_path: Path) -> None:
    m = matcher(tmp_path, "- {id: t, terms: [Gor], fields: title}\n- {id: a, terms: [Gor]}")
    assert entries_hit(m, "Gor", field="title") == ["t", "a"]
    assert entries_hit(m, "Gor", field="summary") == ["a"]


def test_regex_with_and_without_anchor(tmp_path: Path) -> None:
    m = matcher(
        tmp_path,
        r"""
        - id: anchored
          regex: {pattern: 'c5\s*\+\s*1\b', anchor: c5}
        - id: free
          regex: '\b\d{3}-km\b'
        - id: cased
          regex: {pattern: '\bTITR\b', case_sensitive: true}
        """,
    )
    (match,) = m.match_fields({"content": "The C5 +1 meeting"})
    assert (match.entry, match.spans[0].term) == ("anchored", "C5 +1")
    assert entries_hit(m, "a 500-km railway") == ["free"]
    assert entries_hit(m, "The TITR and the titr") == ["cased"]
    assert entries_hit(m, "the titr") == []


def test_spans_point_into_the_original_text(tmp_path: Path) -> None:
    m = matcher(tmp_path, "- {id: g, terms: [Sergio Gor, C5+1]}")
    title = "Spe\u00adcial: “Sergio\n  Gor’s” С5+1 trip"
    (match,) = m.match(Item(identity="x", title=title, content="ＳＥＲＧＩＯ ＧＯＲ"))
    assert [
        (s.field, title[s.start : s.end] if s.field == "title" else s.term) for s in match.spans
    ] == [
        ("title", "Sergio\n  Gor"),
        ("title", "С5+1"),
        ("content", "ＳＥＲＧＩＯ ＧＯＲ"),
    ]
    for span in match.spans:
        source = title if span.field == "title" else "ＳＥＲＧＩＯ ＧＯＲ"
        assert source[span.start : span.end] == span.term
    assert match.terms == ("Sergio Gor", "C5+1")


def test_one_match_per_entry_and_order(tmp_path: Path) -> None:
    m = matcher(tmp_path, "- {id: a, terms: [Gor, Sergio Gor]}\n- {id: b, terms: [Landau]}")
    matches = m.match_fields({"title": "Landau and Gor", "content": "Sergio Gor, Gor"})
    assert [(x.watchlist, x.entry) for x in matches] == [("w", "a"), ("w", "b")]
    assert matches[0].to_dict()["terms"] == ["Gor", "Sergio Gor"]
    assert m.watchlist_ids == ("w",)


def test_empty_matcher_and_empty_item(tmp_path: Path) -> None:
    assert compile_watchlists([]).match_fields({"title": "Gor"}) == []
    m = matcher(tmp_path, "- {id: a, terms: [Gor]}")
    assert m.match(Item(identity="x", title="")) == []


# -- golden cases with the shipped watchlists ---------------------------------------------


@pytest.fixture(scope="module")
def shipped() -> Matcher:
    return compile_watchlists(load_watchlists(REPO / "watchlists"))


def watchlists_of(m: Matcher, text: str) -> set[str]:
    return {x.watchlist for x in m.match_fields({"content": text})}


SEED_EXPECTED: dict[str, list[str]] = yaml.safe_load(
    (GOLDEN / "seeds.expected.yaml").read_text(encoding="utf-8")
)


@pytest.mark.parametrize("name", sorted(SEED_EXPECTED))
def test_seed_articles(shipped: Matcher, name: str) -> None:
    if not SEEDS.is_dir():
        pytest.skip(f"seed articles not found at {SEEDS} (shared/ checked out beside the repo)")
    text = (SEEDS / name).read_text(encoding="utf-8")
    assert watchlists_of(shipped, text) == set(SEED_EXPECTED[name])


def test_every_seed_has_an_expectation() -> None:
    if not SEEDS.is_dir():
        pytest.skip(f"seed articles not found at {SEEDS}")
    assert sorted(p.name for p in SEEDS.glob("*.txt")) == sorted(SEED_EXPECTED)


LOOKALIKES: list[str] = yaml.safe_load((GOLDEN / "lookalikes.yaml").read_text(encoding="utf-8"))


@pytest.mark.parametrize("text", LOOKALIKES)
def test_lookalikes_match_nothing(shipped: Matcher, text: str) -> None:
    assert shipped.match_fields({"title": text, "content": text}) == []


VARIANTS: list[dict[str, object]] = yaml.safe_load(
    (GOLDEN / "variants.yaml").read_text(encoding="utf-8")
)


@pytest.mark.parametrize("case", VARIANTS, ids=lambda c: str(c["text"])[:40])
def test_positive_variants(shipped: Matcher, case: dict[str, object]) -> None:
    assert watchlists_of(shipped, str(case["text"])) == set(case["expect"])  # type: ignore[call-overload]


def test_a_compiled_matcher_crosses_to_parse_workers_whole(tmp_path: Path) -> None:
    # Parse workers get the matcher compiled here, pickled (ParsePool), not the watchlists
    # to compile again: every kind of rule must arrive and match as it does here.
    import pickle

    m = matcher(
        tmp_path,
        r"""
        - {id: phrase, terms: [Gor, C5+1, shrink*], exclude: [Al Gore]}
        - id: group
          all:
            - any: [critical minerals, rare earths]
            - any: [Kazakhstan, Uzbekistan]
            - not: [video game]
        - {id: near, near: {terms: [Caspian, [shrinking, level]], window: 2}}
        - id: context
          terms: [Gor]
          context: {terms: [envoy, {text: US, case_sensitive: true}], window: 3}
        - {id: field, terms: [Landau], fields: title}
        - {id: regex, regex: {pattern: 'c5\s*\+\s*1\b', anchor: c5}}
        - {id: cased, regex: {pattern: '\bTITR\b', case_sensitive: true}}
        - id: forms
          terms: [{text: Тоқаев, translit: true, forms: true}, {text: Средний коридор, forms: true}]
        """,
        exclude_if="[football]",
    )
    texts = [
        "US envoy Gor met Al Gore on the C5 +1 format; the Caspian is shrinking.",
        "Kazakhstan and rare earths; TITR and titr",
        "Токаеву и Среднему коридору; Tokayev in Astana",
        "Gor scored; football news",
    ]
    fields = [{"title": t, "content": t} for t in texts] + [{"title": "Landau", "summary": "x"}]
    arrived = pickle.loads(pickle.dumps(m))
    assert [arrived.match_fields(f) for f in fields] == [m.match_fields(f) for f in fields]
    assert {x.entry for f in fields for x in arrived.match_fields(f)} == {
        "phrase", "group", "near", "context", "field", "regex", "cased", "forms",
    }  # fmt: skip
