"""Text folding for matching: one function, applied alike to watchlist terms and item text.

``fold(text)`` returns a :class:`Folded` whose ``.text`` is the folded string and whose
:meth:`Folded.to_original` maps folded offsets back to offsets into the text it was given.

The steps, in order (each one a C-speed pass; Python only touches the places that change):

1. Unicode NFKC (skipped when the text is already NFKC, which is the common case).
2. Dash variants to ``-``, quote variants to ``'`` or ``"``, every kind of space and line
   break to a space (a length-preserving ``str.translate``).
3. Soft hyphen and zero-width characters removed.
4. Latin look-alikes: in a token that mixes Cyrillic/Greek letters with Latin letters or
   digits ("С5" typed with a Cyrillic С) and in all-capital tokens of 2-4 look-alike letters
   ("ТІТR"), the look-alikes become Latin. Other Cyrillic words ("Ландау", "Гор") are kept.
5. Uzbek Latin letter marks: after o or g and before a letter, every apostrophe
   (ʻ ‘ ' ` ’ ʼ) becomes "ʻ" (U+02BB, a letter), so "O‘zbekiston", "O'zbekiston" and
   "Oʻzbekiston" fold alike and stay one word (a possessive "'s" is left alone).
6. Runs of spaces collapse to one; a possessive ``'s`` after a word is dropped ("Gor's").
7. ``str.casefold`` (skipped with ``casefold=False``; :attr:`Folded.cased` then keeps the
   folded text before this step, aligned character for character when casefolding did not
   change the length, which is the common case).
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

_DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2043\u2212\u2e3a\u2e3b\ufe58\ufe63\uff0d"
_SQUOTES = "\u2018\u2019\u201a\u201b\u02bc\u2032\u2035\u2039\u203a\uff07`\u00b4"
_DQUOTES = "\u201c\u201d\u201e\u201f\u00ab\u00bb\u2033\u2036\u301d\u301e\uff02"
_SPACES = "\t\n\v\f\r\x1c\x1d\x1e\x1f\x85\u00a0\u1680\u2028\u2029\u202f\u205f\u3000" + "".join(
    chr(c) for c in range(0x2000, 0x200B)
)
_ONE_TO_ONE: dict[str, str] = {
    **{c: "-" for c in _DASHES},
    **{c: "'" for c in _SQUOTES},
    **{c: '"' for c in _DQUOTES},
    **{c: " " for c in _SPACES},
}
_ASCII_ONE_TO_ONE = [(c, r) for c, r in _ONE_TO_ONE.items() if c.isascii()]
_OTHER_ONE_TO_ONE = [(c, r) for c, r in _ONE_TO_ONE.items() if not c.isascii()]
_REMOVE = "\u00ad\u180e\u200b\u200c\u200d\u2060\u2061\u2062\u2063\u2064\ufeff"

# Cyrillic and Greek letters that look like Latin ones (after the same case).
_CONFUSABLES = {
    "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P",
    "С": "C", "Т": "T", "У": "Y", "Х": "X", "І": "I", "Ј": "J", "Ѕ": "S", "Ү": "Y",
    "Ԛ": "Q", "Ԝ": "W", "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y",
    "х": "x", "і": "i", "ј": "j", "ѕ": "s", "ԁ": "d", "һ": "h", "ӏ": "l", "ԛ": "q",
    "ԝ": "w", "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K",
    "Μ": "M", "Ν": "N", "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X", "ο": "o",
}  # fmt: skip
_CONF_LEADS = sorted({ch.encode("utf-8")[:1] for ch in _CONFUSABLES})  # UTF-8 lead bytes
_CONF_TABLE = {ord(k): v for k, v in _CONFUSABLES.items()}
_CONF = "".join(_CONFUSABLES)
_CONF_UPPER = "".join(c for c in _CONFUSABLES if c.isupper())
# Where a look-alike may need mapping: beside an ASCII letter or digit (a mixed-script
# token such as "С5"), or a run of 2-4 capital look-alikes (an acronym such as "ТІТR").
_CONF_HINT = re.compile(rf"[A-Za-z0-9][{_CONF}]|[{_CONF}][A-Za-z0-9]|[{_CONF_UPPER}]{{2,4}}")
_WORD = re.compile(r"[^\W_]+")
_SCRIPT_LETTER = re.compile(r"[^\W\d_A-Za-z]")  # a letter outside ASCII
_NON_ASCII_RUN = re.compile(r"[\x00-\x7f]?[^\x00-\x7f]+")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


class _SegMap:
    """Offsets of a rewritten text back to the text before the rewrite.

    ``pieces`` are (new_start, new_end, old_start, old_end) of the replaced stretches, in
    order; everything between them was copied unchanged.
    """

    __slots__ = ("_new_starts", "_pieces")

    def __init__(self, pieces: list[tuple[int, int, int, int]]) -> None:
        self._pieces = pieces
        self._new_starts = [p[0] for p in pieces]

    def start(self, pos: int) -> int:
        i = bisect_right(self._new_starts, pos) - 1
        if i < 0:
            return pos
        _, new_end, old_start, old_end = self._pieces[i]
        return old_start if pos < new_end else old_end + (pos - new_end)

    def end(self, pos: int) -> int:
        """Map an exclusive end offset (``pos > 0``)."""
        last = pos - 1
        i = bisect_right(self._new_starts, last) - 1
        if i < 0:
            return pos
        _, new_end, _, old_end = self._pieces[i]
        return old_end if last < new_end else old_end + (last - new_end) + 1


def _rewrite(text: str, changes: Iterable[tuple[int, int, str]]) -> tuple[str, _SegMap | None]:
    """Apply sorted, non-overlapping (start, end, replacement) changes to ``text``."""
    out: list[str] = []
    pieces: list[tuple[int, int, int, int]] = []
    pos = 0
    new_len = 0
    for start, end, repl in changes:
        if start > pos:
            out.append(text[pos:start])
            new_len += start - pos
        out.append(repl)
        pieces.append((new_len, new_len + len(repl), start, end))
        new_len += len(repl)
        pos = end
    if not pieces:
        return text, None
    out.append(text[pos:])
    return "".join(out), _SegMap(pieces)


def _nfkc_changes(text: str) -> Iterable[tuple[int, int, str]]:
    for m in _NON_ASCII_RUN.finditer(text):
        run = m.group()
        if unicodedata.is_normalized("NFKC", run):
            continue
        # split the run into clusters (a base character and its combining marks)
        base = m.start()
        start = 0
        for i in range(1, len(run) + 1):
            if i < len(run) and unicodedata.combining(run[i]):
                continue
            cluster = run[start:i]
            norm = unicodedata.normalize("NFKC", cluster)
            if norm != cluster:
                yield base + start, base + i, norm
            start = i


def _casefold_changes(text: str) -> Iterable[tuple[int, int, str]]:
    for m in _NON_ASCII.finditer(text):
        ch = m.group()
        folded = ch.casefold()
        if len(folded) != 1:
            yield m.start(), m.end(), folded


def _token_bounds(text: str, pos: int) -> tuple[int, int]:
    start = pos
    while start > 0 and text[start - 1].isalnum():
        start -= 1
    m = _WORD.match(text, start)
    return start, (m.end() if m else pos + 1)


def _unconfuse(text: str) -> str:
    """Map look-alikes to Latin in the tokens that qualify (same length)."""
    raw = text.encode("utf-8", "surrogatepass")
    if not any(lead in raw for lead in _CONF_LEADS):  # no Greek or Cyrillic at all
        return text
    out: list[str] = []
    done = 0
    for m in _CONF_HINT.finditer(text):
        start, end = _token_bounds(text, m.start())
        if start < done:
            continue
        token = text[start:end]
        others = _SCRIPT_LETTER.findall(token)
        if not all(ch in _CONFUSABLES for ch in others):
            continue
        mixed = len(others) < len(token)
        if mixed or (len(token) <= 4 and token.isupper()):
            out.append(text[done:start])
            out.append(token.translate(_CONF_TABLE))
            done = end
    if not out:
        return text
    out.append(text[done:])
    return "".join(out)


def _finds(text: str, needle: str) -> Iterator[int]:
    pos = text.find(needle)
    while pos >= 0:
        yield pos
        pos = text.find(needle, pos + 1)


def _removals(text: str) -> list[tuple[int, int, str]]:
    found = sorted(pos for ch in _REMOVE if ch in text for pos in _finds(text, ch))
    changes: list[tuple[int, int, str]] = []
    for pos in found:
        if changes and changes[-1][1] == pos:
            changes[-1] = (changes[-1][0], pos + 1, "")
        else:
            changes.append((pos, pos + 1, ""))
    return changes


def _squeeze(text: str) -> list[tuple[int, int, str]]:
    """Space runs to one space; a possessive 's after a word dropped."""
    changes: list[tuple[int, int, str]] = []
    if "  " in text:
        end = 0
        for pos in _finds(text, "  "):
            if pos < end:
                continue
            end = pos + 2
            while end < len(text) and text[end] == " ":
                end += 1
            changes.append((pos, end, " "))
    for needle in ("'s", "'S"):
        if needle in text:
            for pos in _finds(text, needle):
                after = pos + 2
                if (
                    pos > 0
                    and text[pos - 1].isalnum()
                    and (after == len(text) or not text[after].isalnum())
                ):
                    changes.append((pos, after, ""))
    changes.sort()
    return changes


def _is_mark(text: str, pos: int) -> bool:
    """Whether the apostrophe at ``pos`` is an Uzbek letter mark: after o or g and before
    a lower-case letter (but not a lone "s": "Greg's"), or after O/G and before two
    capitals ("O'ZBEKISTON")."""
    if pos == 0 or pos + 1 >= len(text) or text[pos - 1] not in "oOgG":
        return False
    after = text[pos + 1]
    if "a" <= after <= "z":
        return after != "s" or (pos + 2 < len(text) and "a" <= text[pos + 2] <= "z")
    return (
        text[pos - 1] in "OG" and "A" <= after <= "Z" and pos + 2 < len(text)
        and "A" <= text[pos + 2] <= "Z"
    )  # fmt: skip


def _uz_marks(text: str) -> str:
    """Every Uzbek letter mark ("'" or "ʻ", see :func:`_is_mark`) made "ʻ"; looks only at
    the apostrophes (a regex with a look-behind would try every character)."""
    places = [p for mark in ("'", "\u02bb") for p in _finds(text, mark) if _is_mark(text, p)]
    if not places:
        return text
    chars = list(text)
    for p in places:
        chars[p] = "\u02bb"
    return "".join(chars)


@dataclass(frozen=True, slots=True)
class Folded:
    """A folded text and the way back to the original offsets."""

    text: str
    #: The folded text before casefolding, aligned with ``text`` (same length, same
    #: offsets), or ``None`` when casefolding changed the length (e.g. "ß" -> "ss").
    cased: str | None
    _maps: tuple[_SegMap, ...]  # applied in this order; undone in reverse

    def cased_view(self) -> Folded | None:
        """The same text before casefolding, with the same offsets (None if not aligned)."""
        if self.cased is None:
            return None
        return Folded(self.cased, self.cased, self._maps)

    def to_original(self, start: int, end: int) -> tuple[int, int]:
        """Original ``(start, end)`` of the folded stretch ``text[start:end]`` (end > start)."""
        for segmap in reversed(self._maps):
            start, end = segmap.start(start), segmap.end(end)
        return start, end


def fold(text: str, *, casefold: bool = True) -> Folded:
    """Fold ``text`` for matching (see the module docstring)."""
    maps: list[_SegMap] = []

    def step(changes: Iterable[tuple[int, int, str]], src: str) -> str:
        new, segmap = _rewrite(src, changes)
        if segmap is not None:
            maps.append(segmap)
        return new

    ascii_only = text.isascii()
    if not ascii_only and not unicodedata.is_normalized("NFKC", text):
        text = step(_nfkc_changes(text), text)
        ascii_only = text.isascii()
    for ch, repl in _ASCII_ONE_TO_ONE:  # same length: no offset map needed
        if ch in text:
            text = text.replace(ch, repl)
    if not ascii_only:
        for ch, repl in _OTHER_ONE_TO_ONE:
            if ch in text:
                text = text.replace(ch, repl)
        text = step(_removals(text), text)
        text = _unconfuse(text)
    if "'" in text or "\u02bb" in text:
        text = _uz_marks(text)  # same length: no offset map needed
    text = step(_squeeze(text), text)
    if not casefold:
        return Folded(text, text, tuple(maps))
    folded = text.casefold()
    if len(folded) == len(text):
        return Folded(folded, text, tuple(maps))
    # rare: some character casefolds to several ("ß" -> "ss"); expand those first, then
    # the rest casefolds one to one
    folded = step(_casefold_changes(text), text).casefold()
    return Folded(folded, None, tuple(maps))


def fold_text(text: str, *, casefold: bool = True) -> str:
    """Just the folded string (for watchlist terms)."""
    return fold(text, casefold=casefold).text
