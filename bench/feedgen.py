"""Deterministic news-like feeds for benchmarks: RSS 2.0 with HTML descriptions."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

WORDS = (
    "the of and to in a on for with as by at from that is was will be has have said "
    "minister president summit trade energy transport corridor agreement cooperation "
    "investment security regional economic talks delegation visit capital partnership "
    "infrastructure logistics railway port pipeline oil gas wheat cotton uranium "
    "government parliament election reform budget inflation currency exports imports "
    "Kazakhstan Uzbekistan Kyrgyzstan Tajikistan Turkmenistan Astana Tashkent Bishkek "
    "Dushanbe Ashgabat Almaty Samarkand Caspian Washington Moscow Beijing Ankara Baku"
).split()
SPICE = (
    "Sergio Gor", "Christopher Landau", "C5+1", "Middle Corridor", "Tokayev", "Mirziyoyev",
    "Japarov", "critical minerals", "Jackson-Vanik", "Al Gore", "Lev Landau", "Caspian Sea",
)  # fmt: skip


#: Share of items that mention one of SPICE (a watched name or a look-alike). General news
#: feeds mention a desk's watchlist subjects rarely; a few percent keeps the benchmark's
#: matching and storing work in proportion to what a real poll does.
SPICE_RATE = 0.05


def sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(8, 22))]
    return " ".join(words).capitalize() + "."


def html_paragraphs(rng: random.Random, size: int) -> str:
    out: list[str] = []
    total = 0
    while total < size:
        para = " ".join(sentence(rng) for _ in range(rng.randint(2, 5)))
        if rng.random() < 0.3:
            para = para.replace(
                " the ", ' the <a href="https://news.example/x?utm_source=rss">link</a> ', 1
            )
        chunk = f"<p>{para} &amp; more&nbsp;text</p>"
        if rng.random() < 0.1:
            chunk += '<script>var x = "<p>";</script><img src="https://img.example/a.jpg" alt="">'
        out.append(chunk)
        total += len(chunk)
    return "".join(out)


def rss_feed(feed_no: int, items: int = 50, target_bytes: int = 100_000, later: int = 0) -> bytes:
    """An RSS 2.0 document of about ``target_bytes`` with ``items`` unique items. With
    ``later`` = k, the same feed k items later: its oldest k items gone, k new ones in."""
    rng = random.Random(feed_no)
    per_item = max(200, target_bytes // items - 400)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel>',
        f"<title>Bench feed {feed_no}</title><link>https://news{feed_no}.example/</link>",
        "<description>Benchmark feed</description><ttl>15</ttl>",
    ]
    for i in range(items + later):
        when = format_datetime(start + timedelta(minutes=feed_no * 7 + i * 13))
        body = html_paragraphs(rng, per_item).replace("]]>", "]] >")
        if rng.random() < SPICE_RATE:
            body = f"<p>{rng.choice(SPICE)} {sentence(rng)}</p>" + body
        title = sentence(rng)[:90]
        if i < later:  # drawn all the same, so that the items kept are as they were
            continue
        parts.append(
            f"<item><title>{title}</title>"
            f"<link>https://news{feed_no}.example/story/{i}?utm_source=rss&amp;id={i}</link>"
            f'<guid isPermaLink="false">bench-{feed_no}-{i}</guid><pubDate>{when}</pubDate>'
            f"<description><![CDATA[{body}]]></description></item>"
        )
    parts.append("</channel></rss>")
    return "".join(parts).encode("utf-8")
