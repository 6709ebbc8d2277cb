"""Stories: which earlier item, if any, reports the same event as a new one. Pure, no I/O.

A :class:`StoryIndex` holds a rolling window of recent items (their features, not their
text) and decides for each new item whether it joins the story of one of them or starts
a story of its own. The same items added in the same order give the same stories.

Evidence, strongest first (each pair of items is judged on its own):

1. **Copy**: the same words in the title and summary (after folding case, accents and
   punctuation), under another link. Joined within ``duplicate_window``.
2. **Near-duplicate**: a wire story lightly edited. Word 3-gram shingles, MinHash
   signatures (datasketch) and an LSH index find them; the estimated Jaccard similarity
   must reach ``duplicate_similarity``, within ``duplicate_window``.
3. **Same event**: different write-ups. TF-IDF cosine over the window (titles count
   twice; Cyrillic transliterated, so names agree across Russian and English; words cut
   to 6 letters, a crude stem), adjusted by the watchlists both items hit (shared ones
   add, ones only one of them hit subtract) and by the time between them; joined when it
   reaches ``event_similarity`` within ``event_window``. Items that share at least two
   watchlists and hit no others need only ``entity_similarity`` (a Russian and an English
   report share little more than names).

Precision comes first: merging two events hides one of them from the reader, splitting
one event only repeats it. So every rule needs time proximity, and a candidate story is
joined only if the new item is close to one of its members (the best-scoring pair wins;
ties go to the older story).

The window is bounded by time (``duplicate_window``, the longer of the two windows) and
by count (``max_items``); what leaves it can no longer be joined.
"""

from __future__ import annotations

import hashlib
import math
import re
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from monitor.fold import fold_text
from monitor.models import StoryDecision

if TYPE_CHECKING:
    from datasketch import MinHashLSH

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
#: Candidates scored exactly per new item, taken from the inverted index.
CANDIDATES = 30

_WORD = re.compile(r"\w+", re.UNICODE)

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
    event_similarity: float = 0.5
    entity_similarity: float = 0.2
    event_window: float = 36 * 3600.0  # seconds
    max_items: int = 100_000

    @property
    def window(self) -> float:
        return max(self.duplicate_window, self.event_window)


class Doc:
    """One item's features, as the window keeps them."""

    __slots__ = ("at", "entities", "exact", "key", "signature", "story", "terms", "weights")

    def __init__(
        self,
        at: float,
        entities: frozenset[str],
        exact: bytes | None,
        signature: Any,
        terms: array[int],
        weights: array[float],
    ) -> None:
        self.at = at
        self.entities = entities
        self.exact = exact
        self.signature = signature  # numpy uint32 array, or None for very short texts
        self.terms = terms  # term ids, ascending
        self.weights = weights  # term frequencies (title words count twice)
        self.key = 0
        self.story = 0


def words(text: str) -> list[str]:
    """Folded words of ``text`` (case, accents, punctuation and look-alikes folded)."""
    return _WORD.findall(fold_text(text[:MAX_CHARS]))


def _stem(word: str) -> str:
    return word.translate(_TRANSLIT)[:STEM]


_PERMUTATIONS: Any = None


def _signature(tokens: Sequence[str]) -> Any:
    from datasketch import MinHash

    global _PERMUTATIONS
    if len(tokens) < SHINGLE:
        return None
    if _PERMUTATIONS is None:
        _PERMUTATIONS = MinHash(num_perm=NUM_PERM, seed=1).permutations
    m = MinHash(num_perm=NUM_PERM, seed=1, permutations=_PERMUTATIONS, scheme=SCHEME)
    m.update_batch(
        sorted({" ".join(tokens[i : i + SHINGLE]).encode() for i in range(len(tokens) - 2)})
    )
    return m.hashvalues


class StoryIndex:
    """The rolling window and the decisions. Single-threaded: the store's writer owns it.

    Use: ``doc = index.features(...)``, ``decision = index.decide(doc)``, then (with the
    story the store settled on) ``index.add(doc, item_id, story_id, seq)``. ``mark()`` /
    ``undo(mark)`` take back what was added since a mark when a transaction rolls back.
    ``watermark`` is the highest assignment number (``items.story_seq``) the window has
    seen, so that instances sharing a database can catch up with each other.
    """

    def __init__(self, params: StoryParams | None = None) -> None:
        from datasketch import MinHashLSH

        self.params = params or StoryParams()
        self.watermark: int | None = None
        self._clock = 0.0  # the latest item time seen: the window ends here
        self._pending: dict[int, Doc] = {}
        self._journal: list[int] = []  # added since mark()
        self._journaling = False
        self._docs: dict[int, Doc] = {}  # by item id, in the order added
        self._order: list[int] = []  # item ids as added (oldest first); see _expire
        self._first = 0  # index into _order of the oldest live entry
        self._term_ids: dict[str, int] = {}
        self._postings: list[array[int]] = []  # term id -> item ids, ascending
        self._df: list[int] = []
        self._exact: dict[bytes, int] = {}  # exact key -> newest item id with it
        self._lsh: MinHashLSH = MinHashLSH(
            threshold=self.params.duplicate_similarity, num_perm=NUM_PERM
        )

    def __len__(self) -> int:
        return len(self._docs)

    @property
    def window(self) -> float:
        """Seconds of items looked back on."""
        return self.params.window

    @property
    def max_items(self) -> int:
        return self.params.max_items

    # ------------------------------------------------------------------ features

    def features(
        self,
        title: str,
        text: str,
        watchlists: Iterable[str],
        at: datetime,
    ) -> Doc:
        """An item's features: ``title``, its other text (summary, content), the
        watchlists that hit it and when it happened (published, else first seen)."""
        title_words = words(title)
        body_words = words(text)
        tokens = title_words + body_words
        exact = hashlib.blake2b(" ".join(tokens).encode(), digest_size=12).digest()
        counts: dict[int, float] = {}
        for i, w in enumerate(tokens):
            if w in _STOPWORDS or len(w) < 2:
                continue
            stem = _stem(w)
            tid = self._term_ids.get(stem)
            if tid is None:
                tid = self._term_ids[stem] = len(self._postings)
                self._postings.append(array("q"))
                self._df.append(0)
            counts[tid] = counts.get(tid, 0.0) + (2.0 if i < len(title_words) else 1.0)
        ordered = sorted(counts)
        return Doc(
            at=at.timestamp(),
            entities=frozenset(watchlists),
            exact=exact if tokens else None,
            signature=_signature(tokens),
            terms=array("q", ordered),
            weights=array("d", (counts[t] for t in ordered)),
        )

    # ------------------------------------------------------------------ decisions

    def _idf(self, tid: int) -> float:
        return math.log((len(self._docs) + 1) / (self._df[tid] + 1)) + 1.0

    def _vector(self, doc: Doc) -> tuple[dict[int, float], float]:
        vec = {t: w * self._idf(t) for t, w in zip(doc.terms, doc.weights, strict=True)}
        return vec, math.sqrt(sum(v * v for v in vec.values())) or 1.0

    def decide(self, doc: Doc) -> StoryDecision:
        """The story ``doc`` belongs to, judged against the window (from which items
        that are too old are dropped first)."""
        p = self.params
        self._clock = max(self._clock, doc.at)
        self._expire(self._clock)
        best = StoryDecision(None, "new")
        if doc.exact is not None:
            key = self._exact.get(doc.exact)
            if key is not None:
                other = self._docs[key]
                if abs(doc.at - other.at) <= p.duplicate_window:
                    return StoryDecision(other.story, "copy", 1.0, key)
        if doc.signature is not None and self._docs:
            from datasketch import MinHash

            probe = MinHash(
                num_perm=NUM_PERM,
                hashvalues=doc.signature,
                permutations=_PERMUTATIONS,
                scheme=SCHEME,
            )
            near = sorted(k for k in self._lsh.query(probe) if k in self._docs)
            for key in near:
                other = self._docs[key]
                if other.signature is None or abs(doc.at - other.at) > p.duplicate_window:
                    continue
                jaccard = float((doc.signature == other.signature).mean())
                if jaccard >= p.duplicate_similarity and _better(jaccard, other, best):
                    best = StoryDecision(other.story, "near-duplicate", jaccard, key)
            if best.story is not None:
                return best
        vec, norm = self._vector(doc)
        for key in self._candidates(doc, vec):
            other = self._docs[key]
            dt = abs(doc.at - other.at)
            if dt > p.event_window:
                continue
            ovec, onorm = self._vector(other)
            cosine = sum(v * ovec.get(t, 0.0) for t, v in vec.items()) / (norm * onorm)
            shared = doc.entities & other.entities
            only = doc.entities ^ other.entities
            score = (
                cosine
                + 0.05 * min(len(shared), 2)
                - 0.1 * min(len(only), 2)
                - 0.1 * dt / p.event_window
            )
            if score >= p.event_similarity:
                if _better(score, other, best):
                    best = StoryDecision(other.story, "same event", score, key)
            elif (
                len(shared) >= 2
                and not only
                and cosine >= p.entity_similarity
                and best.reason != "same event"
                and _better(cosine, other, best)
            ):
                best = StoryDecision(other.story, "same names", cosine, key)
        return best

    def _candidates(self, doc: Doc, vec: dict[int, float]) -> list[int]:
        """Window items sharing the new item's rarer terms, best partial dot product first."""
        n = len(self._docs)
        if not n:
            return []
        max_df = max(50, n // 20)
        partial: dict[int, float] = {}
        for tid, weight in vec.items():
            if self._df[tid] == 0 or self._df[tid] > max_df:
                continue
            contribution = weight * self._idf(tid)
            for key in self._postings[tid]:
                partial[key] = partial.get(key, 0.0) + contribution
        ranked = sorted(partial.items(), key=lambda kv: (-kv[1], kv[0]))
        return [k for k, _ in ranked[:CANDIDATES]]

    # ------------------------------------------------------------------ the store's calls

    def assign(
        self, item_id: int, title: str, text: str, watchlists: Sequence[str], at: datetime
    ) -> StoryDecision:
        """Decide a new item's story; :meth:`commit` then adds it to the window."""
        doc = self.features(title, text, watchlists, at)
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
    ) -> None:
        """Add an item that was assigned already (at start, or by another instance)."""
        doc = self.features(title, text, watchlists, at)
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
        for tid in doc.terms:
            posting = self._postings[tid]
            if posting and posting[-1] > item_id:
                posting.insert(bisect_left(posting, item_id), item_id)
            else:
                posting.append(item_id)
            self._df[tid] += 1
        if doc.exact is not None:
            self._exact[doc.exact] = item_id
        if doc.signature is not None:
            from datasketch import MinHash

            self._lsh.insert(
                item_id,
                MinHash(
                    num_perm=NUM_PERM,
                    hashvalues=doc.signature,
                    permutations=_PERMUTATIONS,
                    scheme=SCHEME,
                ),
                check_duplication=False,
            )
        if len(self._docs) > self.params.max_items:
            self._drop_oldest()

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
        for tid in doc.terms:
            self._df[tid] -= 1
            posting = self._postings[tid]
            i = bisect_left(posting, key)
            if i < len(posting) and posting[i] == key:
                del posting[i]
        if doc.exact is not None and self._exact.get(doc.exact) == key:
            del self._exact[doc.exact]
        if doc.signature is not None:
            self._lsh.remove(key)


def _better(score: float, other: Doc, best: StoryDecision) -> bool:
    """Higher score wins; on a tie, the older story (deterministic)."""
    if best.story is None:
        return True
    return score > best.score or (score == best.score and other.story < best.story)
