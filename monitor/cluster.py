"""Stories: which earlier item, if any, reports the same event as a new one. Pure, no I/O.

A :class:`StoryIndex` holds a rolling window of recent items (their features, not their
text) and decides for each new item whether it joins the story of one of them or starts
a story of its own. The same items added in the same order give the same stories.

Evidence, strongest first (each pair of items is judged on its own):

1. **Copy**: the same words in the title and summary (after folding case, accents and
   punctuation), under another link. Joined within ``duplicate_window``.
2. **Near-duplicate**: a wire story lightly edited. Word 3-gram shingles, MinHash
   signatures and an LSH index (as datasketch makes them) find them; the estimated
   Jaccard similarity must reach ``duplicate_similarity``, within ``duplicate_window``.
3. **Same event**: different write-ups. TF-IDF cosine over the window (titles count
   twice; Cyrillic transliterated, so names agree across Russian and English; words cut
   to 6 letters, a crude stem), adjusted by the watchlists both items hit (shared ones
   add, ones only one of them hit subtract) and by the time between them; joined when it
   reaches ``event_similarity`` within ``event_window``. Items that share at least three
   watchlists (``MIN_SHARED_WATCHLISTS``), where neither hits one the other lacks (one
   extra on one side is allowed: a longer text names more), need only
   ``entity_similarity`` divided by one less than the number they share. Two items in one
   script within a third of ``event_window`` whose titles name the same someone or
   something (``title_names``, first four letters) and that contradict no watchlist need
   only ``TITLE_NAME_SHARE`` of ``event_similarity`` over ``TITLE_NAME_TERMS`` shared words
   (short leads of one event told in other words share its names and little else).
4. **Other script**: failing those, a report in the other script (Russian / English
   share little more than names) within a third of ``event_window``, sharing a watchlist
   and contradicting none, with enough names alike once transliterated
   (``_across_scripts``).

Precision comes first: merging two events hides one of them from the reader, splitting
one event only repeats it. So every rule needs time proximity, and a candidate story is
joined only if the new item is close to one of its members (the best-scoring pair wins;
ties go to the older story).

The window is bounded by time (``duplicate_window``, the longer of the two windows) and
by count (``max_items``); what leaves it can no longer be joined, and its words are
forgotten once no item of the window has them (see ``StoryIndex._prune``).

An item's features come in two parts. Its :class:`Sketch` needs its text alone (folded
words, stems and their weights, MinHash signature and LSH bands, exact key, names, name
keys): :func:`sketches` works out those of many items together (the store passes a
feed's new items), as NumPy calls cost microseconds whatever their size.
:meth:`StoryIndex.features` then maps the sketch's stems to the window's term ids, the
one part that depends on the items before it.
"""

from __future__ import annotations

import hashlib
import math
import re
import sys
import zlib
from array import array
from bisect import bisect_left
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, NamedTuple

from monitor.fold import fold_text
from monitor.models import StoryDecision

#: MinHash permutations: 64 keeps a signature at 256 bytes and the Jaccard estimate's
#: standard error at about 0.06, enough for a 0.6 threshold on whole paragraphs.
NUM_PERM = 64
#: datasketch's hashing scheme for the signatures (its 2.x default).
SCHEME = "affine32"
#: Words per shingle for near-duplicate detection.
SHINGLE = 3
#: Letters kept of each word for TF-IDF (truncation stemming: "meets"/"meeting" -> "meetin").
STEM = 6
#: How much text of an item is looked at (title + summary + the start of the content).
MAX_CHARS = 2000
#: Different write-ups must share at least this many words (stems) to be one event, or
#: this many (names, mostly) when their watchlists agree: two short headlines that share
#: two words ("Zebra sighting 1", "Zebra sighting 2") are not evidence enough.
MIN_SHARED_TERMS = 4
#: Watchlists two items must share for names alone to join them (two, such as c5plus1
#: and gor, are shared by every report of the envoy's tour).
MIN_SHARED_WATCHLISTS = 3
MIN_SHARED_NAMES = 2
#: Recent items per watchlist looked at for a report in the other script.
CROSS_SCRIPT_CANDIDATES = 200
#: The most that shared watchlists add to a same-event score (see ``decide``).
MAX_ADJUST = 0.1
#: Shingles whose MinHash values are worked out in one pass (a 64-row uint32 matrix:
#: 1 MB at 4096).
SIGNATURE_BATCH = 4096
#: What the time between two items takes from their same-event score at the far end of
#: ``event_window`` (in proportion before it).
TIME_PENALTY = 0.1
#: Two write-ups in one script whose titles name the same someone or something, within a
#: third of ``event_window``, sharing this many words and reaching this share of
#: ``event_similarity`` in cosine (0.1 at the default), are one event, failing the rules
#: above ("Masked thieves steal Napoleon-era jewels at the Louvre" / "Louvre robbers swipe
#: jewels once worn by French royalty").
TITLE_NAME_TERMS = 5
TITLE_NAME_SHARE = 0.4
#: Candidates scored exactly per new item, taken from the inverted index.
CANDIDATES = 12
#: The new item's terms whose posting lists are read to find them: its rarer terms
#: that weigh most (a busy window's lists are long; the rest add little).
CANDIDATE_TERMS = 16
#: Posting entries a candidate search reads beyond which it adds them up in NumPy (see
#: ``_best_partial``): a few calls of fixed cost, against a Python loop's cost per entry.
NUMPY_POSTINGS = 150  # where the two cost the same, measured on 10,000 and 60,000 items
#: Words whose stem and hash are remembered (the cache is emptied when full).
WORD_CACHE = 50_000
#: Terms no item in the window has any more are forgotten once they outnumber the live
#: ones by this many (see ``StoryIndex._prune``): the vocabulary stays within twice the
#: window's own plus this, however long the daemon runs.
DEAD_TERMS = 4096

_WORD = re.compile(r"\d+|[^\W\d_]+", re.UNICODE)  # "250m" -> "250", "m"

_STOPWORDS = frozenset(
    """a an and are as at be been but by for from has have he her his in into is it its
    of on or our over said says she that the their them they this to was were which who
    will with would after also about more than new not out up we you us via
    и в во на с со по к ко о об от для что как это его ее её их же за из у а но
    не ни то бы был была были было будет при над под до после также""".split()
)

_CYRILLIC = dict(
    zip(
        "абвгдеёжзийклмнопрстуфхцчшщъыьэюяіїєў",
        (
            "a b v g d e e zh z i y k l m n o p r s t u f kh ts ch sh shch _ y _ e yu ya i yi ye u"
        ).split(),
        strict=True,
    )
)
_CYRILLIC["ъ"] = _CYRILLIC["ь"] = ""
_TRANSLIT = str.maketrans(_CYRILLIC)


@dataclass(frozen=True, slots=True)
class StoryParams:
    """The thresholds (see the module docstring and the ``stories.*`` settings)."""

    duplicate_similarity: float = 0.6
    duplicate_window: float = 72 * 3600.0  # seconds
    event_similarity: float = 0.25
    entity_similarity: float = 0.2
    event_window: float = 36 * 3600.0  # seconds
    max_items: int = 100_000

    @property
    def window(self) -> float:
        return max(self.duplicate_window, self.event_window)


class Doc:
    """One item's features, as the window keeps them."""

    __slots__ = (
        "at", "bands", "cyrillic", "entities", "exact", "key", "keys", "names", "signature",
        "story", "terms", "weights",
    )  # fmt: skip

    def __init__(
        self,
        at: float,
        entities: frozenset[str],
        exact: bytes | None,
        signature: bytes | None,
        terms: array[int],
        weights: array[int],
        names: frozenset[str] = frozenset(),
        cyrillic: bool = False,
        keys: frozenset[str] = frozenset(),
        bands: array[int] | None = None,
    ) -> None:
        self.at = at
        self.names = names  # the names in the title, first four letters
        self.keys = keys  # name keys of title and text, for matching across scripts
        self.cyrillic = cyrillic  # written mostly in Cyrillic
        self.entities = entities
        self.exact = exact
        self.signature = signature  # NUM_PERM 32-bit values, or None for very short texts
        self.bands = _NO_BANDS if bands is None else bands  # the signature's LSH band keys
        self.terms = terms  # term ids, ascending
        self.weights = weights  # term frequencies, title words counting twice
        self.key = 0
        self.story = 0


def words(text: str) -> list[str]:
    """Folded words of ``text`` (case, accents, punctuation and look-alikes folded)."""
    text = text[:MAX_CHARS]
    # What folding does to an ASCII text without "'" or "`" changes no word but its case
    # (folded below: an ASCII text's casefold is its lower()): it maps whitespace to
    # spaces and squeezes them, and the rest needs an apostrophe (Uzbek letter marks, a
    # possessive "'s"; "`" is one) or a non-ASCII letter.
    plain = text.isascii() and "'" not in text and "`" not in text
    folded = text if plain else fold_text(text)
    if folded.isascii():  # the common case, without the regular expression
        raw = folded.encode()
        if not _letter_by_digit(raw):  # no "250m" to cut in two
            # The table lowers the letters in the same pass (no str.lower() before it).
            return raw.translate(_ASCII_WORDS).decode().split()
        folded = folded.lower()  # the text kept as it was (fold_text's is lower case)
    return _WORD.findall(folded)


def _letter_by_digit(raw: bytes) -> bool:
    """A letter next to a digit in ASCII ``raw`` ("250m"). Each byte's class (1 a letter,
    2 a digit, 0 the rest) as one big integer, OR-ed with its right neighbour's: 3 where a
    letter and a digit meet. Three times cheaper than searching a text of classes for
    "a0" and "0a" (a search steps one byte at a time through the letters)."""
    classes = int.from_bytes(raw.translate(_ASCII_CLASS), "little")
    pairs = classes | (classes >> 8)
    ones = _ONES if len(raw) <= _ONES_BYTES else int.from_bytes(b"\x01" * len(raw), "little")
    return bool(pairs & (pairs >> 1) & ones)  # bit 0 of a byte: both bits of its pair set


_CAPITALISED = re.compile(r"\b[^\W\d_][\w'-]*", re.UNICODE)
# ASCII bytes: letters (lowered) and digits kept, the rest a space.
_ASCII_WORDS = bytes(
    ord(chr(c).lower()) if chr(c).isalnum() and c < 128 else 32 for c in range(256)
)
# ASCII bytes: 1 a letter, 2 a digit, 0 the rest (see ``_letter_by_digit``).
_ASCII_CLASS = bytes(
    1 if chr(c).isalpha() and c < 128 else 2 if chr(c).isdigit() and c < 128 else 0
    for c in range(256)
)
# The byte 1 at each place of a text of up to this many bytes, as one integer.
_ONES_BYTES = 2 * MAX_CHARS
_ONES = int.from_bytes(b"\x01" * _ONES_BYTES, "little")
_ASCII_NAMES = bytes(
    c if (chr(c).isalnum() or chr(c) in "_'-") and c < 128 else 32 for c in range(256)
)


def capitalised(text: str) -> list[str]:
    """Words that start with a letter (``_CAPITALISED``), found without the regular
    expression in ASCII text."""
    if not text.isascii():
        return _CAPITALISED.findall(text)
    out: list[str] = []
    for piece in text.encode().translate(_ASCII_NAMES).decode().split():
        if piece[0].isalpha():
            out.append(piece)
        else:
            out += _CAPITALISED.findall(piece)
    return out


def title_names(title: str) -> list[str]:
    """Words of a title that look like names: capitalised, not stop words, not short
    acronyms (GDP, US). A headline in Title Case (no longer word in lower case) has none:
    every word is capitalised."""
    found = capitalised(title)
    if not any(w[0].islower() and len(w) > 3 and w not in _STOPWORDS for w in found):
        return []
    return [
        w
        for w in found
        if w[0].isupper() and w.casefold() not in _STOPWORDS and not (w.isupper() and len(w) < 5)
    ]


_SKELETON = [("dzh", "j"), ("zh", "j"), ("kh", "h"), ("ch", "c"), ("sh", "s"), ("ts", "c"),
             ("w", "v"), ("x", "ks"), ("q", "k")]  # fmt: skip


@lru_cache(maxsize=65536)
def name_key(word: str) -> str:
    """A spelling-independent key for a name, equal across Russian and English more often
    than not: transliterated, a few digraphs merged, vowels dropped after the first letter,
    four letters kept ("Токаеву", "Tokayev" -> "tkv"; "Жапаров", "Japarov" -> "jprv")."""
    w = word.casefold().translate(_TRANSLIT)
    for a, b in _SKELETON:
        w = w.replace(a, b)
    head, rest = w[:1], re.sub(r"[aeiouy_'-]", "", w[1:])
    rest = re.sub(r"(.)\1+", r"\1", rest)
    return (head + rest)[:4]


def _name_keys(text: str) -> frozenset[str]:
    return frozenset(
        name_key(w)
        for w in capitalised(text[:MAX_CHARS])
        if w[0].isupper() and len(w) > 2 and w.casefold() not in _STOPWORDS
    )


def _prefixes(index: StoryIndex, doc: Doc) -> set[str]:
    # The first four letters of each term are kept beside the stem (``_prefix``), not
    # sliced from it here: a candidate's are looked up at every name check.
    return set(map(index._prefix.__getitem__, doc.terms))


def _name_conflict(index: StoryIndex, doc: Doc, other: Doc) -> bool:
    """Each title names someone or something the other item never mentions ("Japarov and
    Mirziyoyev hold phone call" / "Japarov and Berdimuhamedov hold phone call"), judged by
    the first four letters (Uzbek, Uzbekistan). Not across scripts: a Russian report
    spells the names otherwise."""
    if doc.cyrillic != other.cyrillic or not doc.names or not other.names:
        return False
    return bool(doc.names - _prefixes(index, other)) and bool(other.names - _prefixes(index, doc))


_CYRILLIC_LETTER = re.compile("[\u0400-\u04ff]")


def _cyrillic(text: str) -> bool:
    """Mostly Cyrillic letters (spaces aside)."""
    letters = len(text) - text.count(" ")
    return len(_CYRILLIC_LETTER.findall(text)) * 2 > letters


def _stem(word: str) -> str:
    return word.translate(_TRANSLIT)[:STEM]


class Sketch(NamedTuple):
    """What an item's text alone gives, before any window is looked at: the same for the
    same text wherever it is worked out. :meth:`StoryIndex.features` adds the window's
    term ids (the one part that depends on what came before)."""

    stems: dict[str, int]  # stem -> weight (title words count twice), in order of first use
    signature: bytes | None  # the MinHash signature, None under SHINGLE words
    bands: array[int]  # the signature's LSH band keys
    exact: bytes | None  # a hash of the folded words: copies have the same
    names: frozenset[str]  # the names in the title, first four letters
    cyrillic: bool  # written mostly in Cyrillic
    keys: frozenset[str] | None  # name keys (``_name_keys``); None: not worked out


def sketch(title: str, text: str, similarity: float = 0.6, keys: bool = False) -> Sketch:
    """The :class:`Sketch` of an item's ``title`` and other ``text``, with LSH bands for
    the ``similarity`` threshold (``duplicate_similarity``), and its name keys if
    ``keys``."""
    (stems, exact, names, cyrillic, keys_), hashes = _sketch(title, text, keys)
    signature, bands = _UNSIGNED
    if len(hashes) >= SHINGLE:
        signature = minhash_signature(_shingle_hashes(hashes)).tobytes()
        bands = array("I", [zlib.crc32(signature[lo:hi]) for lo, hi in band_slices(similarity)])
    return Sketch(stems, signature, bands, exact, names, cyrillic, keys_)


def sketches(texts: Iterable[tuple[str, str, bool]], similarity: float = 0.6) -> list[Sketch]:
    """:func:`sketch` of each (title, text, keys), the MinHash signatures of many items
    worked out together: a NumPy call costs microseconds whatever its size, and one item's
    signature took a dozen of them."""
    parts = [_sketch(title, text, keys) for title, text, keys in texts]
    shingled = [k for k, (_, hashes) in enumerate(parts) if len(hashes) >= SHINGLE]
    signed: dict[int, tuple[bytes | None, array[int]]] = {}  # index in parts -> signature, bands
    slices = band_slices(similarity)
    crc32 = zlib.crc32
    done = 0
    while done < len(shingled):
        batch: list[int] = []
        size = 0
        while done < len(shingled) and (not batch or size < SIGNATURE_BATCH):
            batch.append(shingled[done])
            size += len(parts[shingled[done]][1])
            done += 1
        for k, sig in zip(batch, _signatures([parts[k][1] for k in batch]), strict=True):
            signed[k] = sig, array("I", [crc32(sig[lo:hi]) for lo, hi in slices])
    out = []
    for k, ((stems, exact, names, cyrillic, keys), _) in enumerate(parts):
        signature, bands = signed.get(k, _UNSIGNED)
        out.append(Sketch(stems, signature, bands, exact, names, cyrillic, keys))
    return out


def _sketch(title: str, text: str, keys: bool) -> tuple[_Text, array[int]]:
    """An item's sketch but its signature and bands (stems, exact, names, cyrillic and
    keys, in the order of :class:`Sketch`), and the hashes of its words."""
    title_words = words(title)
    text_words = words(text)
    tokens = title_words + text_words
    stem_of, hash_of = _STEM_OF, _HASH_OF
    if len(hash_of) > WORD_CACHE:
        stem_of.clear()
        hash_of.clear()
    try:
        hashes = array("I", map(hash_of.__getitem__, tokens))
    except KeyError:  # words not seen before (or since the cache was emptied)
        for w in set(tokens).difference(hash_of):
            stem_of[w], hash_of[w] = _word_info(w)
        hashes = array("I", map(hash_of.__getitem__, tokens))
    # Stems in order of first use, title words counting twice; "": no term.
    stems = Counter(map(stem_of.__getitem__, title_words + tokens))
    stems.pop("", None)
    joined = " ".join(tokens)
    names = title_names(title)
    return (
        stems,
        hashlib.blake2b(joined.encode(), digest_size=12).digest() if tokens else None,
        frozenset(w[:4] for w in words(" ".join(names))) if names else frozenset(),
        not joined.isascii() and _cyrillic(joined),
        _name_keys(f"{title}\n{text}") if keys else None,
    ), hashes


#: Each word's stem ("": a stop word, or too short) and 32-bit hash, worked out once,
#: not per occurrence; emptied when they grow past WORD_CACHE words.
_STEM_OF: dict[str, str] = {}
_HASH_OF: dict[str, int] = {}


def _word_info(word: str) -> tuple[str, int]:
    stem = ""
    if word not in _STOPWORDS and (len(word) > 1 or word.isdigit()):
        stem = _stem(word)
    return stem, zlib.crc32(word.encode())


def _shingle_hashes(hashes: Sequence[int] | Any) -> Any:
    """32-bit hashes of the word 3-grams, from the words' own hashes (each word is hashed
    once; datasketch's MinHash mixes the result again before permuting it). Worked out
    modulo 2**32 in uint32, which wraps as the 64-bit sum masked to 32 bits would."""
    import numpy as np

    h = np.asarray(hashes, dtype=np.uint32)
    return h[:-2] * _MIX1 + h[1:-1] * _MIX2 + h[2:]


def _signatures(hashes: Sequence[array[int]]) -> list[bytes]:
    """The MinHash signature (``minhash_signature``) of each item's shingles, from the
    hashes of its words (at least SHINGLE of them), all items in one NumPy pass."""
    import numpy as np

    lengths = np.array([len(h) for h in hashes])
    ends = np.cumsum(lengths)
    shingles = _shingle_hashes(np.frombuffer(b"".join(hashes), dtype=np.uint32))
    keep = np.ones(len(shingles), dtype=bool)  # not those that run into the next item
    keep[(ends - 2)[:-1]] = keep[(ends - 1)[:-1]] = False
    starts = np.concatenate(([0], np.cumsum(lengths - (SHINGLE - 1))[:-1]))
    # Items along the rows' length: each row's least values are read in one pass.
    least = np.minimum.reduceat(_permuted(shingles[keep]), starts, axis=1)
    raw = np.minimum(_minhash()[0].reshape(-1, 1), least).T.tobytes()
    size = NUM_PERM * 4
    return [raw[k * size : (k + 1) * size] for k in range(len(hashes))]


def minhash_signature(shingles: Any) -> Any:
    """The MinHash signature of the shingle hashes (NumPy array of 32-bit values): what
    a blank ``MinHash(scheme="affine32", hashfunc=int)`` holds after
    ``update_batch(shingles.tolist())``, worked out on the array as datasketch 2.x does
    (MurmurHash3's 32-bit finaliser, the affine permutations modulo 2**32, the least
    value of each) without its round trip through a list of Python ints.
    ``tests/test_stories.py`` holds it equal to datasketch's."""
    import numpy as np

    return np.minimum(_minhash()[0], _permuted(shingles).min(axis=1))


def _permuted(shingles: Any) -> Any:
    """Each shingle hash (a column) mixed by MurmurHash3's 32-bit finaliser, then under
    each of the NUM_PERM affine permutations modulo 2**32 (the rows), as datasketch does.
    Rows of shingles rather than columns: NumPy reads a matrix of a few thousand
    shingles twice as fast that way."""
    import numpy as np

    _, perm_a, perm_b = _minhash()
    hv = shingles.astype(np.uint32)
    hv ^= hv >> _FMIX32[0]
    hv *= _FMIX32[1]
    hv ^= hv >> _FMIX32[2]
    hv *= _FMIX32[3]
    hv ^= hv >> _FMIX32[4]
    permuted = perm_a.reshape(-1, 1) * hv
    permuted += perm_b.reshape(-1, 1)
    return permuted


@lru_cache(maxsize=1)
def _minhash() -> tuple[Any, Any, Any]:
    """A blank MinHash's empty signature and its permutations (a and b), drawn as
    datasketch 2.x's ``MinHash(num_perm=NUM_PERM, seed=1, scheme="affine32")`` draws them
    (NumPy's legacy ``RandomState``, seed 1: an odd multiplier, then an offset, each
    uniform over 32 bits). Drawn here rather than read from datasketch, whose import
    costs about 0.35 s of CPU (it brings SciPy in) in every process that makes a story
    window; ``tests/test_stories.py`` holds the two equal."""
    import numpy as np

    gen = np.random.RandomState(1)
    perm_a = gen.randint(0, 1 << 31, NUM_PERM, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    perm_b = gen.randint(0, 1 << 32, NUM_PERM, dtype=np.uint32)
    return np.full(NUM_PERM, 0xFFFFFFFF, dtype=np.uint32), perm_a, perm_b


@lru_cache(maxsize=8)
def band_slices(similarity: float) -> tuple[tuple[int, int], ...]:
    """The byte ranges of a signature that make its LSH bands at this threshold."""
    bands, rows = lsh_params(similarity, NUM_PERM)
    return tuple((b * rows * 4, (b + 1) * rows * 4) for b in range(bands))


def _jaccard(a: bytes, b: bytes) -> float:
    """The Jaccard similarity two signatures estimate: the share of equal values."""
    import numpy as np

    return float((np.frombuffer(a, dtype=np.uint32) == np.frombuffer(b, dtype=np.uint32)).mean())


#: The type code of the item ids in posting lists: 32-bit, as ``items.id`` is (an
#: INTEGER column: 32-bit on PostgreSQL; on SQLite a row id counts from 1 and would
#: need two billion items to pass it).
_ITEM_ID = "i"
_MIX1, _MIX2 = 0x9E3779B1, 0x85EBCA77
#: MurmurHash3's 32-bit finaliser: shift, multiplier, shift, multiplier, shift.
_FMIX32 = (16, 0x85EBCA6B, 13, 0xC2B2AE35, 16)
_NO_BANDS: array[int] = array("I")
_UNSIGNED: tuple[bytes | None, array[int]] = (None, _NO_BANDS)  # no signature: too short
#: What :func:`_sketch` works out of an item's text alone.
_Text = tuple[dict[str, int], bytes | None, frozenset[str], bool, frozenset[str] | None]
_NEW = StoryDecision(None, "new")


class StoryIndex:
    """The rolling window and the decisions. Single-threaded: the store's writer owns it.

    Use: ``doc = index.features(...)``, ``decision = index.decide(doc)``, then (with the
    story the store settled on) ``index.add(doc, item_id, story_id, seq)``, before the
    features of another item are added (terms no item of the window has are forgotten
    now and then: see ``_prune``; ``assign`` keeps its items' terms). ``mark()`` /
    ``undo(mark)`` take back what was added since a mark when a transaction rolls back.
    ``watermark`` is the highest assignment number (``items.story_seq``) the window has
    seen, so that instances sharing a database can catch up with each other.
    """

    def __init__(self, params: StoryParams | None = None) -> None:
        # NumPy is imported and the permutations drawn now, not at the first item: that
        # one is assigned inside a write transaction, holding the story lock.
        self.params = params or StoryParams()
        self.watermark: int | None = None
        self._clock = 0.0  # the latest item time seen: the window ends here
        self._pending: dict[int, Doc] = {}
        self._journal: list[int] = []  # added since mark()
        self._journaling = False
        self._docs: dict[int, Doc] = {}  # by item id, in the order added
        self._order: list[int] = []  # item ids as added (oldest first); see _expire
        self._first = 0  # index into _order of the oldest live entry
        # The vocabulary: every term some item of the window has, and (until _prune) some
        # it no longer has. Term ids are handed out in the order stems are first seen and
        # never reused (a forgotten stem seen again gets a new one, after every other: as
        # a new stem would); only the window's Docs hold them, nothing stored. Docs keep
        # them in 32 bits: 2**31 stems, decades of news.
        self._term_ids: dict[str, int] = {}  # stem -> term id
        self._next_term = 0
        self._live_terms = 0  # terms with df > 0
        self.stems: dict[int, str] = {}  # term id -> stem
        self._prefix: dict[int, str] = {}  # term id -> its stem's first four letters
        # Term id -> item ids, ascending, in 32 bits (``_ITEM_ID``): a window's postings
        # hold tens of entries an item, so 64 would cost ~30 MB more at 100,000 items.
        self._postings: dict[int, array[int]] = {}
        # Term id -> entries at the front of its posting that are gone from the window:
        # the window drops its oldest item, whose id heads most of its terms' postings,
        # and deleting there moved the whole array each time (a frequent term's posting
        # holds most of a full window: a full window of 100,000 spent 20 ms an item).
        # They are cut off once they are an eighth of the posting (see _remove): a
        # posting holds at most 8/7 of its live entries, and a removal moves 7 entries
        # on average at most.
        self._heads: dict[int, int] = {}
        self._df: dict[int, int] = {}  # term id -> items in the window with it
        self._ldf: dict[int, float] = {}  # term id -> log(df + 1), kept for today's IDF
        self._exact: dict[bytes, int] = {}  # exact key -> newest item id with it
        self._by_watchlist: dict[str, deque[int]] = {}  # recent items each watchlist hit
        _minhash()  # the MinHash permutations, drawn now (see above)
        # LSH banding, bands and rows chosen as datasketch's MinHashLSH chooses them; the
        # buckets are one dict per band holding the newest item (MinHashLSH keeps a set
        # per bucket: about 3 KB an item, 300 MB at 100,000).
        bands = len(band_slices(self.params.duplicate_similarity))
        self._buckets: list[dict[int, int]] = [{} for _ in range(bands)]

    def __len__(self) -> int:
        return len(self._docs)

    def __getstate__(self) -> dict[str, Any]:
        """What :mod:`pickle` keeps of a window (``pipeline.window_file``): all of it but
        what an open transaction added, as a window is saved between transactions."""
        state = self.__dict__.copy()
        state.update(_pending={}, _journal=[], _journaling=False)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        _minhash()  # drawn now, as a new window does (see __init__)

    @property
    def window(self) -> float:
        """Seconds of items looked back on."""
        return self.params.window

    @property
    def max_items(self) -> int:
        return self.params.max_items

    # ------------------------------------------------------------------ features

    def sketch(self, title: str, text: str, keys: bool = False) -> Sketch:
        """What the item's text alone gives (:func:`sketch`), under this index's settings."""
        return sketch(title, text, self.params.duplicate_similarity, keys=keys)

    def sketches(self, texts: Iterable[tuple[str, str, bool]]) -> list[Sketch]:
        """:meth:`sketch` of each (title, text, keys), worked out together (cheaper)."""
        return sketches(texts, self.params.duplicate_similarity)

    def features(
        self,
        title: str,
        text: str,
        watchlists: Iterable[str],
        at: datetime,
        sketched: Sketch | None = None,
    ) -> Doc:
        """An item's features: ``title``, its other text (summary, content), the
        watchlists that hit it and when it happened (published, else first seen).
        ``sketched``: the text's :class:`Sketch`, if worked out already (else it is now);
        what is left maps its stems to the window's term ids."""
        entities = frozenset(watchlists)
        sk = sketched or self.sketch(title, text, keys=bool(entities))
        term_ids = self._term_ids
        pairs = []
        for stem, weight in sk.stems.items():
            tid = term_ids.get(stem)
            if tid is None:
                tid = self._new_term(stem)
            pairs.append((tid, weight))
        pairs.sort()
        keys = frozenset[str]()
        if entities:  # only items some watchlist hit are matched across scripts
            keys = sk.keys if sk.keys is not None else _name_keys(f"{title}\n{text}")
        return Doc(
            at=at.timestamp(),
            entities=entities,
            exact=sk.exact,
            signature=sk.signature,
            bands=sk.bands,
            terms=array("i", [t for t, _ in pairs]),
            weights=array("H", [w for _, w in pairs]),
            names=sk.names,
            cyrillic=sk.cyrillic,
            keys=keys,
        )

    def _new_term(self, stem: str) -> int:
        tid = self._term_ids[stem] = self._next_term
        self._next_term += 1
        self.stems[tid] = stem
        self._prefix[tid] = sys.intern(stem[:4])  # one string for the stems that share it
        self._postings[tid] = array(_ITEM_ID)
        self._df[tid] = 0
        self._ldf[tid] = 0.0
        return tid

    # ------------------------------------------------------------------ decisions

    def _vector(self, doc: Doc) -> tuple[dict[int, float], float]:
        """The item's TF-IDF weights under today's IDF, and their norm."""
        top, ldf = math.log(len(self._docs) + 1) + 1.0, self._ldf
        vec = {t: w * (top - ldf[t]) for t, w in zip(doc.terms, doc.weights, strict=True)}
        return vec, math.sqrt(sum(v * v for v in vec.values())) or 1.0

    def _cosine(
        self, vec: dict[int, float], norm: float, other: Doc, both: set[int], top: float
    ) -> tuple[float, int]:
        """Cosine of ``vec`` with ``other`` under today's IDF (``top``: its greatest
        value, worked out once per decision), and the terms they share (``both``, known
        already: a set's membership test costs less than a lookup)."""
        ldf = self._ldf
        dot = onorm = 0.0
        for t, w in zip(other.terms, other.weights, strict=True):
            ow = w * (top - ldf[t])
            onorm += ow * ow
            if t in both:
                dot += vec[t] * ow
        return dot / (norm * (math.sqrt(onorm) or 1.0)), len(both)

    def decide(self, doc: Doc) -> StoryDecision:
        """The story ``doc`` belongs to, judged against the window (from which items
        that are too old are dropped first)."""
        p = self.params
        self._clock = max(self._clock, doc.at)
        self._expire(self._clock)
        best = _NEW
        if doc.exact is not None:
            key = self._exact.get(doc.exact)
            if key is not None:
                other = self._docs[key]
                if abs(doc.at - other.at) <= p.duplicate_window:
                    return StoryDecision(other.story, "copy", 1.0, key)
        if doc.signature is not None and self._docs:
            near = sorted(filter(self._docs.__contains__, self._band_matches(doc.bands)))
            for key in near:
                other = self._docs[key]
                if other.signature is None or abs(doc.at - other.at) > p.duplicate_window:
                    continue
                if _name_conflict(self, doc, other):
                    continue
                jaccard = _jaccard(doc.signature, other.signature)
                if jaccard >= p.duplicate_similarity and _better(jaccard, other, best):
                    best = StoryDecision(other.story, "near-duplicate", jaccard, key)
            if best.story is not None:
                return best
        vec, norm = self._vector(doc)
        # The cosine is at most the norm of this item's weights on the terms it shares
        # with the other over its whole norm (Cauchy-Schwarz): when even that bound
        # reaches neither threshold, the exact cosine is not worked out.
        nn = norm * norm
        squares = {t: v * v / nn for t, v in vec.items()}
        mine_terms = set(squares)
        by_names = len(doc.entities) >= MIN_SHARED_WATCHLISTS  # "same names" possible
        # The same for every candidate: worked out once.
        top = math.log(len(self._docs) + 1) + 1.0
        docs, window = self._docs, p.event_window
        recent, by_title_bound = window / 3, p.event_similarity * TITLE_NAME_SHARE
        for key in self._candidates(doc, vec):
            other = docs[key]
            dt = abs(doc.at - other.at)
            if dt > window:
                continue
            both = mine_terms.intersection(other.terms)
            if len(both) < MIN_SHARED_NAMES:
                continue
            bound = math.sqrt(sum(map(squares.__getitem__, both))) + 1e-9
            by_title = (
                dt <= recent
                and len(both) >= TITLE_NAME_TERMS
                and bound >= by_title_bound
                and doc.cyrillic == other.cyrillic
                and not doc.names.isdisjoint(other.names)
            )
            if (
                not by_names
                and not by_title
                and (len(both) < MIN_SHARED_TERMS or bound + MAX_ADJUST < p.event_similarity)
            ):
                continue
            if doc.entities and other.entities:
                shared = len(doc.entities & other.entities)
                mine = len(doc.entities - other.entities)
                theirs = len(other.entities - doc.entities)
            else:  # most items: no set worked out
                shared, mine, theirs = 0, len(doc.entities), len(other.entities)
            # Watchlists on both sides that the other lacks contradict ("Gor meets
            # Mirziyoyev" / "Gor meets Tokayev"); one side naming more does not.
            conflict = min(mine, theirs)
            extra = mine + theirs - 2 * conflict
            adjust = (
                MAX_ADJUST / 2 * min(shared, 2)
                - 0.15 * min(conflict, 2)
                - 0.02 * min(extra, 3)
                - TIME_PENALTY * dt / window
            )
            if not (
                (len(both) >= MIN_SHARED_TERMS and bound + adjust >= p.event_similarity)
                or (by_title and not conflict)
                or (
                    shared >= MIN_SHARED_WATCHLISTS
                    and not conflict
                    and extra <= 1
                    and bound >= p.entity_similarity / (shared - 1)
                )
            ):
                continue
            cosine, common = self._cosine(vec, norm, other, both, top)
            score = cosine + adjust
            if score >= p.event_similarity and common >= MIN_SHARED_TERMS:
                if _better(score, other, best) and not _name_conflict(self, doc, other):
                    best = StoryDecision(other.story, "same event", score, other.key)
            elif (
                not conflict
                and (
                    (
                        shared >= MIN_SHARED_WATCHLISTS
                        and extra <= 1
                        and cosine >= p.entity_similarity / (shared - 1)
                    )
                    or (
                        by_title
                        and cosine >= by_title_bound
                        and common >= TITLE_NAME_TERMS
                    )
                )
                and best.reason != "same event"
                and _better(cosine, other, best)
                and not _name_conflict(self, doc, other)
            ):
                best = StoryDecision(other.story, "same names", cosine, other.key)
        if best.story is None and doc.keys:
            best = self._across_scripts(doc)
        return best

    def _across_scripts(self, doc: Doc) -> StoryDecision:
        """A report of the same event in the other script (Russian / English): they share
        little text, so what counts is watchlists (at least one shared, none contradicting)
        and names spelled alike once transliterated (``name_key``), close in time."""
        p = self.params
        best = _NEW
        seen: set[int] = set()
        for watchlist in sorted(doc.entities):
            for key in self._by_watchlist.get(watchlist, ()):
                other = self._docs.get(key)
                if other is None or key in seen or other.cyrillic == doc.cyrillic:
                    continue
                seen.add(key)
                if abs(doc.at - other.at) > p.event_window / 3:
                    continue
                shared = len(doc.entities & other.entities)
                if min(len(doc.entities - other.entities), len(other.entities - doc.entities)):
                    continue
                names = len(doc.keys & other.keys)
                if names < (2 if shared >= 2 else 3):
                    continue
                score = names / len(doc.keys | other.keys)
                if _better(score, other, best):
                    best = StoryDecision(other.story, "same names", score, key)
        return best

    def _band_matches(self, bands: array[int]) -> set[int]:
        """The items in the buckets of these bands (the newest each)."""
        found: set[Any] = set(map(dict.get, self._buckets, bands))
        found.discard(None)  # an empty bucket
        return found

    def _candidates(self, doc: Doc, vec: dict[int, float]) -> list[int]:
        """Window items sharing the new item's rarer terms, best partial dot product first
        (ties: the older item). Only the CANDIDATE_TERMS rarer terms that weigh most are
        looked up: a busy window's posting lists are long, and the rest add little."""
        n = len(self._docs)
        if not n:
            return []
        max_df = max(50, n // 100)  # commoner words find no one in particular
        df, top, ldf = self._df, math.log(n + 1) + 1.0, self._ldf
        rare = [(w * (top - ldf[t]), t) for t, w in vec.items() if 0 < df[t] <= max_df]
        if len(rare) > CANDIDATE_TERMS:
            rare = sorted(rare, key=lambda c: (-c[0], c[1]))[:CANDIDATE_TERMS]
        heads, postings = self._heads, self._postings
        lists = [postings[t][heads[t] :] if t in heads else postings[t] for _, t in rare]
        if sum(map(len, lists)) > NUMPY_POSTINGS:
            return _best_partial(lists, [c for c, _ in rare])
        partial: dict[int, float] = {}
        get = partial.get
        for (contribution, _), posting in zip(rare, lists, strict=True):
            for key in posting:
                partial[key] = get(key, 0.0) + contribution
        # The best first, ties in item order (as heapq.nlargest has it, but two C sorts
        # of a few dozen items cost less than its Python loop).
        return sorted(sorted(partial), key=partial.__getitem__, reverse=True)[:CANDIDATES]

    # ------------------------------------------------------------------ the store's calls

    def assign(
        self,
        item_id: int,
        title: str,
        text: str,
        watchlists: Sequence[str],
        at: datetime,
        sketched: Sketch | None = None,
    ) -> StoryDecision:
        """Decide a new item's story; :meth:`commit` then adds it to the window.
        ``sketched``: the text's sketch, if worked out already (see :meth:`sketches`)."""
        doc = self.features(title, text, watchlists, at, sketched)
        self._pending[item_id] = doc
        return self.decide(doc)

    def commit(self, item_id: int, story_id: int, seq: int) -> None:
        self.add(self._pending.pop(item_id), item_id, story_id, seq)

    def learn(
        self,
        item_id: int,
        story_id: int,
        seq: int,
        title: str,
        text: str,
        watchlists: Sequence[str],
        at: datetime,
        sketched: Sketch | None = None,
    ) -> None:
        """Add an item that was assigned already (at start, or by another instance)."""
        doc = self.features(title, text, watchlists, at, sketched)
        self._clock = max(self._clock, doc.at)
        self.add(doc, item_id, story_id, seq)

    # ------------------------------------------------------------------ the window

    def add(self, doc: Doc, item_id: int, story_id: int, seq: int | None = None) -> None:
        """Put an item, now assigned to ``story_id``, into the window."""
        doc.key, doc.story = item_id, story_id
        if seq is not None:
            self.watermark = max(self.watermark or 0, seq)
        if item_id in self._docs:
            return
        self._docs[item_id] = doc
        self._order.append(item_id)
        if self._journaling:
            self._journal.append(item_id)
        postings, df, ldf, logs = self._postings, self._df, self._ldf, _log1p(len(self._docs))
        for tid in doc.terms:
            posting = postings[tid]
            if posting and posting[-1] > item_id:
                posting.insert(bisect_left(posting, item_id, self._heads.get(tid, 0)), item_id)
            else:
                posting.append(item_id)
            n = df[tid] = df[tid] + 1
            ldf[tid] = logs[n]
            if n == 1:
                self._live_terms += 1
        if doc.exact is not None:
            self._exact[doc.exact] = item_id
        for watchlist in sorted(doc.entities):
            recent = self._by_watchlist.get(watchlist)
            if recent is None:
                recent = self._by_watchlist[watchlist] = deque(maxlen=CROSS_SCRIPT_CANDIDATES)
            recent.append(item_id)
        for bucket, band in zip(self._buckets, doc.bands, strict=False):
            bucket[band] = item_id
        if len(self._docs) > self.params.max_items:
            self._drop_oldest()
        if len(df) > 2 * self._live_terms + DEAD_TERMS:
            self._prune()

    def relabel(self, stories: Mapping[int, int]) -> None:
        """Move items of the window to other stories (item id -> story id): the store
        inserted the rows of stories it had numbered provisionally."""
        for item_id, story_id in stories.items():
            doc = self._docs.get(item_id)
            if doc is not None:
                doc.story = story_id

    def mark(self) -> int | None:
        """Start a transaction: :meth:`undo` takes back what is added from now on."""
        self._pending.clear()
        self._journal.clear()
        self._journaling = True
        return self.watermark

    def undo(self, mark: int | None) -> None:
        """Take back every item added since :meth:`mark` (their transaction rolled back)."""
        self._pending.clear()
        for key in reversed(self._journal):
            self._remove(key)
            if len(self._order) > self._first and self._order[-1] == key:
                self._order.pop()
        self._journal.clear()
        self.watermark = mark

    def _expire(self, now: float) -> None:
        cutoff = now - self.params.window
        while self._first < len(self._order):
            key = self._order[self._first]
            doc = self._docs.get(key)
            if doc is not None and doc.at >= cutoff:
                break
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        key = self._order[self._first]
        self._first += 1
        self._remove(key)
        if self._first > 4096 and self._first * 2 > len(self._order):
            del self._order[: self._first]
            self._first = 0

    def _remove(self, key: int) -> None:
        doc = self._docs.pop(key, None)
        if doc is None:
            return
        df, ldf, logs, heads = self._df, self._ldf, _LOG1P, self._heads
        for tid in doc.terms:
            n = df[tid] = df[tid] - 1
            ldf[tid] = logs[n]
            if not n:
                self._live_terms -= 1
            posting = self._postings[tid]
            head = heads.get(tid, 0)
            if head < len(posting) and posting[head] == key:  # the oldest: marked gone
                head += 1
                if head * 8 >= len(posting):  # cut: an entry moved 7 times at most
                    del posting[:head]
                    heads.pop(tid, None)
                else:
                    heads[tid] = head
                continue
            i = bisect_left(posting, key, head)
            if i < len(posting) and posting[i] == key:
                del posting[i]
        if doc.exact is not None and self._exact.get(doc.exact) == key:
            del self._exact[doc.exact]
        for bucket, band in zip(self._buckets, doc.bands, strict=False):
            if bucket.get(band) == key:
                del bucket[band]

    def _prune(self) -> None:
        """Forget the terms no item in the window has (df 0: they weigh nothing in any
        score, and the IDF depends on the window's size, not the vocabulary's), but those
        of items assigned and not yet added. Run
        when such terms outnumber the live ones by DEAD_TERMS (see ``add``): its cost, one
        pass over the vocabulary, is less than twice the number of terms it forgets."""
        keep = {t for doc in self._pending.values() for t in doc.terms}
        df = self._df
        dead = [t for t, n in df.items() if not n and t not in keep]
        for t in dead:
            del self._term_ids[self.stems.pop(t)], self._postings[t], df[t], self._ldf[t]
            del self._prefix[t]
            self._heads.pop(t, None)


#: ``math.log(n + 1)`` at index n: a term's log document frequency, looked up at every
#: add and removal of an item rather than worked out (see ``_log1p``).
_LOG1P: list[float] = [0.0]


def _log1p(n: int) -> list[float]:
    """``_LOG1P``, holding at least the document frequencies up to ``n``."""
    if len(_LOG1P) <= n:
        _LOG1P.extend(math.log(k + 1) for k in range(len(_LOG1P), 2 * n + 1))
    return _LOG1P


def _best_partial(postings: Sequence[array[int]], contributions: Sequence[float]) -> list[int]:
    """:meth:`StoryIndex._candidates` in NumPy, for long posting lists: the CANDIDATES
    items with the highest sum of the contributions of the postings holding them (each
    posting with its contribution), ties to the older item. The same sums to the bit:
    ``bincount`` adds each item's contributions one after another in the order given,
    from 0.0, as the loop of ``_candidates`` does (an item is in a posting once)."""
    import numpy as np

    keys = np.frombuffer(b"".join(postings), dtype=np.int32)
    weights = np.repeat(np.array(contributions), [len(p) for p in postings])
    items, where = np.unique(keys, return_inverse=True)
    sums = np.bincount(where, weights=weights)
    best = np.lexsort((items, -sums))[:CANDIDATES]  # the highest sum first, then the item
    return [int(k) for k in items[best]]


@lru_cache(maxsize=8)
def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) as datasketch's ``MinHashLSH`` chooses them for ``threshold``: the
    least false-positive plus false-negative probability mass, equal weights.

    Both masses are integrals of polynomials in s of degree bands x rows <= num_perm
    (the chance that some band of ``rows`` agrees: 1 - (1 - s**rows)**bands), which
    Gauss-Legendre quadrature on num_perm // 2 + 1 nodes gives exactly; datasketch asks
    SciPy for them, whose import alone costs more than this whole search.
    ``tests/test_stories.py`` holds the choice equal to datasketch's."""
    import numpy as np

    nodes, weights = np.polynomial.legendre.leggauss(num_perm // 2 + 1)

    def on(lo: float, hi: float) -> tuple[Any, Any]:
        """The nodes mapped onto [lo, hi], and their weights scaled to it."""
        half = (hi - lo) / 2
        return lo + half * (nodes + 1), half * weights

    below, below_w = on(0.0, threshold)
    above, above_w = on(threshold, 1.0)
    best, choice = float("inf"), (0, 0)
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            false_positive = float(below_w @ (1 - (1 - below**r) ** b))
            false_negative = float(above_w @ ((1 - above**r) ** b))
            error = 0.5 * false_positive + 0.5 * false_negative
            if error < best:
                best, choice = error, (b, r)
    return choice


def _better(score: float, other: Doc, best: StoryDecision) -> bool:
    """Higher score wins; on a tie, the older story (deterministic)."""
    if best.story is None:
        return True
    return score > best.score or (score == best.score and other.story < best.story)
