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

One body holds the leading stories that fit: ``text`` within ``max_text`` characters
(one line per story, every story of the body: a chat channel sees nothing else) and the
JSON within ``max_bytes`` bytes. The caller queues the rest in the next bodies, each with
its own delivery id. A story is never split: one story alone over a cap goes as it is, its
line in ``text`` without the link and cut to fit.

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
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from monitor import __version__
from monitor.models import HitLike
from monitor.normalise import clean_header, http_url_or_none
from monitor.wording import plural

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
#: Characters of ``text`` in one delivery at most (``delivery.webhook_max_text``):
#: Mattermost's default post limit is 16,383 characters, Slack truncates at 40,000.
MAX_TEXT = 16_000
#: Bytes of one body at most (``delivery.webhook_max_bytes``): half of nginx's default
#: ``client_max_body_size`` (1 MiB), so a receiver behind a stock proxy takes it.
MAX_BYTES = 512 * 1024
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


def _head(count: int, watchlists: Sequence[str], names: Mapping[str, str], title: str) -> str:
    lists = ", ".join(_chat(names.get(w, w)) for w in watchlists)
    return f"{_chat(title)}: {plural(count, 'new story', 'new stories')} ({lists})"


def _line(story: Mapping[str, Any], names: Mapping[str, str], *, link: bool = True) -> str:
    """The story's line in ``text``; ``link=False``: its title without the link."""
    title_text = _chat(clean_header(story["title"], TEXT_TITLE_MAX))
    url = next((i["link"] for i in story["items"] if i["link"]), None) if link else None
    shown = f"<{_chat_link(url)}|{title_text}>" if url else title_text
    outlets = list(
        dict.fromkeys(i["feed_title"] or i["feed"] or "unknown feed" for i in story["items"])
    )
    where = _chat(clean_header(", ".join(outlets[:3]), 120))
    more = f" and {len(outlets) - 3} more" if len(outlets) > 3 else ""
    lists = ", ".join(_chat(names.get(w, w)) for w in story["watchlists"])
    return f"• {shown} — {where}{more} · {lists}"


_PARTIAL_ENTITY = re.compile(r"&[a-z]*$")


def _clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, ending in "…", never inside an escape."""
    if len(text) <= limit:
        return text
    return _PARTIAL_ENTITY.sub("", text[: limit - 1]) + "…"


def _json_len(text: str) -> int:
    """Bytes of ``text`` inside a JSON string as posted (quotes not counted)."""
    return len(json.dumps(text, ensure_ascii=False).encode("utf-8")) - 2


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


#: Stands for the stories in the serialised envelope; each story is serialised once, to
#: measure it, and spliced in. Control characters never reach a field before ``stories``
#: (names and titles go through ``clean_header``), so the first match is the placeholder.
_STORIES = "\x00stories\x00"
_STORIES_JSON = _dumps(_STORIES)


def _envelope(
    docs: Sequence[dict[str, Any]],
    text: str,
    *,
    webhook: str,
    delivery: str,
    now: datetime,
    names: Mapping[str, str],
) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for doc in docs:
        for w in doc["watchlists"]:
            counts[w] = counts.get(w, 0) + 1
    return {
        "version": VERSION,
        "delivery": delivery,
        "webhook": webhook,
        "created": _iso(now),
        "generator": f"monitor/{__version__}",
        "watchlists": [
            {"id": w, "name": clean_header(names.get(w, w), 80) or w, "stories": n}
            for w, n in counts.items()
        ],
        "stories": _STORIES,
        "text": text,
    }


def _fitting(
    docs: Sequence[dict[str, Any]],
    parts: Sequence[str],
    lines: Sequence[str],
    names: Mapping[str, str],
    title: str,
    max_text: int,
    max_bytes: int,
) -> int:
    """How many leading stories fit: ``text`` within ``max_text`` characters and, as far
    as the stories and the text go, the body within ``max_bytes``; at least one."""
    head_fixed = len(_head(0, [], names, title)) + 10  # the count's digits, generously
    watchlists: set[str] = set()
    lists_len = lists_bytes = 0
    text_len = 0
    body_len = 400  # the fields around the stories, a generous estimate
    for n, (doc, part, line) in enumerate(zip(docs, parts, lines, strict=True)):
        for w in doc["watchlists"]:
            if w not in watchlists:
                watchlists.add(w)
                name = _chat(names.get(w, w))
                lists_len += len(name) + 2
                lists_bytes += 4 * len(name) + 2 + 60 + 3 * len(names.get(w, w))
        text_len += len(line) + 1
        body_len += len(part.encode("utf-8")) + 1 + _json_len(line) + 2
        over_text = head_fixed + lists_len + text_len > max_text
        over_bytes = body_len + lists_bytes > max_bytes
        if n and (over_text or over_bytes):
            return n
    return len(docs)


def build_body(
    stories: Sequence[StoryInput],
    *,
    webhook: str,
    delivery: str,
    now: datetime,
    names: Mapping[str, str] | None = None,
    title: str = "Monitor",
    max_text: int = MAX_TEXT,
    max_bytes: int = MAX_BYTES,
) -> WebhookBody:
    """The JSON body for the leading ``stories`` (in the order given) that fit in one
    delivery, and the hits it carries: ``text`` at most ``max_text`` characters, the
    body at most ``max_bytes`` bytes. ``story_count`` says how many were taken (at
    least one: a story is never split, so one story alone over a cap goes as it is, its
    line in ``text`` cut to fit); the caller queues the rest in the next delivery."""
    if not stories:
        raise ValueError("a webhook body without stories is not built")
    names = names or {}
    docs = [_story(s) for s in stories]
    parts = [_dumps(d) for d in docs]
    lines = [_line(d, names) for d in docs]
    n = _fitting(docs, parts, lines, names, title, max_text, max_bytes)
    while True:
        chosen = docs[:n]
        watchlists = list(dict.fromkeys(w for d in chosen for w in d["watchlists"]))
        head = _head(n, watchlists, names, title)
        text = "\n".join([head, *lines[:n]])
        if len(text) > max_text:  # one story alone: its line without the link, then cut
            text = _clip("\n".join([head, _line(chosen[0], names, link=False)]), max_text)
        body = _envelope(chosen, text, webhook=webhook, delivery=delivery, now=now, names=names)
        spliced = _dumps(body).replace(_STORIES_JSON, "[" + ",".join(parts[:n]) + "]", 1)
        data = spliced.encode("utf-8")
        if len(data) <= max_bytes or n == 1:
            break
        n -= 1  # the estimate was short: one story fewer
    hit_ids = frozenset(h.id for s in stories[:n] for h in s.hits)
    lists = ", ".join(w["id"] for w in body["watchlists"])
    summary = f"{plural(n, 'story', 'stories')}: {lists}"
    return WebhookBody(data, hit_ids, n, clean_header(summary, 200))


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
