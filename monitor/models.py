"""Plain data passed between stages. No I/O here.

The stages speak to each other only through these types (and only ``pipeline/`` wires
them together): ``fetch`` returns a :class:`FetchResult`, ``parse`` turns its bytes into
:class:`ParsedFeed` with :class:`Item` s, ``match`` returns :class:`Match` es for an item.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

#: The item fields a watchlist entry can look in, in the order they are matched.
ITEM_FIELDS: tuple[str, ...] = ("title", "summary", "content")


@dataclass(frozen=True, slots=True)
class Feed:
    """A feed as the fetcher needs it: where, how, and what the last response said."""

    url: str
    id: int | None = None
    title: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    etag: str | None = None
    last_modified: str | None = None


class Outcome(StrEnum):
    """What became of one fetch."""

    OK = "ok"  # 200 with a body
    NOT_MODIFIED = "not_modified"  # 304: nothing to parse
    FAILED = "failed"  # try again later, with backoff
    GONE = "gone"  # 410: the feed is retired


@dataclass(frozen=True, slots=True)
class FetchResult:
    """Everything a fetch learned. Failures are data: ``outcome`` FAILED with a reason."""

    outcome: Outcome
    url: str  # the URL that was asked for
    final_url: str  # after redirects
    status: int | None = None  # last HTTP status, None when no response arrived
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-cased names
    etag: str | None = None
    last_modified: str | None = None
    permanent_url: str | None = None  # set when a 301/308 chain moved the feed for good
    error: str | None = None  # human-readable reason for FAILED / GONE
    error_kind: str | None = None  # short machine reason: timeout, too_large, refused_address, ...
    retry_after: float | None = None  # seconds the server asked us to wait (429/503)
    max_age: float | None = None  # Cache-Control max-age in seconds, if any
    elapsed: float = 0.0  # seconds from first byte sent to last byte read


@dataclass(frozen=True, slots=True)
class Item:
    """One feed entry, normalised: plain text only, never markup.

    ``identity`` is the stable key that makes storage idempotent (see
    ``normalise.item_identity``).
    """

    identity: str
    title: str
    link: str | None = None
    guid: str | None = None
    summary: str = ""
    content: str = ""
    published: datetime | None = None  # timezone-aware UTC
    author: str | None = None

    def field_text(self, name: str) -> str:
        """The plain text of one of :data:`ITEM_FIELDS`."""
        if name not in ITEM_FIELDS:
            raise KeyError(name)
        value: str = getattr(self, name)
        return value


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    """What ``parse`` made of a body: the items it could read and what went wrong."""

    items: list[Item]
    warnings: list[str] = field(default_factory=list)
    title: str | None = None
    site_url: str | None = None
    ttl: int | None = None  # RSS <ttl>, minutes
    format: str = ""  # "rss20", "atom10", "json11", ... as far as known


@dataclass(frozen=True, slots=True)
class Span:
    """Where a term was found: the field and character offsets into the *original* text."""

    field: str
    start: int
    end: int
    term: str  # the text as it stands in the item (for highlighting)


@dataclass(frozen=True, slots=True)
class Match:
    """One watchlist entry matched one item."""

    watchlist: str
    entry: str
    terms: tuple[str, ...]  # the rule terms that fired, as written in the watchlist
    spans: tuple[Span, ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "watchlist": self.watchlist,
            "entry": self.entry,
            "terms": list(self.terms),
            "spans": [
                {"field": s.field, "start": s.start, "end": s.end, "text": s.term}
                for s in self.spans
            ],
        }


@dataclass(frozen=True, slots=True)
class StoryDecision:
    """Where a new item goes: ``story`` to join (None: a story of its own), and why."""

    story: int | None
    reason: str  # "copy" | "near-duplicate" | "same event" | "same names" | "new"
    score: float = 0.0
    item: int | None = None  # the earlier item it was matched to
