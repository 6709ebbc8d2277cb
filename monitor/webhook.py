"""Webhook bodies: pending stories as one JSON document, signed, with a chat-ready ``text``.

Plain data in (stories, each with the pending hits of its items), bytes out. No I/O: the
pipeline posts the body (through ``fetch.post``'s address rules) via the outbox.

The body (``version`` 1)::

    {"version": 1, "delivery": "<id>", "webhook": "<name>", "created": "<UTC ISO 8601>",
     "generator": "monitor/<version>",
     "watchlists": [{"id": "gor", "name": "Sergio Gor", "stories": 2}, ...],
     "stories": [{"id": 17 | null, "title": "...", "first_seen": "...", "last_seen": "...",
                  "watchlists": ["gor", "c5plus1"],
                  "items": [{"id": 5, "title": "...", "link": "https://..." | null,
                             "feed": "https://.../rss", "feed_title": "...",
                             "published": "..." | null, "first_seen": "...",
                             "watchlists": ["gor"], "terms": ["Sergio Gor"]}]}],
     "text": "<Slack/Mattermost message>"}

A story is an event across outlets; ``id`` is null for an item not yet assigned to one
(each such item is then a story of its own). Only items with hits not yet sent to this
webhook are in ``items``: a story that grows after it was sent comes again, with the new
items alone, under the same ``id``.

Headers: ``X-Monitor-Delivery`` (the same on every retry of one body: receivers drop a
delivery id they have already seen), ``X-Monitor-Signature: sha256=<hex>`` (HMAC-SHA256
of the body with the webhook's secret) when a secret is configured.

Feed text is data: in ``text`` the characters Slack treats as markup (``& < >``) are
escaped, links are http(s) only, and ``@`` is followed by a zero-width space so that a
title cannot mention ``@channel``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from monitor import __version__
from monitor.models import HitLike
from monitor.normalise import clean_header, http_url_or_none

__all__ = [
    "DELIVERY_HEADER",
    "SIGNATURE_HEADER",
    "StoryInput",
    "WebhookBody",
    "build_body",
    "request_headers",
    "sign",
    "verify",
]

VERSION = 1
DELIVERY_HEADER = "X-Monitor-Delivery"
SIGNATURE_HEADER = "X-Monitor-Signature"
TITLE_MAX = 300
TEXT_TITLE_MAX = 200
#: Characters of ``text`` at most: Mattermost's default post limit is 16,383, Slack
#: truncates at 40,000. The stories past it are in ``stories`` all the same.
TEXT_BUDGET = 12_000
ZWSP = "\u200b"


@dataclass(frozen=True, slots=True)
class StoryInput:
    """A story and the pending hits of its items (oldest first)."""

    id: int | None
    title: str
    first_seen: datetime
    last_seen: datetime
    hits: Sequence[HitLike]


@dataclass(frozen=True, slots=True)
class WebhookBody:
    data: bytes  # the JSON document as posted
    hit_ids: frozenset[int]
    story_count: int
    summary: str  # one line, for the outbox and logs


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.astimezone(UTC).isoformat(timespec="seconds")


def _terms(hits: Sequence[HitLike]) -> list[str]:
    seen: dict[str, None] = {}
    for h in hits:
        for m in h.matches or []:
            for t in m.get("terms", []):
                seen.setdefault(str(t), None)
    return list(seen)


def _title(text: str | None) -> str:
    return clean_header(text or "", TITLE_MAX) or "(untitled)"


def _story(story: StoryInput) -> dict[str, Any]:
    by_item: dict[int, list[HitLike]] = {}
    for h in story.hits:
        by_item.setdefault(h.item_id, []).append(h)
    items = []
    for item_hits in by_item.values():
        first = item_hits[0]
        items.append(
            {
                "id": first.item_id,
                "title": _title(first.title),
                "link": http_url_or_none(first.link),
                "feed": first.feed_url,
                "feed_title": clean_header(first.feed_title or "", 200) or None,
                "published": _iso(first.published_at),
                "first_seen": _iso(first.first_seen_at),
                "watchlists": list(dict.fromkeys(h.watchlist for h in item_hits)),
                "terms": _terms(item_hits),
            }
        )
    return {
        "id": story.id,
        "title": _title(story.title),
        "first_seen": _iso(story.first_seen),
        "last_seen": _iso(story.last_seen),
        "watchlists": list(dict.fromkeys(h.watchlist for h in story.hits)),
        "items": items,
    }


def _chat(text: str) -> str:
    """Feed text made inert for Slack and Mattermost."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("@", "@" + ZWSP)


def _chat_link(url: str) -> str:
    return url.replace("|", "%7C").replace("<", "%3C").replace(">", "%3E")


def _text(stories: Sequence[dict[str, Any]], names: Mapping[str, str], title: str) -> str:
    watchlists = list(dict.fromkeys(w for s in stories for w in s["watchlists"]))
    count = len(stories)
    head = f"{_chat(title)}: {count} new {'story' if count == 1 else 'stories'}"
    head += f" ({', '.join(_chat(names.get(w, w)) for w in watchlists)})"
    lines = [head]
    for s in stories:
        title_text = _chat(clean_header(s["title"], TEXT_TITLE_MAX))
        link = next((i["link"] for i in s["items"] if i["link"]), None)
        shown = f"<{_chat_link(link)}|{title_text}>" if link else title_text
        outlets = list(
            dict.fromkeys(i["feed_title"] or i["feed"] or "unknown feed" for i in s["items"])
        )
        where = _chat(clean_header(", ".join(outlets[:3]), 120))
        more = f" and {len(outlets) - 3} more" if len(outlets) > 3 else ""
        lists = ", ".join(_chat(names.get(w, w)) for w in s["watchlists"])
        line = f"• {shown} — {where}{more} · {lists}"
        used = sum(len(x) + 1 for x in lines)
        if used + len(line) > TEXT_BUDGET - 40:  # room for the last line
            left = count - (len(lines) - 1)
            lines.append(f"… and {left} more {'story' if left == 1 else 'stories'}")
            break
        lines.append(line)
    return "\n".join(lines)


def build_body(
    stories: Sequence[StoryInput],
    *,
    webhook: str,
    delivery: str,
    now: datetime,
    names: Mapping[str, str] | None = None,
    title: str = "Monitor",
) -> WebhookBody:
    """The JSON body for ``stories`` (in the order given), and the hits it carries."""
    if not stories:
        raise ValueError("a webhook body without stories is not built")
    names = names or {}
    docs = [_story(s) for s in stories]
    counts: dict[str, int] = {}
    for doc in docs:
        for w in doc["watchlists"]:
            counts[w] = counts.get(w, 0) + 1
    body = {
        "version": VERSION,
        "delivery": delivery,
        "webhook": webhook,
        "created": _iso(now),
        "generator": f"monitor/{__version__}",
        "watchlists": [
            {"id": w, "name": clean_header(names.get(w, w), 80) or w, "stories": n}
            for w, n in counts.items()
        ],
        "stories": docs,
        "text": _text(docs, names, title),
    }
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    hit_ids = frozenset(h.id for s in stories for h in s.hits)
    summary = f"{len(docs)} {'story' if len(docs) == 1 else 'stories'}: " + ", ".join(counts)
    return WebhookBody(data, hit_ids, len(docs), clean_header(summary, 200))


def sign(body: bytes, secret: bytes) -> str:
    """``sha256=<hex>``: the HMAC-SHA256 of ``body`` keyed with ``secret``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: bytes, header: str) -> bool:
    """Whether ``header`` is the signature of ``body`` (constant-time comparison): what a
    receiver runs; README shows the same in a few lines."""
    return hmac.compare_digest(sign(body, secret), header.strip())


def request_headers(body: bytes, delivery: str, secret: bytes | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json; charset=utf-8", DELIVERY_HEADER: delivery}
    if secret:
        headers[SIGNATURE_HEADER] = sign(body, secret)
    return headers
