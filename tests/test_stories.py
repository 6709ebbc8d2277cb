"""Stories in the store, on SQLite and PostgreSQL: the migration, assignment in the same
transaction as the item, the window rebuilt at start, instances sharing one database."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text

from monitor import pipeline
from monitor.cluster import StoryIndex
from monitor.config import settings_from_mapping
from monitor.models import FetchResult, Item, Match, Outcome, ParsedFeed, Span
from monitor.store import Store, open_store
from monitor.store import feeds as fs
from monitor.store import stories as ss
from monitor.store.db import _alembic_config, utcnow
from monitor.store.schema import items, stories

NOW = utcnow()
WIRE = (
    "US envoy Sergio Gor meets Tokayev in Astana ahead of C5+1 summit",
    "Kazakh President Kassym-Jomart Tokayev received U.S. Special Envoy Sergio Gor and "
    "Deputy Secretary Christopher Landau in Astana on Wednesday to prepare the C5+1 summit.",
)


def ok(url: str) -> FetchResult:
    return FetchResult(outcome=Outcome.OK, url=url, final_url=url, status=200)


def gor(item: Item) -> list[Match]:
    if "Gor" not in item.title:
        return []
    at = item.title.index("Gor")
    return [Match("gor", "sergio-gor", ("Sergio Gor",), (Span("title", at, at + 3, "Gor"),))]


def feed(store: Store, url: str) -> fs.FeedRecord:
    fs.add_feed(store, fs.FeedSpec(url), source="import")
    return next(f for f in fs.list_feeds(store) if f.url == url)


def item(ident: str, title: str, summary: str = "") -> Item:
    return Item(ident, title, link=f"https://{ident}.test/a", summary=summary, published=NOW)


def save(store: Store, f: fs.FeedRecord, batch: list[Item], index: Any) -> fs.PollSaved:
    return fs.save_poll(
        store, f, ok(f.url), ParsedFeed(items=batch), next_due_at=NOW, hint_s=None,
        match=gor, now=NOW, stories=index,
    )  # fmt: skip


def story_of(store: Store, ident: str) -> int:
    with store.read() as conn:
        return int(
            conn.execute(select(items.c.story_id).where(items.c.identity == ident)).scalar_one()
        )


def test_migration_gives_existing_items_a_story_each(store_url: str) -> None:
    from alembic import command

    store = open_store(store_url)
    try:
        with store.engine.begin() as conn:
            command.upgrade(_alembic_config(conn), "0002")
            # Rows as the 0002 schema holds them (the tables' later columns are not there yet).
            naive = NOW.replace(tzinfo=None)
            conn.execute(text("INSERT INTO feeds (url, source, headers, consecutive_failures, quiet_polls, created_at) VALUES ('http://a.test/', 'config', '{}', 0, 0, :t)"), {"t": naive})  # fmt: skip
            fid = conn.execute(text("SELECT id FROM feeds")).scalar_one()
            for n in range(3):
                conn.execute(text("INSERT INTO items (identity, feed_id, title, summary, content, first_seen_at) VALUES (:i, :f, :t, '', '', :s)"), {"i": f"old-{n}", "f": fid, "t": f"Old {n}", "s": naive - timedelta(days=n)})  # fmt: skip
        store.upgrade()
        with store.read() as conn:
            rows = conn.execute(select(items.c.id, items.c.story_id, items.c.story_seq)).all()
            assert all(r.story_id == r.id == r.story_seq for r in rows) and len(rows) == 3
            assert conn.execute(select(func.count()).select_from(stories)).scalar() == 3
        # A new item after the migration gets a new story id, past the old ones.
        saved = save(store, feed(store, "http://b.test/"), [item("new", "Fresh news")], None)
        assert saved.new_items == 1
        assert story_of(store, "new") not in {r.id for r in rows}
        old = ss.get_story(store, rows[0].story_id)
        assert (
            old is not None and old.title == "Old 0" and [i.title for i in old.items] == ["Old 0"]
        )
    finally:
        store.dispose()


def test_copies_from_two_feeds_share_a_story_and_the_contract_reads_it(store: Store) -> None:
    index = StoryIndex()
    a, b = feed(store, "http://a.test/rss"), feed(store, "http://b.test/rss")
    save(store, a, [item("a1", *WIRE), item("a2", "Wheat harvest up in Kostanay")], index)
    save(store, b, [item("b1", *WIRE)], index)  # the same text under another link
    assert story_of(store, "a1") == story_of(store, "b1") != story_of(store, "a2")

    story = ss.get_story(store, story_of(store, "a1"))
    assert story is not None
    assert story.title == WIRE[0]
    assert [(i.feed, i.link, i.watchlists) for i in story.items] == [
        ("http://a.test/rss", "https://a1.test/a", ["gor"]),
        ("http://b.test/rss", "https://b1.test/a", ["gor"]),
    ]
    with store.read() as conn:
        row = conn.execute(select(stories).where(stories.c.id == story.id)).one()
    assert (row.item_count, row.lead_item_id) == (2, story.items[0].id)

    listed = ss.list_stories(store, watchlist="gor")
    assert [s.id for s in listed] == [story.id]
    assert {s.id for s in ss.list_stories(store, since=NOW - timedelta(hours=1))} == {
        story_of(store, "a1"), story_of(store, "a2")}  # fmt: skip
    assert [h.story_id for h in fs.list_hits(store)] == [story.id, story.id]
    assert listed[0].to_dict()["items"][1]["feed"] == "http://b.test/rss"


def story_row(store: Store, story_id: int) -> tuple[int, int]:
    with store.read() as conn:
        row = conn.execute(select(stories).where(stories.c.id == story_id)).one()
    return row.item_count, row.lead_item_id


def item_id(store: Store, ident: str) -> int:
    with store.read() as conn:
        return int(conn.execute(select(items.c.id).where(items.c.identity == ident)).scalar_one())


def test_stories_started_and_joined_within_one_batch_are_counted_once(store: Store) -> None:
    index = StoryIndex()
    a = feed(store, "http://a.test/rss")
    other = ("Wheat harvest up in Kostanay", "Farmers in Kostanay brought in more wheat.")
    # A story started in the batch is joined by a later item of the same batch.
    save(store, a, [item("w1", *WIRE), item("k1", *other), item("w2", *WIRE)], index)
    wire, wheat = story_of(store, "w1"), story_of(store, "k1")
    assert story_of(store, "w2") == wire != wheat
    assert story_row(store, wire) == (2, item_id(store, "w1"))
    assert story_row(store, wheat) == (1, item_id(store, "k1"))
    # The window holds the real story ids: a later batch joins them and grows the rows.
    save(store, a, [item("k2", *other), item("w3", *WIRE), item("w4", *WIRE)], index)
    assert [story_of(store, i) for i in ("k2", "w3", "w4")] == [wheat, wire, wire]
    assert story_row(store, wire) == (4, item_id(store, "w1"))
    assert story_row(store, wheat) == (2, item_id(store, "k1"))


def test_a_story_the_window_names_but_the_database_lacks_is_started_anew(store: Store) -> None:
    index = StoryIndex()
    a = feed(store, "http://a.test/rss")
    save(store, a, [item("w1", *WIRE)], index)
    with store.write() as conn:  # the window still names the story
        conn.execute(text("UPDATE items SET story_id = NULL"))
        conn.execute(text("DELETE FROM stories"))
    save(store, a, [item("w2", *WIRE), item("w3", *WIRE)], index)
    story = story_of(store, "w2")
    assert story_of(store, "w3") == story  # (SQLite may give it the old id again)
    assert story_row(store, story) == (2, item_id(store, "w2"))
    save(store, a, [item("w4", *WIRE)], index)  # the window now knows the new story
    assert story_of(store, "w4") == story and story_row(store, story)[0] == 3


def test_a_failed_transaction_leaves_no_story_behind(store: Store) -> None:
    index = StoryIndex()
    a = feed(store, "http://a.test/rss")

    def explode(it: Item) -> list[Match]:
        raise RuntimeError("matcher broke")

    with pytest.raises(RuntimeError):
        fs.save_poll(store, a, ok(a.url), ParsedFeed(items=[item("x1", *WIRE)]), next_due_at=NOW,
                     hint_s=None, match=explode, now=NOW, stories=index)  # fmt: skip
    assert len(index) == 0
    save(store, a, [item("x2", *WIRE)], index)
    assert len(index) == 1 and ss.get_story(store, story_of(store, "x2")) is not None


def test_a_new_process_rebuilds_the_window_and_instances_catch_up(store: Store) -> None:
    a, b = feed(store, "http://a.test/rss"), feed(store, "http://b.test/rss")
    save(store, a, [item("a1", *WIRE)], StoryIndex())  # a process that has since exited
    first, second = StoryIndex(), StoryIndex()  # two instances started later
    save(store, b, [item("b1", *WIRE)], first)
    assert len(first) == 2  # the window was loaded from the store
    save(store, a, [item("a2", WIRE[0] + " (updated)", WIRE[1])], first)
    save(store, b, [item("b2", *WIRE)], second)  # knows a2 only by catching up
    assert len({story_of(store, i) for i in ("a1", "b1", "a2", "b2")}) == 1
    assert first.watermark == 3 and second.watermark == 4


def test_a_rebuilt_window_learns_only_what_is_within_it_of_the_newest(store: Store) -> None:
    """A feed's backlog, first seen at once over days of publishing: a new window learns
    the items within its span of the newest (72 h by default), and a copy of an older one
    is no longer joined, as in the window that assigned them; the watermark is the last
    assignment all the same."""
    a, b = feed(store, "http://a.test/rss"), feed(store, "http://b.test/rss")
    backlog = [
        Item(f"old{k}", f"Zebra {k} escapes the Almaty zoo, {k} days ago", link=f"https://a.test/{k}",
             summary=f"Keepers searched the park for the zebra number {k}.",
             published=NOW - timedelta(days=k))
        for k in range(6)
    ]  # fmt: skip
    save(store, a, backlog, StoryIndex())
    window = StoryIndex()
    copies = [replace(backlog[k], identity=f"copy{k}", link=f"https://b.test/{k}") for k in (1, 5)]
    save(store, b, copies, window)
    assert window.watermark == 8
    assert len(window) == 4 + 2  # days 0-3 of the backlog (within 72 h of the newest), the copies
    assert story_of(store, "copy1") == story_of(store, "old1")  # a copy, joined
    assert story_of(store, "copy5") != story_of(store, "old5")  # too old to join


def test_items_stored_without_an_assigner_get_a_story_each(store: Store) -> None:
    a = feed(store, "http://a.test/rss")
    save(store, a, [item("a1", *WIRE), item("a2", *WIRE)], None)
    assert story_of(store, "a1") != story_of(store, "a2")


def test_story_settings_reach_the_index() -> None:
    settings = settings_from_mapping(
        {"stories": {"event_window": "12h", "duplicate_similarity": 0.8}}, environ={}
    )
    index = pipeline.story_index(settings)
    assert index.params.event_window == 12 * 3600
    assert index.params.duplicate_similarity == 0.8
    with pytest.raises(Exception, match="between 0 and 1"):
        settings_from_mapping({"stories": {"event_similarity": 2}}, environ={})


def test_signatures_are_datasketchs_minhash() -> None:
    """cluster.minhash_signature works out MinHash signatures on the array itself: they
    must be what datasketch's MinHash gives for the same shingles (else near-duplicates
    drift)."""
    import random

    import numpy as np
    from datasketch import MinHash

    from monitor.cluster import NUM_PERM, SCHEME, minhash_signature

    rng = random.Random(3)
    for size in (1, 2, 7, 300):
        shingles = np.array([rng.getrandbits(32) for _ in range(size)], dtype=np.uint64)
        shingles[0] = 0xFFFFFFFF  # the largest 32-bit value wraps as datasketch's does
        expected = MinHash(num_perm=NUM_PERM, seed=1, scheme=SCHEME, hashfunc=int)
        expected.update_batch(shingles.tolist())
        got = minhash_signature(shingles)
        assert got.dtype == expected.hashvalues.dtype
        assert got.tolist() == expected.hashvalues.tolist()


def test_lsh_bands_and_rows_are_datasketchs() -> None:
    """cluster.lsh_params chooses bands and rows without SciPy: the same choice as
    datasketch's MinHashLSH at every threshold a setting may give (else the near-duplicate
    index would bucket differently)."""
    from datasketch import MinHashLSH

    from monitor.cluster import NUM_PERM, lsh_params

    for threshold in [k / 100 for k in range(5, 100, 5)] + [0.33, 0.66, 0.99]:
        try:
            lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
        except ValueError:  # datasketch refuses a single band; the index works with one
            assert lsh_params(threshold, NUM_PERM)[0] == 1, threshold
            continue
        assert lsh_params(threshold, NUM_PERM) == (lsh.b, lsh.r), threshold
    for num_perm in (16, 128):
        lsh = MinHashLSH(threshold=0.6, num_perm=num_perm)
        assert lsh_params(0.6, num_perm) == (lsh.b, lsh.r), num_perm


def _vocabulary(index: StoryIndex) -> dict[str, int]:
    """Sizes of the per-term structures, after checking they agree with the window."""
    live: dict[int, list[int]] = {}
    for key, doc in index._docs.items():
        for t in doc.terms:
            live.setdefault(t, []).append(key)
    for t, keys in live.items():
        assert index._term_ids[index.stems[t]] == t
        assert index._df[t] == len(keys)
        assert list(index._postings[t][index._heads.get(t, 0) :]) == sorted(keys)
    assert all(n == 0 for t, n in index._df.items() if t not in live)
    return {
        "live": len(live),
        "term ids": len(index._term_ids),
        "stems": len(index.stems),
        "postings": len(index._postings),
        "df": len(index._df),
        "log df": len(index._ldf),
        "prefixes": len(index._prefix),
    }


def test_the_vocabulary_stays_bounded_by_the_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """A long run of items with words never seen again, through a small window (left by
    count and by time, and a rolled-back batch now and then): every per-term structure
    stays within a multiple of what the window holds, and the stories are those of an
    index that forgets nothing."""
    import random
    from datetime import UTC, datetime

    from monitor import cluster
    from monitor.cluster import DEAD_TERMS, StoryParams

    def unique(i: int) -> str:
        return "".join(chr(97 + (i // 26**k) % 26) for k in range(6))

    pool = [unique(10**8 + k * 7919) for k in range(40)]  # words that come back
    start = datetime(2026, 1, 1, tzinfo=UTC)
    params = StoryParams(max_items=60, duplicate_window=3600.0, event_window=1800.0)

    def run(index: StoryIndex) -> tuple[list[tuple[int | None, str]], list[dict[str, int]]]:
        rng = random.Random(5)
        fresh = iter(range(10**7))
        decisions, sizes = [], []
        title = text = ""
        for n in range(1, 2001):
            if n % 4:
                title = " ".join(rng.sample(pool, 3) + [unique(next(fresh)) for _ in range(3)])
                text = " ".join(rng.sample(pool, 5) + [unique(next(fresh)) for _ in range(8)])
            else:  # another write-up of the item before: its words in another order
                title = " ".join(rng.sample(title.split(), 6))
                text = " ".join([*rng.sample(text.split(), 13), unique(next(fresh))])
            at = start + timedelta(seconds=n * (30 if n < 1000 else 120))
            if n % 100 == 0:  # a transaction that rolls back
                mark = index.mark()
                for k in range(20):
                    extra = " ".join(unique(next(fresh)) for _ in range(10))
                    index.assign(10**6 + n + k, extra, extra, [], at)
                    index.commit(10**6 + n + k, 10**6 + n, 0)
                index.undo(mark)
            d = index.assign(n, title, text, ["gor"] if n % 3 else [], at)
            decisions.append((d.story, d.reason))
            index.commit(n, d.story if d.story is not None else n, n)
            if n % 250 == 0:
                sizes.append(_vocabulary(index))
        return decisions, sizes

    pruned, sizes = run(StoryIndex(params))
    assert {reason for _, reason in pruned} == {"new", "same event"}
    for at in sizes:
        # Twice the live terms, the slack, and what one item brings before it is added.
        bound = 2 * at["live"] + DEAD_TERMS + 20
        assert all(v <= bound for v in at.values()), at
    assert sizes[-1]["term ids"] < 8_000  # the run saw more than 20,000 stems

    monkeypatch.setattr(cluster, "DEAD_TERMS", 10**9)  # forgets no term
    kept, sizes = run(StoryIndex(params))
    assert sizes[-1]["term ids"] > 20_000
    assert kept == pruned


def _made_up_texts(*, seed: int, words: int, n: int) -> list[tuple[str, str]]:
    """``n`` (title, text) pairs of 6 and 25 words drawn from ``words`` made-up words:
    many items sharing words at random, so candidate lists grow long."""
    import random

    rng = random.Random(seed)
    vocabulary = ["".join(rng.choice("bdklmnrstv") + rng.choice("aeiou") for _ in range(4))
                  for _ in range(words)]  # fmt: skip
    return [
        (" ".join(rng.sample(vocabulary, 6)), " ".join(rng.sample(vocabulary, 25)))
        for _ in range(n)
    ]


def test_candidates_added_up_in_numpy_are_those_of_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Long posting lists are added up in NumPy (``cluster._best_partial``): the same
    candidates in the same order as the loop over short ones gives, so the same stories
    and scores to the bit."""
    from datetime import UTC, datetime

    from monitor import cluster

    start = datetime(2026, 1, 1, tzinfo=UTC)
    texts = _made_up_texts(seed=3, words=400, n=1500)

    def run(numpy_above: int) -> tuple[list[tuple[int | None, str, str, int | None]], list[Any]]:
        monkeypatch.setattr(cluster, "NUMPY_POSTINGS", numpy_above)
        index = StoryIndex()
        decisions, candidates = [], []
        for n, (title, body) in enumerate(texts, start=1):
            at = start + timedelta(seconds=60 * n)
            doc = index.features(title, body, ["gor"] if n % 3 else [], at)
            if n % 10 == 0:
                candidates.append(index._candidates(doc, index._vector(doc)[0]))
            d = index.decide(doc)
            decisions.append((d.story, d.reason, d.score.hex(), d.item))
            index.add(doc, n, d.story if d.story is not None else n, n)
        return decisions, candidates

    looped, numpy = run(10**9), run(-1)
    assert any(len(c) == cluster.CANDIDATES for c in looped[1])
    assert {reason for _, reason, _, _ in looped[0]} >= {"new", "same event"}
    assert numpy == looped


def test_words_of_plain_ascii_text_are_those_of_the_folded_text() -> None:
    """``words`` skips folding for ASCII text without apostrophes: the words must be
    those of the folded text, whatever the punctuation, spacing and case."""
    import random

    from monitor.cluster import _WORD, words
    from monitor.fold import fold_text

    def slow(text: str) -> list[str]:
        return _WORD.findall(fold_text(text))

    rng = random.Random(4)
    alphabet = "aAbZz09 \t\n\r\x0b\x0c\x1c-_.,;:!?\"()[]{}'`/\\&%$#@*+=<>|~^s"
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        assert words(text) == slow(text), repr(text)
    for text in ("Gor's visit", "O'zbekiston", "rock `n roll", "250m deal, A380s", "  a  b  "):
        assert words(text) == slow(text), text


def test_signatures_worked_out_together_are_each_items_own() -> None:
    """``sketches`` works out the MinHash signatures of many items in one pass (batches
    of SIGNATURE_BATCH shingles): each must be the item's own, as ``minhash_signature``
    gives it alone, whatever the batch around it; short items have none."""
    import random

    from monitor import cluster

    rng = random.Random(8)
    # Texts are cut at MAX_CHARS (about 280 of these words): 40 long ones make several
    # batches.
    lengths = [3, 4, 1, 0, 2, 50, 3, *[300] * 20, 3, *[300] * 20, 17, 2]
    texts = []
    for n in lengths:
        text = " ".join("".join(rng.choices("bdgklmnrstvz", k=6)) for _ in range(n))
        texts.append(("", text, False))
    assert sum(len(cluster.words(t)) - 2 for _, t, _ in texts) > 2 * cluster.SIGNATURE_BATCH
    together = cluster.sketches(texts)
    assert [sk.signature is not None for sk in together] == [n >= 3 for n in lengths]
    for (title, text, keys), sk in zip(texts, together, strict=True):
        alone = cluster.sketch(title, text, keys=keys)
        assert sk == alone
        if sk.signature is not None:
            hashes = [cluster._word_info(w)[1] for w in cluster.words(text)]
            own = cluster.minhash_signature(cluster._shingle_hashes(hashes)).tobytes()
            assert sk.signature == own


def test_a_pickled_window_decides_as_the_window_it_was_taken_from() -> None:
    """A window saved between transactions and loaded again (``pipeline.window_file``)
    makes the same decisions, to the bit, as the one kept in memory; what an open
    transaction added is not kept."""
    import pickle
    from datetime import UTC, datetime

    start = datetime(2026, 1, 1, tzinfo=UTC)
    texts = _made_up_texts(seed=5, words=300, n=600)

    def step(index: StoryIndex, n: int) -> tuple[int | None, str, str, int | None]:
        title, body = texts[n - 1]
        d = index.assign(n, title, body, ["gor"] if n % 3 else [], start + timedelta(minutes=n))
        index.commit(n, d.story if d.story is not None else n, n)
        return d.story, d.reason, d.score.hex(), d.item

    kept = StoryIndex()
    for n in range(1, 301):
        step(kept, n)
    kept.mark()
    title, body = texts[0]
    kept.assign(10_000, title, body, [], start)  # assigned in a transaction, not committed
    loaded = pickle.loads(pickle.dumps(kept))
    assert loaded._pending == {} and loaded._journal == [] and not loaded._journaling
    assert kept._pending  # the window itself is left as it was
    assert len(loaded) == len(kept) == 300 and loaded.watermark == kept.watermark == 300
    kept._pending.clear()
    later = [(step(kept, n), step(loaded, n)) for n in range(301, 601)]
    assert all(a == b for a, b in later)
    assert {a[1] for a, _ in later} >= {"new", "same event"}


def test_the_store_gives_the_assigner_as_much_text_as_it_reads() -> None:
    from monitor import cluster

    assert ss.TEXT_CHARS == cluster.MAX_CHARS
