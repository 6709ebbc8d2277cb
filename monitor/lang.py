"""Which language an item is in: en, ru, kk, uz-Latn, uz-Cyrl, or None. Pure, no I/O.

Only the languages the desk reads are told apart, by their letters and function words,
on the first :data:`SAMPLE_CHARS` characters of title, summary and content:

- Cyrillic text: Kazakh has letters Russian and Uzbek lack (ә ө ү ұ і ң һ); Uzbek
  Cyrillic has ў and ҳ, and қ ғ without the Kazakh ones; else Russian.
- Latin text: Uzbek by its letter marks (oʻ gʻ, any apostrophe) and function words
  ("va", "bilan", "uchun", ...); English by its function words ("the", "and", ...);
  else None (another language, or too little text to tell).

lingua (whose wheel ships its models) was weighed against these rules: it has no Uzbek
model at all (Uzbek Latin comes out "English"), its wheel is ~96 MB installed, and
restricted to English, Russian and Kazakh it runs ~8,000 sentences/s; these rules run
~30,000/s with no dependency (``bench/bench_languages.py``). They know only the desk's
five languages: a French or German item is None or, when short, may read as English.
"""

from __future__ import annotations

import re
from collections.abc import Callable

#: How much of an item is read to tell its language.
SAMPLE_CHARS = 600
#: The tags :func:`detect` returns.
TAGS = ("en", "ru", "kk", "uz-Latn", "uz-Cyrl")

_KK_ONLY = frozenset("әөүұіңһӘӨҮҰІҢҺ")
_UZ_ONLY = frozenset("ўҳЎҲ")
_KK_UZ = frozenset("қғҚҒ")
_WORDS = re.compile(r"[a-zA-Z\u02bb'‘’`ʼ]+")
_UZ_MARK = re.compile(r"[oOgG][\u02bb'‘’`ʼ][a-z]")
_UZ_WORDS = frozenset(
    "va bilan uchun bu esa ham yil bo'yicha bo'ladi qilish qildi dedi ekan emas bor yo'q "
    "o'z biz ular mamlakat prezident davlat vaziri hamkorlik tashrif uchrashdi muhokama "
    "qilindi etdi kerak yangi orqali yo'lak o'rta markaziy osiyo".split()
)
_CYR_WORDS = re.compile(r"[\u0400-\u04ff]+")
_KK_WORDS = frozenset("мен пен бен және үшін бойынша бұл деп".split())
_KK_ENDINGS = ("ның", "нің", "дың", "ды", "ты", "ған", "қан", "ып", "лары")
_UZ_CYR_WORDS = frozenset("ва билан учун бўйича эса ҳам бу деб".split())
_UZ_CYR_ENDINGS = ("нинг", "моқда", "даги", "ди", "ган", "лари", "ида")
_UZ_ENDINGS = (
    "ning", "dagi", "lari", "larni", "larga", "moqda", "ildi", "ishdi", "ashdi", "imiz",
    "ingiz", "gan", "dir", "yapti", "sida", "ga", "da", "ni", "ib",
)  # fmt: skip
_EN_WORDS = frozenset(
    "the and of to in is was for on with that by from as at said has have will are "
    "this it its an be were which".split()
)


#: Bytes that are not an ASCII letter, and not the lead byte of a UTF-8 Cyrillic letter
#: (U+0400-U+04FF is D0-D3 followed by one continuation byte): deleting them and taking
#: the length counts the letters of a script without a Python loop over characters.
_NOT_LATIN = bytes(b for b in range(256) if not (0x41 <= b <= 0x5A or 0x61 <= b <= 0x7A))
_NOT_CYRILLIC = bytes(b for b in range(256) if not 0xD0 <= b <= 0xD3)


class _WordTest(dict[str, int]):
    """1 or 0 for a word, as ``test`` says, remembered (news repeats its words: a
    lookup is much cheaper than the test); forgets everything past ``limit`` words."""

    def __init__(self, test: Callable[[str], bool], limit: int = 50_000) -> None:
        super().__init__()
        self._test = test
        self._limit = limit

    def __missing__(self, word: str) -> int:
        if len(self) >= self._limit:
            self.clear()
        value = self[word] = int(self._test(word))
        return value


#: Whether a folded Latin word counts for Uzbek: a function word or an Uzbek ending.
_UZ_LATIN = _WordTest(lambda w: w in _UZ_WORDS or w.endswith(_UZ_ENDINGS))


def detect(*texts: str) -> str | None:
    """The language of an item's texts (title, summary, content), or None if unsure."""
    sample = " ".join(t[:SAMPLE_CHARS] for t in texts if t)[:SAMPLE_CHARS]
    data = sample.encode("utf-8", "surrogatepass")
    latin = len(data.translate(None, _NOT_LATIN))
    cyrillic = len(data.translate(None, _NOT_CYRILLIC))
    if cyrillic == 0 and latin == 0:
        return None
    if cyrillic >= latin:
        kk = sum(map(sample.count, _KK_ONLY))
        uz = sum(map(sample.count, _UZ_ONLY))
        if kk > uz:
            return "kk"
        if uz:
            return "uz-Cyrl"
        if any(ch in sample for ch in _KK_UZ):  # қ ғ only: by word endings, then by ы
            words = _CYR_WORDS.findall(sample.lower())
            kk_score = sum(w.endswith(_KK_ENDINGS) or w in _KK_WORDS for w in words)
            uz_score = sum(w.endswith(_UZ_CYR_ENDINGS) or w in _UZ_CYR_WORDS for w in words)
            if kk_score != uz_score:
                return "kk" if kk_score > uz_score else "uz-Cyrl"
            return "kk" if ("ы" in sample or "Ы" in sample) else "uz-Cyrl"
        return "ru"
    # the words hold ASCII letters and apostrophes only: fold them as one string
    folded = " ".join(_WORDS.findall(sample)).lower().replace("`", "'")
    if not folded.isascii():
        for mark in "\u02bb‘’ʼ":
            folded = folded.replace(mark, "'")
    words = folded.split()
    uz_score = sum(map(_UZ_LATIN.__getitem__, words)) + 2 * len(_UZ_MARK.findall(sample))
    en_score = sum(map(_EN_WORDS.__contains__, words))
    if uz_score > en_score and uz_score >= 2:
        return "uz-Latn"
    if en_score >= 2 or (en_score == 1 and uz_score == 0 and sample.isascii()):
        return "en"
    return None
