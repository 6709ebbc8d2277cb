"""Digest building and rendering: plain data in, one multipart message out."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import re
import shutil
import subprocess
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from monitor.config import SubscriberConfig
from monitor.digest import DigestOptions, DigestRenderer, RenderedDigest, new_message_id
from monitor.errors import TemplateError
from monitor.store.feeds import StoredHit
from monitor.store.outbox import FailingFeed

NOW = datetime(2025, 3, 30, 3, 0, tzinfo=UTC)  # 08:00 in Almaty
NAMES = {"gor": "Sergio Gor", "c5plus1": "C5+1", "landau": "Landau"}
SUB = SubscriberConfig(
    email="analyst@example.org",
    watchlists=("c5plus1", "gor"),
    schedule="daily 08:00",
    timezone="Asia/Almaty",
)
_ids = iter(range(1, 1_000_000))


def span(text: str, term: str, field: str) -> dict[str, Any]:
    start = text.index(term)
    return {"field": field, "start": start, "end": start + len(term), "text": term}


def hit(
    watchlist: str,
    term: str = "Sergio Gor",
    *,
    title: str | None = None,
    summary: str | None = None,
    item_id: int | None = None,
    link: str | None = "https://news.example/story?id=1&ref=feed",
    minutes: int = 0,
    feed_title: str | None = "Example News",
    spans: list[dict[str, Any]] | None = None,
) -> StoredHit:
    title = title if title is not None else f"US envoy {term} meets Central Asian ministers"
    summary = (
        summary
        if summary is not None
        else f"WASHINGTON — Special envoy {term} met the foreign ministers of the C5+1 format on "
        "Tuesday to discuss the Middle Corridor, critical minerals and visas. " * 2
    )
    if spans is None:
        spans = [span(summary, term, "summary")]
        if term in title:
            spans.append(span(title, term, "title"))
    n = next(_ids)
    return StoredHit(
        id=n,
        watchlist=watchlist,
        matches=[{"watchlist": watchlist, "entry": "e", "terms": [term], "spans": spans}],
        created_at=NOW - timedelta(hours=5) + timedelta(minutes=minutes),
        item_id=item_id if item_id is not None else n,
        identity=f"id-{n}",
        guid=None,
        link=link,
        title=title,
        summary=summary,
        content="",
        published_at=NOW - timedelta(hours=2) + timedelta(minutes=minutes),
        first_seen_at=NOW,
        feed_id=1,
        feed_url="https://news.example/rss",
        feed_title=feed_title,
    )


def render(
    hits: list[StoredHit],
    *,
    sub: SubscriberConfig = SUB,
    options: DigestOptions | None = None,
    **kw: Any,
) -> RenderedDigest:
    renderer = DigestRenderer(options or DigestOptions(sender="Monitor <monitor@example.org>"))
    kw.setdefault("names", NAMES)
    rendered = renderer.render(sub, hits, now=NOW, message_id="<d1@example.org>", **kw)
    assert rendered is not None
    return rendered


def parts(msg: EmailMessage) -> tuple[str, str]:
    parsed = email.message_from_bytes(
        msg.as_bytes(policy=email.policy.SMTP), policy=email.policy.default
    )
    assert isinstance(parsed, EmailMessage)
    assert parsed.get_content_type() == "multipart/alternative"
    text_part, html_part = parsed.iter_parts()
    assert text_part.get_content_type() == "text/plain"
    assert html_part.get_content_type() == "text/html"
    return text_part.get_content().replace("\r\n", "\n"), html_part.get_content().replace(
        "\r\n", "\n"
    )


def test_message_headers_and_parts() -> None:
    r = render([hit("gor", minutes=i) for i in range(3)] + [hit("c5plus1", "C5+1")])
    msg = r.message
    assert msg["From"] == "Monitor <monitor@example.org>"
    assert msg["To"] == "analyst@example.org"
    assert msg["Message-ID"] == "<d1@example.org>"
    assert msg["Date"] == "Sun, 30 Mar 2025 03:00:00 +0000"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["List-Unsubscribe"].startswith("<mailto:monitor@example.org?subject=unsubscribe")
    assert msg["Subject"] == "C5+1, Sergio Gor: 4 new stories"
    text, html = parts(msg)
    assert text == r.text and html == r.html
    assert "Sergio Gor" in text and "<table" in html
    assert len(r.hit_ids) == 4


def test_subject_is_one_clean_line() -> None:
    nasty = "Breaking:\r\nBcc: victim@example.org\x00\x1b[31m  Sergio Gor\tnews"
    r = render([hit("gor", title=nasty)])
    subject = r.message["Subject"]
    assert "\n" not in subject and "\r" not in subject and "\x00" not in subject
    assert subject == "Sergio Gor: Breaking: Bcc: victim@example.org [31m Sergio Gor news"
    assert "Bcc" not in str(r.message.keys())
    r = render([hit("gor", title="x" * 500)])
    assert len(r.message["Subject"]) <= 160
    raw = r.message.as_bytes(policy=email.policy.SMTP)
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))


def test_feed_text_never_becomes_markup_and_links_are_http_only() -> None:
    evil = hit(
        "gor",
        title='<script>alert(1)</script><img src=x onerror="alert(2)"> Sergio Gor',
        summary='Sergio Gor said "<b>bold</b>" & <a href="javascript:alert(3)">click</a>',
        link="javascript:alert(4)",
        feed_title="<i>Feed</i>",
    )
    data = hit("gor", link="data:text/html,<script>alert(5)</script>", minutes=1)
    good = hit("gor", link=" https://ok.example/a?b=1&c=2 ", minutes=2)
    r = render([evil, data, good])
    html = r.html
    assert "<script" not in html and "<img" not in html and "<i>" not in html
    assert "&lt;script&gt;" in html and "&lt;i&gt;Feed&lt;/i&gt;" in html
    assert not re.search(r"<[a-z]+\s[^>]*javascript:", html)  # only ever as text
    hrefs = re.findall(r'<a\s[^>]*href="([^"]*)"', html)
    assert all(h.startswith(("https://", "http://", "mailto:")) for h in hrefs), hrefs
    assert "https://ok.example/a?b=1&amp;c=2" in hrefs or "https://ok.example/a?b=1&c=2" in [
        h.replace("&amp;", "&") for h in hrefs
    ]
    assert sum(1 for h in hrefs if h.startswith("http")) == 1


def test_matched_terms_are_highlighted_in_context() -> None:
    long_before = "Filler words about the weather in Tashkent and Almaty today. " * 6
    summary = long_before + "Then Sergio Gor arrived in Astana for talks. " + "More. " * 60
    h = hit("gor", summary=summary)
    r = render([h])
    text, html = parts(r.message)
    assert "*Sergio Gor* arrived" in text
    assert "US envoy *Sergio Gor* meets" in text
    marks = re.findall(r"<b[^>]*>([^<]*)</b>", html)
    assert marks.count("Sergio Gor") == 2  # title and snippet
    assert re.search(r'<b class="hl" style="[^"]*background-color', html)
    story = r.digest.groups[0].stories[0]
    snippet = "".join(s.text for s in story.snippet)
    assert snippet.startswith("…") and snippet.endswith("…")
    assert len(snippet) < 300


def test_stale_offsets_fall_back_to_the_text() -> None:
    summary = "Officials said Sergio Gor will visit."
    h = hit(
        "gor",
        summary=summary,
        spans=[{"field": "summary", "start": 0, "end": 10, "text": "Sergio Gor"}],
    )
    story = render([h]).digest.groups[0].stories[0]
    assert [s.text for s in story.snippet if s.hit] == ["Sergio Gor"]
    broken = hit("gor", summary=summary, spans=[{"field": "summary", "start": "x", "end": 99}])
    story = render([broken]).digest.groups[0].stories[0]
    assert not any(s.hit for s in story.snippet)
    assert "Sergio Gor will visit" in "".join(s.text for s in story.snippet)


def test_same_story_appears_once_under_its_first_group() -> None:
    shared_item = 777
    in_gor = hit("gor", item_id=shared_item)
    in_c5 = hit("c5plus1", "C5+1", item_id=shared_item, title="US envoy Sergio Gor meets C5+1")
    other = hit("gor", minutes=5)
    r = render([in_gor, in_c5, other])
    groups = r.digest.groups
    assert [g.watchlist for g in groups] == ["c5plus1", "gor"]  # the subscriber's order
    assert [len(g.stories) for g in groups] == [1, 1]
    assert groups[0].stories[0].also_in == ("Sergio Gor",)
    assert r.hit_ids == {in_gor.id, in_c5.id, other.id}
    assert r.digest.story_count == 2
    assert r.message["Subject"] == "C5+1, Sergio Gor: 2 new stories"
    assert "also in Sergio Gor" in r.text
    assert groups[1].more == 0


def test_caps_and_how_many_more_are_waiting() -> None:
    hits = [hit("gor", minutes=i) for i in range(5)]
    r = render(hits, options=DigestOptions(max_items_per_watchlist=3), pending_counts={"gor": 9})
    group = r.digest.groups[0]
    assert len(group.stories) == 3 and group.more == 6
    assert r.hit_ids == {h.id for h in hits[:3]}  # the oldest three, FIFO
    assert [s.hit_ids[0] for s in group.stories] == [hits[2].id, hits[1].id, hits[0].id]
    assert "6 more in Sergio Gor waiting for the next digest" in r.text
    assert "6 more in Sergio Gor waiting" in r.html


def test_byte_budget_shrinks_the_caps() -> None:
    hits = [hit("gor", minutes=i) for i in range(40)] + [
        hit("c5plus1", "C5+1", minutes=i) for i in range(40)
    ]
    full = render(hits, options=DigestOptions(max_items_per_watchlist=40))
    budget = 30_000
    assert len(full.html.encode()) > budget
    small = render(hits, options=DigestOptions(max_items_per_watchlist=40, html_budget=budget))
    assert len(small.html.encode()) <= budget
    assert 0 < len(small.hit_ids) < len(full.hit_ids)
    assert small.digest.more_count == len(hits) - len(small.hit_ids)
    assert all(g.stories for g in small.digest.groups)


def test_a_big_digest_stays_under_gmail_clipping() -> None:
    hits = [hit(w, minutes=i) for w in ("gor", "c5plus1", "landau") for i in range(25)]
    r = render(hits, sub=SubscriberConfig(email="a@example.org", watchlists=("*",)))
    assert len(r.html.encode()) <= 90_000
    assert [g.name for g in r.digest.groups] == ["C5+1", "Landau", "Sergio Gor"]


def test_volume_chart_and_surge() -> None:
    today = date(2025, 3, 30)
    days = [
        (today - timedelta(days=13 - i), n)
        for i, n in enumerate([1, 0, 2, 1, 0, 1, 1, 0, 2, 1, 0, 1, 1, 9])
    ]
    r = render([hit("gor")], volumes={"gor": days})
    group = r.digest.groups[0]
    assert group.surge and group.volume_total == 20
    assert [d.height for d in group.volume][-1] == 28 and group.volume[1].height == 1
    assert group.volume[-1].today
    assert "20 mentions in 14 days, 9 today" in r.html and "SURGE" in r.html
    bars = re.findall(r'<td class="bar[^"]*"[^>]*height: (\d+)px[^>]*height="(\d+)"', r.html)
    assert len(bars) == 14
    assert [int(a) for a, b in bars] == [d.height for d in group.volume]
    assert all(a == b for a, b in bars)
    assert "█" in r.text and "20 mentions in 14 days" in r.text
    flat = render([hit("gor")], volumes={"gor": [(d, 1) for d, _ in days]}).digest.groups[0]
    assert not flat.surge


def test_times_in_the_subscribers_zone_and_footer() -> None:
    failing = [
        FailingFeed("https://down.example/rss", "Down <Feed>", 4, "timeout after 30s", NOW - timedelta(days=1), None, None),
        FailingFeed("https://gone.example/rss", None, 1, None, None, NOW - timedelta(days=2), "410 Gone"),
    ]  # fmt: skip
    r = render([hit("gor")], failing_feeds=failing)
    story = r.digest.groups[0].stories[0]
    assert story.when == "Sun 30 Mar 06:00 +05"  # published 01:00 UTC
    assert "Down &lt;Feed&gt;" in r.html and "failed 4 times in a row" in r.html
    assert "gone.example" in r.html and "410 Gone" in r.html
    assert "Feeds with problems" in r.text
    assert "To change or stop this subscription, write to monitor@example.org" in r.text
    assert "follows C5+1, Sergio Gor, daily at 08:00 (Asia/Almaty)" in r.text


def test_nothing_to_say_is_no_message() -> None:
    renderer = DigestRenderer(DigestOptions())
    assert renderer.render(SUB, [], now=NOW, message_id="<x@y>") is None


def test_message_ids_are_unique_and_in_the_sender_domain() -> None:
    a, b = new_message_id("Monitor <m@mail.example.org>"), new_message_id("m@mail.example.org")
    assert a != b and a.endswith("@mail.example.org>") and a.startswith("<")


def test_user_templates_override_per_file(tmp_path: Path) -> None:
    (tmp_path / "digest.txt.j2").write_text(
        "Custom for {{ digest.email }}: {{ digest.story_count }}\n"
    )
    r = render([hit("gor")], options=DigestOptions(templates_dir=tmp_path))
    assert r.text == "Custom for analyst@example.org: 1\n"
    assert "Monitor digest" in r.html  # the shipped HTML template


def test_template_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "digest.html.j2").write_text("<p>\n{% for x in %}\n</p>\n")
    with pytest.raises(TemplateError) as info:
        DigestRenderer(DigestOptions(templates_dir=tmp_path))
    assert f"{tmp_path / 'digest.html.j2'}:2:" in str(info.value)


def test_template_runtime_error_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "digest.txt.j2").write_text("line one\n{{ digest.no_such_field }}\n")
    renderer = DigestRenderer(DigestOptions(templates_dir=tmp_path))
    with pytest.raises(TemplateError) as info:
        renderer.render(SUB, [hit("gor")], now=NOW, message_id="<x@y>")
    assert f"{tmp_path / 'digest.txt.j2'}:2" in str(info.value)
    assert "no_such_field" in str(info.value)
    with pytest.raises(TemplateError, match="not found"):
        DigestRenderer(DigestOptions(templates_dir=tmp_path / "missing"))


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
@pytest.mark.timeout(90)
def test_html_renders_in_headless_chromium(tmp_path: Path) -> None:
    assert CHROMIUM is not None
    today = date(2025, 3, 30)
    volumes = {"gor": [(today - timedelta(days=13 - i), i % 4) for i in range(14)]}
    r = render(
        [hit("gor", minutes=i) for i in range(5)] + [hit("c5plus1", "C5+1")], volumes=volumes
    )
    page = tmp_path / "digest.html"
    page.write_text(r.html, encoding="utf-8")
    shot = tmp_path / "digest.png"
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}",
    ]  # fmt: skip
    subprocess.run(
        [CHROMIUM, *flags, f"--screenshot={shot}", "--window-size=800,2000", page.as_uri()],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    assert shot.is_file() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 5_000  # a page, not a blank
    dom = subprocess.run(
        [CHROMIUM, *flags, "--dump-dom", page.as_uri()],
        check=True, capture_output=True, timeout=60, text=True,
    ).stdout  # fmt: skip
    assert "Monitor digest" in dom
    assert "US envoy" in dom and "Sergio Gor" in dom and "C5+1" in dom
    assert "Feeds with problems" not in dom
    assert "write to" in dom


def test_with_the_web_view_titles_link_to_story_pages_and_more_to_the_list() -> None:
    hits = [dataclasses.replace(hit("gor", minutes=i), story_id=40 + i) for i in range(5)]
    options = DigestOptions(max_items_per_watchlist=3, web_base_url="https://monitor.example")
    r = render(hits, options=options, pending_counts={"gor": 5})
    assert 'href="https://monitor.example/stories/42"' in r.html
    assert 'href="https://news.example/story?id=1&amp;ref=feed"' not in r.html
    assert '<a href="https://monitor.example/?watchlist=gor">2 more in Sergio Gor</a>' in r.html
    assert "all coverage: https://monitor.example/stories/42" in r.text
    assert "the full list: https://monitor.example/?watchlist=gor" in r.text
    plain = render(hits, pending_counts={"gor": 5})  # without base_url: the article links
    assert "monitor.example" not in plain.html and "news.example/story" in plain.html
