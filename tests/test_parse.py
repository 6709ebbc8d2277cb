"""parse(): golden feeds from tests/feeds, plus edge cases.

Each ``tests/feeds/<name>.expected.json`` (written by hand / reviewed) describes what
``parse`` must make of the body ``tests/feeds/<name>.<ext>``: feed-level fields, warnings
(each expected string must occur in the matching warning) and every item, whose identity is
given as its readable basis (see ``normalise.identity_basis``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from monitor.models import Item, ParsedFeed
from monitor.parse import parse

FEEDS = Path(__file__).parent / "feeds"
EXPECTED_SUFFIX = ".expected.json"


def _cases() -> list[tuple[str, Path, Path]]:
    cases = []
    for expected in sorted(FEEDS.glob(f"*{EXPECTED_SUFFIX}")):
        name = expected.name.removesuffix(EXPECTED_SUFFIX)
        bodies = [
            p
            for p in FEEDS.glob(f"{name}.*")
            if p.name != expected.name and p.name.removeprefix(name).count(".") == 1
        ]
        assert len(bodies) == 1, f"{expected.name}: expected one body file, found {bodies}"
        cases.append((name, bodies[0], expected))
    return cases


CASES = _cases()


def _item_dict(item: Item) -> dict[str, Any]:
    return {
        "identity": item.identity,
        "title": item.title,
        "link": item.link,
        "guid": item.guid,
        "summary": item.summary,
        "content": item.content,
        "published": item.published.isoformat() if item.published else None,
        "author": item.author,
    }


def _expected_item(raw: dict[str, Any]) -> dict[str, Any]:
    expected = dict(raw)
    basis = expected.pop("identity_basis")
    expected["identity"] = hashlib.sha256(basis.encode()).hexdigest()
    return expected


def _parse_case(body: Path, expected: dict[str, Any]) -> ParsedFeed:
    return parse(body.read_bytes(), expected.get("headers", {}), url=expected["url"])


def test_golden_cases_found() -> None:
    names = {name for name, _, _ in CASES}
    assert {"rss20", "rss10", "rss091", "atom10", "jsonfeed11", "malformed", "empty"} <= names


@pytest.mark.parametrize(("name", "body", "expected_path"), CASES, ids=[c[0] for c in CASES])
def test_golden(name: str, body: Path, expected_path: Path) -> None:
    expected = json.loads(expected_path.read_text(encoding="utf-8"))
    result = _parse_case(body, expected)

    assert result.format == expected["format"]
    assert result.title == expected["title"]
    assert result.site_url == expected["site_url"]
    assert result.ttl == expected["ttl"]
    assert len(result.warnings) == len(expected["warnings"]), result.warnings
    for got, want in zip(result.warnings, expected["warnings"], strict=True):
        assert want in got
    assert [_item_dict(i) for i in result.items] == [_expected_item(i) for i in expected["items"]]
    for item in result.items:
        assert item.published is None or item.published.utcoffset() is not None


@pytest.mark.parametrize(("name", "body", "expected_path"), CASES, ids=[c[0] for c in CASES])
def test_golden_is_repeatable(name: str, body: Path, expected_path: Path) -> None:
    expected = json.loads(expected_path.read_text(encoding="utf-8"))
    assert _parse_case(body, expected) == _parse_case(body, expected)


@pytest.mark.parametrize(("name", "body", "expected_path"), CASES, ids=[c[0] for c in CASES])
def test_known_items_are_left_out_and_nothing_else_changes(
    name: str, body: Path, expected_path: Path
) -> None:
    """Told the identities of every other item, the parser gives the same feed, warnings
    and other items; the known ones it leaves out, but for those it cannot tell without
    their text (no guid, no link), which it gives as usual."""
    expected = json.loads(expected_path.read_text(encoding="utf-8"))
    plain = _parse_case(body, expected)
    known = frozenset(item.identity for item in plain.items[::2])
    told = parse(body.read_bytes(), expected.get("headers", {}), url=expected["url"], known=known)
    assert (told.format, told.title, told.site_url, told.ttl, told.warnings) == (
        plain.format,
        plain.title,
        plain.site_url,
        plain.ttl,
        plain.warnings,
    )
    assert [i for i in told.items if i.identity not in known] == [
        i for i in plain.items if i.identity not in known
    ]
    still = [i for i in told.items if i.identity in known]
    assert all(i in plain.items for i in still)
    if not plain.format.startswith("json"):
        assert all(not (i.guid or i.link) for i in still)


def test_a_known_item_is_read_whole_when_a_field_of_it_is_over_its_cap() -> None:
    """Left out, an over-long item would no longer count in the cut warning: it is read."""
    body = (
        '<rss version="2.0"><channel><title>T</title>'
        "<item><title>Short</title><guid>g-1</guid><description>Fine.</description></item>"
        f"<item><title>Long</title><guid>g-2</guid><description>{'d ' * 60_000}</description></item>"
        "<item><title>New</title><guid>g-3</guid><description>Fresh.</description></item>"
        "</channel></rss>"
    ).encode()
    plain = parse(body, {}, url="https://e.test/")
    assert "1 item had a field over its size cap; cut" in plain.warnings
    known = frozenset(i.identity for i in plain.items[:2])
    told = parse(body, {}, url="https://e.test/", known=known)
    assert told.warnings == plain.warnings
    assert told.items == plain.items[1:]  # g-1 left out; g-2 read (and cut) as before


# --- edge cases ---------------------------------------------------------------------

RSS = b"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>T</title><link>https://e.example/</link>%s
<item><title>One</title><link>https://e.example/1</link></item>
</channel></rss>"""


def test_body_that_names_a_file_is_not_opened(tmp_path: Path) -> None:
    secret = tmp_path / "secret.xml"
    secret.write_bytes(RSS % b"")
    result = parse(str(secret).encode(), {}, url="https://e.example/feed")
    assert result.items == []
    assert result.warnings and result.warnings[0].startswith("not a feed")


def test_body_that_is_a_url_is_not_fetched() -> None:
    result = parse(b"http://127.0.0.1:9/feed.xml", {}, url="https://e.example/feed")
    assert result.items == []
    assert result.warnings[0].startswith("not a feed")


@pytest.mark.parametrize(
    "body",
    [b"   \n\t", b"\xef\xbb\xbf", b"\x00\x01\x02\xff\xfe\x89PNG", b"plain words", b"<"],
)
def test_non_feeds_give_a_warning_not_an_exception(body: bytes) -> None:
    result = parse(body, {"content-type": "application/octet-stream"}, url="https://e.example/")
    assert result.items == []
    assert len(result.warnings) == 1
    assert result.warnings[0].startswith("not a feed")


@pytest.mark.parametrize(
    "content_type", ["text/xml", "text/html", "text/plain", "application/rss+xml", ""]
)
def test_content_type_does_not_make_a_good_feed_bozo(content_type: str) -> None:
    body = (RSS % b"").replace(b"One", "Öne".encode())
    headers = {"Content-Type": content_type} if content_type else {}
    result = parse(body, headers, url="https://e.example/feed")
    assert result.warnings == []
    assert [i.title for i in result.items] == ["Öne"]


def test_header_charset_wins_over_xml_declaration() -> None:
    body = '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><item><title>Ёж</title><link>https://e.example/1</link></item></channel></rss>'.encode(
        "koi8-r"
    )
    result = parse(body, {"content-type": "application/xml; charset=KOI8-R"}, url="https://e/")
    assert [i.title for i in result.items] == ["Ёж"]


def test_wrong_charset_is_reported() -> None:
    body = (RSS % b"").replace(b"One", "Ёж".encode())
    result = parse(body, {"content-type": "text/xml; charset=us-ascii"}, url="https://e/")
    assert len(result.items) == 1
    assert result.warnings and "charset" in result.warnings[0]


@pytest.mark.parametrize(("ttl", "expected"), [(b"60", 60), (b" 0 ", 0), (b"soon", None)])
def test_ttl(ttl: bytes, expected: int | None) -> None:
    result = parse(RSS % (b"<ttl>" + ttl + b"</ttl>"), {}, url="https://e.example/feed")
    assert result.ttl == expected
    assert bool(result.warnings) == (expected is None)


def test_missing_xml_declaration_line_numbers() -> None:
    body = b'<rss version="2.0"><channel>\n<item><title>a</title></item>\n<item><b></item>'
    result = parse(body, {}, url="https://e.example/feed")
    assert "at line 3:" in result.warnings[0]


def test_non_http_links_are_dropped() -> None:
    body = (RSS % b"").replace(b"https://e.example/1", b"javascript:alert(1)")
    [item] = parse(body, {}, url="https://e.example/feed").items
    assert item.link is None


def test_permalink_guid_without_link_is_not_made_relative_to_feed() -> None:
    body = (
        b'<rss version="2.0"><channel><item><guid>42</guid><title>x</title></item></channel></rss>'
    )
    [item] = parse(body, {}, url="https://e.example/feed").items
    assert item.link is None
    assert item.guid == "42"


def test_same_item_in_two_json_feeds_with_global_id() -> None:
    doc = {
        "version": "https://jsonfeed.org/version/1.1",
        "items": [{"id": "tag:e.example,2024:1", "content_text": "x"}],
    }
    body = json.dumps(doc).encode()
    a = parse(body, {}, url="https://a.example/feed.json").items[0]
    b = parse(body, {}, url="https://b.example/feed.json").items[0]
    assert a.identity == b.identity


@pytest.mark.parametrize(
    ("body", "warning"),
    [
        (b"{not json", "not valid JSON at line 1"),
        (b"[1, 2]", "not an object"),
        (b'{"version": "https://jsonfeed.org/version/1.1"}', "without an items list"),
        (b"[" * 100_000, "not a feed"),
    ],
)
def test_bad_json(body: bytes, warning: str) -> None:
    result = parse(body, {"content-type": "application/feed+json"}, url="https://e.example/")
    assert result.items == []
    assert warning in result.warnings[0]


def test_json_items_that_are_not_objects_are_counted() -> None:
    body = (
        b'{"version": "https://jsonfeed.org/version/1.1", "items": [1, {"id": "a", "title": "ok"}]}'
    )
    result = parse(body, {}, url="https://e.example/")
    assert [i.title for i in result.items] == ["ok"]
    assert result.warnings == ["1 item is not a JSON object; 1 item read"]


def test_json_with_bom_and_invalid_utf8() -> None:
    body = b'\xef\xbb\xbf{"version": "https://jsonfeed.org/version/1", '
    body += b'"items": [{"id": "a", "title": "x\xff"}]}'
    result = parse(body, {}, url="https://e.example/")
    assert [i.title for i in result.items] == ["x\ufffd"]
    assert "not valid UTF-8" in result.warnings[0]


# --- hostile bodies: entities, item counts, field sizes -----------------------------------


def _dated_rss(count: int, *, doctype: str = "") -> bytes:
    # Item i is dated i hours into the month, listed in a shuffled but fixed order.
    order = sorted(range(count), key=lambda i: (i * 7919) % count)
    items = "".join(
        f"<item><title>Item {i}</title><link>https://cap.test/{i}</link>"
        f"<pubDate>Sun, {1 + i // 24:02d} Nov 2026 {i % 24:02d}:00:00 GMT</pubDate></item>"
        for i in order
    ) + "<item><title>Undated</title><link>https://cap.test/undated</link></item>"
    return (
        f'<?xml version="1.0"?>{doctype}<rss version="2.0"><channel><title>Cap</title>'
        f"{items}</channel></rss>"
    ).encode()


@pytest.mark.parametrize("doctype", ["", "<!DOCTYPE rss>"], ids=["fast", "feedparser"])
def test_only_the_newest_items_are_kept_on_either_reader(doctype: str) -> None:
    parsed = parse(_dated_rss(30, doctype=doctype), {}, url="https://cap.test/", max_items=5)
    assert sorted(i.title for i in parsed.items) == [f"Item {n}" for n in range(25, 30)]
    assert "31 items; only the 5 newest kept (polling.max_items)" in parsed.warnings
    everything = parse(_dated_rss(30, doctype=doctype), {}, url="https://cap.test/")
    assert len(everything.items) == 31 and not everything.warnings


def test_only_the_newest_json_items_are_kept() -> None:
    doc = {
        "version": "https://jsonfeed.org/version/1.1",
        "items": [
            {"id": str(i), "title": f"Item {i}", "date_published": f"2026-11-{1 + i:02d}T00:00:00Z"}
            for i in (3, 9, 1, 7, 5)
        ],
    }
    parsed = parse(json.dumps(doc).encode(), {}, url="https://cap.test/", max_items=2)
    assert [i.title for i in parsed.items] == ["Item 9", "Item 7"]
    assert parsed.warnings == ["5 items; only the 2 newest kept (polling.max_items)"]


@pytest.mark.parametrize("codec", ["utf-8", "utf-16"])
def test_internal_entities_are_never_expanded(codec: str) -> None:
    body = (
        f'<?xml version="1.0" encoding="{codec}"?>\n<!DOCTYPE rss [\n'
        '<!ENTITY big "' + "A" * 10_000 + '">\n<!ENTITY % pe "x">\n]>\n'
        '<rss version="2.0"><channel><title>T</title><item><title>'
        + "&big;" * 500
        + "</title><link>https://e.test/1</link></item></channel></rss>"
    ).encode(codec)
    parsed = parse(body, {}, url="https://e.test/")
    (item,) = parsed.items
    assert item.title.startswith("&big;&big;") and len(item.title) == 1_000
    assert parsed.warnings[0] == (
        "ignored the DOCTYPE's internal subset (2 declarations): entities are not expanded"
    )
    assert "1 item had a field over its size cap; cut" in parsed.warnings


def test_a_doctype_that_never_ends_is_not_a_feed() -> None:
    body = b'<?xml version="1.0"?><!DOCTYPE rss [ <!ENTITY a "]>"> <rss version="2.0"/>'
    assert parse(body, {}, url="https://e.test/").warnings == [
        "not a feed: a DOCTYPE that never ends"
    ]


def test_long_fields_are_cut_and_long_links_dropped() -> None:
    body = (
        '<rss version="2.0"><channel><title>T</title><item>'
        f"<title>{'t' * 5_000}</title><link>https://e.test/{'x' * 3_000}</link>"
        f"<guid>g{'g' * 3_000}</guid><description>{'d ' * 200_000}</description>"
        "</item></channel></rss>"
    ).encode()
    (item,) = parse(body, {}, url="https://e.test/").items
    assert (len(item.title), len(item.guid or ""), item.link) == (1_000, 2_048, None)
    assert len(item.summary) == 100_000
