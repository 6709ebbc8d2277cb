"""What a webhook has not been sent yet, a story at a time.

A webhook is a recipient like a subscriber: its key (``webhook:<name>``) has a row in
``subscribers`` (hits stored before it was added are not sent), its deliveries are
``deliveries`` rows and its bodies ``outbox`` rows of kind ``webhook``; the queueing and
claiming are :mod:`monitor.store.outbox`'s. This module only chooses the hits of one body:
whole stories (every pending hit of each), so a story is never split between bodies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from monitor.store.db import Store
from monitor.store.feeds import StoredHit, _hit_query, hit_from_row
from monitor.store.outbox import QUEUED, WEBHOOK, _pending_conditions, subscriber_state
from monitor.store.schema import hits, outbox


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
    first = func.min(hits.c.created_at).label("first")
    chosen = (
        select(hits.c.item_id, first, func.min(hits.c.id).label("first_id"))
        .where(cond)
        .group_by(hits.c.item_id)
        .order_by(first, func.min(hits.c.id))
        .limit(limit)
    )
    with store.read() as conn:
        item_ids = [int(r.item_id) for r in conn.execute(chosen)]
        if not item_ids:
            return []
        rows = conn.execute(
            _hit_query()
            .where(cond, hits.c.item_id.in_(item_ids))
            .order_by(hits.c.created_at, hits.c.id)
        ).all()
    by_item: dict[int, list[StoredHit]] = {i: [] for i in item_ids}
    for row in rows:
        hit = hit_from_row(row)
        by_item[hit.item_id].append(hit)
    out = []
    for item_hits in by_item.values():
        if not item_hits:
            continue
        first_hit = item_hits[0]
        out.append(
            PendingStory(
                id=None,
                title=first_hit.title,
                first_seen=first_hit.first_seen_at,
                last_seen=first_hit.first_seen_at,
                hits=item_hits,
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
