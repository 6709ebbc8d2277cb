"""Loading and validating watchlist files; the registry that reloads them on edit."""

from __future__ import annotations

import logging
import os
import textwrap
from pathlib import Path

import pytest

from monitor.errors import WatchlistError
from monitor.match import compile_watchlists
from monitor.models import Item
from monitor.watchlists import (
    Group,
    Near,
    Regex,
    Term,
    WatchlistRegistry,
    check_watchlists,
    load_watchlists,
)

SHIPPED = Path(__file__).parents[1] / "watchlists"


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


GOOD = """
    name: Sergio Gor
    description: the envoy
    tags: [people]
    priority: high
    entries:
      - id: sergio-gor
        terms:
          - Sergio Gor
          - { text: TITR, case_sensitive: true, aliases: [T.I.T.R.] }
      - name: Gor with context
        terms: [Gor]
        context: { terms: [envoy], window: 5 }
        exclude: [Gor Mahia]
      - id: boolean
        all:
          - any: [critical minerals, rare earth*]
          - not: [video game]
        near: { terms: [Caspian, [shrinking, level]], window: 3 }
        regex: { pattern: 'c5\\s*\\+\\s*1', anchor: c5 }
"""


def test_valid_file_loads(tmp_path: Path) -> None:
    write(tmp_path, "gor.yaml", GOOD)
    (wl,) = load_watchlists(tmp_path)
    assert (wl.id, wl.name, wl.priority, wl.tags) == ("gor", "Sergio Gor", "high", ("people",))
    assert wl.path == tmp_path / "gor.yaml"
    first, second, third = wl.entries
    assert first.id == "sergio-gor"
    assert isinstance(first.rule, Group) and first.rule.op == "any"
    texts = [t.text for t in first.rule.children if isinstance(t, Term)]
    assert texts == ["Sergio Gor", "TITR", "T.I.T.R."]
    assert second.id == "gor-with-context"  # id from the name
    (term,) = second.rule.children  # type: ignore[union-attr]
    assert isinstance(term, Term) and term.context is not None and term.context.window == 5
    assert [t.text for t in term.exclude] == ["Gor Mahia"]
    assert isinstance(third.rule, Group) and third.rule.op == "all"
    kinds = [type(child) for child in third.rule.children]
    assert kinds == [Group, Near, Regex]
    assert check_watchlists(tmp_path) == []


def test_shipped_watchlists_load_clean() -> None:
    assert check_watchlists(SHIPPED) == []
    ids = {wl.id for wl in load_watchlists(SHIPPED)}
    assert {"gor", "landau", "c5plus1", "middle-corridor"} <= ids
    for wl in load_watchlists(SHIPPED):
        assert wl.name and wl.description and wl.tags, wl.id


def problems_for(tmp_path: Path, text: str, name: str = "w.yaml") -> list[str]:
    write(tmp_path, name, text)
    problems = check_watchlists(tmp_path)
    with pytest.raises(WatchlistError) as info:
        load_watchlists(tmp_path)
    assert info.value.problems == problems
    return problems


def test_unknown_key_names_line_and_suggests(tmp_path: Path) -> None:
    problems = problems_for(
        tmp_path,
        """
        entries:
          - id: sergio-gor
            terms: [Sergio Gor]
            excludes: [Al Gore]
        """,
    )
    assert problems == [
        f"{tmp_path / 'w.yaml'}:4: unknown key 'excludes' in entry 'sergio-gor' "
        "(did you mean 'exclude'?)"
    ]


def test_unknown_top_level_key(tmp_path: Path) -> None:
    (problem,) = problems_for(tmp_path, "nmae: x\nentries:\n  - terms: [a]\n    id: a\n")
    assert problem.endswith(":1: unknown key 'nmae' in a watchlist file (did you mean 'name'?)")


def test_bad_regex_is_a_load_error(tmp_path: Path) -> None:
    (problem,) = problems_for(
        tmp_path,
        """
        entries:
          - id: r
            regex: 'c5(\\+1'
        """,
    )
    assert problem.startswith(f"{tmp_path / 'w.yaml'}:3: bad regex in entry 'r': ")


def test_regex_matching_empty_text_is_refused(tmp_path: Path) -> None:
    (problem,) = problems_for(tmp_path, "entries:\n  - id: r\n    regex: 'x*'\n")
    assert ":3: regex in entry 'r' matches empty text" in problem


def test_wrong_types(tmp_path: Path) -> None:
    problems = problems_for(
        tmp_path,
        """
        name: [not, a, string]
        priority: urgent
        entries:
          - id: a
            terms: [yes]
            near: { terms: [a, b], window: many }
          - id: b
            terms:
              - { text: TITR, case_sensitive: maybe }
          - id: c
            terms: Gor
            context: { terms: [x], window: -1 }
        """,
    )
    path = tmp_path / "w.yaml"
    assert problems == [
        f"{path}:1: name must be a string, not a list",
        f"{path}:2: priority must be one of high, normal, low, not 'urgent'",
        f"{path}:5: terms of entry 'a': 'yes' reads as true/false; quote it",
        f"{path}:6: window of near in entry 'a' must be a number of words (0 or more), not 'many'",
        f"{path}:9: case_sensitive in terms of entry 'b' must be true or false, not 'maybe'",
        f"{path}:12: window of context in entry 'c' must be a number of words (0 or more), "
        "'field' or 'item', not -1",
    ]


def test_missing_and_empty_terms(tmp_path: Path) -> None:
    problems = problems_for(
        tmp_path,
        """
        entries:
          - id: nothing
            name: Nothing to find
          - id: empty
            terms: []
          - id: blank
            terms: ["\\u00ad"]
          - name: ""
        """,
    )
    path = tmp_path / "w.yaml"
    assert problems == [
        f"{path}:2: entry 'nothing' needs 'terms' (or 'all', 'any', 'near', 'regex')",
        f"{path}:5: terms of entry 'empty': empty list of terms",
        f"{path}:7: terms of entry 'blank': empty term",
        f"{path}:8: entry name must not be empty",
    ]


def test_missing_entries(tmp_path: Path) -> None:
    (problem,) = problems_for(tmp_path, "name: x\n")
    assert problem == f"{tmp_path / 'w.yaml'}:1: missing key 'entries' (the list of things to find)"


def test_only_not_is_refused(tmp_path: Path) -> None:
    (problem,) = problems_for(tmp_path, "entries:\n  - id: a\n    not: [x]\n")
    assert ":2: entry 'a' could match an item without any of its terms" in problem


def test_star_only_at_the_end(tmp_path: Path) -> None:
    problems = problems_for(tmp_path, "entries:\n  - id: a\n    terms: ['Cen*tral', 'ab*']\n")
    assert len(problems) == 2
    assert "'*' may only end a term" in problems[0]
    assert "a prefix term needs 3+ characters" in problems[1]


def test_duplicate_ids(tmp_path: Path) -> None:
    write(
        tmp_path, "a.yaml", "id: gor\nentries:\n  - {id: x, terms: [a]}\n  - {id: x, terms: [b]}\n"
    )
    write(tmp_path, "b.yaml", "entries:\n  - {id: y, terms: [c]}\n")
    write(tmp_path, "gor.yaml", "entries:\n  - {id: z, terms: [d]}\n")
    assert check_watchlists(tmp_path) == [
        f"{tmp_path / 'a.yaml'}:4: duplicate entry id 'x' (first at line 3)",
        f"{tmp_path / 'gor.yaml'}:1: duplicate watchlist id 'gor' (also in "
        f"{tmp_path / 'a.yaml'}:1)",
    ]


def test_duplicate_key_in_a_mapping(tmp_path: Path) -> None:
    (problem,) = problems_for(tmp_path, "entries:\n  - id: a\n    terms: [x]\n    id: b\n")
    assert problem.endswith(":4: duplicate key 'id' in entry 'a'")


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    (problem,) = problems_for(tmp_path, "entries:\n  - id: a\n    terms: [x\n  - id: b\n")
    assert problem.startswith(f"{tmp_path / 'w.yaml'}:4: YAML syntax error: ")


def test_bad_id_and_field(tmp_path: Path) -> None:
    problems = problems_for(
        tmp_path, "id: Bad Id\nentries:\n  - {id: a, terms: [x], fields: [body]}\n"
    )
    assert problems[0].endswith(":1: watchlist id 'Bad Id' may hold only a-z, 0-9, '-' and '_'")
    assert (
        "unknown field 'body' in entry 'a' (choose from title, summary, content, any)"
        in (problems[1])
    )


def test_every_problem_of_every_file_is_reported(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "entries:\n  - {id: a, term: [x]}\n")
    write(tmp_path, "b.yaml", "entries: 3\n")
    write(tmp_path, "c.txt", "not a watchlist")
    write(tmp_path, ".#a.yaml", "editor lock file")
    problems = check_watchlists(tmp_path)
    assert [p.split(":")[0] for p in problems] == [str(tmp_path / "a.yaml")] * 2 + [
        str(tmp_path / "b.yaml")
    ]


def test_not_a_directory(tmp_path: Path) -> None:
    assert check_watchlists(tmp_path / "missing") == [f"{tmp_path / 'missing'}: not a directory"]
    with pytest.raises(WatchlistError) as raised:  # the daemon and commands: where, and why
        load_watchlists(Path("no-such-folder"))
    assert raised.value.one_line() == (
        f"{Path.cwd() / 'no-such-folder'}: not a directory (hint: set [watchlists] dir "
        "(a relative path is taken from the folder monitor runs in), or create the folder)"
    )


# -- registry ---------------------------------------------------------------------------


def item(text: str) -> Item:
    return Item(identity="i", title=text)


def touch_later(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))


def test_registry_picks_up_an_edit(tmp_path: Path) -> None:
    path = write(tmp_path, "w.yaml", "entries:\n  - {id: a, terms: [Gor]}\n")
    registry = WatchlistRegistry(tmp_path, compile_watchlists)
    assert registry.version == 1
    assert registry.refresh() == []
    assert registry.version == 1  # nothing changed: nothing reloaded
    assert registry.matcher.match(item("Sergio Gor")) != []
    write(tmp_path, "w.yaml", "entries:\n  - {id: a, terms: [Landau]}\n")
    touch_later(path)
    assert registry.refresh() == []
    assert registry.version == 2
    assert registry.matcher.match(item("Sergio Gor")) == []
    assert registry.matcher.match(item("Chris Landau")) != []
    write(tmp_path, "x.yaml", "entries:\n  - {id: b, terms: [TITR]}\n")
    assert registry.refresh() == []
    assert registry.matcher.watchlist_ids == ("w", "x")


def test_registry_keeps_last_good_version(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path, "w.yaml", "entries:\n  - {id: a, terms: [Gor]}\n")
    registry = WatchlistRegistry(tmp_path, compile_watchlists)
    good = registry.matcher
    write(tmp_path, "w.yaml", "entries:\n  - {id: a, terms: [Gor], excludes: [x]}\n")
    touch_later(path)
    with caplog.at_level(logging.ERROR, logger="monitor.watchlists"):
        problems = registry.refresh()
    assert problems == [f"{path}:2: unknown key 'excludes' in entry 'a' (did you mean 'exclude'?)"]
    assert any(problems[0] in r.getMessage() for r in caplog.records)
    assert all(r.levelno == logging.ERROR for r in caplog.records)
    assert registry.matcher is good and registry.version == 1
    assert registry.matcher.match(item("Sergio Gor")) != []
    caplog.clear()
    assert registry.refresh() == problems  # still broken; not logged again
    assert caplog.records == []
    write(tmp_path, "w.yaml", "entries:\n  - {id: a, terms: [Gor], exclude: [x]}\n")
    touch_later(path)
    touch_later(path)
    assert registry.refresh() == []
    assert registry.version == 2 and registry.matcher is not good


def test_registry_refuses_a_bad_start(tmp_path: Path) -> None:
    write(tmp_path, "w.yaml", "entries: nope\n")
    with pytest.raises(WatchlistError) as info:
        WatchlistRegistry(tmp_path, compile_watchlists)
    assert info.value.problems[0].startswith(f"{tmp_path / 'w.yaml'}:1: ")
