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
from functools import lru_cache
from typing import Any

from sqlalchemy import Integer, String, bindparam, func, select

from monitor.store.db import Store
from monitor.store.feeds import StoredHit, _hit_query
from monitor.store.outbox import (
    QUEUED,
    WEBHOOK,
    pending_conditions,
    recipient_since,
    sync_subscribers,
)
from monitor.store.schema import hits, items, outbox, stories


@dataclass(frozen=True, slots=True)
class PendingStory:
    """A story's pending hits, oldest first. ``id`` is None for an item in no story."""

    id: int | None
    title: str
    first_seen: datetime
    last_seen: datetime
    hits: list[StoredHit]


@lru_cache(maxsize=2)
def _pending_queries(filtered: bool) -> tuple[Any, Any]:
    """(the oldest pending stories, their pending hits), built once; parameters: key,
    watchlists (when filtered), limit; the second also ``groups``."""
    key = bindparam("key", type_=String)
    watchlists: Any = bindparam("watchlists", expanding=True) if filtered else None
    # Webhooks send a story's new hits as they come (``updates``): each body is a record.
    conds = pending_conditions(key, recipient_since(key), watchlists, updates=True)
    # An item outside any story (not assigned by the store) is a story of its own.
    group = func.coalesce(items.c.story_id, -items.c.id)
    chosen = (
        select(group.label("story"))
        .select_from(hits.join(items, hits.c.item_id == items.c.id))
        .where(*conds)
        .group_by(group)
        .order_by(func.min(hits.c.created_at), func.min(hits.c.id))
        .limit(bindparam("limit", type_=Integer))
    )
    story_hits = (
        _hit_query()
        .add_columns(
            stories.c.title.label("story_title"),
            stories.c.first_seen_at.label("story_first_seen"),
            stories.c.last_seen_at.label("story_last_seen"),
        )
        .outerjoin(stories, stories.c.id == items.c.story_id)
        .where(*conds, group.in_(bindparam("groups", expanding=True)))
        .order_by(hits.c.created_at, hits.c.id)
    )
    return chosen, story_hits


_STORY_COLUMNS = ("story_title", "story_first_seen", "story_last_seen")


def _hit(row: Any) -> StoredHit:
    return StoredHit(**{k: v for k, v in row._mapping.items() if k not in _STORY_COLUMNS})


def pending_stories(
    store: Store, key: str, watchlists: Sequence[str] | None, *, limit: int
) -> list[PendingStory]:
    """The ``limit`` stories with the oldest pending hits for ``key``, oldest first, each
    with all of its pending hits. Nothing for a key without a row."""
    chosen, story_hits = _pending_queries(watchlists is not None)
    params: dict[str, Any] = {"key": key, "limit": limit}
    if watchlists is not None:
        params["watchlists"] = list(watchlists)
    with store.read() as conn:
        groups = [int(g) for g in conn.execute(chosen, params).scalars()]
        if not groups:
            return []
        rows = conn.execute(story_hits, {**params, "groups": groups}).all()
    by_story: dict[int, list[Any]] = {g: [] for g in groups}
    for row in rows:
        by_story[row.story_id if row.story_id is not None else -row.item_id].append(row)
    out = []
    for group_rows in by_story.values():
        if not group_rows:
            continue
        lead = group_rows[0]
        known = lead.story_id is not None and lead.story_title is not None
        out.append(
            PendingStory(
                id=lead.story_id if known else None,
                title=lead.story_title if known else lead.title,
                first_seen=lead.story_first_seen if known else lead.first_seen_at,
                last_seen=lead.story_last_seen if known else lead.first_seen_at,
                hits=[_hit(r) for r in group_rows],
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


@dataclass(frozen=True, slots=True)
class _Recipient:
    email: str  # the webhook's key, as the subscriber helpers call it


def register_webhooks(store: Store, keys: Sequence[str], *, now: datetime | None = None) -> None:
    """Give each webhook (by its key) its recipient row: it gets the hits stored from
    then on."""
    sync_subscribers(store, [_Recipient(key) for key in keys], now=now)
