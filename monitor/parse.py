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

import dataclasses
import heapq
import io
import json
import logging
import re
import xml.sax
from collections.abc import Collection, Iterable, Mapping, Sequence
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

__all__ = ["FIELD_CAPS", "parse", "parse_with_feedparser"]

log = logging.getLogger(__name__)

#: The most characters stored of each item field. Longer text is cut (a longer link is
#: dropped: a cut URL leads elsewhere) and the feed gets a warning. README.md, "Limits".
FIELD_CAPS: dict[str, int] = {
    "title": 1_000,
    "author": 500,
    "link": 2_048,
    "guid": 2_048,
    "summary": 100_000,
    "content": 500_000,
}
# Markup longer than this many times its field's cap is cut before it is made text.
_MARKUP_FACTOR = 8
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml", "html", "xhtml"})
_JSON_TYPES = frozenset({"application/feed+json", "application/json"})
_WHITESPACE = b" \t\r\n\x0b\x0c"
_UTF8_BOM = b"\xef\xbb\xbf"
_HTML_PAGE = re.compile(
    rb"(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html)\b", re.I | re.S
)


def parse(
    body: bytes,
    headers: Mapping[str, str],
    *,
    url: str,
    max_items: int | None = None,
    known: Collection[str] = frozenset(),
) -> ParsedFeed:
    """Read a feed body.

    ``headers`` are the response headers (names in any case); their Content-Type says
    whether the body is JSON and which charset it is in. ``url`` is the feed's URL: relative
    links resolve against it, and item guids that are not globally unique are scoped by it
    (see :func:`monitor.normalise.identity_basis`). With ``max_items``, only that many of
    the newest items are kept (by date; undated items count as older, in document order).

    ``known`` are identities of items stored already: an RSS or Atom entry whose guid or
    link gives one of them may be left out without its text being made (the costly part
    of reading an entry). Only entries that would come out whole are left out (no field
    over its cap), so the warnings are the same as without ``known``; other items with a
    known identity are still read, and left for the caller to drop.
    """
    parsed = _parse(body, headers, url=url, fast=True, max_items=max_items, known=known)
    return _limited(parsed, max_items)


def parse_with_feedparser(body: bytes, headers: Mapping[str, str], *, url: str) -> ParsedFeed:
    """:func:`parse` without the fast path: every RSS and Atom body is read by feedparser."""
    return _limited(_parse(body, headers, url=url, fast=False), None)


def _limited(parsed: ParsedFeed, max_items: int | None) -> ParsedFeed:
    """``parsed`` with every field within :data:`FIELD_CAPS` and at most ``max_items``
    items, with a warning for each kind of cut."""
    items = parsed.items
    warnings = list(parsed.warnings)
    if max_items is not None and len(items) > max_items:
        order = sorted(
            range(len(items)),
            key=lambda i: (items[i].published is not None, items[i].published or _EPOCH, -i),
            reverse=True,
        )
        keep = sorted(order[:max_items])
        warnings.append(_cut(len(items), max_items))
        items = [items[i] for i in keep]
    capped = [_capped(item) for item in items]
    cut = sum(1 for new, old in zip(capped, items, strict=True) if new is not old)
    if cut:
        warnings.append(
            f"{cut} item{'' if cut == 1 else 's'} had a field over its size cap; cut"
        )
    if cut or len(warnings) != len(parsed.warnings):
        return dataclasses.replace(parsed, items=capped, warnings=warnings)
    return parsed


def _cut(total: int, kept: int | None) -> str:
    return f"{total} items; only the {kept} newest kept (polling.max_items)"


def _capped(item: Item) -> Item:
    """``item`` with every field within :data:`FIELD_CAPS` (the same object if it was)."""
    changes: dict[str, Any] = {}
    for name in ("title", "summary", "content", "author", "guid"):
        value = getattr(item, name)
        if value is not None and len(value) > FIELD_CAPS[name]:
            changes[name] = value[: FIELD_CAPS[name]]
    if item.link is not None and len(item.link) > FIELD_CAPS["link"]:
        changes["link"] = None
    return dataclasses.replace(item, **changes) if changes else item


def _parse(
    body: bytes,
    headers: Mapping[str, str],
    *,
    url: str,
    fast: bool,
    max_items: int | None = None,
    known: Collection[str] = frozenset(),
) -> ParsedFeed:
    content_type, charset = _content_type(headers)
    head = body[:1024].lstrip(_WHITESPACE)
    if head.startswith(_UTF8_BOM):
        head = head[len(_UTF8_BOM) :].lstrip(_WHITESPACE)
    if not head:
        return ParsedFeed(items=[], warnings=["not a feed: the body is empty"])
    if head.startswith(b"{") or (content_type in _JSON_TYPES and not head.startswith(b"<")):
        return _parse_json(body, url=url, max_items=max_items)
    if _HTML_PAGE.match(head):
        return ParsedFeed(items=[], warnings=["not a feed: the body is an HTML page"])
    return _parse_xml(body, charset, url=url, fast=fast, max_items=max_items, known=known)


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


def _parse_xml(
    body: bytes,
    charset: str,
    *,
    url: str,
    fast: bool,
    max_items: int | None = None,
    known: Collection[str] = frozenset(),
) -> ParsedFeed:
    guarded = _without_internal_subset(body, charset)
    if guarded is None:
        return ParsedFeed(items=[], warnings=["not a feed: a DOCTYPE that never ends"])
    body, charset, dropped = guarded
    if fast and not dropped:
        done = parse_fast.read(body, charset, _QUIRKS, max_items)
        if done is not None:
            fast_cut = [] if done.total <= len(done.entries) else [_cut(done.total, max_items)]
            return _parsed_feed(
                done.feed, done.entries, done.version, fast_cut, url=url, known=known
            )
    cut: list[str] = []
    if max_items is not None:
        fewer = _newest_only(body, max_items)
        if fewer is not None:
            body, total = fewer
            cut.append(_cut(total, max_items))
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
    warnings: list[str] = cut
    if max_items is not None and len(entries) > max_items:
        warnings.append(_cut(len(entries), max_items))
        entries = parse_fast.newest_entries(entries, max_items)
    if dropped:
        warnings.append(
            f"ignored the DOCTYPE's internal subset ({dropped} declaration"
            f"{'' if dropped == 1 else 's'}): entities are not expanded"
        )
    if result.get("bozo"):
        # feedparser puts an XML declaration in front of a body that lacks one.
        shift = 0 if body.removeprefix(_UTF8_BOM).startswith(b"<?xml") else 1
        exc = result.get("bozo_exception")
        warnings.append(_bozo_warning(exc, len(entries), version, shift))
    elif not version and not entries:
        warnings.append("not a feed: no RSS, Atom or RDF document found")
    return _parsed_feed(
        result.get("feed", {}), entries, version, warnings, url=url, known=known
    )


# An internal DTD subset can declare entities; feedparser keeps those whose value has no
# "&" and its loose parser expands them, so a 100 KB body can grow to gigabytes ("billion
# laughs" without the nesting). Before feedparser sees a body, the subset is emptied: only
# declarations of one character reference (<!ENTITY nbsp "&#160;">) are put back, which
# never make the text longer than the reference itself.
_ROOT_START = re.compile(rb"<[A-Za-z_:]")
_DOCTYPE = re.compile(rb"<!DOCTYPE", re.I)
_CHAR_ENTITY = re.compile(
    rb"<!ENTITY\s+([A-Za-z_][\w.-]*)\s+([\"'])(&#(?:\d{1,7}|x[0-9A-Fa-f]{1,6});)\2\s*>"
)
_DECLARATION = re.compile(rb"<!(?:ENTITY|ELEMENT|ATTLIST|NOTATION)\b", re.I)
_NOT_ASCII_COMPATIBLE = (
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\xfe\xff", "utf-16-be"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\x00\x00\x00<", "utf-32-be"),
    (b"<\x00\x00\x00", "utf-32-le"),
    (b"\x00<", "utf-16-be"),
    (b"<\x00", "utf-16-le"),
    (b"\x4c\x6f\xa7\x94", "cp037"),
)
_XML_DECLARATION_BYTES = re.compile(rb"^(\s*<\?xml[^>]*?)\sencoding=([\"'])[^\"']*\2", re.S)


def _without_internal_subset(body: bytes, charset: str) -> tuple[bytes, str, int] | None:
    """``body`` with its DOCTYPE's internal subset emptied (see above), the charset to read
    it in, and how many declarations were dropped; None for a DOCTYPE that never ends.

    A body in UTF-16, UTF-32 or EBCDIC with a DOCTYPE is turned into UTF-8 first, so that
    the subset is found whatever the encoding.
    """
    data = body
    for mark, codec in _NOT_ASCII_COMPATIBLE:
        if body.startswith(mark):
            text = body.decode(codec, "replace").lstrip("\ufeff")
            data = text.encode("utf-8")
            if _DOCTYPE.search(data, 0, _prolog_end(data)) is None:
                return body, charset, 0
            data = _XML_DECLARATION_BYTES.sub(rb'\1 encoding="utf-8"', data, count=1)
            charset = "utf-8"
            break
    found = _DOCTYPE.search(data, 0, _prolog_end(data))
    if found is None:
        return data, charset, 0
    end, subset = _doctype_end(data, found.end())
    if end is None:
        return None
    if subset is None:
        return data, charset, 0
    start, stop = subset
    inner = data[start:stop]
    kept = [m.group(0) for m in _CHAR_ENTITY.finditer(inner)]
    dropped = len(_DECLARATION.findall(inner)) - len(kept)
    # One declaration a line: feedparser only finds those that start a line.
    rebuilt = b"\n" + b"\n".join(kept) + b"\n" if kept else b""
    return data[:start] + rebuilt + data[stop:], charset, max(dropped, 0)


def _prolog_end(data: bytes) -> int:
    """Where the root element starts (feedparser's own split), or the end of ``data``."""
    found = _ROOT_START.search(data)
    return found.start() if found else len(data)


def _doctype_end(data: bytes, pos: int) -> tuple[int | None, tuple[int, int] | None]:
    """From just after ``<!DOCTYPE``: the index after its closing ``>`` (None if it never
    closes) and the span of its internal subset (None if it has none). Quoted strings and
    comments may hold ``]`` and ``>``."""
    subset_start: int | None = None
    subset: tuple[int, int] | None = None
    i, n = pos, len(data)
    while i < n:
        c = data[i : i + 1]
        if c in (b'"', b"'"):
            close = data.find(c, i + 1)
            if close < 0:
                return None, None
            i = close + 1
            continue
        if subset_start is not None and data.startswith(b"<!--", i):
            close = data.find(b"-->", i + 4)
            if close < 0:
                return None, None
            i = close + 3
            continue
        if c == b"[" and subset_start is None and subset is None:
            subset_start = i + 1
        elif c == b"]" and subset_start is not None:
            subset = (subset_start, i)
            subset_start = None
        elif c == b">" and subset_start is None:
            return i + 1, subset
        i += 1
    return None, None


# Where entries start and end, found without parsing: feedparser builds every entry of a
# document, in pure Python, so a body with many more entries than may be kept is cut to
# the newest before feedparser reads it (see _newest_only).
_ENTRY_START = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?(?:item|entry)(?=[\s/>])", re.I)
_ENTRY_END = re.compile(rb"</(?:[A-Za-z_][\w.-]*:)?(?:item|entry)\s*>", re.I)
_ENTRY_DATE = re.compile(
    rb"<(?:[A-Za-z_][\w.-]*:)?(pubDate|published|issued|updated|modified|date)\b[^>]*>"
    rb"\s*(?:<!\[CDATA\[)?\s*([^<\]]{1,100})",
    re.I,
)
_PUBLISHED_TAGS = frozenset({b"pubdate", b"published", b"issued"})


def _newest_only(body: bytes, max_items: int) -> tuple[bytes, int] | None:
    """``body`` with only its ``max_items`` newest entries, and how many it had; None when
    it has no more than that. Entries are found by their tags and dated by their first
    published (else updated) date; undated ones count as older, as do later ones."""
    spans: list[tuple[int, int]] = []
    pos = 0
    while True:
        start = _ENTRY_START.search(body, pos)
        if start is None:
            break
        tag_end = body.find(b">", start.end())
        if tag_end < 0:
            break
        if body[tag_end - 1 : tag_end] == b"/":
            end = tag_end + 1
        else:
            close = _ENTRY_END.search(body, tag_end + 1)
            if close is None:
                break
            end = close.end()
        spans.append((start.start(), end))
        pos = end
    if len(spans) <= max_items:
        return None

    def age(i: int) -> tuple[bool, tuple[int, ...], int]:
        start, end = spans[i]
        published: Sequence[int] | None = None
        updated: Sequence[int] | None = None
        for found in _ENTRY_DATE.finditer(body, start, end):
            when = _parse_date(found.group(2).strip().decode("utf-8", "replace"))
            if when is None:
                continue
            if found.group(1).lower() in _PUBLISHED_TAGS:
                published = published or when
            else:
                updated = updated or when
        when = published or updated
        return (True, tuple(when[:6]), -i) if when else (False, (), -i)

    keep = sorted(heapq.nlargest(max_items, range(len(spans)), key=age))
    parts = [body[: spans[0][0]]]
    parts += [body[spans[i][0] : spans[i][1]] for i in keep]
    parts.append(body[spans[-1][1] :])
    return b"".join(parts), len(spans)


def _parsed_feed(
    feed: Mapping[str, Any],
    entries: Iterable[dict[str, Any]],
    version: str,
    warnings: list[str],
    *,
    url: str,
    known: Collection[str] = frozenset(),
) -> ParsedFeed:
    """Items and feed fields from feedparser-shaped values (feedparser's or the fast path's);
    without the entries :func:`_entry_item` finds surely ``known``."""
    made = (_entry_item(entry, url=url, known=known) for entry in entries)
    items = [item for item in made if item is not None]
    ttl = _ttl(feed.get("ttl"), warnings)
    if warnings:
        log.debug("%s: %s", url, "; ".join(warnings))
    return ParsedFeed(
        items=items,
        warnings=warnings,
        title=collapse_ws(_detail_text(feed, "title"))[: FIELD_CAPS["title"]] or None,
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


def _entry_item(
    entry: dict[str, Any], *, url: str, known: Collection[str] = frozenset()
) -> Item | None:
    """The entry's item; None if its identity is ``known`` and it would come out whole."""
    link = _entry_link(entry, url)
    guid = entry.get("id") or None
    identity = None
    if (guid or "").strip() or (link or "").strip():
        # A guid or a link is the identity's whole basis: no text is needed to know it.
        identity = item_identity(guid=guid, link=link, title="", text="", feed_url=url)
        if identity in known and _within_caps(entry, guid, link):
            return None
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
    author = collapse_ws(entry.get("author") or "") or None
    return Item(
        identity=identity
        or item_identity(
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


def _within_caps(entry: Mapping[str, Any], guid: str | None, link: str | None) -> bool:
    """Whether the item of ``entry`` has every field within :data:`FIELD_CAPS`, told from
    its markup: making text of markup never lengthens it (tags go, entities get shorter,
    whitespace collapses), so markup within a cap gives text within it."""
    contents = [c.get("value") or "" for c in entry.get("content", ())]
    return (
        len(guid or "") <= FIELD_CAPS["guid"]
        and len(link or "") <= FIELD_CAPS["link"]
        and len(entry.get("title") or "") <= FIELD_CAPS["title"]
        and len(entry.get("summary") or "") <= FIELD_CAPS["summary"]
        and max(map(len, contents), default=0) <= FIELD_CAPS["content"]
        and len(entry.get("author") or "") <= FIELD_CAPS["author"]
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
    if not isinstance(href, str) or not href.strip() or len(href) > FIELD_CAPS["link"]:
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
    return _to_text(value, detail.get("type", "text/html"), FIELD_CAPS.get(key, 1_000))


def _to_text(value: str, media_type: str | None, cap: int = FIELD_CAPS["content"]) -> str:
    value = value[: cap * _MARKUP_FACTOR]
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


def _parse_json(body: bytes, *, url: str, max_items: int | None = None) -> ParsedFeed:
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
    if max_items is not None and len(raw_items) > max_items:
        warnings.append(_cut(len(raw_items), max_items))
        raw_items = _newest_json(raw_items, max_items)
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
        title=collapse_ws(_str(doc.get("title")) or "")[: FIELD_CAPS["title"]] or None,
        site_url=_absolute_http(doc.get("home_page_url"), url),
        format=fmt,
    )


def _newest_json(raw_items: list[Any], limit: int) -> list[Any]:
    """The ``limit`` newest of JSON Feed items (undated ones count as older), in order."""

    def age(i: int) -> tuple[bool, datetime, int]:
        raw = raw_items[i]
        when = None
        if isinstance(raw, dict):
            when = _iso_utc(raw.get("date_published")) or _iso_utc(raw.get("date_modified"))
        return (when is not None, when or _EPOCH, -i)

    newest = heapq.nlargest(limit, range(len(raw_items)), key=age)
    return [raw_items[i] for i in sorted(newest)]


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
