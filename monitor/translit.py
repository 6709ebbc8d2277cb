"""Cyrillic <-> Latin spellings of a term (``translit: true``). Pure, no I/O.

:func:`variants` gives the spellings a name takes in the region's press, from the term
as written:

- Cyrillic: the Russian spelling (Kazakh and Uzbek letters to their Russian
  counterparts: "Тоқаев" -> "Токаев"); Latin by the Russian passport/news convention
  ("Tokayev": е after a vowel and at the start is "ye", й/ы are "y") and its plain
  variant ("Tokaev"); Kazakh Latin ("Toqayev", "Toqaev": қ q, ғ g', ң ng, ә a, ө o,
  ү/ұ u, і i, һ h); Uzbek Latin ("Toqayev": ў oʻ, ғ gʻ, қ q, ҳ h, х x, ж j).
- Latin: the Russian and Uzbek Cyrillic spellings ("Landau" -> "Ландау", "Toshkent" ->
  "Тошкент", "Tokayev" -> "Токаев"), and from those the Latin spellings above.

Transliterating English names (Christopher, Sergio) is guesswork: write their Cyrillic
forms as aliases instead.
"""

from __future__ import annotations

_VOWELS_CYR = set("аеёиоуыэюяәөүұіў")

_RU_LAT = {
    "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ё": "yo", "ж": "zh",
    "з": "z", "и": "i", "й": "y", "к": "k", "л": "l", "м": "m", "н": "n", "о": "o",
    "п": "p", "р": "r", "с": "s", "т": "t", "у": "u", "ф": "f", "х": "kh", "ц": "ts",
    "ч": "ch", "ш": "sh", "щ": "shch", "ъ": "", "ы": "y", "ь": "", "э": "e", "ю": "yu",
    "я": "ya",
}  # fmt: skip
_KK_LAT = {**_RU_LAT, "қ": "q", "ғ": "g'", "ң": "ng", "ә": "a", "ө": "o", "ү": "u",
           "ұ": "u", "і": "i", "һ": "h", "х": "h", "ж": "j", "ш": "sh", "ў": "u",
           "ҳ": "h"}  # fmt: skip
_UZ_LAT = {**_RU_LAT, "ў": "oʻ", "ғ": "gʻ", "қ": "q", "ҳ": "h", "х": "x", "ж": "j",
           "ц": "ts"}  # fmt: skip
_TO_RU_CYR = {"қ": "к", "ғ": "г", "ң": "н", "ә": "а", "ө": "о", "ү": "у", "ұ": "у",
              "і": "и", "һ": "х", "ў": "у", "ҳ": "х"}  # fmt: skip

_TO_RU_TABLE = str.maketrans(_TO_RU_CYR | {k.upper(): v.upper() for k, v in _TO_RU_CYR.items()})

# Latin to Cyrillic: longest first
_LAT_CYR_RU = [
    ("shch", "щ"), ("yo", "ё"), ("yu", "ю"), ("ya", "я"), ("ye", "е"), ("zh", "ж"),
    ("kh", "х"), ("ts", "ц"), ("ch", "ч"), ("sh", "ш"), ("a", "а"), ("b", "б"),
    ("c", "к"), ("d", "д"), ("e", "е"), ("f", "ф"), ("g", "г"), ("h", "х"), ("i", "и"),
    ("j", "дж"), ("k", "к"), ("l", "л"), ("m", "м"), ("n", "н"), ("o", "о"), ("p", "п"),
    ("q", "к"), ("r", "р"), ("s", "с"), ("t", "т"), ("u", "у"), ("v", "в"), ("w", "в"),
    ("x", "кс"), ("y", "й"), ("z", "з"),
]  # fmt: skip
_LAT_CYR_UZ = [
    ("oʻ", "ў"), ("o'", "ў"), ("gʻ", "ғ"), ("g'", "ғ"), ("yo", "ё"), ("yu", "ю"),
    ("ya", "я"), ("ye", "е"), ("ch", "ч"), ("sh", "ш"), ("ts", "ц"), ("j", "ж"),
    ("q", "қ"), ("h", "ҳ"), ("x", "х"), ("kh", "х"),
    *[(a, b) for a, b in _LAT_CYR_RU if len(a) == 1 and a not in "jqhx"],
]  # fmt: skip


def _is_cyrillic(text: str) -> bool:
    return any("\u0400" <= ch <= "\u04ff" for ch in text)


def _match_case(src: str, out: str) -> str:
    if src.isupper() and len(src) > 1:
        return out.upper()
    if src[:1].isupper():
        return out[:1].upper() + out[1:]
    return out


def _cyr_to_lat(text: str, table: dict[str, str], *, ye: bool) -> str:
    out: list[str] = []
    prev = " "
    for ch in text:
        low = ch.lower()
        if low in table or low in ("е", "ё"):
            if low == "е" and ye and (not prev.isalpha() or prev in _VOWELS_CYR):
                rep = "ye"
            else:
                rep = table.get(low, low)
            out.append(rep.upper() if ch.isupper() and len(rep) == 1 else _match_case(ch, rep))
        else:
            out.append(ch)
        prev = low
    return "".join(out)


def _lat_to_cyr(text: str, pairs: list[tuple[str, str]]) -> str:
    out: list[str] = []
    i = 0
    low = text.lower()
    while i < len(text):
        for src, dst in pairs:
            if low.startswith(src, i):
                out.append(_match_case(text[i : i + len(src)], dst))
                i += len(src)
                break
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _from_cyrillic(text: str) -> list[str]:
    ru = text.translate(_TO_RU_TABLE)
    return [
        ru,
        _cyr_to_lat(ru, _RU_LAT, ye=True),
        _cyr_to_lat(ru, _RU_LAT, ye=False),
        _cyr_to_lat(text, _KK_LAT, ye=True),
        _cyr_to_lat(text, _KK_LAT, ye=False),
        _cyr_to_lat(text, _UZ_LAT, ye=True),
    ]


def variants(text: str) -> list[str]:
    """``text`` and its spellings in the other script(s), without duplicates, in order."""
    found = [text]
    if _is_cyrillic(text):
        found += _from_cyrillic(text)
    elif any(ch.isascii() and ch.isalpha() for ch in text):
        ru = _lat_to_cyr(text, _LAT_CYR_RU)
        uz = _lat_to_cyr(text, _LAT_CYR_UZ)
        found += [ru, uz, *_from_cyrillic(ru)]
    seen: set[str] = set()
    out = []
    for v in found:
        if v and v not in seen:
            seen.add(v)
            out.append(v)
    return out
