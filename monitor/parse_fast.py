"""A fast reader for plain, well-formed RSS 2.0/0.9x and Atom 1.0, for :mod:`monitor.parse`.

feedparser reads a feed through pure-Python SAX callbacks; this module reads the same
bytes with the C-accelerated :mod:`xml.etree.ElementTree` and builds the few entry and
feed values :mod:`monitor.parse` uses, shaped like feedparser's (``title`` and
``title_detail``, ``summary``, ``content``, ``links``, ``link``, ``id``, ``author``,
``published_parsed``, ``updated_parsed``; feed ``title``, ``link``, ``ttl``), so the same
code turns either into items.

It reproduces what feedparser does for the documents it accepts, quirks included (which
title wins, a permalink guid standing in for a missing link, the type guess for RSS text,
the Latin-1 and Windows-1252 repairs of text), and refuses everything else by returning
None, so that the caller reads the body with feedparser: a DOCTYPE (so no entity is ever
declared, let alone expanded), a body that is not well-formed, an encoding that does not
decode as feedparser would read it, an unknown root, RSS 1.0, an element or attribute it
does not know to be harmless, XHTML or base64 content, duplicated fields, and xml:base
anywhere but on the root. ``tests/test_parse_fast.py`` compares both readers.

feedparser is not imported here: :mod:`monitor.parse` passes in the few of its rules
this module must follow to the letter (:class:`Quirks`).
"""

from __future__ import annotations

import contextlib
import heapq
import io
import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urljoin

__all__ = ["FastFeed", "Quirks", "newest_entries", "read"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Quirks:
    """feedparser's own rules, handed in by :mod:`monitor.parse`."""

    #: A date string -> a UTC time tuple or None (feedparser's date handlers, in order).
    parse_date: Callable[[str], Sequence[int] | None]
    #: Whether RSS text declared plain is taken for HTML.
    looks_like_html: Callable[[str], bool]
    #: C1 control characters -> their Windows-1252 characters.
    cp1252: Mapping[int, str]


@dataclass(frozen=True, slots=True)
class FastFeed:
    """What :func:`read` made of a body: feedparser-shaped feed and entry values."""

    version: str
    feed: dict[str, Any]
    entries: list[dict[str, Any]]
    #: How many entries the document has (more than ``entries`` when cut to the newest).
    total: int = 0


def _age_key(entry: dict[str, Any], index: int) -> tuple[bool, tuple[int, ...], int]:
    """Sorts entries oldest first: undated ones (later in the document counts as older),
    then by date (published, else updated), then by place in the document."""
    # dict.get: feedparser's entries warn when "updated*" is asked for and absent.
    when = dict.get(entry, "published_parsed") or dict.get(entry, "updated_parsed")
    if when is None:
        return (False, (), -index)
    return (True, tuple(when[:6]), -index)


def newest_entries(entries: Sequence[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """The ``limit`` newest of feedparser-shaped ``entries``, in document order."""
    if len(entries) <= limit:
        return list(entries)
    newest = heapq.nlargest(limit, range(len(entries)), key=lambda i: _age_key(entries[i], i))
    return [entries[i] for i in sorted(newest)]


class _Refused(Exception):
    """The body is not one this reader is sure to read as feedparser does."""


# --- namespaces and names -----------------------------------------------------------

_XML_NS = "http://www.w3.org/XML/1998/namespace"
_XML_BASE = f"{{{_XML_NS}}}base"
_ATOM_NS = "http://www.w3.org/2005/Atom"

# Namespace URI -> the prefix feedparser files its elements under ('' like plain RSS).
# Any other namespace, declared or used anywhere, refuses the body.
_PREFIXES = {
    "": "",
    _ATOM_NS: "",
    "http://purl.org/rss/1.0/modules/content/": "content",
    "http://purl.org/dc/elements/1.1/": "dc",
    "http://search.yahoo.com/mrss/": "media",
    "http://search.yahoo.com/mrss": "media",
    "http://www.itunes.com/DTDs/PodCast-1.0.dtd": "itunes",
    "http://wellformedweb.org/commentAPI/": "wfw",
    "http://purl.org/rss/1.0/modules/slash/": "slash",
    "http://purl.org/rss/1.0/modules/syndication/": "sy",
    "http://purl.org/rss/1.0/modules/threading/": "thr",
    "http://rssnamespace.org/feedburner/ext/1.0": "feedburner",
    _XML_NS: "xml",
}

# Leaves that change nothing this project reads, in a feed or in an entry. Names are
# feedparser's: local name lower-cased, behind the namespace's prefix.
_INERT_ANYWHERE = frozenset(
    """category dc:subject rights copyright
    media:content media:thumbnail media:keywords media:category media:rating media:credit
    itunes:duration itunes:explicit itunes:image itunes:keywords itunes:block itunes:episode
    itunes:season itunes:episodetype itunes:title itunes:category""".split()
)
_INERT_PREFIXES = ("wfw:", "slash:", "sy:", "thr:", "feedburner:")
_INERT_FEED = _INERT_ANYWHERE | frozenset(
    """description subtitle tagline language managingeditor webmaster pubdate lastbuilddate
    published updated generator docs cloud rating icon logo
    dc:creator dc:date dc:language dc:rights dc:publisher
    itunes:author itunes:summary itunes:subtitle itunes:type itunes:new-feed-url""".split()
)
_INERT_ENTRY = _INERT_ANYWHERE | frozenset("comments enclosure source".split())

# Containers whose leaf children change nothing read here, and those children.
_FEED_CONTAINERS = {
    "image": frozenset("title url link width height description".split()),
    "textinput": frozenset("title description name link".split()),
    "skiphours": frozenset(["hour"]),
    "skipdays": frozenset(["day"]),
    "itunes:owner": frozenset(["itunes:name", "itunes:email"]),
    "author": frozenset("name email uri".split()),
    "contributor": frozenset("name email uri".split()),
}
_ENTRY_CONTAINERS = {"contributor": frozenset("name email uri".split())}
_NESTED_CATEGORY = "itunes:category"

# Attributes (lower-cased) allowed on the elements whose handlers read attributes.
_TEXT_ATTRS = frozenset(["type", "xml:lang"])
_LINK_ATTRS = frozenset("href rel type hreflang title length xml:lang".split())
_GUID_ATTRS = frozenset(["ispermalink", "xml:lang"])
_PLAIN_ATTRS = frozenset(["xml:lang"])
_ROOT_ATTRS = frozenset(["version", "xml:lang"])
_NO_ATTRS: frozenset[str] = frozenset()

_RSS_VERSIONS = {"0.91": "rss091u", "0.92": "rss092", "0.93": "rss093", "0.94": "rss094"}
_HTML_TYPES = frozenset(["text/html", "application/xhtml+xml"])
_TEXT_TYPES = frozenset(["text/plain", "text/html"])


class _Names:
    """Element tags -> feedparser's names, remembered for one document."""

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        self._seen: dict[str, str] = {}

    def __call__(self, tag: object) -> str:
        if not isinstance(tag, str):  # a comment or processing instruction node
            raise _Refused("unexpected node")
        name = self._seen.get(tag)
        if name is None:
            name = self._seen[tag] = _name(tag)
        return name


def _name(tag: str) -> str:
    if tag[:1] == "{":
        uri, _, local = tag[1:].partition("}")
    else:
        uri, local = "", tag
    prefix = _PREFIXES.get(uri)
    if prefix is None:
        raise _Refused(f"namespace {uri!r}")
    local = local.lower()
    return f"{prefix}:{local}" if prefix else local


def _attrs(
    elem: ET.Element, allowed: frozenset[str] | None, *, root: bool = False
) -> dict[str, str]:
    """The element's attributes under feedparser's names; refuses xml:base (but on the
    root) and, when ``allowed`` is given, any attribute not in it."""
    if not elem.attrib:
        return {}
    out: dict[str, str] = {}
    for key, value in elem.attrib.items():
        if key[:1] == "{":
            uri, _, local = key[1:].partition("}")
            prefix = _PREFIXES.get(uri)
            if not prefix:
                raise _Refused(f"attribute {key!r}")
            name = f"{prefix}:{local.lower()}"
        else:
            name = key.lower()
        if name == "xml:base" and root:
            continue
        if name in ("xml:base", "base") or (allowed is not None and name not in allowed):
            raise _Refused(f"attribute {name!r}")
        out[name] = value.lower() if name in ("rel", "type") else value
    return out


# --- text as feedparser stores it ---------------------------------------------------


class _Reader:
    """One document's walk: feedparser's post-processing of text, its URI joining, dates."""

    __slots__ = ("base", "is_atom", "names", "quirks")

    def __init__(self, quirks: Quirks, base: str, is_atom: bool) -> None:
        self.quirks = quirks
        self.base = base
        self.is_atom = is_atom
        self.names = _Names()

    def fixed(self, text: str) -> str:
        """feedparser's last steps for every text it keeps: UTF-8 misread as Latin-1 is
        repaired, C1 controls become their Windows-1252 characters."""
        if text.isascii():
            return text
        with contextlib.suppress(UnicodeEncodeError, UnicodeDecodeError):
            text = text.encode("iso-8859-1").decode("utf-8")
        if _C1.search(text):
            text = text.translate(self.quirks.cp1252)
        return text

    def content(self, elem: ET.Element, default_type: str) -> tuple[str, str]:
        """(text, media type) of a text construct: title, description, summary, content."""
        attrs = _attrs(elem, _TEXT_ATTRS)
        media_type = _map_type(attrs.get("type", default_type))
        if media_type not in _TEXT_TYPES:
            raise _Refused(f"content type {media_type!r}")
        value = _leaf_text(elem).strip()
        if not self.is_atom and media_type == "text/plain" and self.quirks.looks_like_html(value):
            media_type = "text/html"
        return self.fixed(value), media_type

    def plain(self, elem: ET.Element, allowed: frozenset[str] | None) -> str:
        _attrs(elem, allowed)
        return self.fixed(_leaf_text(elem).strip())

    def date(self, elem: ET.Element) -> Sequence[int] | None:
        value = self.plain(elem, None)
        if not value:
            return None
        return _fast_date(value) or self.quirks.parse_date(value)


_C1 = re.compile("[\x80-\x9f]")


def _map_type(value: str) -> str:
    value = value.lower()
    if value in ("text", "plain"):
        return "text/plain"
    if value == "html":
        return "text/html"
    if value == "xhtml":
        return "application/xhtml+xml"
    return value


def _leaf_text(elem: ET.Element) -> str:
    if len(elem):
        raise _Refused(f"child elements in {elem.tag!r}")
    return elem.text or ""


_URIFIXER = re.compile("^([A-Za-z][A-Za-z0-9+-.]*://)(/*)(.*?)")


def _urljoin(base: str, uri: str) -> str:
    """feedparser's join of a URI onto the base (extra slashes after the scheme go)."""
    if ":///" in uri:  # else there are no extra slashes to remove
        uri = _URIFIXER.sub(r"\1\3", uri)
    if not base:
        return uri  # what urljoin gives
    try:
        return urljoin(base, uri)
    except ValueError:
        return ""


# --- dates --------------------------------------------------------------------------

_MONTHS = {m: i for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split(), 1)}
# The common RFC 822 spelling: "Tue, 05 Mar 2024 09:30:00 +0300" (or GMT/UT/UTC/Z).
_RFC822 = re.compile(
    r"(?:(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*,?\s+)?(\d{1,2})\s+([a-z]{3})[a-z]*\s+(\d{4})\s+"
    r"(\d{1,2}):(\d{2})(?::(\d{2}))?\s+(?:([+-])(\d{2}):?(\d{2})|gmt|ut|utc|z)",
    re.ASCII,
)
# The common W3C-DTF spelling: "2024-05-01T12:00:00.5+02:00" (or Z).
_W3DTF = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})t(\d{2}):(\d{2}):(\d{2})(?:\.\d{1,9})?(?:z|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)


def _fast_date(value: str) -> tuple[int, int, int, int, int, int] | None:
    """The UTC time of the two common date spellings, computed as feedparser's own handlers
    compute it; None for anything else (and for values those handlers reject), which
    then goes to feedparser's handlers."""
    lowered = value.lower()
    match = _W3DTF.fullmatch(lowered)
    if match is not None:
        year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
        sign, tz_h, tz_m = match.group(7, 8, 9)
    else:
        match = _RFC822.fullmatch(lowered)
        if match is None:
            return None
        month = _MONTHS.get(match.group(2), 0)
        if not month:
            return None
        day, year, hour, minute = (int(g) for g in match.group(1, 3, 4, 5))
        second = int(match.group(6) or 0)
        sign, tz_h, tz_m = match.group(7, 8, 9)
    offset = timedelta(0)
    if sign is not None:
        offset = timedelta(hours=int(tz_h), minutes=int(tz_m))
        if sign == "-":
            offset = -offset
    try:
        stamp = datetime(year, month, day, hour, minute, second) - offset
    except (ValueError, OverflowError):
        return None
    return (stamp.year, stamp.month, stamp.day, stamp.hour, stamp.minute, stamp.second)


# --- the document -------------------------------------------------------------------

_UTF8_BOM = b"\xef\xbb\xbf"
_OTHER_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff", b"\x00\x00\x00<", b"<\x00")
_XML_PI_ENCODING = re.compile(rb"^<\?.*encoding=['\"](.*?)['\"].*\?>")
_XML_DECLARATION = re.compile(r"^<\?xml[^>]*?>")
_UTF8_DECLARATION = "<?xml version='1.0' encoding='utf-8'?>"
_UTF16_NAMES = frozenset(
    """u16 utf-16 utf16 utf_16 u32 utf-32 utf32 utf_32 iso-10646-ucs-2 iso-10646-ucs-4
    csucs4 csunicode ucs-2 ucs-4""".split()
)
# Before the root element: the XML declaration, processing instructions, comments and
# whitespace only. A DOCTYPE (and with it any entity declaration) stops the match.
_PROLOG = re.compile(rb"(?:\s+|<\?.*?\?>|<!--.*?-->)*<[A-Za-z_:]", re.S)
# Namespace declarations with side effects in feedparser: the first two make it call the
# document RSS 1.0 or 0.90 whatever its root; xlink declarations become attributes.
_REFUSED_DECLARATIONS = frozenset(
    [
        "http://purl.org/rss/1.0/",
        "http://my.netscape.com/rdf/simple/0.9/",
        "http://www.w3.org/1999/xlink",
    ]
)


def read(
    body: bytes, charset: str, quirks: Quirks, max_items: int | None = None
) -> FastFeed | None:
    """Read a plain RSS 2.0/0.9x or Atom 1.0 ``body`` as feedparser would, or return None
    when unsure. ``charset`` is the Content-Type charset parameter, lower-cased ('' if none);
    as in :mod:`monitor.parse`, it wins over the XML declaration, which wins over UTF-8.
    With ``max_items``, only that many of the newest entries are kept (see
    :func:`newest_entries`), and each entry's elements are freed once read."""
    try:
        return _read(body, charset, quirks, max_items)
    except _Refused as exc:
        log.debug("fast path refused: %s", exc)
        return None


def _read(body: bytes, charset: str, quirks: Quirks, max_items: int | None) -> FastFeed:
    data = _utf8(body, charset)
    if _PROLOG.match(data) is None:
        raise _Refused("DOCTYPE or text before the root element")
    # Elements and attributes in namespaces other than those of _PREFIXES are refused
    # where they occur; declarations alone matter only for these.
    events = ET.iterparse(io.BytesIO(data), events=("start-ns",))
    try:
        for _event, (_prefix, uri) in events:
            if uri.lower() in _REFUSED_DECLARATIONS:
                raise _Refused(f"namespace {uri!r}")
    except ET.ParseError as exc:
        raise _Refused(f"not well-formed: {exc}") from None
    root = getattr(events, "root", None)  # set once iterparse is exhausted
    if not isinstance(root, ET.Element):
        raise _Refused("no root element")
    del events
    return _document(root, quirks, max_items)


def _utf8(body: bytes, charset: str) -> bytes:
    """The body as UTF-8 bytes, decoded as feedparser decodes it (see
    ``feedparser.encodings.convert_to_utf8`` for an application/xml response)."""
    data = body
    bom = ""
    if data.startswith(_UTF8_BOM):
        data, bom = data[3:], "utf-8"
    elif data.startswith(_OTHER_BOMS) or data.startswith(b"\x4c\x6f\xa7\x94"):
        raise _Refused("UTF-16/32 or EBCDIC body")
    match = _XML_PI_ENCODING.match(data)
    try:
        declared = match.group(1).decode("utf-8").lower() if match else ""
    except UnicodeDecodeError:
        raise _Refused("undecodable XML declaration") from None
    if bom and declared in _UTF16_NAMES:
        declared = bom
    encoding = charset or declared or "utf-8"
    if encoding.lower() == "gb2312":
        encoding = "gb18030"
    try:
        text = data.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        raise _Refused(f"does not decode as {encoding}") from None
    if encoding in ("utf-8", "utf8") and declared in ("", "utf-8", "utf8"):
        return data
    if _XML_DECLARATION.search(text):
        text = _XML_DECLARATION.sub(_UTF8_DECLARATION, text, count=1)
    else:
        text = f"{_UTF8_DECLARATION}\n{text}"
    return text.encode("utf-8")


def _root_base(root: ET.Element) -> str:
    base = root.attrib.get(_XML_BASE, "")
    if not base:
        return ""
    joined = _urljoin("", base)
    scheme = joined.partition(":")[0].lower()
    if scheme not in ("http", "https") or _urljoin(joined, joined) != joined:
        raise _Refused(f"xml:base {base!r}")
    return joined


def _document(root: ET.Element, quirks: Quirks, max_items: int | None) -> FastFeed:
    tag = root.tag
    if not isinstance(tag, str):
        raise _Refused("no root element")
    if tag.lower() == "rss":
        attrs = _attrs(root, _ROOT_ATTRS, root=True)
        version_attr = attrs.get("version", "")
        version = _RSS_VERSIONS.get(version_attr) or (
            "rss20" if version_attr.startswith("2.") else "rss"
        )
        channels = list(root)
        if len(channels) != 1 or not isinstance(channels[0].tag, str):
            raise _Refused("not one channel")
        reader = _Reader(quirks, _root_base(root), is_atom=False)
        channel = channels[0]
        if reader.names(channel.tag) != "channel":
            raise _Refused(f"{channel.tag!r} in <rss>")
        _attrs(channel, _PLAIN_ATTRS)
        feed, entries, total = _feed(reader, channel, max_items)
        return FastFeed(version=version, feed=feed, entries=entries, total=total)
    if tag == f"{{{_ATOM_NS}}}feed":
        _attrs(root, _ROOT_ATTRS, root=True)
        reader = _Reader(quirks, _root_base(root), is_atom=True)
        feed, entries, total = _feed(reader, root, max_items)
        return FastFeed(version="atom10", feed=feed, entries=entries, total=total)
    raise _Refused(f"root {tag!r}")


def _feed(
    reader: _Reader, parent: ET.Element, max_items: int | None
) -> tuple[dict[str, Any], list[dict[str, Any]], int]:
    feed: dict[str, Any] = {}
    # The newest max_items entries so far, oldest on top: (age key, index, entry).
    kept: list[tuple[tuple[bool, tuple[int, ...], int], int, dict[str, Any]]] = []
    total = 0
    names = reader.names
    titles = 0
    for elem in parent:
        name = names(elem.tag)
        if name in ("item", "entry"):
            entry = _entry(reader, elem)
            elem.clear()  # read: its elements are not needed any more
            key = _age_key(entry, total)
            if max_items is None or len(kept) < max_items:
                heapq.heappush(kept, (key, total, entry))
            elif key > kept[0][0]:
                heapq.heapreplace(kept, (key, total, entry))
            total += 1
        elif name == "title":
            titles += 1
            if titles > 1:
                raise _Refused("two feed titles")
            value, media_type = reader.content(elem, "text/plain")
            feed["title"] = value
            feed["title_detail"] = {"type": media_type}
        elif name == "link":
            _link(reader, elem, feed, in_entry=False)
        elif name in ("id", "guid"):
            _guid(reader, elem, feed)
        elif name == "ttl":
            feed["ttl"] = reader.plain(elem, _NO_ATTRS)
        elif name in _FEED_CONTAINERS:
            _container(reader, elem, _FEED_CONTAINERS[name])
        elif name == _NESTED_CATEGORY:
            _categories(reader, elem)
        elif name in _INERT_FEED or name.startswith(_INERT_PREFIXES):
            _inert(elem)
        else:
            raise _Refused(f"<{name}> in the feed")
    entries = [entry for _key, _index, entry in sorted(kept, key=lambda k: k[1])]
    return feed, entries, total


def _entry(reader: _Reader, elem: ET.Element) -> dict[str, Any]:
    _attrs(elem, _PLAIN_ATTRS)
    entry: dict[str, Any] = {}
    names = reader.names
    seen: set[str] = set()
    for child in elem:
        name = names(child.tag)
        if name == "title":
            _once(seen, "title")
            value, media_type = reader.content(child, "text/plain")
            entry["title"] = value
            entry["title_detail"] = {"type": media_type}
        elif name == "link":
            _link(reader, child, entry, in_entry=True)
        elif name in ("description", "summary"):
            _once(seen, "summary")
            default = "text/html" if name == "description" else "text/plain"
            value, media_type = reader.content(child, default)
            entry["summary"] = value
            entry["summary_detail"] = {"type": media_type}
        elif name in ("content", "content:encoded"):
            _once(seen, "content")
            default = "text/html" if name == "content:encoded" else "text/plain"
            value, media_type = reader.content(child, default)
            entry.setdefault("content", []).append({"type": media_type, "value": value})
            entry.setdefault("summary", value)  # feedparser copies text content to summary
        elif name in ("id", "guid"):
            _once(seen, "id")
            _guid(reader, child, entry)
        elif name in ("pubdate", "published"):
            entry["published_parsed"] = reader.date(child)
        elif name in ("updated", "dc:date"):
            entry["updated_parsed"] = reader.date(child)
        elif name in ("author", "dc:creator", "itunes:author"):
            _once(seen, "author")
            entry["author"] = _author(reader, child)
        elif name in _ENTRY_CONTAINERS:
            _container(reader, child, _ENTRY_CONTAINERS[name])
        elif name == _NESTED_CATEGORY:
            _categories(reader, child)
        elif name in _INERT_ENTRY or name.startswith(_INERT_PREFIXES):
            _inert(child)
        else:
            raise _Refused(f"<{name}> in an entry")
    return entry


def _once(seen: set[str], key: str) -> None:
    if key in seen:
        raise _Refused(f"two {key}s in an entry")
    seen.add(key)


def _inert(elem: ET.Element) -> None:
    if len(elem):
        raise _Refused(f"child elements in {elem.tag!r}")
    _attrs(elem, None)


def _container(reader: _Reader, elem: ET.Element, children: frozenset[str]) -> None:
    _attrs(elem, None)
    for child in elem:
        name = reader.names(child.tag)
        if name not in children:
            raise _Refused(f"<{name}> in {elem.tag!r}")
        _inert(child)


def _categories(reader: _Reader, elem: ET.Element) -> None:
    _attrs(elem, None)
    for child in elem:
        if reader.names(child.tag) != _NESTED_CATEGORY:
            raise _Refused(f"{child.tag!r} in a category")
        _categories(reader, child)


def _link(reader: _Reader, elem: ET.Element, context: dict[str, Any], *, in_entry: bool) -> None:
    """feedparser's ``_start_link``/``pop('link')``: an Atom-style link (href attribute)
    or an RSS link (text)."""
    attrs = _attrs(elem, _LINK_ATTRS)
    rel = attrs.get("rel", "alternate")
    media_type = attrs.get("type", "application/atom+xml" if rel == "self" else "text/html")
    links: list[dict[str, str]] = context.setdefault("links", [])
    if "href" in attrs:
        _leaf_text(elem)
        href = _urljoin(reader.base, attrs["href"])
        links.append({"rel": rel, "href": href})
        if rel == "alternate" and _map_type(media_type) in _HTML_TYPES:
            context["link"] = href
        return
    value = _leaf_text(elem).strip()
    if value:
        value = _urljoin(reader.base, value)
    value = reader.fixed(value)
    if in_entry:
        value = value.replace("&amp;", "&")
    value = _FAKE_ENTITY.sub(r"&\g<1>", value)
    context["link"] = value
    links.append({"rel": rel, "href": value} if value else {"rel": rel})


_FAKE_ENTITY = re.compile("&([A-Za-z0-9_]+);")


def _guid(reader: _Reader, elem: ET.Element, context: dict[str, Any]) -> None:
    """feedparser's guid/id: a permalink guid is joined to the base and stands in for a
    link the context does not have."""
    attrs = _attrs(elem, _GUID_ATTRS)
    is_link = attrs.get("ispermalink", "true") == "true"
    value = _leaf_text(elem).strip()
    if value and is_link:
        value = _urljoin(reader.base, value)
    value = reader.fixed(value)
    context["id"] = value
    if is_link:
        context.setdefault("link", value)


def _author(reader: _Reader, elem: ET.Element) -> str:
    """feedparser's author string: "name (email)", the name or the email of an Atom
    person, else the element's own text (as an RSS author or dc:creator is)."""
    _attrs(elem, _PLAIN_ATTRS)
    if not len(elem):
        return reader.fixed((elem.text or "").strip())
    parts: dict[str, str] = {}
    own: list[str] = [elem.text or ""]
    for child in elem:
        name = reader.names(child.tag)
        if name not in ("name", "email", "uri") or name in parts:
            raise _Refused(f"<{name}> in an author")
        _attrs(child, _PLAIN_ATTRS)
        parts[name] = _leaf_text(child).strip()
        own.append(child.tail or "")
    person, email = parts.get("name"), parts.get("email")
    if person and email:
        return f"{person} ({email})"
    if person or email:
        return person or email or ""
    return reader.fixed("".join(own).strip())
