"""The region's languages: the choices behind word forms and language detection.

Prints figures; asserts nothing. Two comparisons, each against the alternative weighed:

1. Russian word forms: pymorphy3 (normal forms over all parses, as ``monitor.morph``
   uses it) against the Snowball stemmer (PyStemmer): on the declined names and nouns of
   the watched subjects, how many forms each joins to their base, how many look-alike
   words it wrongly joins, and words/s.
2. Language detection: ``monitor.lang`` against lingua restricted to English, Russian and
   Kazakh (lingua has no Uzbek model): accuracy on the golden sentences
   (tests/golden/lang) plus English ones, items/s, import time.

PyStemmer and lingua are not dependencies: install them beside (``pip install pystemmer
lingua-language-detector``) to see their columns.

    .venv/bin/python bench/bench_languages.py [--repeat 200]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from monitor.lang import detect  # noqa: E402

#: base word: its declined forms (names, places and nouns of the shipped watchlists)
FORMS = {
    "сергей": "Сергей Сергея Сергею Сергеем Сергее",
    "гор": "Гор Гора Гору Гором Горе",
    "ландау": "Ландау",
    "кристофер": "Кристофер Кристофера Кристоферу Кристофером Кристофере",
    "коридор": "коридор коридора коридору коридором коридоре коридоры коридоров коридорам "
    "коридорами коридорах",
    "токаев": "Токаев Токаева Токаеву Токаевым Токаеве",
    "мирзиёев": "Мирзиёев Мирзиёева Мирзиёеву Мирзиёевым Мирзиёеве",
    "маршрут": "маршрут маршрута маршруту маршрутом маршруте маршруты",
    "посланник": "посланник посланника посланнику посланником посланнике посланники",
    "транскаспийский": "Транскаспийский Транскаспийского Транскаспийскому Транскаспийским "
    "Транскаспийском",
    "средний": "Средний Среднего Среднему Средним Среднем",
    "астана": "Астана Астаны Астане Астану Астаной",
    "ташкент": "Ташкент Ташкента Ташкенту Ташкентом Ташкенте",
    "казахстан": "Казахстан Казахстана Казахстану Казахстаном Казахстане",
    "узбекистан": "Узбекистан Узбекистана Узбекистану Узбекистаном Узбекистане",
}
#: (term, look-alike that is another word)
TRAPS = [
    ("Гор", "горы"), ("Гор", "город"), ("Гор", "горный"), ("Ландау", "ландыш"),
    ("коридор", "коридорный"), ("Сергей", "серый"), ("Токаев", "токай"),
    ("маршрут", "маршрутка"), ("Астана", "астра"), ("Ташкент", "ташкентский"),
]  # fmt: skip


def rate(fn: Callable[[str], object], words: list[str], repeat: int) -> float:
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(repeat):
            for w in words:
                fn(w)
        times.append(time.perf_counter() - t0)
    return len(words) * repeat / statistics.median(times)


def morphology(repeat: int) -> None:
    from monitor.morph import WordForms, normal_forms

    words = [w for forms in FORMS.values() for w in forms.split()]
    print(f"1. Russian word forms: {len(words)} forms of {len(FORMS)} words, {len(TRAPS)} traps")
    print(f"{'':>22} {'forms joined':>13} {'traps joined':>13} {'words/s':>10}")

    def pymorphy_joins(base: str, word: str) -> bool:
        first = base.split()[0] if " " in base else base
        return WordForms(first.lower(), ["ru"], proper=first[:1].isupper()).accepts(word.lower())

    joined = sum(
        pymorphy_joins(forms.split()[0], w) for forms in FORMS.values() for w in forms.split()
    )
    traps = sum(pymorphy_joins(a, b) for a, b in TRAPS)
    speed = rate(lambda w: normal_forms.__wrapped__(w.lower()), words, repeat // 10 or 1)
    print(
        f"{'pymorphy3':>22} {joined:>6}/{len(words):<6} {traps:>6}/{len(TRAPS):<6} {speed:>10.0f}"
    )
    if importlib.util.find_spec("Stemmer") is None:
        print(f"{'PyStemmer (Snowball)':>22} not installed")
        return
    import Stemmer

    stem = Stemmer.Stemmer("russian").stemWord
    joined = sum(
        stem(w.lower()) == stem(forms.split()[0].lower())
        for forms in FORMS.values()
        for w in forms.split()
    )
    traps = sum(stem(a.lower()) == stem(b.lower()) for a, b in TRAPS)
    speed = rate(lambda w: stem(w.lower()), words, repeat)
    print(
        f"{'PyStemmer (Snowball)':>22} {joined:>6}/{len(words):<6} {traps:>6}/{len(TRAPS):<6} {speed:>10.0f}"
    )
    print("   (pymorphy3 runs only on the words a term's prefix finds, and caches them)")


ENGLISH = [
    "Special Envoy Sergio Gor arrived in Tashkent on Monday for talks on critical minerals.",
    "Deputy Secretary of State Christopher Landau met the foreign minister of Kazakhstan.",
    "The C5+1 summit in Washington was the first at the level of heads of state.",
    "Freight volumes on the Middle Corridor doubled as shippers avoid the northern route.",
    "Kazakhstan warns that the Caspian Sea is shrinking and its ports are silting up.",
    "Congress is again debating the repeal of the Jackson-Vanik amendment for the region.",
    "President Tokayev said the agreements would be signed before the end of the year.",
    "Uzbekistan and the United States agreed to expand cooperation in energy and trade.",
]


def detection(repeat: int) -> None:
    golden: list[tuple[str, str]] = [(text, "en") for text in ENGLISH]
    for path in sorted((ROOT / "tests" / "golden" / "lang").glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        texts = [c["text"] for c in data["positives"]] + list(data["traps"])
        golden += [(text, data["lang"]) for text in texts]
    texts = [t for t, _ in golden]
    print(f"\n2. language detection: {len(golden)} sentences (en, ru, kk, uz-Latn, uz-Cyrl)")
    print(f"{'':>34} {'right':>9} {'items/s':>9} {'import':>8}")
    right = sum(detect(t) == lang for t, lang in golden)
    speed = rate(detect, texts, repeat // 10 or 1)
    print(
        f"{'monitor.lang (letters, words)':>34} {right:>4}/{len(golden):<4} {speed:>9.0f} {'-':>8}"
    )
    if importlib.util.find_spec("lingua") is None:
        print(f"{'lingua':>34} not installed")
        return
    t0 = time.perf_counter()
    from lingua import Language, LanguageDetectorBuilder

    detector = (
        LanguageDetectorBuilder.from_languages(Language.ENGLISH, Language.RUSSIAN, Language.KAZAKH)
        .with_low_accuracy_mode()
        .build()
    )
    detector.detect_language_of("warm up")
    imported = time.perf_counter() - t0
    tags = {Language.ENGLISH: "en", Language.RUSSIAN: "ru", Language.KAZAKH: "kk"}

    def lingua_detect(text: str) -> str | None:
        found = detector.detect_language_of(text)
        return tags.get(found) if found is not None else None

    right = sum(lingua_detect(t) == lang for t, lang in golden)
    ours = [(t, lang) for t, lang in golden if not lang.startswith("uz")]
    right_ours = sum(lingua_detect(t) == lang for t, lang in ours)
    speed = rate(lingua_detect, texts, repeat // 10 or 1)
    print(
        f"{'lingua (en, ru, kk; low accuracy)':>34} {right:>4}/{len(golden):<4} {speed:>9.0f} "
        f"{imported:>7.2f}s"
    )
    print(
        f"   (lingua has no Uzbek model, so Uzbek cannot come out right; on the en, ru and kk "
        f"sentences alone it gets {right_ours}/{len(ours)})"
    )
    print("   (monitor.lang's word lists were written with these sentences in view)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    morphology(args.repeat)
    detection(args.repeat)


if __name__ == "__main__":
    main()
