"""OPML 2.0 feed lists: read an import file, write an export.

Only ``outline`` elements with an ``xmlUrl`` are feeds; folders (outlines without one) are
walked into. The file comes from the operator, but is parsed as untrusted XML all the same:
the standard library's expat refuses external entities and limits entity expansion.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

from monitor.errors import FeedError


@dataclass(frozen=True, slots=True)
class OpmlFeed:
    url: str
    title: str | None = None
    site_url: str | None = None


def read_opml(path: Path) -> list[OpmlFeed]:
    """The feeds listed in an OPML file, in order, each URL once."""
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError:
        raise FeedError(f"{path}: file not found", hint="give the path of an .opml file") from None
    except ET.ParseError as exc:
        raise FeedError(f"{path}: not well-formed XML: {exc}", hint="is it an OPML file?") from None
    if root.tag != "opml":
        raise FeedError(f"{path}: the root element is <{root.tag}>, not <opml>")
    body = root.find("body")
    if body is None:
        raise FeedError(f"{path}: no <body> element")
    feeds: list[OpmlFeed] = []
    seen: set[str] = set()
    for outline in body.iter("outline"):
        url = (outline.get("xmlUrl") or "").strip()
        if not url or url in seen:
            continue
        seen.add(url)
        title = outline.get("title") or outline.get("text")
        feeds.append(OpmlFeed(url=url, title=title or None, site_url=outline.get("htmlUrl")))
    return feeds


def write_opml(feeds: Iterable[OpmlFeed], *, title: str = "monitor feeds") -> str:
    """An OPML 2.0 document listing ``feeds``."""
    root = ET.Element("opml", version="2.0")
    head = ET.SubElement(root, "head")
    ET.SubElement(head, "title").text = title
    ET.SubElement(head, "dateCreated").text = format_datetime(datetime.now(UTC))
    body = ET.SubElement(root, "body")
    for feed in feeds:
        attrs = {"type": "rss", "text": feed.title or feed.url, "xmlUrl": feed.url}
        if feed.title:
            attrs["title"] = feed.title
        if feed.site_url:
            attrs["htmlUrl"] = feed.site_url
        ET.SubElement(body, "outline", attrs)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
