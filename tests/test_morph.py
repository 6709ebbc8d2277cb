"""Word forms, transliteration and Uzbek letter marks in the matching engine."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from monitor.errors import WatchlistError
from monitor.fold import fold_text
from monitor.match import Matcher, compile_watchlists, language_allowed
from monitor.morph import WordForms
from monitor.translit import variants
from monitor.watchlists import load_watchlists

WATCHLIST = """
id: t
entries:
  - id: tokayev
    terms: [{text: Тоқаев, translit: true, forms: true}]
  - id: gor
    terms: [{text: Гор, forms: true}, {text: Gor, forms: true}]
  - id: corridor
    terms:
      - {text: Средний коридор, forms: true, case_sensitive: true}
      - {text: O'rta yo'lak, forms: true}
  - id: landau
    terms: [{text: Landau, translit: true, forms: true}]
  - id: plain
    terms: [Ташкент]
"""


@pytest.fixture(scope="module")
def matcher(tmp_path_factory: pytest.TempPathFactory) -> Matcher:
    directory = tmp_path_factory.mktemp("wl")
    (directory / "t.yaml").write_text(WATCHLIST, encoding="utf-8")
    return compile_watchlists(load_watchlists(directory))


CASES = [
    ("Президент Токаеву сообщили", "tokayev", "Токаеву"),
    ("Tokayev said so", "tokayev", "Tokayev"),
    ("Toqayev aytdi", "tokayev", "Toqayev"),
    ("Тоқаевтың сөзі", "tokayev", "Тоқаевтың"),
    ("Гордың сапары", "gor", "Гордың"),
    ("Gorning tashrifi", "gor", "Gorning"),
    ("Gor bilan uchrashdi", "gor", "Gor"),
    ("грузы пойдут по Среднему коридору", "corridor", "Среднему коридору"),
    ("Oʻrta yoʻlakda", "corridor", "Oʻrta yoʻlakda"),
    ("O‘rta yo‘lak orqali", "corridor", "O‘rta yo‘lak"),
    ("O`rta yo'lakning", "corridor", "O`rta yo'lakning"),
    ("Ландауға барды", "landau", "Ландауға"),
    ("Landauning so‘zlari", "landau", "Landauning"),
    ("встреча с Ландау", "landau", "Ландау"),
]


@pytest.mark.parametrize(("text", "entry", "span"), CASES)
def test_forms_match_and_spans_map_back(matcher: Matcher, text: str, entry: str, span: str) -> None:
    (found,) = [m for m in matcher.match_fields({"content": text}) if m.entry == entry]
    (s,) = found.spans
    assert text[s.start : s.end] == s.term == span


@pytest.mark.parametrize(
    "text",
    ["горизонт", "Gorizont", "Горный", "в среднем коридоре школы", "Ландыш", "Ташкентский"],
)
def test_forms_do_not_run_into_other_words(matcher: Matcher, text: str) -> None:
    assert matcher.match_fields({"content": text}) == []


def test_plain_terms_stay_exact(matcher: Matcher) -> None:
    assert [m.entry for m in matcher.match_fields({"content": "в Ташкенте"})] == []
    assert [m.entry for m in matcher.match_fields({"content": "в Ташкент"})] == ["plain"]


def test_short_bases_take_one_suffix_only() -> None:
    gor = WordForms("gor", ["uz"])
    assert gor.accepts("gorga") and gor.accepts("gorning")
    assert not gor.accepts("gorlarning") and not gor.accepts("gora")
    toshkent = WordForms("toshkent", ["uz"])
    assert toshkent.accepts("toshkentdagi") and not toshkent.accepts("toshkentovka")


def test_russian_forms_by_normal_form() -> None:
    sergey = WordForms("сергей", ["ru"])
    assert sergey.prefix == "серг"
    assert all(sergey.accepts(w) for w in ["сергея", "сергею", "сергеем", "сергее"])
    assert not sergey.accepts("сергеевич")


def test_translit_variants() -> None:
    assert variants("Тоқаев") == ["Тоқаев", "Токаев", "Tokayev", "Tokaev", "Toqayev", "Toqaev"]
    assert "Mirziyoyev" in variants("Мирзиёев")
    assert "Ландау" in variants("Landau")
    assert "Oʻzbekiston" in variants("Ўзбекистон")


@pytest.mark.parametrize("mark", ["ʻ", "‘", "'", "`", "’", "ʼ"])
def test_uzbek_letter_marks_fold_alike(mark: str) -> None:
    assert fold_text(f"O{mark}zbekiston G{mark}arb") == "oʻzbekiston gʻarb"


def test_possessive_is_not_a_letter_mark() -> None:
    assert fold_text("Greg's Gor's") == "greg gor"


def test_languages() -> None:
    assert language_allowed("uz-Latn", ["uz"]) and language_allowed("uz-Cyrl", ["uz-Cyrl"])
    assert not language_allowed("uz-Latn", ["uz-Cyrl"]) and not language_allowed("en", ["ru"])


def test_bad_lang_is_reported(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text(
        textwrap.dedent(
            """\
            id: x
            lang: de
            languages: [ru, fr]
            entries:
              - id: g
                terms: [{text: Gor, forms: maybe}]
            """
        ),
        encoding="utf-8",
    )
    with pytest.raises(WatchlistError) as info:
        load_watchlists(tmp_path)
    problems = "\n".join(info.value.problems)
    assert "x.yaml:2: lang in the watchlist must be one of en, ru, kk, uz, not 'de'" in problems
    assert "x.yaml:3: languages: 'fr' is not one of" in problems
    assert "x.yaml:6: forms in terms of entry 'g' must be true or false" in problems


def test_a_watchlist_keeps_to_its_languages(tmp_path: Path) -> None:
    (tmp_path / "ru.yaml").write_text(
        "languages: [ru, kk]\nentries:\n  - id: g\n    terms: [{text: Гор, forms: true}]\n",
        encoding="utf-8",
    )
    (tmp_path / "uz.yaml").write_text(
        "languages: [uz]\nentries:\n  - id: g\n    terms: [{text: Гор, lang: uz}]\n",
        encoding="utf-8",
    )
    matcher = compile_watchlists(load_watchlists(tmp_path))

    def ids(text: str, lang: str | None) -> list[str]:
        return [m.watchlist for m in matcher.match_fields({"title": text}, lang=lang)]

    assert ids("Горнинг ташрифи", "uz-Cyrl") == ["uz"]
    assert ids("Гордың сапары", "kk") == ["ru"]
    assert ids("Гордың сапары", None) == ["ru"]  # unknown language: every list applies
    assert ids("Горнинг ташрифи", None) == ["ru", "uz"]  # ru.yaml: forms of all scripts
