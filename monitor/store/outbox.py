"""Repository API for subscribers, the outbox and what each subscriber has been sent.

The outbox is what makes mail trustworthy:

1. :func:`enqueue_digest` records a rendered message *and* the hits it carries in one
   transaction: an ``outbox`` row (status ``queued``) plus one ``deliveries`` row per hit,
   unique per (subscriber, hit). A hit in ``deliveries`` is never pending again, so it is
   never put in a second digest; a hit not yet there is pending, so it is never lost.
2. :func:`claim_due` leases queued rows to one sender for a while (a crashed sender's
   lease runs out and another sends the row).
3. After the server's 250 the sender calls :func:`mark_sent`; on a temporary failure
   :func:`mark_retry` (backoff: 1, 2, 4 ... minutes, at most an hour; never given up); on a
   permanent one :func:`mark_failed` with the server's reason, shown by ``monitor outbox``.

Retries send the stored bytes again, so the Message-ID and Date never change. Only a
crash between the server's 250 and the commit of :func:`mark_sent` can send a message
twice (with the same Message-ID).

Webhook deliveries use the same rows with ``kind = "webhook"``: ``subscriber`` holds the
webhook's key (``webhook:<name>``), ``message`` the JSON body, ``message_id`` the delivery
id the receiver sees (``X-Monitor-Delivery``). Each sender claims its own kind.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import (
    Connection,
    String,
    and_,
    bindparam,
    case,
    exists,
    func,
    insert,
    or_,
    select,
    text,
    update,
)

from monitor.store.db import Store, utcnow
from monitor.store.feeds import REMOVED_FROM_CONFIG, StoredHit, _hit_query, hit_from_row
from monitor.store.rows import FAILED as FAILED
from monitor.store.rows import MAIL as MAIL
from monitor.store.rows import QUEUED as QUEUED
from monitor.store.rows import SENT as SENT
from monitor.store.rows import WEBHOOK as WEBHOOK
from monitor.store.rows import FailingFeed as FailingFeed
from monitor.store.rows import HasShownUrl as HasShownUrl
from monitor.store.rows import OutboxEntry as OutboxEntry
from monitor.store.rows import target_namer as target_namer
from monitor.store.schema import deliveries, feeds, hits, items, outbox
from monitor.store.schema import subscribers as subscriber_rows

log = logging.getLogger(__name__)

#: First key of ``pg_advisory_xact_lock(key, hashtext(subscriber))``: one enqueue per
#: subscriber at a time across instances.
PG_ENQUEUE_LOCK = 0x6F757462  # "outb"
#: How long a claimed row is reserved for its sender before another may take it.
CLAIM_LEASE = timedelta(minutes=10)
RETRY_FIRST = timedelta(minutes=1)
RETRY_MAX = timedelta(hours=1)


class HasEmail(Protocol):
    @property
    def email(self) -> str: ...


# --- subscribers --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SubscriberState:
    email: str
    created_at: datetime  # hits stored before this are not mailed
    last_digest_at: datetime | None  # the last time a digest was due (sent or empty)


def sync_subscribers(
    store: Store, subscribers: Iterable[HasEmail], *, now: datetime | None = None
) -> None:
    """Give every configured subscriber a row. A new row starts *now*: a new subscriber
    gets the hits stored from now on, not the whole history. Rows of subscribers no longer
    configured are kept (with their delivery history); they are simply not mailed."""
    now = now or utcnow()
    wanted = [s.email for s in subscribers]
    if not wanted:
        return
    with store.read() as conn:
        known = set(
            conn.execute(
                select(subscriber_rows.c.email).where(subscriber_rows.c.email.in_(wanted))
            ).scalars()
        )
    missing = [e for e in dict.fromkeys(wanted) if e not in known]
    if not missing:
        return
    with store.write() as conn:
        # Instances starting together add the same subscribers: the loser's rows are
        # skipped by the unique key instead of failing its transaction.
        added = conn.execute(
            store.insert(subscriber_rows)
            .on_conflict_do_nothing(index_elements=["email"])
            .returning(subscriber_rows.c.email),
            [{"email": e, "created_at": now} for e in missing],
        ).scalars()
        added_list = list(added)
        if added_list:
            s = "" if len(added_list) == 1 else "s"
            log.info("new subscriber%s: %s", s, ", ".join(added_list))


def subscriber_state(store: Store, email: str) -> SubscriberState | None:
    with store.read() as conn:
        row = conn.execute(select(subscriber_rows).where(subscriber_rows.c.email == email)).first()
    return SubscriberState(row.email, row.created_at, row.last_digest_at) if row else None


def set_last_digest(store: Store, email: str, at: datetime) -> None:
    """Record that the subscriber's digest was due at ``at`` (even if nothing was sent)."""
    with store.write() as conn:
        conn.execute(
            update(subscriber_rows)
            .where(subscriber_rows.c.email == email)
            .values(last_digest_at=at)
        )


# --- pending hits -------------------------------------------------------------------


def _story_mailed(email: Any) -> Any:
    """True for a hit whose story was mailed to ``email`` already under the hit's own
    watchlist: a copy joining a story is not news again (see ``updates``)."""
    mine, other_item, other_hit = items.alias("mine"), items.alias("other_item"), hits.alias("h2")
    return exists().where(
        mine.c.id == hits.c.item_id,
        other_item.c.story_id == mine.c.story_id,
        other_hit.c.item_id == other_item.c.id,
        other_hit.c.watchlist == hits.c.watchlist,
        deliveries.c.hit_id == other_hit.c.id,
        deliveries.c.subscriber == email,
    )


def pending_conditions(
    recipient: Any, since: Any, watchlists: Any, *, updates: bool = False
) -> list[Any]:
    """What makes a hit pending for a recipient (a subscriber's address or a webhook's
    key): stored at or after ``since`` (when the recipient's row was created), not in
    ``deliveries`` for it, in ``watchlists`` (None: any) and, unless ``updates``, not of a
    story already mailed to it under the same watchlist. Each argument is a value or a
    bound parameter / subquery, so that statements built once (``lru_cache``) and queries
    built per call share the one definition."""
    delivered = exists().where(
        and_(deliveries.c.subscriber == recipient, deliveries.c.hit_id == hits.c.id)
    )
    conds = [hits.c.created_at >= since, ~delivered]
    if not updates:
        conds.append(~_story_mailed(recipient))
    if watchlists is not None:
        conds.append(hits.c.watchlist.in_(watchlists))
    return conds


def recipient_since(recipient: Any) -> Any:
    """The recipient's row's creation time, as a scalar subquery (see
    :func:`pending_conditions`)."""
    return (
        select(subscriber_rows.c.created_at)
        .where(subscriber_rows.c.email == recipient)
        .scalar_subquery()
    )


def _since(store: Store, email: str) -> datetime | None:
    state = subscriber_state(store, email)
    return state.created_at if state else None


def pending_hits(
    store: Store,
    email: str,
    watchlists: Sequence[str] | None,
    *,
    limit_per_watchlist: int | None = None,
    updates: bool = False,
) -> list[StoredHit]:
    """Hits the subscriber has not been sent: for the given watchlists (None: all), stored
    at or after the subscriber's row was created, not in ``deliveries``, and (unless
    ``updates``) not of a story already mailed to the subscriber under the same watchlist.
    Oldest first, so a backlog drains in order; with ``limit_per_watchlist``, the oldest
    N of each.

    A subscriber without a row (see :func:`sync_subscribers`) has nothing pending.
    """
    since = _since(store, email)
    if since is None:
        return []
    cond = and_(
        *pending_conditions(
            email, since, None if watchlists is None else list(watchlists), updates=updates
        )
    )
    if limit_per_watchlist is None:
        query = _hit_query().where(cond).order_by(hits.c.created_at, hits.c.id)
        with store.read() as conn:
            return [hit_from_row(r) for r in conn.execute(query)]
    rank = (
        func.row_number()
        .over(partition_by=hits.c.watchlist, order_by=(hits.c.created_at, hits.c.id))
        .label("rank")
    )
    ranked = select(hits.c.id, rank).where(cond).subquery()
    query = (
        _hit_query()
        .join(ranked, ranked.c.id == hits.c.id)
        .where(ranked.c.rank <= limit_per_watchlist)
        .order_by(hits.c.created_at, hits.c.id)
    )
    with store.read() as conn:
        return [hit_from_row(r) for r in conn.execute(query)]


@dataclass(frozen=True, slots=True)
class PendingPlan:
    """Which pending hits a digest may show (those of the oldest ``limit`` stories of each
    watchlist), how many stories are pending in all per watchlist, and, for the stories
    shown, the watchlists they were mailed under before (an update when not empty)."""

    hit_ids: list[int]  # oldest first
    counts: dict[str, int]  # stories
    mailed: dict[int, set[str]] = field(default_factory=dict)


@lru_cache(maxsize=4)
def _plan_query(filtered: bool, updates: bool) -> Any:
    """The pending-plan statement, built once (parameters: email, watchlists)."""
    email = bindparam("email", type_=String)
    watchlists: Any = bindparam("watchlists", expanding=True) if filtered else None
    conds = pending_conditions(email, recipient_since(email), watchlists, updates=updates)
    # Stories are ranked by their oldest pending hit in the watchlist (a story id of
    # None, which only a hit stored outside the pipeline has, counts as the item's own).
    story = func.coalesce(items.c.story_id, -items.c.id)
    first = func.min(hits.c.id).over(partition_by=(hits.c.watchlist, story)).label("first_hit")
    base = (
        select(hits.c.id, hits.c.watchlist, hits.c.created_at, story.label("story"), first)
        .select_from(hits.join(items, hits.c.item_id == items.c.id))
        .where(and_(*conds))
        .subquery()
    )
    ranked = select(
        base.c.id,
        base.c.watchlist,
        base.c.created_at,
        base.c.story,
        func.dense_rank()
        .over(partition_by=base.c.watchlist, order_by=base.c.first_hit)
        .label("rank"),
    ).subquery()
    return select(ranked.c.id, ranked.c.watchlist, ranked.c.rank, ranked.c.story).order_by(
        ranked.c.created_at, ranked.c.id
    )


def pending_plan(
    store: Store,
    email: str,
    watchlists: Sequence[str] | None,
    *,
    limit_per_watchlist: int,
    updates: bool = False,
) -> PendingPlan:
    """:func:`pending_hits` ids and story counts in one query, for callers that keep the
    hits themselves in a cache (see :func:`hits_by_id`); ``limit_per_watchlist`` counts
    stories. A subscriber without a row has nothing pending."""
    params: dict[str, Any] = {"email": email}
    if watchlists is not None:
        params["watchlists"] = list(watchlists)
    ids: list[int] = []
    counts: dict[str, int] = {}
    shown: set[int] = set()
    with store.read() as conn:
        for hit_id, watchlist, rank, story in conn.execute(
            _plan_query(watchlists is not None, updates), params
        ):
            counts[watchlist] = max(counts.get(watchlist, 0), int(rank))
            if rank <= limit_per_watchlist:
                ids.append(int(hit_id))
                shown.add(int(story))
        mailed = _mailed_watchlists(conn, email, sorted(s for s in shown if s > 0))
    return PendingPlan(ids, counts, mailed)


def _mailed_watchlists(
    conn: Connection, email: str, story_ids: Sequence[int]
) -> dict[int, set[str]]:
    """Per story, the watchlists under which its hits were mailed to ``email``."""
    out: dict[int, set[str]] = {}
    for chunk in _chunks(list(story_ids), 500):
        rows = conn.execute(
            select(items.c.story_id, hits.c.watchlist)
            .select_from(
                deliveries.join(hits, deliveries.c.hit_id == hits.c.id).join(
                    items, hits.c.item_id == items.c.id
                )
            )
            .where(deliveries.c.subscriber == email, items.c.story_id.in_(chunk))
            .distinct()
        )
        for story_id, watchlist in rows:
            out.setdefault(int(story_id), set()).add(watchlist)
    return out


def hits_by_id(store: Store, ids: Sequence[int]) -> dict[int, StoredHit]:
    """Stored hits with their items and feeds, by id."""
    out: dict[int, StoredHit] = {}
    with store.read() as conn:
        for chunk in _chunks(list(ids), 500):
            for row in conn.execute(_hit_query().where(hits.c.id.in_(chunk))):
                hit = hit_from_row(row)
                out[hit.id] = hit
    return out


def pending_counts(store: Store, email: str, watchlists: Sequence[str] | None) -> dict[str, int]:
    """How many hits are pending per watchlist (see :func:`pending_hits`)."""
    since = _since(store, email)
    if since is None:
        return {}
    query = (
        select(hits.c.watchlist, func.count())
        .where(*pending_conditions(email, since, None if watchlists is None else list(watchlists)))
        .group_by(hits.c.watchlist)
    )
    with store.read() as conn:
        return {w: int(n) for w, n in conn.execute(query)}


# --- the outbox ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """A queued message as the sender needs it."""

    id: int
    subscriber: str
    message_id: str
    subject: str
    message: bytes
    attempts: int
    created_at: datetime


def enqueue_digest(
    store: Store,
    *,
    subscriber: str,
    message_id: str,
    subject: str,
    message: bytes,
    hit_ids: Sequence[int],
    now: datetime | None = None,
    claim_for: str | None = None,
    lease: timedelta = CLAIM_LEASE,
    kind: str = MAIL,
) -> int | None:
    """Queue a rendered digest and record its hits as delivered, in one transaction.
    With ``claim_for``, the row is leased to that sender at once (see :func:`claim_due`).

    Returns the outbox id, or None when one of the hits was already queued for this
    subscriber meanwhile (another sender, perhaps another instance, got there first):
    nothing is written then, and the caller should build the digest again.

    On PostgreSQL, enqueues for one subscriber are serialised by an advisory lock held
    to the end of the transaction, so the check below sees every earlier commit; the
    unique (subscriber, hit) key is the backstop: a conflict rolls the whole transaction
    back and also returns None.
    """
    now = now or utcnow()
    ids = sorted(set(hit_ids))
    if not ids:
        raise ValueError("a digest without hits is not queued")
    try:
        return _enqueue(
            store, subscriber, message_id, subject, message, ids, now, claim_for, lease, kind
        )
    except _Taken as taken:
        log.info("digest for %s: %d hits were queued meanwhile; rebuilding", subscriber, taken.n)
        return None


class _Taken(Exception):
    """Some hits of a digest were queued by another sender: roll back, build again."""

    def __init__(self, n: int) -> None:
        super().__init__(n)
        self.n = n


def _lock_subscriber(conn: Connection, dialect: str, subscriber: str) -> None:
    if dialect == "postgresql":
        conn.execute(
            text("SELECT pg_advisory_xact_lock(:k, hashtext(:s))"),
            {"k": PG_ENQUEUE_LOCK, "s": subscriber},
        )


def _enqueue(
    store: Store,
    subscriber: str,
    message_id: str,
    subject: str,
    message: bytes,
    ids: list[int],
    now: datetime,
    claim_for: str | None,
    lease: timedelta,
    kind: str = MAIL,
) -> int:
    with store.write() as conn:
        _lock_subscriber(conn, store.dialect, subscriber)
        taken = conn.execute(
            select(func.count())
            .select_from(deliveries)
            .where(deliveries.c.subscriber == subscriber, deliveries.c.hit_id.in_(ids))
        ).scalar_one()
        if taken:
            raise _Taken(int(taken))
        outbox_id = int(
            conn.execute(
                insert(outbox)
                .values(
                    subscriber=subscriber,
                    message_id=message_id,
                    subject=subject,
                    message=message,
                    status=QUEUED,
                    attempts=0,
                    created_at=now,
                    next_attempt_at=now,
                    claimed_by=claim_for,
                    claim_expires_at=now + lease if claim_for else None,
                    kind=kind,
                )
                .returning(outbox.c.id)
            ).scalar_one()
        )
        recorded = conn.execute(
            store.insert(deliveries)
            .on_conflict_do_nothing(index_elements=["subscriber", "hit_id"])
            .returning(deliveries.c.hit_id),
            [{"subscriber": subscriber, "hit_id": h, "outbox_id": outbox_id} for h in ids],
        ).all()
        if len(recorded) != len(ids):
            raise _Taken(len(ids) - len(recorded))  # rolls the outbox row back too
        conn.execute(
            update(subscriber_rows)
            .where(subscriber_rows.c.email == subscriber)
            .values(last_digest_at=now)
        )
    return outbox_id


def claim_due(
    store: Store,
    *,
    instance: str,
    now: datetime | None = None,
    subscribers_only: Sequence[str] | None = None,
    ignore_backoff: bool = False,
    lease: timedelta = CLAIM_LEASE,
    limit: int | None = None,
    kind: str = MAIL,
) -> list[OutboxMessage]:
    """Lease the queued messages that are due (or, with ``ignore_backoff``, every queued
    one the receiver did not ask to hold back: see ``mark_retry``) to ``instance``,
    oldest first. A lease held by another sender is respected until
    it runs out. On PostgreSQL the rows are locked with ``FOR UPDATE SKIP LOCKED``, so
    instances claiming at once never take the same message."""
    now = now or utcnow()
    conds = [
        outbox.c.status == QUEUED,
        outbox.c.kind == kind,
        or_(outbox.c.claim_expires_at.is_(None), outbox.c.claim_expires_at <= now),
    ]
    if not ignore_backoff:
        conds.append(or_(outbox.c.next_attempt_at.is_(None), outbox.c.next_attempt_at <= now))
    else:  # our backoff is ours to skip; a wait the receiver asked for is not
        conds.append(or_(outbox.c.retry_after_at.is_(None), outbox.c.retry_after_at <= now))
    if subscribers_only is not None:
        conds.append(outbox.c.subscriber.in_(list(subscribers_only)))
    query = (
        select(
            outbox.c.id,
            outbox.c.subscriber,
            outbox.c.message_id,
            outbox.c.subject,
            outbox.c.message,
            outbox.c.attempts,
            outbox.c.created_at,
        )
        .where(and_(*conds))
        .order_by(outbox.c.created_at, outbox.c.id)
        .with_for_update(skip_locked=True)
    )
    if limit is not None:
        query = query.limit(limit)
    with store.write() as conn:
        rows = conn.execute(query).all()
        if not rows:
            return []
        ids = [r.id for r in rows]
        for chunk in _chunks(ids, 500):
            conn.execute(
                update(outbox)
                .where(outbox.c.id.in_(chunk))
                .values(claimed_by=instance, claim_expires_at=now + lease)
            )
    return [
        OutboxMessage(
            r.id, r.subscriber, r.message_id, r.subject, bytes(r.message), r.attempts, r.created_at
        )
        for r in rows
    ]


def release_claims(store: Store, outbox_ids: Sequence[int]) -> None:
    """Give back leased rows that were not attempted (a sender stopping early)."""
    with store.write() as conn:
        for chunk in _chunks(list(outbox_ids), 500):
            conn.execute(
                update(outbox)
                .where(outbox.c.id.in_(chunk), outbox.c.status == QUEUED)
                .values(claimed_by=None, claim_expires_at=None)
            )


def postpone(
    store: Store,
    outbox_ids: Sequence[int],
    until: datetime,
    *,
    asked: datetime | None = None,
) -> None:
    """Give back leased rows that were not attempted, due no sooner than ``until`` (an
    earlier row to the same receiver failed): attempts and last error unchanged.
    ``asked``: the receiver asked to wait until then (see ``mark_retry``)."""
    later = case((outbox.c.next_attempt_at > until, outbox.c.next_attempt_at), else_=until)
    values: dict[str, Any] = {
        "claimed_by": None,
        "claim_expires_at": None,
        "next_attempt_at": later,
    }
    if asked is not None:
        values["retry_after_at"] = case(
            (outbox.c.retry_after_at > asked, outbox.c.retry_after_at), else_=asked
        )
    with store.write() as conn:
        for chunk in _chunks(list(outbox_ids), 500):
            conn.execute(
                update(outbox)
                .where(outbox.c.id.in_(chunk), outbox.c.status == QUEUED)
                .values(**values)
            )


def _chunks(ids: Sequence[int], size: int) -> Iterable[Sequence[int]]:
    for i in range(0, len(ids), size):
        yield ids[i : i + size]


def mark_sent(store: Store, outbox_id: int, *, now: datetime | None = None) -> None:
    """The server accepted the message (250)."""
    now = now or utcnow()
    with store.write() as conn:
        conn.execute(
            update(outbox)
            .where(outbox.c.id == outbox_id)
            .values(
                status=SENT,
                sent_at=now,
                attempts=outbox.c.attempts + 1,
                claimed_by=None,
                claim_expires_at=None,
                next_attempt_at=None,
            )
        )


def retry_delay(attempts: int) -> timedelta:
    """Wait after the ``attempts``-th failed try: 1, 2, 4 ... minutes, at most an hour."""
    seconds = RETRY_FIRST.total_seconds() * 2 ** max(0, min(attempts - 1, 20))
    return min(timedelta(seconds=seconds), RETRY_MAX)


def mark_retry(
    store: Store,
    outbox_id: int,
    reason: str,
    *,
    now: datetime | None = None,
    count_attempt: bool = True,
    at_least: timedelta | None = None,
) -> datetime:
    """A temporary failure: the message stays queued and is tried again after a backoff.
    ``count_attempt=False`` for a message that was never handed to the server (the
    connection failed before it). ``at_least``: the receiver asked for that long (its
    Retry-After, already capped by the caller); the wait is the longer of the two, and
    the receiver's part holds against ``claim_due(ignore_backoff=True)`` too.
    Returns when it is due again."""
    now = now or utcnow()
    with store.write() as conn:
        attempts = int(
            conn.execute(select(outbox.c.attempts).where(outbox.c.id == outbox_id)).scalar_one()
        )
        if count_attempt:
            attempts += 1
        due = now + max(retry_delay(max(attempts, 1)), at_least or timedelta(0))
        conn.execute(
            update(outbox)
            .where(outbox.c.id == outbox_id)
            .values(
                attempts=attempts,
                last_error=reason,
                next_attempt_at=due,
                # What the receiver asked holds even against ``ignore_backoff``.
                retry_after_at=now + at_least if at_least else None,
                claimed_by=None,
                claim_expires_at=None,
            )
        )
    return due


def mark_failed(store: Store, outbox_id: int, reason: str, *, now: datetime | None = None) -> None:
    """A permanent failure (the server said 5xx): kept, with the reason, for the operator."""
    with store.write() as conn:
        conn.execute(
            update(outbox)
            .where(outbox.c.id == outbox_id)
            .values(
                status=FAILED,
                attempts=outbox.c.attempts + 1,
                last_error=reason,
                next_attempt_at=None,
                claimed_by=None,
                claim_expires_at=None,
            )
        )




def requeue_failed(
    store: Store,
    readdress: Callable[[bytes], tuple[str, bytes]],
    *,
    ids: Sequence[int] | None = None,
    now: datetime | None = None,
) -> list[int]:
    """Queue failed mail again (the rows ``ids``, or every failed one): the same hits,
    the message as ``readdress`` gives it back with its new Message-ID (see
    ``digest.readdress``; a webhook's body goes as it was), due now, its attempts counted
    afresh. Returns the ids requeued (an id that is not failed is left alone)."""
    now = now or utcnow()
    query = select(outbox.c.id, outbox.c.message, outbox.c.kind).where(outbox.c.status == FAILED)
    if ids is not None:
        query = query.where(outbox.c.id.in_(list(ids)))
    done: list[int] = []
    again = {
        "status": QUEUED,
        "attempts": 0,
        "next_attempt_at": now,
        "retry_after_at": None,
        "claimed_by": None,
        "claim_expires_at": None,
    }
    with store.write() as conn:
        for row_id, message, kind in conn.execute(query.order_by(outbox.c.id)).all():
            if kind == WEBHOOK:
                # A JSON body has no Message-ID: it goes again as it was, under the same
                # delivery id (the receiver never accepted it).
                conn.execute(
                    update(outbox)
                    .where(outbox.c.id == row_id, outbox.c.status == FAILED)
                    .values(**again)
                )
                done.append(int(row_id))
                continue
            message_id, message = readdress(bytes(message))
            conn.execute(
                update(outbox)
                .where(outbox.c.id == row_id, outbox.c.status == FAILED)
                .values(message_id=message_id, message=message, **again)
            )
            done.append(int(row_id))
    return done


def list_outbox(
    store: Store, *, statuses: Sequence[str] = (QUEUED, FAILED), limit: int | None = None
) -> list[OutboxEntry]:
    """Outbox rows with the given statuses, oldest first, each with its number of hits."""
    counts = (
        select(deliveries.c.outbox_id, func.count().label("hits"))
        .group_by(deliveries.c.outbox_id)
        .subquery()
    )
    query = (
        select(
            outbox.c.id,
            outbox.c.subscriber,
            outbox.c.message_id,
            outbox.c.subject,
            outbox.c.status,
            outbox.c.attempts,
            func.coalesce(counts.c.hits, 0).label("hits"),
            outbox.c.created_at,
            outbox.c.next_attempt_at,
            outbox.c.last_error,
            outbox.c.sent_at,
            outbox.c.kind,
        )
        .select_from(outbox.outerjoin(counts, counts.c.outbox_id == outbox.c.id))
        .where(outbox.c.status.in_(list(statuses)))
        .order_by(outbox.c.created_at, outbox.c.id)
    )
    if limit is not None:
        query = query.limit(limit)
    with store.read() as conn:
        return [OutboxEntry(**dict(r._mapping)) for r in conn.execute(query)]


def delivered_hit_ids(store: Store, email: str) -> set[int]:
    """Every hit recorded as delivered (queued, sent or failed) to the subscriber."""
    with store.read() as conn:
        return set(
            conn.execute(
                select(deliveries.c.hit_id).where(deliveries.c.subscriber == email)
            ).scalars()
        )


# --- what a digest shows besides hits -----------------------------------------------


def watchlist_volume(
    store: Store,
    watchlists: Sequence[str],
    *,
    timezone: str = "UTC",
    days: int = 14,
    now: datetime | None = None,
) -> dict[str, list[tuple[date, int]]]:
    """Hits per local day for each watchlist over the last ``days`` days, today last.

    Days are the subscriber's calendar days (``timezone``); every watchlist asked for
    gets all ``days`` entries, zeros included.
    """
    now = now or utcnow()
    zone = ZoneInfo(timezone)
    today = now.astimezone(zone).date()
    first = today - timedelta(days=days - 1)
    start = datetime.combine(first, datetime.min.time(), tzinfo=zone).astimezone(UTC)
    out: dict[str, dict[date, int]] = {
        w: {first + timedelta(days=i): 0 for i in range(days)} for w in watchlists
    }
    if not watchlists:
        return {}
    query = select(hits.c.watchlist, hits.c.created_at).where(
        hits.c.created_at >= start,
        hits.c.created_at <= now,
        hits.c.watchlist.in_(list(watchlists)),
    )
    with store.read() as conn:
        for watchlist, created in conn.execute(query):
            day = created.astimezone(zone).date()
            bucket = out[watchlist]
            if day in bucket:
                bucket[day] += 1
    return {w: sorted(b.items()) for w, b in out.items()}


def failing_feeds(store: Store, conn: Connection | None = None) -> list[FailingFeed]:
    """Feeds that are failing (``consecutive_failures > 0``) or retired, except those the
    operator removed from the config. Worst first."""
    query = (
        select(
            feeds.c.url,
            feeds.c.title,
            feeds.c.consecutive_failures,
            feeds.c.last_error,
            feeds.c.last_success_at,
            feeds.c.retired_at,
            feeds.c.retired_reason,
        )
        .where(
            or_(feeds.c.consecutive_failures > 0, feeds.c.retired_at.is_not(None)),
            or_(feeds.c.retired_reason.is_(None), feeds.c.retired_reason != REMOVED_FROM_CONFIG),
        )
        .order_by(feeds.c.retired_at.is_(None), feeds.c.consecutive_failures.desc(), feeds.c.url)
    )
    with store.reading(conn) as conn:
        return [FailingFeed(**dict(r._mapping)) for r in conn.execute(query)]
