"""Atom 1.0 documents (RFC 4287) for watchlists and subscribers.

Built with ElementTree, so feed text is always escaped; characters XML 1.0 forbids
(control characters a broken feed may carry) are dropped first.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

ATOM_NS = "http://www.w3.org/2005/Atom"
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


@dataclass(frozen=True, slots=True)
class AtomEntry:
    id: str  # a URI (tag: or http)
    title: str
    updated: datetime
    link: str | None  # where the entry points (http/https only)
    summary: str
    published: datetime | None = None
    related: str | None = None  # the lead article (http/https only)


def _text(value: str) -> str:
    return _NOT_XML.sub("", value)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def atom_feed(
    *,
    feed_id: str,
    title: str,
    self_url: str,
    alternate_url: str | None,
    entries: Sequence[AtomEntry],
    updated: datetime,
) -> bytes:
    ET.register_namespace("", ATOM_NS)

    def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
        el = ET.SubElement(parent, f"{{{ATOM_NS}}}{tag}", attrs)
        if text is not None:
            el.text = _text(text)
        return el

    feed = ET.Element(f"{{{ATOM_NS}}}feed")
    sub(feed, "id", feed_id)
    sub(feed, "title", title)
    sub(feed, "updated", _stamp(max([updated, *(e.updated for e in entries)])))
    sub(feed, "link", rel="self", type="application/atom+xml", href=self_url)
    if alternate_url:
        sub(feed, "link", rel="alternate", type="text/html", href=alternate_url)
    author = sub(feed, "author")
    sub(author, "name", "monitor")
    sub(feed, "generator", "monitor")
    for e in entries:
        entry = sub(feed, "entry")
        sub(entry, "id", e.id)
        sub(entry, "title", e.title or "(untitled)", type="text")
        sub(entry, "updated", _stamp(e.updated))
        if e.published is not None:
            sub(entry, "published", _stamp(e.published))
        if e.link:
            sub(entry, "link", rel="alternate", href=e.link)
        if e.related:
            sub(entry, "link", rel="related", type="text/html", href=e.related)
        if e.summary:
            sub(entry, "summary", e.summary, type="text")
    body: bytes = ET.tostring(feed, encoding="utf-8", xml_declaration=True)
    return body
