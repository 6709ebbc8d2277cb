"""The fast path of parse() against feedparser: same ParsedFeed, field by field.

Every golden body in tests/feeds and a few hundred generated feeds (RSS 2.0/0.9x and Atom
1.0 with deliberately awkward content: entities, CDATA, markup in titles, relative links
and xml:base, several Atom links, enclosures, categories, missing fields, odd whitespace,
Unicode and mojibake, description and content:encoded in either order, dates in many
spellings, charsets from the header or the declaration, extension namespaces) are parsed
by ``parse`` (fast path where it accepts the body) and by ``parse_with_feedparser``, and
the results must be equal, warnings included.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import pytest
from feedparser.datetimes import _parse_date

from monitor import parse_fast
from monitor.models import ParsedFeed
from monitor.parse import _QUIRKS, _content_type, parse, parse_with_feedparser

FEEDS = Path(__file__).parent / "feeds"


def _both(body: bytes, headers: dict[str, str], url: str) -> tuple[ParsedFeed, ParsedFeed, bool]:
    fast = parse(body, headers, url=url)
    slow = parse_with_feedparser(body, headers, url=url)
    took_fast = parse_fast.read(body, _content_type(headers)[1], _QUIRKS) is not None
    return fast, slow, took_fast


def _assert_same(fast: ParsedFeed, slow: ParsedFeed) -> None:
    assert (fast.format, fast.title, fast.site_url, fast.ttl) == (
        slow.format,
        slow.title,
        slow.site_url,
        slow.ttl,
    )
    assert fast.warnings == slow.warnings
    assert len(fast.items) == len(slow.items)
    for got, want in zip(fast.items, slow.items, strict=True):
        assert got == want
    assert fast == slow


# --- golden bodies ------------------------------------------------------------------


def _golden() -> list[tuple[str, bytes, dict[str, str], str]]:
    cases = []
    for expected in sorted(FEEDS.glob("*.expected.json")):
        name = expected.name.removesuffix(".expected.json")
        [body] = [p for p in FEEDS.glob(f"{name}.*") if p != expected]
        meta = json.loads(expected.read_text(encoding="utf-8"))
        cases.append((name, body.read_bytes(), meta.get("headers", {}), meta["url"]))
    return cases


GOLDEN = _golden()
# Golden bodies the fast path takes; the others are refused on purpose (xhtml content,
# a DOCTYPE, RDF, broken XML, JSON, HTML, empty).
GOLDEN_FAST = {"cp1251", "noguid", "rss20"}


@pytest.mark.parametrize(("name", "body", "headers", "url"), GOLDEN, ids=[c[0] for c in GOLDEN])
def test_golden_bodies_match_feedparser(
    name: str, body: bytes, headers: dict[str, str], url: str
) -> None:
    fast, slow, took_fast = _both(body, headers, url)
    _assert_same(fast, slow)
    assert took_fast == (name in GOLDEN_FAST)


# --- generated feeds ----------------------------------------------------------------

WORDS = (
    "Astana Tashkent corridor summit minister rail port grain café naïve Ёж 北京 — “quoted”".split()
)

TITLES = [
    "Plain title {w}",
    "  Spaced\n\t title   {w}  ",
    "AT&amp;T &amp; {w}",
    "&lt;b&gt;Bold&lt;/b&gt; {w}",
    "1 &lt; 2 and {w}",
    "<![CDATA[Rail <em>doubles</em> on {w}]]>",
    "<![CDATA[x < y > z {w}]]>",
    "Caf\u00c3\u00a9 mojibake {w}",
    "C1 &#x93;quoted&#x94; {w}",
    "&#160;nbsp edges {w}&#160;",
    "Entity &amp;mdash; {w}",
    "&lt;p&gt;para&lt;/p&gt; {w}",
    "&lt;unknowntag&gt;x&lt;/unknowntag&gt; {w}",
    "&amp;bogus; {w}",
    "",
    "Nested <b>markup</b> {w}",  # child element: the fast path refuses it
]

SUMMARIES = [
    "<p>Para one {w}.</p><p>Para two &amp; more&nbsp;text</p>",
    "Plain text {w} with  spaces\n\nand lines",
    "<div>{w}<br/>next<script>var x='<p>';</script></div>",
    "&lt;p&gt;escaped {w}&lt;/p&gt;",
    "",
    "<a href='/rel'>link</a> {w} <img src='x.png'>",
    "Ünïcödé {w} \u00e2\u0080\u0099 mojibake",
]

RFC_DATES = [
    "Tue, 05 Mar 2024 09:30:00 +0300",
    "Wed, 06 Mar 2024 12:00:00 GMT",
    "6 Mar 2024 12:00:00 UT",
    "Thu, 07 Mar 2024 12:00 -0500",
    "Fri, 8 Mar 2024 23:59:59 +05:30",
    "Sat, 09 Mar 24 12:00:00 GMT",
    "Sun, 10 Mar 2024 12:00:00 EST",
    "Mon, 11 March 2024 12:00:00 Z",
    "Tue, 30 Feb 2024 12:00:00 GMT",
    "Tue, 05 Mar 2024 25:00:00 GMT",
    "2024-03-05T09:30:00Z",
    "2024-03-05",
    "not a date",
    "",
    "Tue, 05 Mar 2024 09:30:00 UTC",
    "tuesday, 05 mar 2024 09:30:00 +0000",
    "Tue, 05 Mar 2024 09:30:00 +0300 (MSK)",
    "Tue Mar  5 09:30:00 2024",
    "Mon, 01 Jan 0001 00:00:00 +0100",
]

ISO_DATES = [
    "2024-05-01T12:00:00+02:00",
    "2024-05-01T10:00:00Z",
    "2024-05-01T10:00:00.123456Z",
    "2024-05-01t10:00:00z",
    "2024-05-01T10:00:00-05:30",
    "2024-05-01T10:00:00+0530",
    "2024-05-01",
    "2024-05-01 10:00:00",
    "2024-13-01T10:00:00Z",
    "2024-05-01T10:00:60Z",
    "Tue, 05 Mar 2024 09:30:00 +0300",
    "0001-01-01T00:00:00+01:00",
    "",
]

LINKS = [
    "https://news.example.org/story/{n}",
    "https://News.Example.org:443/story/{n}?utm_source=rss&amp;id={n}#frag",
    "/relative/{n}",
    "relative-{n}.html",
    "  https://news.example.org/ws/{n}  ",
    "https://news.example.org/q?a=1&amp;b;=2&amp;n={n}",
    "https:///triple.example.org/{n}",
    "javascript:alert({n})",
    "http://[::1/broken",
    "https://news.example.org/caf\u00e9/{n}",
    "",
]

GUIDS = [
    ("{n}", None),
    ("post-{n}", "false"),
    ("https://news.example.org/p/{n}", None),
    ("https://news.example.org/p/{n}", "true"),
    ("tag:news.example.org,2024:{n}", "false"),
    ("relative/{n}", None),
    ("urn:uuid:{n}", None),
    ("  padded-{n}  ", "false"),
    ("", None),
]

AUTHORS = [
    "jdoe@example.com (John Doe)",
    "Aida Karimova",
    "  spaced  author ",
    "",
]


def _pick(rng: random.Random, options: list[str], n: int) -> str:
    return rng.choice(options).replace("{w}", rng.choice(WORDS)).replace("{n}", str(n))


def _maybe(rng: random.Random, p: float = 0.5) -> bool:
    return rng.random() < p


def _cdata_or_escaped(rng: random.Random, html: str) -> str:
    if html and "]]>" not in html and _maybe(rng):
        return f"<![CDATA[{html}]]>"
    return escape(html)


def rss_feed(seed: int) -> tuple[bytes, dict[str, str]]:
    rng = random.Random(seed)
    version = rng.choice(["2.0", "2.0", "2.0", "0.91", "0.92", "0.94", "2.01", ""])
    namespaces = {
        "content": "http://purl.org/rss/1.0/modules/content/",
        "dc": "http://purl.org/dc/elements/1.1/",
        "atom": "http://www.w3.org/2005/Atom",
        "media": "http://search.yahoo.com/mrss/",
        "slash": "http://purl.org/rss/1.0/modules/slash/",
        "itunes": "http://www.itunes.com/DTDs/PodCast-1.0.dtd",
    }
    unknown = _maybe(rng, 0.05)
    if unknown:
        namespaces["x"] = "http://unknown.example/ns"
    decls = "".join(f" xmlns:{p}={quoteattr(u)}" for p, u in namespaces.items())
    base = ""
    if _maybe(rng, 0.15):
        base = f" xml:base={quoteattr(rng.choice(['https://base.example.net/dir/', 'https://base.example.net', '/rel/']))}"
    version_attr = f' version="{version}"' if version else ""
    parts = [f"<rss{version_attr}{decls}{base}><channel>"]
    channel: list[str] = []
    if _maybe(rng, 0.9):
        channel.append(f"<title>{_pick(rng, TITLES[:-1], seed)}</title>")
    if _maybe(rng, 0.9):
        channel.append(f"<link>{_pick(rng, LINKS, seed)}</link>")
    if _maybe(rng, 0.5):
        channel.append(
            '<atom:link rel="self" type="application/rss+xml" href="https://f.example/rss"/>'
        )
    if _maybe(rng, 0.1):
        channel.append('<atom:link rel="alternate" href="/alt-site/"/>')
    if _maybe(rng, 0.4):
        channel.append(f"<ttl>{rng.choice(['15', ' 60 ', 'soon', '', '-1'])}</ttl>")
    if _maybe(rng, 0.5):
        channel.append("<description>About &amp; more</description><language>en</language>")
    if _maybe(rng, 0.2):
        channel.append(
            "<image><url>https://f.example/i.png</url><title>Img</title><link>https://img.example/</link></image>"
        )
    if _maybe(rng, 0.1):
        channel.append("<itunes:owner><itunes:name>O</itunes:name></itunes:owner>")
    if unknown:
        channel.append("<x:custom>unknown namespace</x:custom>")
    if _maybe(rng, 0.05):
        channel.append("<title>Second title</title>")
    rng.shuffle(channel)
    parts.extend(channel)
    for n in range(rng.randint(0, 8)):
        parts.append(_rss_item(rng, seed * 100 + n))
    parts.append("</channel></rss>")
    return _encode(rng, "".join(parts))


def _rss_item(rng: random.Random, n: int) -> str:
    fields: list[str] = []
    if _maybe(rng, 0.9):
        fields.append(f"<title>{_pick(rng, TITLES, n)}</title>")
    if _maybe(rng, 0.8):
        fields.append(f"<link>{_pick(rng, LINKS, n)}</link>")
    if _maybe(rng, 0.7):
        value, permalink = rng.choice(GUIDS)
        attr = f' isPermaLink="{permalink}"' if permalink else ""
        fields.append(f"<guid{attr}>{value.replace('{n}', str(n))}</guid>")
    summary = _pick(rng, SUMMARIES, n)
    kind = rng.random()
    if kind < 0.5:
        fields.append(f"<description>{_cdata_or_escaped(rng, summary)}</description>")
    elif kind < 0.7:
        fields.append(f"<content:encoded>{_cdata_or_escaped(rng, summary)}</content:encoded>")
    elif kind < 0.9:
        other = summary if _maybe(rng) else _pick(rng, SUMMARIES, n)
        pair = [
            f"<description>{_cdata_or_escaped(rng, summary)}</description>",
            f"<content:encoded>{_cdata_or_escaped(rng, other)}</content:encoded>",
        ]
        rng.shuffle(pair)
        fields.extend(pair)
    if _maybe(rng, 0.8):
        fields.append(f"<pubDate>{escape(rng.choice(RFC_DATES))}</pubDate>")
    if _maybe(rng, 0.15):
        fields.append(f"<dc:date>{escape(rng.choice(ISO_DATES))}</dc:date>")
    if _maybe(rng, 0.3):
        tag = rng.choice(["author", "dc:creator"])
        fields.append(f"<{tag}>{escape(rng.choice(AUTHORS))}</{tag}>")
    if _maybe(rng, 0.3):
        fields.append('<enclosure url="https://cdn.example/a.mp3" length="1" type="audio/mpeg"/>')
    if _maybe(rng, 0.4):
        fields.append("<category>Politics</category><category domain='x'>Trade</category>")
    if _maybe(rng, 0.2):
        fields.append(
            "<comments>https://news.example.org/c</comments><slash:comments>3</slash:comments>"
        )
    if _maybe(rng, 0.1):
        fields.append('<source url="https://src.example/rss">Source Feed</source>')
    if _maybe(rng, 0.15):
        fields.append('<media:thumbnail url="https://cdn.example/t.jpg"/>')
    if _maybe(rng, 0.02):
        fields.append(
            '<media:content url="https://cdn.example/v.mp4"><media:title>T</media:title></media:content>'
        )
    if _maybe(rng, 0.1):
        fields.append('<media:content url="https://cdn.example/v.mp4" medium="video"/>')
    if _maybe(rng, 0.05):
        fields.append("<itunes:duration>12:00</itunes:duration><itunes:author>Pod</itunes:author>")
    if _maybe(rng, 0.03):
        fields.append("<description>Second description</description>")
    rng.shuffle(fields)
    return f"<item>{''.join(fields)}</item>"


def atom_feed(seed: int) -> tuple[bytes, dict[str, str]]:
    rng = random.Random(seed)
    base = ""
    if _maybe(rng, 0.4):
        base = f" xml:base={quoteattr(rng.choice(['https://blog.example.com/posts/', 'http://b.example/a/b', 'relative/']))}"
    threading = _maybe(rng, 0.1)  # a namespace feedparser does not know: refused
    extra = ' xmlns:media="http://search.yahoo.com/mrss/"'
    if threading:
        extra += ' xmlns:thr="http://purl.org/syndication/thread/1.0"'
    parts = [f'<feed xmlns="http://www.w3.org/2005/Atom"{extra}{base}>']
    head: list[str] = []
    if _maybe(rng, 0.9):
        kind = rng.choice(["", ' type="text"', ' type="html"'])
        head.append(f"<title{kind}>{_pick(rng, TITLES[:-1], seed)}</title>")
    if _maybe(rng, 0.8):
        head.append(
            f'<link rel="alternate" href={quoteattr(_pick(rng, LINKS, seed).replace("&amp;", "&"))}/>'
        )
    if _maybe(rng, 0.5):
        head.append('<link rel="self" href="https://blog.example.com/atom.xml"/>')
    head.append(f"<id>{rng.choice(['urn:uuid:feed', 'https://blog.example.com/', 'feed-id'])}</id>")
    head.append("<updated>2024-05-02T10:00:00Z</updated>")
    if _maybe(rng, 0.4):
        head.append("<author><name>Feed Author</name></author><subtitle>Sub</subtitle>")
    rng.shuffle(head)
    parts.extend(head)
    for n in range(rng.randint(0, 8)):
        parts.append(_atom_entry(rng, seed * 100 + n, threading))
    parts.append("</feed>")
    return _encode(rng, "".join(parts))


def _atom_entry(rng: random.Random, n: int, threading: bool) -> str:
    fields: list[str] = []
    if _maybe(rng, 0.9):
        kind = rng.choice(["", ' type="text"', ' type="html"', ' type="HTML"'])
        fields.append(f"<title{kind}>{_pick(rng, TITLES, n)}</title>")
    for _ in range(rng.choice([0, 1, 1, 2, 3])):
        rel = rng.choice(
            [
                "",
                ' rel="alternate"',
                ' rel="self"',
                ' rel="enclosure"',
                ' rel="related"',
                ' rel="Alternate"',
            ]
        )
        kind = rng.choice(["", "", ' type="text/html"', ' type="application/pdf"', ' type="html"'])
        href = _pick(rng, LINKS, n).replace("&amp;", "&")
        fields.append(f"<link{rel}{kind} href={quoteattr(href)}/>")
    if _maybe(rng, 0.05):
        fields.append(f"<link>{_pick(rng, LINKS, n)}</link>")
    if _maybe(rng, 0.9):
        value = rng.choice(
            [
                "tag:blog.example.com,2024:{n}",
                "https://blog.example.com/e/{n}",
                "entry-{n}",
                "/rel-id/{n}",
            ]
        )
        fields.append(f"<id>{value.replace('{n}', str(n))}</id>")
    if _maybe(rng, 0.7):
        fields.append(f"<published>{escape(rng.choice(ISO_DATES))}</published>")
    if _maybe(rng, 0.7):
        fields.append(f"<updated>{escape(rng.choice(ISO_DATES))}</updated>")
    if _maybe(rng, 0.5):
        person = rng.choice(
            [
                "<name>Lev Example</name>",
                "<name>Lev</name><email>lev@example.com</email>",
                "<email>only@example.com</email>",
                "<uri>https://lev.example</uri>",
                "<name> </name>",
                "plain text author",
            ]
        )
        fields.append(f"<author>{person}</author>")
    summary = _pick(rng, SUMMARIES, n)
    kind = rng.random()
    if kind < 0.3:
        fields.append(f"<summary>{escape(summary)}</summary>")
    elif kind < 0.5:
        fields.append(f'<summary type="html">{_cdata_or_escaped(rng, summary)}</summary>')
    if _maybe(rng, 0.5):
        ctype = rng.choice(["html", "html", "text", "xhtml", "text/html", "image/png"])
        if ctype == "xhtml":
            fields.append(
                '<content type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml"><p>x</p></div></content>'
            )
        else:
            value = summary if _maybe(rng, 0.3) else _pick(rng, SUMMARIES, n)
            fields.append(f'<content type="{ctype}">{_cdata_or_escaped(rng, value)}</content>')
    if _maybe(rng, 0.3):
        fields.append('<category term="politics" label="Politics"/>')
    if _maybe(rng, 0.1):
        fields.append('<media:thumbnail url="https://cdn.example/t.jpg"/>')
    if threading and _maybe(rng, 0.5):
        fields.append("<thr:total>3</thr:total>")
    rng.shuffle(fields)
    return f"<entry>{''.join(fields)}</entry>"


def _encode(rng: random.Random, xml: str) -> tuple[bytes, dict[str, str]]:
    """The document in one of the ways servers send it, with its Content-Type header."""
    choice = rng.random()
    if choice < 0.45:
        return f'<?xml version="1.0" encoding="utf-8"?>\n{xml}'.encode(), {
            "content-type": "application/rss+xml"
        }
    if choice < 0.55:
        return xml.encode(), {}
    if choice < 0.6:
        return b"\xef\xbb\xbf" + f'<?xml version="1.0"?>{xml}'.encode(), {}
    if choice < 0.7:
        body = f'<?xml version="1.0" encoding="windows-1251"?>{xml}'.encode(
            "cp1251", "xmlcharrefreplace"
        )
        return body, {"content-type": "text/xml"}
    if choice < 0.78:
        body = f'<?xml version="1.0" encoding="utf-8"?>{xml}'.encode("koi8-r", "xmlcharrefreplace")
        return body, {"content-type": "text/xml; charset=KOI8-R"}
    if choice < 0.84:
        body = f'<?xml version="1.0" encoding="iso-8859-1"?>{xml}'.encode()
        return body, {"content-type": "application/xml; charset=utf-8"}
    if choice < 0.88:
        return f'<?xml version="1.0" encoding="utf-8"?>{xml}'.encode(), {
            "content-type": "text/xml; charset=us-ascii"
        }
    if choice < 0.92:
        doctype = '<!DOCTYPE rss [<!ENTITY e "entity">]>'
        return f'<?xml version="1.0"?>{doctype}{xml}'.encode(), {}
    if choice < 0.96:
        return f"<?xml version='1.0' encoding='latin-1'?>\n{xml}".encode(
            "latin-1", "xmlcharrefreplace"
        ), {}
    return f"{xml}&nbsp;".encode(), {}  # not well-formed


GENERATED = 400
CHUNK = 40


@pytest.mark.parametrize("start", range(0, GENERATED, CHUNK))
def test_generated_feeds_match_feedparser(start: int) -> None:
    fast_count = 0
    for seed in range(start, start + CHUNK):
        make = rss_feed if seed % 3 else atom_feed
        body, headers = make(seed)
        url = f"https://feeds.example.test/{seed}.xml"
        fast, slow, took_fast = _both(body, headers, url)
        try:
            _assert_same(fast, slow)
        except AssertionError:
            print(body.decode("utf-8", "replace"), headers)
            raise
        fast_count += took_fast
    # The comparison is only worth something if the fast path takes most bodies.
    assert fast_count >= CHUNK // 3


def test_share_of_generated_feeds_on_the_fast_path() -> None:
    taken = 0
    for seed in range(GENERATED):
        body, headers = (rss_feed if seed % 3 else atom_feed)(seed)
        taken += parse_fast.read(body, _content_type(headers)[1], _QUIRKS) is not None
    assert taken / GENERATED > 0.4


# --- hand-made edge cases -----------------------------------------------------------

ITEM = (
    '<rss version="2.0"><channel><title>T</title><link>https://e.example/</link>{}</channel></rss>'
)
ATOM = '<feed xmlns="http://www.w3.org/2005/Atom"{}><title>A</title><id>urn:a</id>{}</feed>'

EDGE = {
    "mixed-case-tags": ITEM.format(
        "<Item><Title>Up</Title><LINK>https://e.example/1</LINK><PubDate>Tue, 05 Mar 2024 09:30:00 GMT</PubDate></Item>"
    ),
    "comment-and-pi-in-text": ITEM.format(
        "<item><title>a<!-- c -->b<?pi x?>c</title><description>d<!-- -->e</description></item>"
    ),
    "permalink-True-is-not-true": ITEM.format(
        '<item><guid isPermaLink="True">https://e.example/g</guid></item>'
    ),
    "permalink-guid-then-link": ITEM.format(
        "<item><guid>https://e.example/g</guid><link>https://e.example/l</link></item>"
    ),
    "empty-link-then-guid": ITEM.format(
        "<item><link></link><guid>https://e.example/g</guid></item>"
    ),
    "whitespace-title": ITEM.format(
        "<item><title>  \n </title><description> </description></item>"
    ),
    "c1-and-nel": ITEM.format(
        "<item><title>&#x85;x&#x80;&#x9d;</title><description>&#x93;q&#x94;&#xD;</description></item>"
    ),
    "text-in-item": ITEM.format("<item>loose text<title>t</title>more</item>"),
    "escaped-cdata-marker": ITEM.format("<item><title>&lt;![CDATA[x]]&gt;</title></item>"),
    "no-items": ITEM.format(""),
    "ttl-with-attribute": ITEM.format('<ttl xml:lang="en">5</ttl>'),
    "rss-link-with-rel": ITEM.format('<item><link rel="related">https://e.example/r</link></item>'),
    "atom-link-in-rss-item": ITEM.format(
        '<item xmlns:atom="http://www.w3.org/2005/Atom"><atom:link href="https://e.example/a"/><guid>x</guid></item>'
    ),
    "atom-empty-href-with-base": ATOM.format(
        ' xml:base="https://b.example/dir/"', '<entry><link href=""/><id>e</id></entry>'
    ),
    "atom-link-without-rel-type": ATOM.format(
        "",
        '<entry><link rel="enclosure" href="https://e.example/x.mp3"/><link href="https://e.example/a" type="application/xhtml+xml"/></entry>',
    ),
    "atom-alternate-not-html": ATOM.format(
        "",
        '<entry><id>https://e.example/id</id><link rel="alternate" type="application/pdf" href="https://e.example/p.pdf"/></entry>',
    ),
    "atom-person-with-text": ATOM.format(
        "", "<entry><author>text <name>N</name> more<email>e@example.com</email></author></entry>"
    ),
    "atom-content-then-summary": ATOM.format(
        "", '<entry><content type="html">&lt;p&gt;c&lt;/p&gt;</content><summary>s</summary></entry>'
    ),
    "atom-summary-equals-content": ATOM.format(
        "",
        '<entry><summary type="html">&lt;b&gt;x&lt;/b&gt;</summary><content type="html">&lt;b&gt;x&lt;/b&gt;</content></entry>',
    ),
    "atom-text-title-looks-like-html": ATOM.format(
        "", "<entry><title>&lt;b&gt;x&lt;/b&gt;</title></entry>"
    ),
    "atom-feed-id-is-site": ATOM.format("", "").replace("urn:a", "https://site.example/"),
    "rss-two-dates": ITEM.format(
        "<item><pubDate>Tue, 05 Mar 2024 09:30:00 GMT</pubDate><pubDate>junk</pubDate></item>"
    ),
    "rss-date-and-dc-date": ITEM.format(
        '<item xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:date>2024-01-01T00:00:00Z</dc:date></item>'
    ),
    "non-ascii-link": ITEM.format("<item><link>https://e.example/caf\u00c3\u00a9</link></item>"),
    "enclosure-only": ITEM.format(
        '<item><enclosure url="https://e.example/a.mp3" type="audio/mpeg" length="1"/><guid isPermaLink="false">1</guid></item>'
    ),
}


@pytest.mark.parametrize("doc", list(EDGE.values()), ids=list(EDGE))
def test_edge_documents_match_feedparser(doc: str) -> None:
    body = doc.encode()
    fast, slow, _ = _both(body, {}, "https://feeds.example.test/edge.xml")
    _assert_same(fast, slow)


# --- refusals -----------------------------------------------------------------------

RSS = '<rss version="2.0"><channel><title>T</title><item><title>{}</title></item></channel></rss>'


@pytest.mark.parametrize(
    "body",
    [
        b'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>'
        + RSS.format("&c;").encode(),
        b'<!DOCTYPE rss SYSTEM "file:///etc/passwd">' + RSS.format("x").encode(),
        b"<!-- c --><!DOCTYPE rss>" + RSS.format("x").encode(),
        RSS.format("&nbsp;").encode(),
        RSS.format("<b>nested</b>").encode(),
        RSS.format("x").replace("<rss", '<rss xmlns:rss1="http://purl.org/rss/1.0/"').encode(),
        RSS.format("x").replace("<item>", '<item xml:base="https://x.example/">').encode(),
        RSS.format("x").replace("<title>T", "<title>T</title><title>U").encode(),
        b"<rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'/>",
        b"<html><body>x</body></html>",
        b'<feed xmlns="http://purl.org/atom/ns#"><title>0.3</title></feed>',
        "\ufeff<rss/>".encode("utf-16"),
    ],
    ids=[
        "entity-expansion",
        "external-dtd",
        "doctype-after-comment",
        "undefined-entity",
        "markup-in-title",
        "rss10-namespace",
        "xml-base-on-item",
        "two-feed-titles",
        "rdf",
        "html",
        "atom03",
        "utf16",
    ],
)
def test_fast_path_refuses(body: bytes) -> None:
    assert parse_fast.read(body, "", _QUIRKS) is None
    fast, slow, _ = _both(body, {}, "https://e.example/feed")
    _assert_same(fast, slow)


@pytest.mark.parametrize(
    ("body", "charset"),
    [
        ('<?xml version="1.0" encoding="utf-8"?>' + RSS.format("Ёж"), "koi8-r"),
        ('<?xml version="1.0" encoding="koi8-r"?>' + RSS.format("Ёж"), ""),
        ('<?xml version="1.0" encoding="gb2312"?>' + RSS.format("北京"), ""),
    ],
)
def test_charset_precedence_matches_feedparser(body: str, charset: str) -> None:
    encoding = charset or body.split('encoding="')[1].split('"')[0]
    raw = body.encode("gb18030" if encoding == "gb2312" else encoding)
    headers = {"content-type": f"text/xml; charset={charset}"} if charset else {}
    assert parse_fast.read(raw, charset, _QUIRKS) is not None
    fast, slow, _ = _both(raw, headers, "https://e.example/feed")
    _assert_same(fast, slow)
    assert fast.items[0].title in ("Ёж", "北京")


# --- dates --------------------------------------------------------------------------


def _random_dates(count: int) -> list[str]:
    rng = random.Random(7)
    start = datetime(1995, 1, 1, tzinfo=UTC)
    out = []
    for _ in range(count):
        when = start + timedelta(seconds=rng.randrange(40 * 365 * 86400))
        out.append(format_datetime(when))
        out.append(format_datetime(when.replace(tzinfo=None), usegmt=False))
        hours = rng.randint(-12, 14)
        minutes = rng.choice([0, 0, 30, 45])
        sign = "+" if hours >= 0 else "-"
        offset = f"{sign}{abs(hours):02d}{minutes:02d}"
        out.append(when.strftime(f"%a, %d %b %Y %H:%M:%S {offset}"))
        out.append(when.strftime(f"%d %b %Y %H:%M {offset}"))
        out.append(when.strftime(f"%Y-%m-%dT%H:%M:%S.%f{sign}{abs(hours):02d}:{minutes:02d}"))
        out.append(when.strftime("%Y-%m-%dT%H:%M:%SZ"))
    return out


def test_fast_dates_match_feedparser() -> None:
    for value in _random_dates(500) + RFC_DATES + ISO_DATES:
        fast = parse_fast._fast_date(value)
        if fast is None:
            continue
        want = _parse_date(value)
        assert want is not None, value
        assert fast == tuple(want[:6]), value


def test_fast_dates_cover_the_common_spellings() -> None:
    values = _random_dates(100)
    assert all(parse_fast._fast_date(v) is not None for v in values)
