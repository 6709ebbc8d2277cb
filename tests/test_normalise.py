"""normalise: plain text from HTML, header-safe text, canonical URLs, item identity."""

from __future__ import annotations

import time

import pytest

from monitor.normalise import (
    TRACKING_PARAMS,
    canonical_url,
    clean_header,
    collapse_ws,
    html_to_text,
    http_url_or_none,
    identity_basis,
    item_identity,
    tidy_text,
)

# --- html_to_text -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("markup", "text"),
    [
        ("", ""),
        ("plain words", "plain words"),
        ("  plain\n\n\n  lines  \n", "plain\nlines"),
        ("<p>Hello <b>world</b></p>", "Hello world"),
        ("<p>one</p><p>two</p>", "one\ntwo"),
        ("a<br>b<br/>c<BR />d", "a\nb\nc\nd"),
        ("<ul><li>x</li><li>y</li></ul>", "x\ny"),
        ("<h1>Title</h1>body", "Title\nbody"),
        ("<blockquote>q</blockquote>after", "q\nafter"),
        ("<table><tr><td>a</td><td>b</td></tr><tr><th>c</th></tr></table>", "a b\nc"),
        ("<div>\n  spread\n  over\n  lines\n</div>", "spread over lines"),
        ("AT&amp;T &lt;tag&gt; &quot;q&quot; &#233;&#x e9;", 'AT&T <tag> "q" é&#x e9;'),
        ("non&nbsp;breaking&nbsp;&nbsp;space", "non breaking space"),
        ("&mdash; &hellip; &#8220;x&#8221;", "— … “x”"),
        ("&lt;script&gt;alert(1)&lt;/script&gt;", "<script>alert(1)</script>"),
        ("a<script>var x = '<p>';</script>b", "ab"),
        ("a<SCRIPT type='text/javascript'>x()</SCRIPT >b", "ab"),
        ("a<style>p { color: red }</style>b", "ab"),
        ("a<script>never closed", "a"),
        ("a<!-- hidden <p>x</p> -->b", "ab"),
        ("a<![CDATA[hidden]]>b", "ab"),
        ('<img src="x.png" alt="a > b">caption', "caption"),
        ("<a href='/x' title=\"it's\">link</a>", "link"),
        ("1 < 2 and 3 > 2", "1 < 2 and 3 > 2"),
        ("x <= y", "x <= y"),
        ("<!DOCTYPE html><?xml version='1.0'?><html><body>doc</body></html>", "doc"),
        ("<custom-element>inner</custom-element>", "inner"),
        ("nul\x00byte", "nul byte"),
        ("<b>nul\x00byte\x07</b>\x1b\x9f\x85x", "nul byte x"),
        ("&#1;&#x7f;&#0;&#x80;&#x81;ok", "\ufffd€ ok"),
        ("Кириллица&nbsp;<b>текст</b>", "Кириллица текст"),
        # each line on its own: trimmed only, or collapsed when it needs it
        ("<p> a\u00a0</p><p>b\tc</p><p>d  e</p>", "a\nb c\nd e"),
        ("<p>x\u2028y</p>\u3000<p>\u00a0</p>", "x y"),
        ("<p>ok</p><p>ctl\x07here</p>", "ok\nctl here"),
        (" <br>\u00a0lead and trail\u00a0<br> ", "lead and trail"),
    ],
)
def test_html_to_text(markup: str, text: str) -> None:
    assert html_to_text(markup) == text


@pytest.mark.parametrize(
    "markup",
    [
        "<a " * 33_000,
        '<a "' * 25_000,
        '<a "<a" ' * 12_000,
        "<script" * 14_000,
        "<style " * 14_000,
        "<!--" * 25_000,
        '<a href="' + "x" * 100_000,
    ],
    ids=["tags", "quotes", "quoted-tags", "script", "style", "comments", "long-attr"],
)
def test_html_to_text_stray_angle_brackets_are_linear(markup: str) -> None:
    # ~100 KB of unclosed tags: linear scanning takes milliseconds, quadratic seconds.
    start = time.process_time()
    html_to_text(markup)
    assert time.process_time() - start < 1.0


def test_tidy_text() -> None:
    assert tidy_text(" a \t b \n\n c\r\n") == "a b\nc"


# --- collapse_ws / clean_header -----------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Subject\r\nBcc: victim@example.org",
        "Subject\nBcc: victim@example.org",
        "Subject\rBcc: victim@example.org",
        "Subject\x85Bcc: victim@example.org",
        "Subject\u2028Bcc: victim@example.org",
        "Subject\u2029Bcc: victim@example.org",
        "Subject\x00\x0b\x0cBcc: victim@example.org",
        "  Subject \t\r\n\r\n Bcc: victim@example.org \r\n",
    ],
)
def test_clean_header_defeats_header_injection(text: str) -> None:
    cleaned = clean_header(text)
    assert cleaned == "Subject Bcc: victim@example.org"
    assert cleaned.splitlines() == [cleaned]


def test_collapse_ws_removes_every_control_character() -> None:
    controls = "".join(map(chr, [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]))
    assert collapse_ws(f"a{controls}b") == "a b"


def test_collapse_ws_keeps_text() -> None:
    assert collapse_ws("Новости — «Восток» 東京") == "Новости — «Восток» 東京"


@pytest.mark.parametrize(
    ("text", "max_len", "expected"),
    [
        ("short", 10, "short"),
        ("exactly10!", 10, "exactly10!"),
        ("a long subject line", 10, "a long su…"),
        ("word word word", 6, "word…"),
        ("abc", 1, "a"),
        ("abc", None, "abc"),
    ],
)
def test_clean_header_max_len(text: str, max_len: int | None, expected: str) -> None:
    assert clean_header(text, max_len) == expected
    if max_len is not None:
        assert len(clean_header(text, max_len)) <= max_len


# --- canonical_url ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("https://example.org/a", "https://example.org/a"),
        ("HTTPS://Example.ORG/Path/Case", "https://example.org/Path/Case"),
        ("http://example.org:80/a", "http://example.org/a"),
        ("https://example.org:443/a", "https://example.org/a"),
        ("https://example.org:8443/a", "https://example.org:8443/a"),
        ("http://example.org:443/a", "http://example.org:443/a"),
        ("https://example.org", "https://example.org/"),
        ("https://example.org/a#section-2", "https://example.org/a"),
        ("https://example.org/a?", "https://example.org/a"),
        ("https://example.org/a?utm_source=rss&utm_medium=feed", "https://example.org/a"),
        ("https://example.org/a?UTM_Source=x&id=1", "https://example.org/a?id=1"),
        ("https://example.org/a?b=2&fbclid=x&a=1&gclid=y", "https://example.org/a?b=2&a=1"),
        (
            "https://example.org/a?mc_cid=1&mc_eid=2&yclid=3&_hsenc=4&_hsmi=5",
            "https://example.org/a",
        ),
        ("https://example.org/a?igshid=1&ref_src=twsrc&q=x%20y", "https://example.org/a?q=x%20y"),
        ("https://example.org/a?ref=home&&id=1", "https://example.org/a?ref=home&id=1"),
        ("https://user:pw@Example.org:443/a", "https://user:pw@example.org/a"),
        ("http://[2001:DB8::1]:80/a", "http://[2001:db8::1]/a"),
        ("  https://example.org/a \n", "https://example.org/a"),
    ],
)
def test_canonical_url(url: str, canonical: str) -> None:
    assert canonical_url(url) == canonical


@pytest.mark.parametrize(
    "url",
    [
        "",
        "not a url",
        "/relative/path?utm_source=x",
        "mailto:someone@example.org",
        "tag:example.org,2024:post#1",
        "urn:uuid:60a76c80-d399-11d9-b93c-0003939e0af6",
        "https://example.org:notaport/a",
        "https://example.org:99999/a",
        "http://[::1/a",
        "https:///nohost",
        "javascript:alert(1)",
    ],
)
def test_canonical_url_leaves_what_it_cannot_handle(url: str) -> None:
    assert canonical_url(url) == url.strip()


def test_tracking_params_are_lower_case() -> None:
    assert all(p == p.lower() for p in TRACKING_PARAMS)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://example.org/a", "https://example.org/a"),
        (" http://example.org/a ", "http://example.org/a"),
        ("HTTPS://example.org/", "HTTPS://example.org/"),
        ("javascript:alert(1)", None),
        ("data:text/html,<b>x</b>", None),
        ("ftp://example.org/f", None),
        ("/relative", None),
        ("https://", None),
        ("http://[::1", None),
        ("", None),
        (None, None),
    ],
)
def test_http_url_or_none(url: str | None, expected: str | None) -> None:
    assert http_url_or_none(url) == expected


# --- item identity ------------------------------------------------------------------

FEED_A = "https://a.example/feed.xml"
FEED_B = "https://b.example/rss"


def _identity(guid: str | None, feed: str, link: str | None = None, text: str = "") -> str:
    return item_identity(guid=guid, link=link, title="Title", text=text, feed_url=feed)


@pytest.mark.parametrize(
    "guid",
    [
        "https://news.example.org/2024/story",
        "tag:news.example.org,2024:story-1",
        "urn:uuid:60a76c80-d399-11d9-b93c-0003939e0af6",
        "TAG:news.example.org,2024:x",
    ],
)
def test_global_guid_is_the_same_across_feeds(guid: str) -> None:
    assert _identity(guid, FEED_A) == _identity(guid, FEED_B)


@pytest.mark.parametrize("guid", ["1", "post-42", "urn", "tag:", "news.example.org/2024/story"])
def test_local_guid_is_scoped_by_feed(guid: str) -> None:
    assert _identity(guid, FEED_A) != _identity(guid, FEED_B)
    assert _identity(guid, FEED_A) == _identity(guid, FEED_A)


def test_guid_url_variants_collapse() -> None:
    plain = _identity("https://news.example.org/s?id=1", FEED_A)
    assert _identity("https://NEWS.example.org:443/s?utm_source=rss&id=1#top", FEED_B) == plain
    assert _identity("  https://news.example.org/s?id=1&fbclid=x ", FEED_A) == plain


def test_guid_wins_over_link_and_text() -> None:
    a = _identity("g-1", FEED_A, link="https://x.example/1", text="one")
    b = _identity("g-1", FEED_A, link="https://x.example/2", text="two")
    assert a == b


def test_link_is_used_without_guid_and_canonicalised() -> None:
    a = _identity(None, FEED_A, link="https://x.example/1?utm_campaign=c")
    b = _identity("", FEED_B, link="https://X.example/1#frag")
    assert a == b
    assert a != _identity(None, FEED_A, link="https://x.example/2")


def test_content_hash_without_guid_or_link() -> None:
    a = _identity(None, FEED_A, text="body")
    assert a == _identity("  ", FEED_A, link=" ", text="body")
    assert a != _identity(None, FEED_A, text="other body")
    assert a != _identity(None, FEED_B, text="body")


def test_identity_is_a_stable_sha256_of_the_basis() -> None:
    kwargs = {"guid": "1", "link": None, "title": "T", "text": "x", "feed_url": FEED_A}
    assert identity_basis(**kwargs) == "guid:https://a.example/feed.xml 1"
    # A fixed value: identities are stored, so they must never change between versions.
    assert item_identity(**kwargs) == (
        "2881d0eeba87ceced582e75f7ddfcaabf8f1cc12691a704b38f038fec2ae0a02"
    )
    basis = identity_basis(guid=None, link=None, title="T", text="x", feed_url=FEED_A)
    assert basis.startswith("text:https://a.example/feed.xml ")
