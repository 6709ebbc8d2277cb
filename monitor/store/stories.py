"""Repository API for stories: one event across outlets, every item in exactly one.

Assignment happens while an item is stored, in the same transaction (:func:`assign`,
called by ``feeds.save_polls``); what decides is a :class:`StoryAssigner` (the
``cluster.StoryIndex`` the pipeline passes in), given the texts of a batch's items first
to sketch together, then each item in turn. Without one, an item gets a story of its
own. Assignments are numbered (``items.story_seq``) in the order they are made; several
instances sharing one PostgreSQL database take turns (a transaction-level advisory lock)
and each catches up with the others' assignments by that number before deciding.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import Connection, bindparam, func, insert, select, update

from monitor.models import Item, StoryDecision
from monitor.store.db import Store
from monitor.store.rows import StoryItem as StoryItem
from monitor.store.rows import StoryRecord as StoryRecord
from monitor.store.rows import StoryStats as StoryStats
from monitor.store.rows import story_members
from monitor.store.schema import feeds, hits, items, stories

if TYPE_CHECKING:
    from monitor.cluster import Sketch

#: Key for ``pg_advisory_xact_lock`` around storing new items and their stories.
PG_STORY_LOCK = 0x73746F72  # "stor"
#: How much of an item's content the assigner is given: ``cluster.MAX_CHARS``, as it
#: looks at no more (not imported from there: that would cost every command that opens
#: the store ~20 ms; ``tests/test_stories.py`` holds the two equal).
TEXT_CHARS = 2000
#: Items whose text is sketched together when the window catches up (see
#: ``StoryAssigner.sketches``).
CATCH_UP_BATCH = 512
#: A story started in a batch is known by this plus its first item's id until its row
#: is inserted (see :func:`assign`).
PROVISIONAL = 1 << 60


class StoryAssigner(Protocol):
    """What decides stories (``monitor.cluster.StoryIndex``)."""

    watermark: int | None

    @property
    def window(self) -> float: ...  # seconds of items it looks back on

    @property
    def max_items(self) -> int: ...

    def sketches(self, texts: Iterable[tuple[str, str, bool]]) -> Sequence[Sketch]:
        """What each (title, text, keys) gives alone, before any window is looked at;
        worked out for many items together, which is cheaper than one by one."""
        ...

    def assign(
        self,
        item_id: int,
        title: str,
        text: str,
        watchlists: Sequence[str],
        at: datetime,
        sketched: Sketch | None = None,
    ) -> StoryDecision: ...

    def commit(self, item_id: int, story_id: int, seq: int) -> None: ...

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
    ) -> None: ...

    def relabel(self, stories: Mapping[int, int]) -> None: ...  # item id -> story id

    def mark(self) -> int | None: ...

    def undo(self, mark: int | None) -> None: ...


# --------------------------------------------------------------------------- assignment

# The statements of a transaction's assignments, built once rather than in every
# transaction (as store/feeds.py's ``_KNOWN_ITEMS``): a poll stores a feed or a few in a
# transaction, and building and keying these cost more than running them.
_LOCK = select(func.pg_advisory_xact_lock(PG_STORY_LOCK))
_LAST_SEQ = select(func.max(items.c.story_seq))  # the last assignment's number
_GROW_STORIES = (
    update(stories)
    .where(stories.c.id == bindparam("id_"))
    .values(item_count=stories.c.item_count + bindparam("n"), last_seen_at=bindparam("seen"))
)
_NEW_STORIES = insert(stories).returning(stories.c.id, stories.c.lead_item_id)
_PLACE_ITEMS = (
    update(items)
    .where(items.c.id == bindparam("id_"))
    .values(story_id=bindparam("story_id"), story_seq=bindparam("story_seq"))
)


def lock(conn: Connection, store: Store) -> None:
    """Take this transaction's turn at assigning stories (PostgreSQL; SQLite's write
    transaction is exclusive already). Take it before inserting items, so that two
    instances storing the same item never wait for each other in opposite orders."""
    if store.dialect == "postgresql":
        conn.execute(_LOCK)


def _when(published: datetime | None, first_seen: datetime) -> datetime:
    """When the item happened: its published time, unless missing or in the future."""
    return published if published is not None and published <= first_seen else first_seen


def _text(summary: str, content: str) -> str:
    return f"{summary}\n{content[:TEXT_CHARS]}" if content else summary


def catch_up(conn: Connection, assigner: StoryAssigner, now: datetime) -> int:
    """Give the assigner every assignment it has not seen (all of the window at first,
    then what other instances stored since). Returns the highest assignment number."""
    top = conn.execute(_LAST_SEQ).scalar() or 0
    if assigner.watermark is not None and assigner.watermark >= top:
        return int(top)
    since = now - timedelta(seconds=assigner.window)
    query = select(
        items.c.id,
        items.c.story_id,
        items.c.story_seq,
        items.c.title,
        items.c.summary,
        func.substr(items.c.content, 1, TEXT_CHARS).label("content"),
        items.c.published_at,
        items.c.first_seen_at,
    ).where(items.c.story_seq.is_not(None), items.c.first_seen_at >= since)
    if assigner.watermark is not None:
        query = query.where(items.c.story_seq > assigner.watermark)
    rows = list(conn.execute(query.order_by(items.c.story_seq.desc()).limit(assigner.max_items)))
    rows.reverse()
    # Items that happened a whole window before the newest of them are outside the
    # window's span however it stands (its clock reaches that newest): they are not
    # learnt. (Learnt, they would stay until the items added before them expired, as the
    # window expires from the end it was filled at, and could be joined meanwhile.) A
    # feed's first poll stores its backlog, days of items first seen at once: on 2,000
    # bench feeds, 70,000 of 100,000 rows, and a rebuild took 22 s instead of 7.5 s.
    if rows:
        at = [_when(r.published_at, r.first_seen_at) for r in rows]
        cutoff = max(at) - timedelta(seconds=assigner.window)
        rows = [r for r, when in zip(rows, at, strict=True) if when >= cutoff]
    watchlists: dict[int, list[str]] = {}
    if rows:
        wanted = {r.id for r in rows}
        hit_query = select(hits.c.item_id, hits.c.watchlist).order_by(
            hits.c.item_id, hits.c.watchlist
        )
        if len(wanted) <= 1000:
            hit_query = hit_query.where(hits.c.item_id.in_(sorted(wanted)))
        else:
            hit_query = hit_query.where(hits.c.item_id >= min(wanted))
        for item_id, watchlist in conn.execute(hit_query):
            if item_id in wanted:
                watchlists.setdefault(item_id, []).append(watchlist)
    for start in range(0, len(rows), CATCH_UP_BATCH):
        chunk = rows[start : start + CATCH_UP_BATCH]
        batch = [(r, _text(r.summary, r.content or "")) for r in chunk]
        sketched = assigner.sketches((r.title, text, r.id in watchlists) for r, text in batch)
        for (r, text), sk in zip(batch, sketched, strict=True):
            assigner.learn(
                r.id,
                r.story_id,
                r.story_seq,
                r.title,
                text,
                watchlists.get(r.id, []),
                _when(r.published_at, r.first_seen_at),
                sk,
            )
    assigner.watermark = max(assigner.watermark or 0, int(top))
    return int(top)


def assignment(store: Store, seq: int) -> tuple[int, int, datetime] | None:
    """The item given assignment number ``seq``: its id, story and when it was first
    seen; None if no item has it (any more)."""
    query = select(items.c.id, items.c.story_id, items.c.first_seen_at).where(
        items.c.story_seq == seq
    )
    with store.read() as conn:
        row = conn.execute(query).first()
    if row is None or row.story_id is None:
        return None
    return int(row.id), int(row.story_id), row.first_seen_at


def warm(store: Store, assigner: StoryAssigner, now: datetime) -> int:
    """Catch the window up with the store in a read transaction (all of it when empty),
    so that the write transaction that follows only catches up with what is newer still
    (rebuilding a window of 100,000 items takes a minute or two of CPU, and learning
    other instances' items takes time too: neither may hold the write lock).

    On SQLite one daemon writes a database (``store/lock.py``), and another writer (a
    ``monitor poll --once`` beside it) is rare: once the window is filled, this read (a
    transaction per poll) is skipped, and the write transaction catches up with
    whatever another process stored meanwhile."""
    if store.dialect != "postgresql" and assigner.watermark is not None:
        return assigner.watermark
    with store.read() as conn:
        return catch_up(conn, assigner, now)


#: A new item as :func:`assign` takes it: its id, the item, the watchlists that hit it,
#: and when it was stored (its first_seen_at).
NewItem = tuple[int, Item, Sequence[str], datetime]


def assign(
    conn: Connection, assigner: StoryAssigner | None, new: Sequence[NewItem]
) -> dict[int, int]:
    """Give each new item a story, in order: join the one the assigner names or start
    one. Returns item id -> story id.

    The new items of all the polls stored in one transaction come together: the
    decisions come first, then one statement each for the new stories, the stories
    that grew and the items (not statements per item, nor per feed: a poll in which
    each feed has a couple of new items would spend more on statements, and on the
    window's catching up, than on deciding). Until its row exists, a story started here
    has a provisional id, above every real one (so that, as before, it loses ties to
    older stories), and later items of the batch may join it; the assigner then learns
    the real ids (``relabel``).
    """
    if not new:
        return {}
    now = max(stored for *_, stored in new)
    if assigner is not None:
        seq = catch_up(conn, assigner, now)
    else:
        seq = conn.execute(_LAST_SEQ).scalar() or 0
    placed: dict[int, int] = {}  # item id -> story id (provisional for new stories)
    seqs: list[int] = []
    texts = [_text(item.summary, item.content) for _, item, _, _ in new]
    sketched: Sequence[Sketch | None] = [None] * len(new)
    if assigner is not None:
        sketched = assigner.sketches(
            (item.title, text, bool(watchlists))
            for (_, item, watchlists, _), text in zip(new, texts, strict=True)
        )
    for (item_id, item, watchlists, stored), text, sk in zip(new, texts, sketched, strict=True):
        seq += 1
        story_id: int | None = None
        if assigner is not None:
            story_id = assigner.assign(
                item_id, item.title, text, sorted(watchlists), _when(item.published, stored), sk
            ).story
        if story_id is None:
            story_id = PROVISIONAL + item_id
        if assigner is not None:
            assigner.commit(item_id, story_id, seq)
        placed[item_id] = story_id
        seqs.append(seq)
    stored_at = {item_id: stored for item_id, *_, stored in new}

    def last_seen() -> dict[int, datetime]:
        """Story id -> when its newest item here was stored."""
        seen: dict[int, datetime] = {}
        for item_id, story_id in placed.items():
            seen[story_id] = max(seen.get(story_id, stored_at[item_id]), stored_at[item_id])
        return seen

    sizes = Counter(placed.values())
    seen = last_seen()
    grown = [
        {"id_": s, "n": n, "seen": seen[s]} for s, n in sorted(sizes.items()) if s < PROVISIONAL
    ]
    lost: dict[int, int] = {}  # the window named a story the database does not have
    if grown:
        done = conn.execute(_GROW_STORIES, grown)
        if not (conn.dialect.supports_sane_multi_rowcount and done.rowcount == len(grown)):
            joined = [g["id_"] for g in grown]
            have = set(conn.execute(select(stories.c.id).where(stories.c.id.in_(joined))).scalars())
            for item_id, story_id in placed.items():
                if story_id < PROVISIONAL and story_id not in have:
                    placed[item_id] = lost.setdefault(story_id, PROVISIONAL + item_id)
            sizes = Counter(placed.values())
            seen = last_seen()
    started = [s for s in sizes if s >= PROVISIONAL]  # in the order of their first items
    real: dict[int, int] = {}
    if started:
        by_id = {item_id: item for item_id, item, _, _ in new}
        rows = []
        for s in started:
            lead = by_id[s - PROVISIONAL]
            rows.append(
                {
                    "title": lead.title or lead.link or "(untitled)",
                    "first_seen_at": stored_at[s - PROVISIONAL],
                    "last_seen_at": seen[s],
                    "item_count": sizes[s],
                    "lead_item_id": s - PROVISIONAL,
                }
            )
        # Each new story's lead item is its own, so the returned rows are matched to
        # them by it, not by their order: SQLite cannot promise RETURNING's order, and
        # SQLAlchemy would then insert the rows one statement each.
        made = conn.execute(_NEW_STORIES, rows)
        real = {PROVISIONAL + lead: story_id for story_id, lead in made}
        placed = {i: real.get(s, s) for i, s in placed.items()}
    if assigner is not None and (real or lost):
        assigner.relabel(placed)
    conn.execute(
        _PLACE_ITEMS,
        [
            {"id_": item_id, "story_id": story_id, "story_seq": n}
            for (item_id, story_id), n in zip(placed.items(), seqs, strict=True)
        ],
    )
    return placed


# --------------------------------------------------------------------------- reading


def story_stats(store: Store, *, now: datetime, conn: Connection | None = None) -> StoryStats:
    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    week = now - timedelta(days=7)
    with store.reading(conn) as conn:
        today = conn.execute(
            select(func.count()).select_from(stories).where(stories.c.first_seen_at >= midnight)
        ).scalar_one()
        count, total = conn.execute(
            select(func.count(), func.sum(stories.c.item_count)).where(
                stories.c.first_seen_at >= week
            )
        ).one()
    return StoryStats.of(today, count, total)


def story_items(store: Store, story_ids: Sequence[int]) -> dict[int, list[StoryItem]]:
    """The items of these stories, oldest first, by story id."""
    out: dict[int, list[StoryItem]] = {}
    with store.read() as conn:
        for start in range(0, len(story_ids), 500):
            out.update(items_by_story(conn, story_ids[start : start + 500]))
    return out


def items_by_story(conn: Connection, story_ids: Iterable[int]) -> dict[int, list[StoryItem]]:
    """The items of these stories, oldest first, by story id, in an open transaction."""
    ids = sorted(set(story_ids))
    if not ids:
        return {}
    query = (
        select(
            items.c.id,
            items.c.story_id,
            feeds.c.url,
            feeds.c.title.label("feed_title"),
            items.c.link,
            items.c.title,
            items.c.published_at,
            items.c.first_seen_at,
        )
        .select_from(items.outerjoin(feeds, items.c.feed_id == feeds.c.id))
        .where(items.c.story_id.in_(ids))
        .order_by(items.c.first_seen_at, items.c.id)
    )
    found = [r._mapping for r in conn.execute(query)]
    hit_rows = conn.execute(
        select(hits.c.item_id, hits.c.watchlist)
        .select_from(hits.join(items, hits.c.item_id == items.c.id))
        .where(items.c.story_id.in_(ids))
    )
    return story_members(found, hit_rows)


def list_stories(
    store: Store,
    *,
    since: datetime | None = None,
    watchlist: str | None = None,
    limit: int | None = None,
) -> list[StoryRecord]:
    """Stories seen (first, or again: a new item joined) since ``since``, with a hit of
    ``watchlist`` if given; the most recently seen first, at most ``limit``."""
    query = select(stories.c.id, stories.c.title, stories.c.first_seen_at, stories.c.last_seen_at)
    if since is not None:
        query = query.where(stories.c.last_seen_at >= since)
    if watchlist is not None:
        query = query.where(
            stories.c.id.in_(
                select(items.c.story_id)
                .select_from(hits.join(items, hits.c.item_id == items.c.id))
                .where(hits.c.watchlist == watchlist)
            )
        )
    query = query.order_by(stories.c.last_seen_at.desc(), stories.c.id.desc())
    if limit is not None:
        query = query.limit(limit)
    with store.read() as conn:
        rows = list(conn.execute(query))
        members = items_by_story(conn, (r.id for r in rows))
    return [
        StoryRecord(r.id, r.title, r.first_seen_at, r.last_seen_at, members.get(r.id, []))
        for r in rows
    ]


def get_story(store: Store, story_id: int) -> StoryRecord | None:
    """One story with its items, or None."""
    with store.read() as conn:
        row = conn.execute(
            select(
                stories.c.id, stories.c.title, stories.c.first_seen_at, stories.c.last_seen_at
            ).where(stories.c.id == story_id)
        ).first()
        if row is None:
            return None
        members = items_by_story(conn, [row.id])
    return StoryRecord(
        row.id, row.title, row.first_seen_at, row.last_seen_at, members.get(row.id, [])
    )
