"""What a webhook has not been sent yet, a story at a time.

A webhook is a recipient like a subscriber: its key (``webhook:<name>``) has a row in
``subscribers`` (hits stored before it was added are not sent), its deliveries are
``deliveries`` rows and its bodies ``outbox`` rows of kind ``webhook``; the queueing and
claiming are :mod:`monitor.store.outbox`'s. This module only chooses the hits of one body:
whole stories (every pending hit of each, over all their items), so a story is never
split between bodies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from monitor.store.db import Store
from monitor.store.feeds import StoredHit, _hit_query, hit_from_row
from monitor.store.outbox import QUEUED, WEBHOOK, _pending_conditions, subscriber_state
from monitor.store.schema import hits, items, outbox, stories


@dataclass(frozen=True, slots=True)
class PendingStory:
    """A story's pending hits, oldest first. ``id`` is None for an item in no story."""

    id: int | None
    title: str
    first_seen: datetime
    last_seen: datetime
    hits: list[StoredHit]


def pending_stories(
    store: Store, key: str, watchlists: Sequence[str] | None, *, limit: int
) -> list[PendingStory]:
    """The ``limit`` stories with the oldest pending hits for ``key``, oldest first, each
    with all of its pending hits. Nothing for a key without a row."""
    state = subscriber_state(store, key)
    if state is None:
        return []
    cond = _pending_conditions(key, watchlists, state.created_at)
    # An item outside any story (not assigned by the store) is a story of its own.
    group = func.coalesce(items.c.story_id, -items.c.id)
    first = func.min(hits.c.created_at)
    chosen = (
        select(group.label("story"))
        .select_from(hits.join(items, hits.c.item_id == items.c.id))
        .where(cond)
        .group_by(group)
        .order_by(first, func.min(hits.c.id))
        .limit(limit)
    )
    with store.read() as conn:
        keys = [int(k) for k in conn.execute(chosen).scalars()]
        if not keys:
            return []
        rows = conn.execute(
            _hit_query().where(cond, group.in_(keys)).order_by(hits.c.created_at, hits.c.id)
        ).all()
        known = {
            r.id: r
            for r in conn.execute(
                select(
                    stories.c.id, stories.c.title, stories.c.first_seen_at, stories.c.last_seen_at
                ).where(stories.c.id.in_([k for k in keys if k > 0]))
            )
        }
    by_story: dict[int, list[StoredHit]] = {k: [] for k in keys}
    for row in rows:
        hit = hit_from_row(row)
        by_story[hit.story_id if hit.story_id is not None else -hit.item_id].append(hit)
    out = []
    for story_key, story_hits in by_story.items():
        if not story_hits:
            continue
        lead = story_hits[0]
        meta = known.get(story_key)
        out.append(
            PendingStory(
                id=meta.id if meta is not None else None,
                title=meta.title if meta is not None else lead.title,
                first_seen=meta.first_seen_at if meta is not None else lead.first_seen_at,
                last_seen=meta.last_seen_at if meta is not None else lead.first_seen_at,
                hits=story_hits,
            )
        )
    return out


def queued_count(store: Store, key: str) -> int:
    """Bodies queued for ``key`` and not yet accepted (waiting for a retry, or in flight)."""
    with store.read() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(outbox)
                .where(
                    outbox.c.subscriber == key,
                    outbox.c.kind == WEBHOOK,
                    outbox.c.status == QUEUED,
                )
            ).scalar_one()
        )
