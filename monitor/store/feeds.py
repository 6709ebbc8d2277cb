"""Repository API for feeds, items, hits and poll runs.

Every function takes the :class:`~monitor.store.db.Store`; none leaks SQL to its callers.
A poll's results for one feed are written in one transaction (:func:`save_poll`): items,
their hits and the feed's new state land together or not at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, bindparam, func, insert, or_, select, update

from monitor.models import FetchResult, Item, Match, Outcome, ParsedFeed
from monitor.store import stories as story_store
from monitor.store.db import Store, utcnow
from monitor.store.rows import FEED_SYNC_COLUMNS, feed_record, feed_sync_plan
from monitor.store.rows import REMOVED_FROM_CONFIG as REMOVED_FROM_CONFIG
from monitor.store.rows import FeedRecord as FeedRecord
from monitor.store.rows import FeedSpec as FeedSpec
from monitor.store.rows import StoredHit as StoredHit
from monitor.store.schema import feeds, hits, items, poll_runs
from monitor.store.stories import NewItem, StoryAssigner

_FEED_COLUMNS = [c for c in feeds.c if c.name not in ("claimed_by", "claim_expires_at")]


def _feed_record(row: Any) -> FeedRecord:
    return feed_record(row._mapping)


def sync_config_feeds(store: Store, specs: Sequence[FeedSpec]) -> None:
    """Make the ``source='config'`` feeds match the config.

    New URLs are added (due at once); known ones get the config's title, interval and
    headers (and are un-retired if they had been dropped from the config earlier); config
    feeds no longer in the config are retired with a reason, keeping their items.
    A URL that an OPML import added earlier simply becomes a config feed.

    Several instances starting together (PostgreSQL) may run this at once: a URL another
    one inserted meanwhile is skipped by the unique key, rows are touched in id order
    (no deadlock) and only when something changed (a restart rewrites nothing).
    """
    now = utcnow()
    with store.write() as conn:
        existing = conn.execute(
            select(*(feeds.c[name] for name in FEED_SYNC_COLUMNS)).order_by(feeds.c.id)
        )
        plan = feed_sync_plan([dict(r._mapping) for r in existing], specs, now)
        for feed_id, values in plan.changes:
            conn.execute(update(feeds).where(feeds.c.id == feed_id).values(**values))
        if plan.new:
            ins = store.insert(feeds)
            conn.execute(ins.on_conflict_do_nothing(index_elements=["url"]), plan.new)
        for feed_id in plan.removed:
            conn.execute(
                update(feeds)
                .where(feeds.c.id == feed_id)
                .values(retired_at=now, retired_reason=REMOVED_FROM_CONFIG)
            )


def add_feed(store: Store, spec: FeedSpec, *, source: str) -> bool:
    """Add a feed unless its URL is known. Returns True when it was added."""
    ins = store.insert(feeds)
    with store.write() as conn:
        added = conn.execute(
            ins.values(
                url=spec.url,
                title=spec.title,
                interval_s=spec.interval_s,
                headers=dict(spec.headers),
                source=source,
                created_at=utcnow(),
            )
            .on_conflict_do_nothing(index_elements=["url"])
            .returning(feeds.c.id)
        ).first()
        return added is not None


def list_feeds(store: Store, *, include_retired: bool = True) -> list[FeedRecord]:
    query = select(*_FEED_COLUMNS).order_by(feeds.c.id)
    if not include_retired:
        query = query.where(feeds.c.retired_at.is_(None))
    with store.read() as conn:
        return [_feed_record(r) for r in conn.execute(query)]


def due_feeds(store: Store, now: datetime, *, everything: bool = False) -> list[FeedRecord]:
    """Feeds to poll now: not retired, and due (or all of them with ``everything``)."""
    query = select(*_FEED_COLUMNS).where(feeds.c.retired_at.is_(None))
    if not everything:
        query = query.where(or_(feeds.c.next_due_at.is_(None), feeds.c.next_due_at <= now))
    with store.read() as conn:
        return [
            _feed_record(r) for r in conn.execute(query.order_by(feeds.c.next_due_at, feeds.c.id))
        ]


def count_due_feeds(store: Store, now: datetime, *, everything: bool = False) -> int:
    """How many feeds are due (every active one with ``everything``) and free to claim:
    the daemon's cheap check each tick, and the size of a poll run's progress bar."""
    free = or_(feeds.c.claim_expires_at.is_(None), feeds.c.claim_expires_at < now)
    return _count_due(store, now, everything, free)


def count_held_feeds(
    store: Store, now: datetime, *, instance: str, everything: bool = False
) -> int:
    """How many feeds are due (every active one with ``everything``) but held by another
    instance whose claim has not run out: a poll run skips them."""
    held = and_(feeds.c.claim_expires_at >= now, feeds.c.claimed_by != instance)
    return _count_due(store, now, everything, held)


def _count_due(store: Store, now: datetime, everything: bool, claim: Any) -> int:
    """Active feeds that are due (all of them with ``everything``) and match ``claim``."""
    due = or_(feeds.c.next_due_at.is_(None), feeds.c.next_due_at <= now)
    query = (
        select(func.count())
        .select_from(feeds)
        .where(feeds.c.retired_at.is_(None), *(() if everything else (due,)), claim)
    )
    with store.read() as conn:
        return int(conn.execute(query).scalar_one())


def not_due_feeds(store: Store, now: datetime) -> tuple[int, datetime | None]:
    """Active feeds whose next poll is still ahead, and the earliest of those polls."""
    query = select(func.count(), func.min(feeds.c.next_due_at)).where(
        feeds.c.retired_at.is_(None), feeds.c.next_due_at > now
    )
    with store.read() as conn:
        n, first = conn.execute(query).one()
    return int(n), first


def claim_due_feeds(
    store: Store,
    *,
    instance: str,
    now: datetime,
    lease: timedelta,
    limit: int,
    run_started: datetime,
    everything: bool = False,
) -> list[FeedRecord]:
    """Claim up to ``limit`` due feeds for ``instance`` until ``now + lease``.

    A claimed feed is skipped by every other claimer until :func:`save_poll` releases it
    or the lease expires (its holder died). On PostgreSQL the candidate rows are locked
    with ``FOR UPDATE SKIP LOCKED``, so instances claiming at once never take the same
    feed and never wait for each other; on SQLite the write transaction is exclusive.

    ``run_started`` keeps one run from claiming a feed twice: due means due at the
    run's start (or, with ``everything``, not yet polled since the run's start).
    """
    free = or_(feeds.c.claim_expires_at.is_(None), feeds.c.claim_expires_at < now)
    if everything:
        due = or_(feeds.c.last_polled_at.is_(None), feeds.c.last_polled_at < run_started)
    else:
        due = or_(feeds.c.next_due_at.is_(None), feeds.c.next_due_at <= run_started)
    candidates = (
        select(feeds.c.id)
        .where(feeds.c.retired_at.is_(None), free, due)
        .order_by(feeds.c.next_due_at.is_not(None), feeds.c.next_due_at, feeds.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    with store.write() as conn:
        ids = list(conn.execute(candidates).scalars())
        if not ids:
            return []
        conn.execute(
            update(feeds)
            .where(feeds.c.id.in_(ids))
            .values(claimed_by=instance, claim_expires_at=now + lease)
        )
        rows = conn.execute(select(*_FEED_COLUMNS).where(feeds.c.id.in_(ids)))
        return sorted((_feed_record(r) for r in rows), key=lambda f: ids.index(f.id))


def renew_claims(store: Store, instance: str, *, now: datetime, lease: timedelta) -> int:
    """Extend every claim ``instance`` still holds to ``now + lease`` (a live instance
    renews while it polls, so only a dead or stalled one loses its feeds). Returns how many.
    """
    with store.write() as conn:
        result = conn.execute(
            update(feeds).where(feeds.c.claimed_by == instance).values(claim_expires_at=now + lease)
        )
        return int(result.rowcount or 0)


def release_claims(store: Store, instance: str) -> int:
    """Give back every feed ``instance`` holds (at shutdown). Returns how many."""
    with store.write() as conn:
        result = conn.execute(
            update(feeds)
            .where(feeds.c.claimed_by == instance)
            .values(claimed_by=None, claim_expires_at=None)
        )
        return int(result.rowcount or 0)


@dataclass(frozen=True, slots=True)
class PollSaved:
    new_items: int
    new_hits: int
    hits_by_watchlist: Mapping[str, int]
    #: New items stored with their article page still to read: (item id, item).
    articles: Sequence[tuple[int, Item]] = ()


@dataclass(frozen=True, slots=True)
class PollWrite:
    """One feed's poll, ready to store (see :func:`save_polls`)."""

    feed: FeedRecord
    result: FetchResult
    parsed: ParsedFeed | None
    next_due_at: datetime
    hint_s: int | None
    match: Callable[[Item], Sequence[Match]]
    now: datetime
    reschedule: Callable[[int], datetime] | None = None
    #: Decides the new items' stories (``cluster.StoryIndex``); None: a story each.
    stories: story_store.StoryAssigner | None = None
    #: Whether a new item's article page is to be read (it is stored as pending).
    wants_article: Callable[[Item], bool] | None = None


def save_poll(
    store: Store,
    feed: FeedRecord,
    result: FetchResult,
    parsed: ParsedFeed | None,
    *,
    next_due_at: datetime,
    hint_s: int | None,
    match: Callable[[Item], Sequence[Match]],
    now: datetime | None = None,
    reschedule: Callable[[int], datetime] | None = None,
    stories: story_store.StoryAssigner | None = None,
) -> PollSaved:
    """Store one feed's poll in one transaction (see :func:`save_polls`)."""
    write = PollWrite(
        feed, result, parsed, next_due_at, hint_s, match, now or utcnow(), reschedule, stories
    )
    return save_polls(store, [write])[0]


def save_polls(store: Store, writes: Sequence[PollWrite]) -> list[PollSaved]:
    """Store polls in one transaction: for each feed its new items, their hits and its
    new state. All of them land or none does.

    Items already stored (same identity, from this or another feed) are skipped by the
    database's unique key, so re-polls and crashes never duplicate them. Only items that
    are new are passed to a write's ``match``.

    With ``reschedule``, the next due time is ``reschedule(number of new items)``, decided
    inside the transaction once it is known which items are new (the adaptive policy
    needs it); otherwise it is ``next_due_at``.

    Every new item gets its story in the same transaction (``store/stories.py``); if
    the transaction fails, the assigners forget what they were told in it.
    """
    assigners = list({id(w.stories): w.stories for w in writes if w.stories}.values())
    if any(w.parsed is not None and w.parsed.items for w in writes):
        for assigner in assigners:
            # What other instances assigned meanwhile is learnt here, outside the lock;
            # the transaction then only catches up with the last few.
            story_store.warm(store, assigner, utcnow())
    marks = [a.mark() for a in assigners]
    try:
        with store.write() as conn:
            if any(w.parsed is not None and w.parsed.items for w in writes):
                story_store.lock(conn, store)
            states: list[tuple[int, dict[str, Any]]] = []
            # The new items of every poll here, by story assigner, get their stories
            # together (see story_store.assign), in the order the polls came.
            for_stories: dict[int, tuple[StoryAssigner | None, list[NewItem]]] = {}
            saved = []
            for w in writes:
                group = for_stories.setdefault(id(w.stories), (w.stories, []))[1]
                saved.append(_save(conn, store, w, states, group))
            for window, new in for_stories.values():
                story_store.assign(conn, window, new)
            _update_feeds(conn, states)
            return saved
    except BaseException:
        for assigner, mark in zip(assigners, marks, strict=True):
            assigner.undo(mark)
        raise


def _update_feeds(conn: Connection, states: Sequence[tuple[int, dict[str, Any]]]) -> None:
    """The feeds' new states: one executemany per set of changed columns, not one
    statement built and compiled per feed (most polls of a run change the same columns)."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for feed_id, state in states:
        keys = tuple(sorted(state))
        groups.setdefault(keys, []).append(
            {"feed_id_": feed_id, **{f"{k}_": v for k, v in state.items()}}
        )
    for keys, rows in groups.items():
        statement = (
            update(feeds)
            .where(feeds.c.id == bindparam("feed_id_"))
            .values({k: bindparam(f"{k}_") for k in keys})
        )
        conn.execute(statement, rows)


def _save(
    conn: Connection,
    store: Store,
    w: PollWrite,
    states: list[tuple[int, dict[str, Any]]],
    for_stories: list[NewItem],
) -> PollSaved:
    """The poll's new items, their hits and the feed's new state (into ``states``); the
    new items to be given stories are added to ``for_stories``."""
    feed, result, parsed, now = w.feed, w.result, w.parsed, w.now
    state = _feed_state(feed, result, parsed, next_due_at=w.next_due_at, hint_s=w.hint_s, now=now)
    new = _insert_items(
        conn, store, feed.id, parsed.items if parsed else [], now, w.wants_article
    )
    if result.outcome in (Outcome.OK, Outcome.NOT_MODIFIED):
        if new:
            state |= {"quiet_polls": 0, "last_new_items_at": now}
        elif feed.last_polled_at is not None:
            state["quiet_polls"] = feed.quiet_polls + 1
    if w.reschedule is not None:
        state["next_due_at"] = w.reschedule(len(new))
    by_watchlist: dict[str, int] = {}
    hit_rows: list[dict[str, Any]] = []
    for item_id, item, _ in new:
        grouped: dict[str, list[Match]] = {}
        for m in w.match(item):
            grouped.setdefault(m.watchlist, []).append(m)
        for_stories.append((item_id, item, list(grouped), now))
        for watchlist, matches in grouped.items():
            hit_rows.append(
                {
                    "item_id": item_id,
                    "watchlist": watchlist,
                    "matches": [m.to_dict() for m in matches],
                    "created_at": now,
                }
            )
            by_watchlist[watchlist] = by_watchlist.get(watchlist, 0) + 1
    if hit_rows:
        conn.execute(insert(hits), hit_rows)
    states.append((feed.id, state))
    articles = [(i, it) for i, it, wait in new if wait]
    return PollSaved(len(new), len(hit_rows), by_watchlist, articles)


def _feed_state(
    feed: FeedRecord,
    result: FetchResult,
    parsed: ParsedFeed | None,
    *,
    next_due_at: datetime,
    hint_s: int | None,
    now: datetime,
) -> dict[str, Any]:
    state: dict[str, Any] = {
        "last_status": result.status,
        "last_outcome": result.outcome.value,
        "last_polled_at": now,
        "next_due_at": next_due_at,
        "hint_s": hint_s,
        "claimed_by": None,
        "claim_expires_at": None,
    }
    if result.outcome in (Outcome.OK, Outcome.NOT_MODIFIED):
        state |= {"consecutive_failures": 0, "last_success_at": now}
        if result.outcome is Outcome.OK:
            state |= {"etag": result.etag, "last_modified": result.last_modified}
        if result.permanent_url and result.permanent_url != feed.url:
            state["url"] = result.permanent_url
    else:
        state |= {
            "consecutive_failures": feed.consecutive_failures + 1,
            "last_error": result.error,
            "last_error_kind": result.error_kind,
            "last_error_at": now,
        }
    if result.outcome is Outcome.GONE:
        state |= {"retired_at": now, "retired_reason": result.error or "410 Gone"}
    if parsed is not None:
        state["warnings"] = "\n".join(parsed.warnings) or None
        if parsed.title and not feed.title:
            state["title"] = parsed.title
        if parsed.site_url:
            state["site_url"] = parsed.site_url
    return state


#: Which of a poll's item identities are stored already. Built once, not per feed: with
#: the identities as one expanding parameter, a next poll (most items known) no longer
#: spends more on building and keying the statement than on running it.
_KNOWN_ITEMS = select(items.c.identity).where(
    items.c.identity.in_(bindparam("identities", expanding=True))
)


_NEW_ITEMS: dict[str, Any] = {}


def _new_items(store: Store) -> Any:
    """INSERT of new items (a known identity skipped) returning their ids, built once per
    dialect (see :data:`_KNOWN_ITEMS`)."""
    statement = _NEW_ITEMS.get(store.dialect)
    if statement is None:
        statement = _NEW_ITEMS[store.dialect] = (
            store.insert(items)
            .on_conflict_do_nothing(index_elements=["identity"])
            .returning(items.c.id, items.c.identity)
        )
    return statement


def _insert_items(
    conn: Connection,
    store: Store,
    feed_id: int,
    batch: Iterable[Item],
    now: datetime,
    wants_article: Callable[[Item], bool] | None = None,
) -> list[tuple[int, Item, bool]]:
    """Insert the items not stored yet: (id, item, whether its article page is to be
    read) of each."""
    by_identity: dict[str, Item] = {}
    for item in batch:
        by_identity.setdefault(item.identity, item)  # a feed may repeat an entry
    if not by_identity:
        return []
    known = set(conn.execute(_KNOWN_ITEMS, {"identities": list(by_identity)}).scalars())
    fresh = [it for ident, it in by_identity.items() if ident not in known]
    if not fresh:
        return []
    pending = [wants_article is not None and wants_article(it) for it in fresh]
    rows = [
        {
            "identity": it.identity,
            "feed_id": feed_id,
            "guid": it.guid,
            "link": it.link,
            "title": it.title,
            "summary": it.summary,
            "content": it.content,
            "author": it.author,
            "lang": it.lang,
            "published_at": it.published,
            "first_seen_at": now,
            "text_source": "feed",
            "article": "pending" if wait else None,
        }
        for it, wait in zip(fresh, pending, strict=True)
    ]
    inserted = {r.identity: r.id for r in conn.execute(_new_items(store), rows)}
    return [
        (inserted[it.identity], it, wait)
        for it, wait in zip(fresh, pending, strict=True)
        if it.identity in inserted
    ]


def recent_identities(
    store: Store, feed_ids: Sequence[int], limit: int
) -> dict[int, frozenset[str]]:
    """The identities of each feed's ``limit`` most recently stored items.

    A poll's parse worker drops the items of a body that have one of these before it
    detects their language and matches them: a live feed moves on by a few items between
    polls, and the rest of its body is what the last polls stored. Items of a feed that
    another feed stored first are not among them; the store skips those as before. One
    indexed query per feed (``LIMIT`` per feed, which a single query over all of them
    could not use the index for).
    """
    query = (
        select(items.c.identity)
        .where(items.c.feed_id == bindparam("feed_id"))
        .order_by(items.c.id.desc())
        .limit(limit)
    )
    with store.read() as conn:
        return {
            feed_id: frozenset(conn.execute(query, {"feed_id": feed_id}).scalars())
            for feed_id in feed_ids
        }


def start_poll_run(store: Store, *, instance: str | None = None) -> int:
    with store.write() as conn:
        row = conn.execute(
            insert(poll_runs)
            .values(instance=instance, started_at=utcnow())
            .returning(poll_runs.c.id)
        ).one()
        return int(row.id)


def finish_poll_run(store: Store, run_id: int, counts: Mapping[str, int]) -> None:
    with store.write() as conn:
        conn.execute(
            update(poll_runs).where(poll_runs.c.id == run_id).values(finished_at=utcnow(), **counts)
        )


def last_poll_run(store: Store, conn: Connection | None = None) -> Mapping[str, Any] | None:
    with store.reading(conn) as conn:
        row = conn.execute(
            select(poll_runs)
            .where(poll_runs.c.finished_at.is_not(None))
            .order_by(poll_runs.c.id.desc())
            .limit(1)
        ).first()
        return dict(row._mapping) if row else None


def feed_count(store: Store) -> int:
    with store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(feeds)).scalar_one())


def _hit_query() -> Any:
    return select(
        hits.c.id,
        hits.c.watchlist,
        hits.c.matches,
        hits.c.created_at,
        items.c.id.label("item_id"),
        items.c.identity,
        items.c.guid,
        items.c.link,
        items.c.title,
        items.c.summary,
        items.c.content,
        items.c.published_at,
        items.c.first_seen_at,
        items.c.feed_id,
        feeds.c.url.label("feed_url"),
        feeds.c.title.label("feed_title"),
        items.c.story_id,
        items.c.lang,
    ).select_from(
        hits.join(items, hits.c.item_id == items.c.id).outerjoin(
            feeds, items.c.feed_id == feeds.c.id
        )
    )


def hit_from_row(row: Any) -> StoredHit:
    return StoredHit(**dict(row._mapping))


def list_hits(
    store: Store,
    *,
    since: datetime | None = None,
    watchlists: Sequence[str] | None = None,
    limit: int | None = None,
    newest_first: bool = False,
) -> list[StoredHit]:
    query = _hit_query()
    conds = []
    if since is not None:
        conds.append(hits.c.created_at >= since)
    if watchlists:
        conds.append(hits.c.watchlist.in_(list(watchlists)))
    if conds:
        query = query.where(and_(*conds))
    if newest_first:
        query = query.order_by(hits.c.created_at.desc(), hits.c.id.desc())
    else:
        query = query.order_by(hits.c.created_at, hits.c.id)
    if limit is not None:
        query = query.limit(limit)
    with store.read() as conn:
        return [hit_from_row(r) for r in conn.execute(query)]


def iter_items(store: Store, *, since: datetime | None = None) -> Iterator[Item]:
    """Stored items, oldest first (for back-testing a watchlist edit)."""
    query = select(items).order_by(items.c.id)
    if since is not None:
        query = query.where(items.c.first_seen_at >= since)
    with store.read() as conn:
        for r in conn.execute(query):
            yield stored_item(r)


def stored_item(r: Any) -> Item:
    """An item as stored, from a row of the ``items`` table."""
    return Item(
        identity=r.identity,
        title=r.title,
        link=r.link,
        guid=r.guid,
        summary=r.summary,
        content=r.content,
        published=r.published_at,
        author=r.author,
        lang=r.lang,
    )
