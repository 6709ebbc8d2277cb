"""Bytes of a fetched feed -> :class:`~monitor.models.ParsedFeed` of plain-text items.

RSS 0.9x/1.0/2.0 and Atom are read by feedparser, JSON Feed 1.0/1.1 by :mod:`json`. A body
that is broken or not a feed at all gives warnings and whatever items could be read,
never an exception.

Plain, well-formed RSS 2.0/0.9x and Atom 1.0 (most feeds) first go to
:mod:`monitor.parse_fast`, which reads them with the C-accelerated ElementTree parser into
the same values feedparser would give, several times faster; it refuses anything it is not
sure to read exactly as feedparser does, and those bodies are read by feedparser.
:func:`parse_with_feedparser` skips the fast path (tests compare the two).

feedparser is used here only, and only on bytes already fetched: the body is handed over
as a stream, so it is never taken for a URL to fetch or a path to open.
"""

from __future__ import annotations

import io
import json
import logging
import re
import xml.sax
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin

import feedparser
import feedparser.html
import feedparser.mixin
from feedparser.datetimes import _parse_date

from monitor import parse_fast
from monitor.models import Item, ParsedFeed
from monitor.normalise import (
    canonical_url,
    collapse_ws,
    html_to_text,
    http_url_or_none,
    item_identity,
    tidy_text,
)

__all__ = ["parse", "parse_with_feedparser"]

log = logging.getLogger(__name__)

_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml", "html", "xhtml"})
_JSON_TYPES = frozenset({"application/feed+json", "application/json"})
_WHITESPACE = b" \t\r\n\x0b\x0c"
_UTF8_BOM = b"\xef\xbb\xbf"
_HTML_PAGE = re.compile(
    rb"(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html)\b", re.I | re.S
)


def parse(body: bytes, headers: Mapping[str, str], *, url: str) -> ParsedFeed:
    """Read a feed body.

    ``headers`` are the response headers (names in any case); their Content-Type says
    whether the body is JSON and which charset it is in. ``url`` is the feed's URL: relative
    links resolve against it, and item guids that are not globally unique are scoped by it
    (see :func:`monitor.normalise.identity_basis`).
    """
    return _parse(body, headers, url=url, fast=True)


def parse_with_feedparser(body: bytes, headers: Mapping[str, str], *, url: str) -> ParsedFeed:
    """:func:`parse` without the fast path: every RSS and Atom body is read by feedparser."""
    return _parse(body, headers, url=url, fast=False)


def _parse(body: bytes, headers: Mapping[str, str], *, url: str, fast: bool) -> ParsedFeed:
    content_type, charset = _content_type(headers)
    head = body[:1024].lstrip(_WHITESPACE)
    if head.startswith(_UTF8_BOM):
        head = head[len(_UTF8_BOM) :].lstrip(_WHITESPACE)
    if not head:
        return ParsedFeed(items=[], warnings=["not a feed: the body is empty"])
    if head.startswith(b"{") or (content_type in _JSON_TYPES and not head.startswith(b"<")):
        return _parse_json(body, url=url)
    if _HTML_PAGE.match(head):
        return ParsedFeed(items=[], warnings=["not a feed: the body is an HTML page"])
    return _parse_xml(body, charset, url=url, fast=fast)


def _content_type(headers: Mapping[str, str]) -> tuple[str, str]:
    """The media type and charset of the Content-Type header, lower-cased ('' if absent)."""
    value = ""
    for name, header in headers.items():
        if name.lower() == "content-type":
            value = header
            break
    media_type, _, params = value.partition(";")
    charset = ""
    for param in params.split(";"):
        key, _, val = param.partition("=")
        if key.strip().lower() == "charset":
            charset = val.strip().strip("\"'").lower()
    return media_type.strip().lower(), charset


# --- RSS and Atom -------------------------------------------------------------------


# What the fast path must do exactly as feedparser does, taken from feedparser itself.
_QUIRKS = parse_fast.Quirks(
    parse_date=_parse_date,
    looks_like_html=feedparser.mixin._FeedParserMixin.looks_like_html,
    cp1252=feedparser.html._cp1252,
)


def _parse_xml(body: bytes, charset: str, *, url: str, fast: bool) -> ParsedFeed:
    if fast:
        done = parse_fast.read(body, charset, _QUIRKS)
        if done is not None:
            return _parsed_feed(done.feed, done.entries, done.version, [], url=url)
    # Whatever the server called it, the body is read as XML: the charset parameter, if
    # any, wins, else the XML declaration or BOM, else UTF-8 (RFC 7303, section 3). This
    # keeps the obsolete us-ascii default for text/xml, and feeds served as text/html or
    # text/plain, from being reported as broken.
    content_type = f"application/xml; charset={charset}" if charset else "application/xml"
    # No HTML sanitising and no rewriting of relative URIs inside content: this project
    # never renders feed HTML (matching and mail use plain text from html_to_text), so that
    # work would be thrown away. No Content-Location either: relative links are resolved
    # here against ``url``, and a relative guid is not turned into a link.
    result = feedparser.parse(
        io.BytesIO(body),
        response_headers={"content-type": content_type},
        sanitize_html=False,
        resolve_relative_uris=False,
    )
    entries = result.get("entries", [])
    version: str = result.get("version") or ""
    warnings: list[str] = []
    if result.get("bozo"):
        # feedparser puts an XML declaration in front of a body that lacks one.
        shift = 0 if body.removeprefix(_UTF8_BOM).startswith(b"<?xml") else 1
        exc = result.get("bozo_exception")
        warnings.append(_bozo_warning(exc, len(entries), version, shift))
    elif not version and not entries:
        warnings.append("not a feed: no RSS, Atom or RDF document found")
    return _parsed_feed(result.get("feed", {}), entries, version, warnings, url=url)


def _parsed_feed(
    feed: Mapping[str, Any],
    entries: Iterable[dict[str, Any]],
    version: str,
    warnings: list[str],
    *,
    url: str,
) -> ParsedFeed:
    """Items and feed fields from feedparser-shaped values (feedparser's or the fast path's)."""
    items = [_entry_item(entry, url=url) for entry in entries]
    ttl = _ttl(feed.get("ttl"), warnings)
    if warnings:
        log.debug("%s: %s", url, "; ".join(warnings))
    return ParsedFeed(
        items=items,
        warnings=warnings,
        title=collapse_ws(_detail_text(feed, "title")) or None,
        site_url=_absolute_http(feed.get("link"), url),
        ttl=ttl,
        format=version,
    )


def _bozo_warning(exc: object, count: int, version: str, line_shift: int) -> str:
    read = f"{count} item{'' if count == 1 else 's'} read"
    if isinstance(exc, xml.sax.SAXParseException):
        message = exc.getMessage()
        message = message.removeprefix("not well-formed (").removesuffix(")") or message
        line = max(1, (exc.getLineNumber() or 1) - line_shift)
        problem = f"not well-formed XML at line {line}: {message}"
        if not count and not version:
            return f"not a feed: {problem}"
        return f"{problem}; {read}"
    if isinstance(exc, feedparser.CharacterEncodingOverride):
        return f"wrong charset: {exc}; {read}"
    if isinstance(exc, feedparser.CharacterEncodingUnknown):
        return f"unknown charset: {exc}; {read}"
    return f"{type(exc).__name__}: {exc}; {read}"


def _ttl(value: object, warnings: list[str]) -> int | None:
    if value is None or value == "":
        return None
    try:
        minutes = int(str(value).strip())
    except ValueError:
        minutes = -1
    if minutes < 0:
        warnings.append(f"ignored <ttl> {value!r}: not a whole number of minutes")
        return None
    return minutes


def _entry_item(entry: dict[str, Any], *, url: str) -> Item:
    title = collapse_ws(_detail_text(entry, "title"))
    # Without summary_detail, "summary" is feedparser's copy of the content.
    summary = _detail_text(entry, "summary") if "summary_detail" in entry else ""
    content = ""
    values = [c for c in entry.get("content", ()) if c.get("value")]
    if values:
        best = max(values, key=lambda c: len(c["value"]))
        content = _to_text(best["value"], best.get("type"))
    if content == summary:  # the same text twice: keep it once, as the summary
        content = ""
    link = _entry_link(entry, url)
    guid = entry.get("id") or None
    author = collapse_ws(entry.get("author") or "") or None
    return Item(
        identity=item_identity(
            guid=guid, link=link, title=title, text=f"{summary}\n{content}", feed_url=url
        ),
        title=title,
        link=link,
        guid=guid,
        summary=summary,
        content=content,
        # Not entry.get(): feedparser warns when "updated*" is asked for and absent.
        published=_struct_utc(dict.get(entry, "published_parsed"))
        or _struct_utc(dict.get(entry, "updated_parsed")),
        author=author,
    )


def _entry_link(entry: Mapping[str, Any], url: str) -> str | None:
    """The entry's alternate link, absolute and canonical; None unless http(s)."""
    links = entry.get("links") or ()
    for link in links:
        if link.get("rel", "alternate") == "alternate" and link.get("href"):
            return _absolute_http(link["href"], url)
    # No <link>: feedparser copies a permalink guid into "link"; take it only if absolute.
    href = entry.get("link")
    return _absolute_http(href, None) if href else None


def _absolute_http(href: object, base: str | None) -> str | None:
    if not isinstance(href, str) or not href.strip():
        return None
    href = href.strip()
    if base is not None:
        try:
            href = urljoin(base, href)
        except ValueError:
            return None
    absolute = http_url_or_none(href)
    return canonical_url(absolute) if absolute else None


def _detail_text(node: Mapping[str, Any], key: str) -> str:
    value = node.get(key)
    if not value:
        return ""
    detail = node.get(f"{key}_detail") or {}
    return _to_text(value, detail.get("type", "text/html"))


def _to_text(value: str, media_type: str | None) -> str:
    if media_type in _HTML_TYPES:
        return html_to_text(value)
    return tidy_text(value)


def _struct_utc(value: Sequence[int] | None) -> datetime | None:
    if value is None:
        return None
    try:
        year, month, day, hour, minute, second = value[:6]
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except (TypeError, ValueError, OverflowError):
        return None


# --- JSON Feed ----------------------------------------------------------------------

_JSON_VERSIONS = {
    "https://jsonfeed.org/version/1": "json10",
    "https://jsonfeed.org/version/1.1": "json11",
}


def _parse_json(body: bytes, *, url: str) -> ParsedFeed:
    warnings: list[str] = []
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        text = body.decode("utf-8-sig", "replace")
        warnings.append(f"not valid UTF-8 at byte {exc.start}; bad bytes replaced")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        warnings.append(f"not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}")
        return ParsedFeed(items=[], warnings=[f"not a feed: {'; '.join(warnings)}"])
    except RecursionError:
        return ParsedFeed(items=[], warnings=["not a feed: JSON nested too deeply"])
    if not isinstance(doc, dict):
        return ParsedFeed(items=[], warnings=["not a feed: JSON, but not an object"])
    version = doc.get("version")
    fmt = _JSON_VERSIONS.get(version, "json") if isinstance(version, str) else "json"
    raw_items = doc.get("items")
    if not isinstance(raw_items, list):
        return ParsedFeed(items=[], warnings=["not a feed: JSON without an items list"])
    if fmt == "json":
        warnings.append(f"unknown JSON Feed version {version!r}; read as 1.1")
    items: list[Item] = []
    skipped = 0
    for raw in raw_items:
        if isinstance(raw, dict):
            items.append(_json_item(raw, url=url))
        else:
            skipped += 1
    if skipped:
        are = "item is not a JSON object" if skipped == 1 else "items are not JSON objects"
        read = "item" if len(items) == 1 else "items"
        warnings.append(f"{skipped} {are}; {len(items)} {read} read")
    return ParsedFeed(
        items=items,
        warnings=warnings,
        title=collapse_ws(_str(doc.get("title")) or "") or None,
        site_url=_absolute_http(doc.get("home_page_url"), url),
        format=fmt,
    )


def _json_item(raw: Mapping[str, Any], *, url: str) -> Item:
    title = collapse_ws(_str(raw.get("title")) or "")
    summary = tidy_text(_str(raw.get("summary")) or "")
    content_html = _str(raw.get("content_html"))
    if content_html:
        content = html_to_text(content_html)
    else:
        content = tidy_text(_str(raw.get("content_text")) or "")
    if content == summary:
        content = ""
    link = _absolute_http(raw.get("url"), url) or _absolute_http(raw.get("external_url"), url)
    raw_id = raw.get("id")
    guid = _str(raw_id)
    if isinstance(raw_id, int | float) and not isinstance(raw_id, bool):
        guid = str(raw_id)  # the spec wants a string; numbers are common and as good
    return Item(
        identity=item_identity(
            guid=guid, link=link, title=title, text=f"{summary}\n{content}", feed_url=url
        ),
        title=title,
        link=link,
        guid=guid or None,
        summary=summary,
        content=content,
        published=_iso_utc(raw.get("date_published")) or _iso_utc(raw.get("date_modified")),
        author=_json_author(raw),
    )


def _json_author(raw: Mapping[str, Any]) -> str | None:
    authors: Iterable[object] = ()
    if isinstance(raw.get("authors"), list):
        authors = raw["authors"]
    elif isinstance(raw.get("author"), dict):
        authors = (raw["author"],)
    names = [
        collapse_ws(name)
        for author in authors
        if isinstance(author, dict) and (name := _str(author.get("name")))
    ]
    return ", ".join(n for n in names if n) or None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _iso_utc(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)
