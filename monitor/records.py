"""The JSON records of stored data, one shape for the CLI's ``--json`` and the web API."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from monitor.store.rows import item_text
from monitor.wording import iso

if TYPE_CHECKING:
    from monitor.store.rows import ItemRow, StoredHit


def hit_record(hit: StoredHit) -> dict[str, Any]:
    """A hit as ``monitor hits --json`` prints it."""
    return {
        "id": hit.id,
        "watchlist": hit.watchlist,
        "title": hit.title,
        "link": hit.link,
        "guid": hit.guid,
        "feed": hit.feed_url,
        "feed_title": hit.feed_title,
        "terms": hit.terms,
        "entries": sorted({str(m.get("entry")) for m in hit.matches}),
        "first_seen": iso(hit.first_seen_at),
        "published": iso(hit.published_at),
        "matched_at": iso(hit.created_at),
        "story": hit.story_id,
        "lang": hit.lang,
    }


def item_record(item: ItemRow) -> dict[str, Any]:
    """An item as ``monitor items --json`` and ``/api/items`` give it: its feed, its
    text and where that came from (the feed, or the article page behind it), its story and
    the watchlists (with their terms) that matched it."""
    return {
        "id": item.id,
        "feed": item.feed_url,
        "feed_title": item.feed_title,
        "title": item.title,
        "link": item.link,
        "guid": item.guid,
        "published": iso(item.published),
        "first_seen": iso(item.first_seen),
        "story": item.story_id,
        "lang": item.lang,
        "text": item_text(item.summary, item.content),
        "text_source": item.text_source,
        "article": item.article,
        "article_error": item.article_error,
        "summary": item.summary,
        "watchlists": item.watchlists,
    }
