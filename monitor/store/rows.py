"""The plain records the repository returns, and the rules that build them from stored
values. No SQLAlchemy here.

Two readers build these records: the repository (``feeds.py``, ``status.py``, ...)
through SQLAlchemy, on either backend, and ``sqlite_read.py``, which serves the read-only
commands (``monitor hits``, ``status``, ``feeds list``, ``stories``, ``items``,
``outbox``) on a SQLite file through the standard library's ``sqlite3`` so that they
answer without importing SQLAlchemy. What the
records are, how a stored value reads back (:func:`stored_value`) and the sums over rows
live here once, for both (the records of ``monitor status`` in ``status_rows.py``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from monitor.config import FeedConfig
    from monitor.models import Feed

#: ``retired_reason`` of a config feed the operator removed from the config.
REMOVED_FROM_CONFIG = "removed from the config"
#: The states of an outbox row, and its kinds.
QUEUED, SENT, FAILED = "queued", "sent", "failed"
MAIL, WEBHOOK = "mail", "webhook"
#: The JSON columns (every other column holds a plain value; times are the ``*_at`` ones).
JSON_COLUMNS = frozenset({"headers", "matches"})


def _stored_time(value: datetime | str) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _stored_json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


def stored_reader(column: str) -> Callable[[Any], Any] | None:
    """How a value of ``column`` as ``sqlite3`` returns it reads back as the schema's type
    gives it: the ``*_at`` columns (``UTCDateTime``, stored as naive UTC text) as aware UTC
    datetimes, the JSON columns decoded; None for a column read as it is. (None values
    stay None.)"""
    if column.endswith("_at"):
        return _stored_time
    if column in JSON_COLUMNS:
        return _stored_json
    return None


def stored_value(column: str, value: Any) -> Any:
    """One value of ``column`` read back (see :func:`stored_reader`)."""
    read = stored_reader(column)
    return value if read is None or value is None else read(value)


def stored_time(when: datetime) -> str:
    """An aware datetime as ``UTCDateTime`` stores it in SQLite (naive UTC text, the
    format SQLAlchemy writes), for comparing with stored times."""
    if when.tzinfo is None:
        raise ValueError("naive datetime given to the store; use timezone-aware UTC")
    return when.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


# --------------------------------------------------------------------------- feeds


@dataclass(frozen=True, slots=True)
class FeedRecord:
    """A stored feed with its health."""

    id: int
    url: str
    title: str | None
    source: str
    interval_s: int | None
    headers: Mapping[str, str]
    etag: str | None
    last_modified: str | None
    last_status: int | None
    last_outcome: str | None
    consecutive_failures: int
    next_due_at: datetime | None
    last_polled_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    last_error_kind: str | None
    last_error_at: datetime | None
    warnings: str | None
    hint_s: int | None
    retired_at: datetime | None
    retired_reason: str | None
    created_at: datetime
    site_url: str | None = None
    quiet_polls: int = 0  # successful polls in a row without new items
    last_new_items_at: datetime | None = None
    fulltext: str | None = None  # auto | always | never; None: [fulltext] mode
    article_failures: int = 0  # article pages that could not be read
    article_last_error: str | None = None
    article_last_error_at: datetime | None = None

    def to_feed(self) -> Feed:
        from monitor.models import Feed

        return Feed(
            url=self.url,
            id=self.id,
            title=self.title,
            headers=dict(self.headers or {}),
            etag=self.etag,
            last_modified=self.last_modified,
        )


def feed_record(data: Mapping[str, Any]) -> FeedRecord:
    return FeedRecord(**{**data, "headers": data.get("headers") or {}})


@dataclass(frozen=True, slots=True)
class FeedSpec:
    """A feed as the operator declares it (config or OPML)."""

    url: str
    title: str | None = None
    interval_s: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    fulltext: str | None = None  # auto | always | never; None: [fulltext] mode

    @classmethod
    def of_config(cls, feed: FeedConfig) -> FeedSpec:
        """A ``[[feeds]]`` entry of the config."""
        return cls(
            url=feed.url,
            title=feed.title,
            interval_s=None if feed.interval is None else round(feed.interval),
            headers=feed.headers,
            fulltext=feed.fulltext,
        )


#: The columns :func:`feed_sync_plan` compares.
FEED_SYNC_COLUMNS = ("id", "url", "source", "retired_reason", "title", "interval_s", "headers",
                     "fulltext")  # fmt: skip


@dataclass(frozen=True, slots=True)
class FeedSyncPlan:
    """What making the ``source='config'`` feeds match the config writes."""

    new: list[dict[str, Any]]  # rows to insert
    changes: list[tuple[int, dict[str, Any]]]  # (feed id, values), in id order
    removed: list[int]  # config feeds no longer in the config, to retire

    def __bool__(self) -> bool:
        return bool(self.new or self.changes or self.removed)


def feed_sync_plan(
    existing: Iterable[Mapping[str, Any]], specs: Sequence[FeedSpec], now: datetime
) -> FeedSyncPlan:
    """Compare the stored feeds (:data:`FEED_SYNC_COLUMNS` of each) with the config's.

    New URLs are added (due at once); known ones get the config's title, interval and
    headers (and are un-retired if they had been dropped from the config earlier); config
    feeds no longer in the config are retired. Only what differs is written, so an empty
    plan means the database is in step with the config.
    """
    wanted = {s.url: s for s in specs}
    rows = {r["url"]: r for r in existing}
    new: list[dict[str, Any]] = []
    changes: list[tuple[int, dict[str, Any]]] = []
    for url, spec in wanted.items():
        values: dict[str, Any] = {
            "title": spec.title,
            "interval_s": spec.interval_s,
            "headers": dict(spec.headers),
            "source": "config",
            "fulltext": spec.fulltext,
        }
        row = rows.get(url)
        if row is None:
            new.append({"url": url, "created_at": now, **values})
            continue
        if spec.title is None:
            del values["title"]
        restore = row["retired_reason"] == REMOVED_FROM_CONFIG
        if restore:
            values |= {"retired_at": None, "retired_reason": None, "next_due_at": None}
        if restore or any(
            (row[k] or {}) != v if k == "headers" else row[k] != v for k, v in values.items()
        ):
            changes.append((row["id"], values))
    removed = [
        r["id"]
        for url, r in rows.items()
        if r["source"] == "config" and url not in wanted and r["retired_reason"] is None
    ]
    return FeedSyncPlan(new, sorted(changes, key=lambda c: c[0]), removed)


@dataclass(frozen=True, slots=True)
class FailingFeed:
    """A feed whose health is news: failing now, or retired by the server (410 ...)."""

    url: str
    title: str | None
    consecutive_failures: int
    last_error: str | None
    last_success_at: datetime | None
    retired_at: datetime | None
    retired_reason: str | None


# --------------------------------------------------------------------------- hits


@dataclass(frozen=True, slots=True)
class StoredHit:
    id: int
    watchlist: str
    matches: list[dict[str, Any]]
    created_at: datetime
    item_id: int
    identity: str
    guid: str | None
    link: str | None
    title: str
    summary: str
    content: str
    published_at: datetime | None
    first_seen_at: datetime
    feed_id: int | None
    feed_url: str | None
    feed_title: str | None
    story_id: int | None = None  # None only for a hit built outside the store
    lang: str | None = None

    @property
    def terms(self) -> list[str]:
        seen: dict[str, None] = {}
        for m in self.matches:
            for t in m.get("terms", []):
                seen.setdefault(t, None)
        return list(seen)


def item_text(summary: str, content: str) -> str:
    """The plain text matching saw besides the title: the summary and the content
    (the article's text once read), each once."""
    parts = [p for p in (summary, content) if p]
    if len(parts) == 2 and (parts[0] in parts[1] or parts[1] in parts[0]):
        parts = [max(parts, key=len)]
    return "\n\n".join(parts)


# --------------------------------------------------------------------------- stories


@dataclass(frozen=True, slots=True)
class StoryStats:
    """For ``monitor status`` and the metrics: how much news there is, in stories."""

    today: int  # stories first seen since 00:00 UTC
    per_day_7d: float  # stories first seen in the last 7 days, a day
    items_per_story_7d: float | None  # their mean size (None: no story)

    @classmethod
    def of(cls, today: Any, week_count: Any, week_items: Any) -> StoryStats:
        """From the counts: stories today, stories and their items in the last 7 days."""
        count = int(week_count)
        return cls(
            today=int(today),
            per_day_7d=round(count / 7, 1),
            items_per_story_7d=round(int(week_items) / count, 2) if count else None,
        )


@dataclass(frozen=True, slots=True)
class StoryItem:
    """One item of a story: where it came from and which watchlists hit it."""

    id: int
    feed: str | None  # the feed URL
    link: str | None
    title: str
    published: datetime | None
    first_seen: datetime
    watchlists: list[str]  # sorted ids of the watchlists that hit it
    feed_title: str | None = None


@dataclass(frozen=True, slots=True)
class StoryRecord:
    """A story with its items, oldest first (the first is the lead: the representative)."""

    id: int
    title: str
    first_seen: datetime
    last_seen: datetime
    items: list[StoryItem]

    @property
    def watchlists(self) -> list[str]:
        return sorted({w for i in self.items for w in i.watchlists})

    def to_dict(self) -> dict[str, Any]:
        return {
            "story": self.id,
            "title": self.title,
            "first_seen": self.first_seen.isoformat(),
            "last_seen": self.last_seen.isoformat(),
            "watchlists": self.watchlists,
            "items": [
                {
                    "id": i.id,
                    "feed": i.feed,
                    "link": i.link,
                    "title": i.title,
                    "published": i.published.isoformat() if i.published else None,
                    "first_seen": i.first_seen.isoformat(),
                    "watchlists": i.watchlists,
                }
                for i in self.items
            ],
        }


@dataclass(frozen=True, slots=True)
class ItemRow:
    """A stored item with its feed and the watchlists (and terms) that matched it."""

    id: int
    feed_id: int | None
    feed_url: str | None
    feed_title: str | None
    guid: str | None
    link: str | None
    title: str
    summary: str
    content: str
    published: datetime | None
    first_seen: datetime
    story_id: int | None = None
    lang: str | None = None
    text_source: str = "feed"
    article: str | None = None  # the article page's state: pending, done, failed
    article_error: str | None = None  # why the page's text was not used
    watchlists: dict[str, list[str]] = field(default_factory=dict)  # id -> terms
    marks: list[str] = field(default_factory=list)  # the matched words as they stand

    @property
    def outlet(self) -> str:
        return self.feed_title or self.feed_url or "unknown feed"


#: An ItemRow's stored columns (all its fields but the hits folded into it).
ITEM_ROW_COLUMNS = tuple(f.name for f in fields(ItemRow) if f.name not in ("watchlists", "marks"))


def fold_items(found: Iterable[Mapping[Any, Any]]) -> list[ItemRow]:
    """Rows of an item's columns (:data:`ITEM_ROW_COLUMNS`) and one of its hits'
    (``hit_watchlist``, ``hit_matches``: None without hits), an item's rows together and
    its hits in order, as ItemRows; rows without an item (an outer join's) are skipped."""
    out: list[ItemRow] = []
    for r in found:
        if r["id"] is None:
            continue
        if not out or out[-1].id != r["id"]:
            out.append(ItemRow(**{k: r[k] for k in ITEM_ROW_COLUMNS}))
        if r["hit_watchlist"] is not None:
            add_hit(out[-1], r["hit_watchlist"], r["hit_matches"])
    return out


def add_hit(row: ItemRow, watchlist: str, matches: Any) -> None:
    """A hit of ``watchlist`` on ``row``: its terms, and the matched words to mark."""
    terms: dict[str, None] = {}
    for m in matches or []:
        for t in m.get("terms", []):
            terms.setdefault(str(t), None)
        for span in m.get("spans", []):
            if span.get("text") and span["text"] not in row.marks:
                row.marks.append(str(span["text"]))
    row.watchlists[watchlist] = list(terms)


class HasShownUrl(Protocol):
    @property
    def key(self) -> str: ...
    @property
    def shown_url(self) -> str: ...


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """A row of ``monitor outbox``: what is queued or failed, and why."""

    id: int
    subscriber: str
    message_id: str
    subject: str
    status: str
    attempts: int
    hits: int
    created_at: datetime
    next_attempt_at: datetime | None
    last_error: str | None
    sent_at: datetime | None
    kind: str = MAIL


def target_namer(webhooks: Iterable[HasShownUrl]) -> Callable[[OutboxEntry], str | None]:
    """Where a row goes, as ``monitor outbox`` and the web view show it: a mail's address,
    or its webhook's URL with scheme, host and port only (the path and query, often the
    secret, left out); None for a webhook no longer in the config."""
    hooks = {w.key: w.shown_url for w in webhooks}

    def target(entry: OutboxEntry) -> str | None:
        return hooks.get(entry.subscriber) if entry.kind == WEBHOOK else entry.subscriber

    return target


def story_members(
    found: Iterable[Mapping[Any, Any]], hits: Iterable[tuple[int, str]]
) -> dict[int, list[StoryItem]]:
    """Stories' items by story id, from rows of an item (``id``, ``story_id``, ``url``,
    ``feed_title``, ``link``, ``title``, ``published_at``, ``first_seen_at``) in the order
    wanted, and (item id, watchlist) pairs of their hits."""
    by_item: dict[int, set[str]] = {}
    for item_id, watchlist in hits:
        by_item.setdefault(item_id, set()).add(watchlist)
    out: dict[int, list[StoryItem]] = {}
    for r in found:
        out.setdefault(r["story_id"], []).append(
            StoryItem(
                id=r["id"],
                feed=r["url"],
                link=r["link"],
                title=r["title"],
                published=r["published_at"],
                first_seen=r["first_seen_at"],
                watchlists=sorted(by_item.get(r["id"], ())),
                feed_title=r["feed_title"],
            )
        )
    return out
