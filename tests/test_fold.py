"""Folding: every rule, and offsets that lead back to the original text."""

from __future__ import annotations

import pytest

from monitor.fold import fold, fold_text


@pytest.mark.parametrize(
    ("original", "folded"),
    [
        ("Sergio GOR", "sergio gor"),  # casefold
        ("Straße", "strasse"),  # casefold that changes the length
        ("Ｃ５＋１", "c5+1"),  # full-width forms (NFKC)
        ("ﬁnance …", "finance ..."),  # ligature, ellipsis (NFKC)
        ("e\u0301te\u0301", "été"),  # combining accents compose
        ("a‐b‑c‒d–e—f―g−h﹣i－j", "a-b-c-d-e-f-g-h-i-j"),  # every dash
        ("‘a’ ‛b‛ ʼc′", "'a' 'b' 'c'"),  # single quotes
        ("“a” „b“ «c»", '"a" "b" "c"'),  # double quotes
        ("a\u00a0b\u2002c\u202fd\u205fe\u3000f", "a b c d e f"),  # other spaces
        ("a\n\nb\r\nc\t d", "a b c d"),  # line breaks, runs collapse
        ("Lan\u00addau", "landau"),  # soft hyphen
        ("Gor\u200b\u200c\u200d\u2060\ufeffs", "gors"),  # zero-width characters
        ("Gor's visit, Gor’s visit, GOR'S", "gor visit, gor visit, gor"),  # possessives
        ("it'sun", "it'sun"),  # not a possessive
    ],
)
def test_rules(original: str, folded: str) -> None:
    assert fold_text(original) == folded


def test_cyrillic_lookalikes_in_mixed_and_short_tokens() -> None:
    assert fold_text("С5+1") == "c5+1"  # Cyrillic С beside a digit
    assert fold_text("ТITR") == "titr"  # Cyrillic Т beside Latin letters
    assert fold_text("ТІТR") == "titr"  # all look-alikes, short capitals
    assert fold_text("ТМТМ", casefold=False) == "TMTM"  # same for rules and items


def test_genuine_russian_is_kept() -> None:
    assert fold_text("Ландау и Гор, Токаев, США") == "ландау и гор, токаев, сша"
    assert fold_text("Средний коридор") == "средний коридор"
    assert fold_text("ТОКАЕВ") == "токаев"  # long all-capital word: not an acronym


def test_cased_view_is_aligned() -> None:
    f = fold("The “TITR” route")
    assert f.cased == 'The "TITR" route'
    assert f.text == f.cased.casefold()
    assert fold("Straße TITR").cased is None  # not aligned: casefolding grew the text


@pytest.mark.parametrize(
    ("original", "needle", "expected"),
    [
        ("Sergio Gor’s visit", "gor", "Gor"),
        ("Special  Envoy\n\nSergio Gor", "envoy sergio", "Envoy\n\nSergio"),
        ("Lan\u00addau said", "landau", "Lan\u00addau"),
        ("x Straße Gor", "gor", "Gor"),
        ("x Straße Gor", "strasse", "Straße"),
        ("Ｃ５＋１ summit", "c5+1", "Ｃ５＋１"),
        ("e\u0301te\u0301 C5+1", "c5+1", "C5+1"),
        ("“C5 + 1” — talks", "c5 + 1", "C5 + 1"),
        ("Chris\u200b\u200bLandau and Gor", "gor", "Gor"),
    ],
)
def test_offsets_map_back(original: str, needle: str, expected: str) -> None:
    f = fold(original)
    start = f.text.index(needle)
    o_start, o_end = f.to_original(start, start + len(needle))
    assert original[o_start:o_end] == expected


def test_every_stretch_maps_inside_the_original() -> None:
    original = "Ｃ５ Straße\u00ad  “Gor’s”\n–e\u0301 ﬁ"
    f = fold(original)
    for i in range(len(f.text)):
        for j in range(i + 1, len(f.text) + 1):
            a, b = f.to_original(i, j)
            assert 0 <= a < b <= len(original)


def test_ascii_text_unchanged_apart_from_case() -> None:
    text = "A plain sentence, with punctuation: 1-2-3."
    assert fold(text).text == text.lower()
    assert fold(text).to_original(2, 7) == (2, 7)
