"""Realistic article pages for tests and bench/bench_fulltext.py, with their true text.

Each page wraps an article's paragraphs in what news sites put around them: a cookie
banner, navigation, a breadcrumb, share buttons, a related-links box, a newsletter box,
reader comments and a footer. The layouts differ (an <article> element, plain divs with
class names, a table-era layout), so extraction is not tuned to one template. The article
text alone (headline excluded) is the ground truth.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

SEEDS = Path("/work/shared/seeds")

NAV = """<header class="site-header"><a class="logo" href="/">The Steppe Herald</a>
<nav class="main-nav"><ul><li><a href="/politics">Politics</a></li><li><a href="/economy">Economy</a></li>
<li><a href="/energy">Energy</a></li><li><a href="/world">World</a></li><li><a href="/opinion">Opinion</a></li>
<li><a href="/sport">Sport</a></li><li><a href="/subscribe">Subscribe</a></li><li><a href="/login">Log in</a></li></ul></nav>
<form class="search" action="/search"><input name="q" placeholder="Search"></form></header>"""

COOKIE = """<div id="cookie-banner" class="cookie-consent" role="dialog"><p>We use cookies to
personalise content and ads, to provide social media features and to analyse our traffic.
We also share information about your use of our site with our social media, advertising
and analytics partners.</p><button>Accept all</button><button>Manage preferences</button></div>"""

SHARE = """<div class="share-buttons"><a href="#">Share on Facebook</a> <a href="#">Share on X</a>
<a href="#">Share on Telegram</a> <a href="#">Email this article</a> <a href="#">Print</a></div>"""

RELATED = """<aside class="related"><h3>Related stories</h3><ul>
<li><a href="/a/1">Tashkent hosts regional water forum as drought worries grow</a></li>
<li><a href="/a/2">Caspian ferry capacity to double by 2027, ministry says</a></li>
<li><a href="/a/3">Wheat exports reach record level in the first half of the year</a></li>
<li><a href="/a/4">Opinion: what the new rail link means for landlocked economies</a></li>
<li><a href="/a/5">Bishkek and Dushanbe agree on border demarcation steps</a></li></ul></aside>"""

NEWSLETTER = """<div class="newsletter-box"><h4>Get the morning briefing</h4><p>The day's
top stories from Central Asia, in your inbox every weekday at 7am.</p>
<form><input type="email" placeholder="Your email"><button>Sign up</button></form></div>"""

COMMENTS = """<section id="comments" class="comments"><h3>Comments (3)</h3>
<div class="comment"><span class="author">Aidos_K</span> <span class="date">2 hours ago</span>
<p>Finally some attention to the region. Let's hope the promises turn into real investment this time.</p></div>
<div class="comment"><span class="author">observer1987</span> <span class="date">1 hour ago</span>
<p>Same story every year, meetings and photos. Nothing changes for ordinary people in the villages.</p></div>
<div class="comment"><span class="author">Dilnoza</span> <span class="date">35 minutes ago</span>
<p>The rail corridor is the real news here, the rest is diplomacy as usual in my opinion.</p></div>
<form class="comment-form"><textarea placeholder="Write a comment"></textarea><button>Post</button></form></section>"""

FOOTER = """<footer class="site-footer"><ul><li><a href="/about">About us</a></li>
<li><a href="/contact">Contact</a></li><li><a href="/advertise">Advertise</a></li>
<li><a href="/privacy">Privacy policy</a></li><li><a href="/terms">Terms of use</a></li></ul>
<p>© 2026 The Steppe Herald. All rights reserved. Reproduction of materials is permitted
only with a hyperlink to the source.</p></footer>"""


def _paras(paragraphs: list[str]) -> str:
    return "\n".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)


READ_ALSO = """<div class="read-also"><strong>Read also:</strong>
<a href="/a/9">Central bank keeps its key rate unchanged for the third month</a></div>"""

FIGURE = """<figure class="photo"><img src="/img/1.jpg" alt="">
<figcaption>Delegations at the talks. Photo: press service</figcaption></figure>"""

#: How many layouts :func:`article_page` knows.
LAYOUTS = 6


def _interrupted(paragraphs: list[str]) -> str:
    """The body as many sites print it: a photo after the lead, a "read also" box in the
    middle of the text (neither is article text)."""
    half = max(1, len(paragraphs) // 2)
    return _paras(paragraphs[:1]) + FIGURE + _paras(paragraphs[1:half]) + READ_ALSO + _paras(
        paragraphs[half:]
    )


def article_page(title: str, paragraphs: list[str], variant: int = 0) -> str:
    """A whole news page around the article; ``variant`` picks one of the layouts."""
    t = html.escape(title)
    byline = '<p class="byline">By <a href="/authors/staff">Staff correspondent</a> · 30 October 2025</p>'
    layout = variant % LAYOUTS
    if layout == 0:
        body = f"""{COOKIE}{NAV}<main><nav class="breadcrumb"><a href="/">Home</a> › <a href="/politics">Politics</a></nav>
<article class="post"><h1>{t}</h1>{byline}{SHARE}<div class="article-body">{_paras(paragraphs)}</div>{SHARE}</article>
{RELATED}{NEWSLETTER}{COMMENTS}</main>{FOOTER}"""
    elif layout == 1:
        body = f"""{NAV}{COOKIE}<div id="wrapper"><div class="sidebar">{RELATED}{NEWSLETTER}</div>
<div id="content" class="content-main"><h1 class="headline">{t}</h1>{byline}
<div class="entry-content">{_paras(paragraphs)}</div><div class="tags">Tags: <a href="/t/c5">C5+1</a> <a href="/t/usa">USA</a></div>
{COMMENTS}</div></div>{FOOTER}"""
    elif layout == 2:
        body = f"""{COOKIE}{NAV}<table width="100%"><tr><td class="left" width="20%">{RELATED}</td>
<td class="main"><h2>{t}</h2><div class="date">30.10.2025 14:05</div><div class="text">{_paras(paragraphs)}</div>
{SHARE}</td><td class="right">{NEWSLETTER}</td></tr></table>{COMMENTS}{FOOTER}"""
    elif layout == 3:
        body = f"""{NAV}<div class="container"><div class="row"><div class="col-8"><h1>{t}</h1>{byline}
<section class="story-body" itemprop="articleBody">{_paras(paragraphs)}</section>{SHARE}{COMMENTS}</div>
<div class="col-4">{RELATED}{NEWSLETTER}</div></div></div>{FOOTER}{COOKIE}"""
    elif layout == 4:
        body = f"""{COOKIE}{NAV}<main id="main"><article><header><h1>{t}</h1>{byline}</header>
<div class="article__text">{_interrupted(paragraphs)}</div>{SHARE}</article>{RELATED}{COMMENTS}</main>{FOOTER}"""
    else:
        body = f"""{NAV}<div class="page"><div class="news-item"><div class="news-title">{t}</div>
<div class="news-date">30 October 2025</div><div class="news-text">{_interrupted(paragraphs)}</div></div>
<div class="more-news">{RELATED}</div>{NEWSLETTER}</div>{FOOTER}{COOKIE}"""
    return f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{t} | The Steppe Herald</title>
<meta name="viewport" content="width=device-width"><script>window.dataLayer=[];function gtag(){{}}</script>
<style>.cookie-consent{{position:fixed}}</style></head><body>{body}
<script src="/static/app.js"></script></body></html>"""


def paywall_page(title: str) -> str:
    """A subscriber-only page: the headline, one teaser line and a sign-up wall."""
    return f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title></head>
<body>{NAV}<article><h1>{html.escape(title)}</h1><p class="lead">Officials met in Astana on Wednesday.</p>
<div class="paywall"><h3>This article is for subscribers</h3><p>Subscribe for $1 for the first month.</p>
<a href="/subscribe">Subscribe</a> <a href="/login">Log in</a></div></article>{FOOTER}</body></html>"""


def seed_articles() -> list[tuple[str, list[str]]]:
    """The shared seed articles as (title, paragraphs): real news text about the region."""
    out: list[tuple[str, list[str]]] = []
    for path in sorted(SEEDS.glob("*.txt")):
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
        lines = [ln for ln in lines if ln]
        title, rest = lines[0], lines[1:]
        if len(title) > 150:  # the seed starts with its first paragraph, not a headline
            title, rest = " ".join(title.split()[:10]), lines
        # Drop the seed's own byline lines ("- Times Tengri", "- 5 min read").
        paragraphs = [ln for ln in rest if not ln.startswith("- ")]
        out.append((title, paragraphs))
    return out


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())
