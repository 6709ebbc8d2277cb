"""Word forms for matching: Russian inflection, Kazakh and Uzbek suffixes. Pure, no I/O.

A watchlist term with ``forms`` also matches the inflected forms of its words. The same
rules run on the term when watchlists are compiled and on each candidate word of the text
when an item is matched, both on folded text (``monitor.fold``):

- ``ru``: two words are forms of one another when their pymorphy3 normal forms (over
  every parse) share one, the term's own word counting as a normal form
  ("Токаева" -> {"токаева", "токаев"} meets "Токаев" -> {"токаев"}). A capitalised term
  word is a name: only its name parses count ("Токаев" is not the plural genitive of
  the wine "токай", so "Токай" is not one of its forms). The
  dictionaries come from the ``pymorphy3-dicts-ru`` package; nothing is downloaded.
- ``kk`` and ``uz``: the word is the term's word followed by case, possessive and plural
  suffixes from the language's list (:data:`SUFFIXES`), up to three of them
  ("Ландауға", "Toshkentdagi", "Гордың"). A word shorter than :data:`MIN_SUFFIX_BASE`
  letters ("Гор", "Gor") takes exactly one suffix of two or more letters and nothing
  else, so it never runs into another word ("Gorizont", "Горный", "Гора").

The Aho-Corasick scan finds a term by :attr:`WordForms.prefix` of its longest word, a
prefix its accepted forms start with: the word and its normal forms' common prefix, less
up to two final vowels or й/ь (Сергей: "серг", Астана: "астан", Токаев: "токаев").
Only the words found so are checked with :meth:`WordForms.accepts`, their results cached.
(Russian stems that change inside, as "отец"/"отца", are missed; names seldom do.)
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import cache, lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pymorphy3 import MorphAnalyzer

log = logging.getLogger(__name__)

#: The languages whose word forms the engine knows ("en": the word as written).
LANGUAGES = ("en", "ru", "kk", "uz")
#: Bases shorter than this take a single suffix only.
MIN_SUFFIX_BASE = 4
_MAX_SUFFIXES = 3

_KK = (
    # plural
    "лар лер дар дер тар тер "
    # genitive, accusative, dative, locative, ablative, instrumental
    "ның нің дың дің тың тің ны ні ды ді ты ті н ға ге қа ке на не а е "
    "да де та те нда нде дан ден тан тен нан нен мен бен пен менен "
    # possessive (3rd person, 1st plural), and the -ғы/-гі/-дағы adjectival
    "ы і сы сі ымыз іміз мыз міз дағы дегі тағы тегі ғы гі қы кі"
)
_UZ_LATN = (
    "lar ning ni ga ka qa da dan dagi gacha cha dek day "
    "i si im ing imiz ingiz miz ngiz niki dagi ligi lik"
)
_UZ_CYRL = (
    "лар нинг ни га ка қа да дан даги гача ча дек дай и си им инг имиз ингиз миз нгиз ники лиги лик"
)
#: Suffixes a name may take, per language (both scripts for Uzbek), folded.
SUFFIXES: dict[str, frozenset[str]] = {
    "kk": frozenset(_KK.split()),
    "uz": frozenset(_UZ_LATN.split()) | frozenset(_UZ_CYRL.split()),
}


#: pymorphy3 tags of proper names (first names, surnames, patronymics, places, bodies)
_PROPER = frozenset({"Name", "Surn", "Patr", "Geox", "Orgn", "Trad"})


def _is_cyrillic(word: str) -> bool:
    return any("\u0400" <= ch <= "\u04ff" for ch in word)


def languages_for(word: str, lang: str | None) -> tuple[str, ...]:
    """The form rules a term word takes: those of ``lang``, else those its script allows."""
    cyrillic = _is_cyrillic(word)
    if lang is not None:
        if lang == "ru" and not cyrillic:
            return ()
        return () if lang == "en" else (lang,)
    return ("ru", "kk", "uz") if cyrillic else ("uz",)


@cache
def _analyzer() -> MorphAnalyzer:
    import pymorphy3

    # the Russian dictionaries ship in the pymorphy3-dicts-ru wheel
    # Its "Loading dictionaries from ..." is no news to a user of a command.
    logging.getLogger("pymorphy3").setLevel(logging.WARNING)
    return pymorphy3.MorphAnalyzer(lang="ru")


@lru_cache(maxsize=200_000)
def normal_forms(word: str) -> frozenset[str]:
    """Every pymorphy3 normal form of a (folded, lower-case) Russian word."""
    return frozenset(p.normal_form for p in _analyzer().parse(word))


def _suffix_chain(rest: str, suffixes: frozenset[str], depth: int) -> bool:
    if not rest:
        return True
    if depth == 0:
        return False
    return any(
        rest.startswith(s) and _suffix_chain(rest[len(s) :], suffixes, depth - 1)
        for s in suffixes
        if len(s) <= len(rest)
    )


def _suffixed(base: str, word: str, lang: str) -> bool:
    if not word.startswith(base) or len(word) == len(base):
        return False
    rest = word[len(base) :]
    suffixes = SUFFIXES[lang]
    if len(base) < MIN_SUFFIX_BASE:
        return len(rest) >= 2 and rest in suffixes
    return _suffix_chain(rest, suffixes, _MAX_SUFFIXES)


_ENDING_LETTERS = frozenset("аеёиоуыэюяйь")


def _common_prefix(word: str, others: Iterable[str]) -> str:
    size = len(word)
    for other in others:
        while size and not other.startswith(word[:size]):
            size -= 1
    return word[:size]


class WordForms:
    """Which words count as forms of one term word (both folded)."""

    __slots__ = ("_cache", "languages", "lemmas", "prefix", "word")

    def __init__(self, word: str, languages: Iterable[str], *, proper: bool = False) -> None:
        self.word = word
        self.languages = tuple(languages)
        self.lemmas: frozenset[str] = frozenset()
        prefix = word
        if "ru" in self.languages and _is_cyrillic(word):
            parses = _analyzer().parse(word)
            lemmas = [p for p in parses if not proper or _PROPER & set(p.tag.grammemes)]
            # a capitalised term word is a name: only its name parses count, else it is
            # its own normal form ("Токаев", "Средний")
            self.lemmas = frozenset(p.normal_form for p in lemmas) | {word}
            prefix = _common_prefix(word, self.lemmas)
            for _ in range(2):
                if len(prefix) > 3 and prefix[-1] in _ENDING_LETTERS:
                    prefix = prefix[:-1]
        self.prefix = prefix
        self._cache: dict[str, bool] = {}

    def accepts(self, word: str) -> bool:
        """True when ``word`` (folded) is a form of this term word."""
        if word == self.word:
            return True
        found = self._cache.get(word)
        if found is None:
            found = self._check(word)
            if len(self._cache) < 50_000:
                self._cache[word] = found
        return found

    def _check(self, word: str) -> bool:
        for lang in self.languages:
            if lang == "ru":
                if self.lemmas and _is_cyrillic(word) and normal_forms(word) & self.lemmas:
                    return True
            elif lang in SUFFIXES and _suffixed(self.word, word, lang):
                return True
        return False
