"""Digests: a subscriber's pending hits, grouped by watchlist, rendered as one email.

Plain data in (hits as the store returns them, mention volumes, failing feeds), one
:class:`~email.message.EmailMessage` out: ``multipart/alternative`` with a plain-text part
and an HTML part whose CSS is inlined (css-inline), laid out in tables so that Gmail,
Outlook and Apple Mail show it alike. This module does no I/O besides reading templates.

Rules the mail keeps:

* Feed text is data. The HTML template is autoescaped, links are kept only when they are
  http(s) URLs, and the subject is collapsed to one clean line.
* The digest speaks in stories (one event across outlets, ``store/stories.py``): one entry
  per story, whatever number of copies and watchlists it has. The representative is the
  story's earliest report among the group's hits (the original usually comes first, and
  the choice does not change as copies arrive); under it, "also reported by" links the
  other outlets, the first few by name and then "and N more".
* A story matched by several watchlists appears once, in the first group that shows it,
  naming the other watchlists; the hits of all of them count as delivered.
* Within a group, stories go by the highest priority of the watchlists that hit them, then
  by how many outlets carry them, then newest first.
* Each group shows at most ``max_items_per_watchlist`` stories in full, then up to
  ``max_headlines_per_watchlist`` as one-line headlines (title and link), and says how
  many more are waiting (they stay pending for the next digest). When the HTML is larger
  than ``html_budget`` (Gmail clips mail near 100 KB), headlines go first, then stories.
* A story mailed before comes back only as an update (what is new: a watchlist, or more
  outlets); which ones come back is the pending plan's business (``store/outbox.py``).
* Only the hits in :attr:`RenderedDigest.hit_ids` are in the mail; only those may be
  recorded as delivered.

Templates: ``digest.html.j2`` and ``digest.txt.j2`` in ``monitor/templates`` (the
documented example); a ``templates_dir`` holding either file overrides it. A template
error is a :class:`~monitor.errors.TemplateError` naming ``file:line``.
"""

from __future__ import annotations

import binascii
import email
import email.policy
import logging
import math
import re
import textwrap
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from email.header import Header
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid, parseaddr
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

import css_inline
import jinja2
from markupsafe import Markup, escape

from monitor.errors import TemplateError
from monitor.models import HitLike
from monitor.normalise import clean_header, collapse_ws, http_url_or_none, strip_bidi

__all__ = [
    "Digest",
    "DigestOptions",
    "DigestRenderer",
    "Group",
    "RenderedDigest",
    "Segment",
    "Story",
    "new_message_id",
    "readdress",
]

log = logging.getLogger(__name__)

SHIPPED_TEMPLATES = Path(__file__).parent / "templates"
HTML_TEMPLATE = "digest.html.j2"
TEXT_TEMPLATE = "digest.txt.j2"
#: Gmail clips a message whose HTML passes about 102 KB; stay well below.
HTML_BUDGET = 90_000
SNIPPET_BEFORE = 90  # characters of context before the first match
SNIPPET_LENGTH = 260  # characters in a snippet, about three lines
TITLE_MAX = 300
FEED_NAME_MAX = 80
FAILING_FEEDS_SHOWN = 10
BAR_MAX_PX = 28
SPARK = "▁▂▃▄▅▆▇█"
OUTLETS_SHOWN = 3  # other outlets named under a story; the rest are counted


# --- what the renderer is given -----------------------------------------------------


class MemberLike(Protocol):
    """An item of a story, as "also reported by" needs it (``store.stories.StoryItem``)."""

    @property
    def id(self) -> int: ...
    @property
    def feed(self) -> str | None: ...  # the feed URL
    @property
    def feed_title(self) -> str | None: ...
    @property
    def link(self) -> str | None: ...
    @property
    def first_seen(self) -> datetime: ...


class FeedHealthLike(Protocol):
    """A failing or retired feed (``store.outbox.FailingFeed`` fits)."""

    @property
    def url(self) -> str: ...
    @property
    def title(self) -> str | None: ...
    @property
    def consecutive_failures(self) -> int: ...
    @property
    def last_error(self) -> str | None: ...
    @property
    def last_success_at(self) -> datetime | None: ...
    @property
    def retired_at(self) -> datetime | None: ...
    @property
    def retired_reason(self) -> str | None: ...


class SubscriberLike(Protocol):
    """``config.SubscriberConfig`` fits."""

    @property
    def email(self) -> str: ...
    @property
    def watchlists(self) -> tuple[str, ...]: ...
    @property
    def schedule(self) -> str: ...
    @property
    def timezone(self) -> str: ...


@dataclass(frozen=True, slots=True)
class DigestOptions:
    sender: str = "Monitor <monitor@localhost>"
    unsubscribe: str | None = None  # mailto address; default: the sender's address
    max_items_per_watchlist: int = 25  # stories in full per group
    max_headlines_per_watchlist: int = 0  # stories after those, as one-line headlines
    html_budget: int = HTML_BUDGET
    templates_dir: Path | None = None
    #: The web view's public URL: titles then link to story pages, "N more" to the list.
    web_base_url: str | None = None


# --- what the templates see ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Segment:
    """A run of text; ``hit`` when it is a matched term (to be highlighted)."""

    text: str
    hit: bool = False


@dataclass(frozen=True, slots=True)
class Story:
    title: tuple[Segment, ...]
    title_text: str
    url: str | None  # http(s) only
    feed: str
    when: str  # in the subscriber's zone
    when_iso: str
    snippet: tuple[Segment, ...]
    terms: tuple[str, ...]
    title_html: Markup  # the segments escaped, matched terms in <b class="hl">
    snippet_html: Markup
    title_marked: str  # plain text, matched terms *like this*
    snippet_wrapped: str  # plain text, marked, wrapped at 76 columns, indented 2
    also_in: tuple[str, ...]  # names of the other watchlists that matched the story
    hit_ids: tuple[int, ...]
    others: tuple[Outlet, ...] = ()  # "also reported by", the first OUTLETS_SHOWN
    others_more: int = 0  # "and N more"
    outlets: int = 1  # feeds carrying the story
    update: str = ""  # set when the story was mailed before: what is new
    page: str | None = None  # the story's page in the web view (with web.base_url)


@dataclass(frozen=True, slots=True)
class Outlet:
    """Another feed that carried a story, linked to its own report."""

    name: str
    url: str | None  # http(s) only


@dataclass(frozen=True, slots=True)
class Headline:
    """A story past a group's cap: one line, title and link."""

    title_text: str
    url: str | None
    feed: str
    when: str
    outlets: int
    update: str
    hit_ids: tuple[int, ...]
    page: str | None = None  # the story's page in the web view (with web.base_url)


@dataclass(frozen=True, slots=True)
class VolumeDay:
    day: date
    label: str
    count: int
    height: int  # bar height in pixels, at least 1
    today: bool


@dataclass(frozen=True, slots=True)
class Group:
    watchlist: str
    name: str
    stories: tuple[Story, ...]
    more: int  # stories pending in this watchlist but not in this digest
    volume: tuple[VolumeDay, ...]
    volume_total: int
    sparkline: str
    surge: bool  # today well above the days before
    headlines: tuple[Headline, ...] = ()
    more_url: str | None = None  # the watchlist's full list in the web view


@dataclass(frozen=True, slots=True)
class FeedNote:
    name: str
    url: str | None
    status: str  # "failing since ...", "retired ..."
    error: str


@dataclass(frozen=True, slots=True)
class Digest:
    email: str
    timezone: str
    schedule: str
    following: str  # "C5+1, Sergio Gor" or "all watchlists"
    date_text: str
    groups: tuple[Group, ...]
    failing_feeds: tuple[FeedNote, ...]
    failing_more: int
    story_count: int
    more_count: int
    subject: str
    unsubscribe: str
    unsubscribe_href: str
    hit_ids: frozenset[int] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class RenderedDigest:
    """A rendered digest: ``data`` is the message as sent (RFC 5322, CRLF line ends)."""

    data: bytes
    digest: Digest
    html: str
    text: str
    message_id: str

    @property
    def message(self) -> EmailMessage:
        """``data`` parsed (for previews and tests; sending uses ``data``)."""
        msg = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        return msg

    @property
    def hit_ids(self) -> frozenset[int]:
        return self.digest.hit_ids

    @property
    def subject(self) -> str:
        return self.digest.subject


def new_message_id(sender: str) -> str:
    """A fresh ``<...@domain>`` Message-ID in the sender's domain."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"
    return make_msgid(idstring="digest", domain=clean_header(domain, 200))


_MESSAGE_ID_HEADER = re.compile(rb"^Message-ID:[^\r\n]*(?:\r?\n[ \t][^\r\n]*)*", re.I | re.M)


def readdress(message: bytes, sender: str) -> tuple[str, bytes]:
    """A rendered message under a new Message-ID (a failed digest queued again is a new
    message to the server and the reader's client), and that id. The rest of the bytes are
    kept as they are."""
    message_id = new_message_id(sender)
    header = f"Message-ID: {message_id}".encode("ascii")
    head, sep, rest = message.partition(b"\r\n\r\n")
    if not sep:
        head, sep, rest = message.partition(b"\n\n")
    found = _MESSAGE_ID_HEADER.search(head)
    if found:
        head = head[: found.start()] + header + head[found.end() :]
    else:
        head = header + (b"\r\n" if b"\r\n" in head else b"\n") + head
    return message_id, head + sep + rest


# --- snippets and highlights ----------------------------------------------------------


def _valid_spans(text: str, spans: Sequence[Mapping[str, Any]]) -> list[tuple[int, int]]:
    """Spans that really point at their text; a stale offset is looked up by its text."""
    out: list[tuple[int, int]] = []
    for span in spans:
        start, end, want = span.get("start"), span.get("end"), span.get("text")
        fits = isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text)
        if fits and (not isinstance(want, str) or text[start:end] == want):
            out.append((start, end))  # type: ignore[arg-type]
            continue
        if isinstance(want, str) and want:
            found = text.find(want)
            if found < 0 and len(want.lower()) == len(want):
                found = text.lower().find(want.lower())
            if found >= 0:
                out.append((found, found + len(want)))
    out.sort()
    merged: list[tuple[int, int]] = []
    for start, end in out:  # overlapping spans highlight once
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _segments(text: str, spans: Sequence[tuple[int, int]], lo: int, hi: int) -> list[Segment]:
    out: list[Segment] = []
    pos = lo
    for start, end in spans:
        if end <= lo or start >= hi:
            continue
        start, end = max(start, lo), min(end, hi)
        if start > pos:
            out.append(Segment(text[pos:start]))
        out.append(Segment(text[start:end], True))
        pos = end
    if pos < hi:
        out.append(Segment(text[pos:hi]))
    return _tidy(out)


def _tidy(segments: list[Segment]) -> list[Segment]:
    """Collapse whitespace and control characters inside and between segments."""
    out: list[Segment] = []
    for i, seg in enumerate(segments):
        text = re.sub(r"[\s\x00-\x1f\x7f-\x9f\u2028\u2029]+", " ", seg.text)
        if i == 0:
            text = text.lstrip()
        if i == len(segments) - 1:
            text = text.rstrip()
        if text:
            out.append(Segment(text, seg.hit))
    return out


def _snippet(text: str, spans: Sequence[tuple[int, int]]) -> list[Segment]:
    if not text.strip():
        return []
    first = spans[0][0] if spans else 0
    lo = max(0, first - SNIPPET_BEFORE)
    hi = min(len(text), lo + SNIPPET_LENGTH)
    if hi - lo < SNIPPET_LENGTH:
        lo = max(0, hi - SNIPPET_LENGTH)
    if lo > 0:  # start at a word
        space = text.find(" ", lo, first if spans else hi)
        lo = space + 1 if space >= 0 else lo
    if hi < len(text):  # end at a word
        space = text.rfind(" ", spans[0][1] if spans else lo, hi)
        hi = space if space > lo else hi
    segments = _segments(text, spans, lo, hi)
    if segments and lo > 0:
        segments.insert(0, Segment("…"))
    if segments and hi < len(text):
        segments.append(Segment("…"))
    return segments


def _spans_by_field(matches: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    out: dict[str, list[Mapping[str, Any]]] = {}
    for m in matches:
        spans = m.get("spans") if isinstance(m, Mapping) else None
        for span in spans if isinstance(spans, list) else []:
            if isinstance(span, Mapping):
                out.setdefault(str(span.get("field", "")), []).append(span)
    return out


def _terms(matches: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for m in matches:
        terms = m.get("terms") if isinstance(m, Mapping) else None
        for t in terms if isinstance(terms, list) else []:
            if isinstance(t, str) and t.strip():
                seen.setdefault(collapse_ws(t), None)
    return tuple(seen)


@dataclass(frozen=True, slots=True)
class _StoryParts:
    """What a story looks like, whoever gets it (cached per hit and time zone)."""

    title: tuple[Segment, ...]
    title_text: str
    url: str | None
    feed: str
    when: str
    when_iso: str
    snippet: tuple[Segment, ...]
    terms: tuple[str, ...]
    title_html: Markup
    snippet_html: Markup
    title_marked: str
    snippet_wrapped: str


def _html(segments: Sequence[Segment]) -> Markup:
    return Markup("").join(
        Markup('<b class="hl">%s</b>') % s.text if s.hit else escape(s.text) for s in segments
    )


def _marked(segments: Sequence[Segment]) -> str:
    return "".join(f"*{s.text}*" if s.hit else s.text for s in segments)


def _story_parts(hits: Sequence[HitLike], zone: ZoneInfo) -> _StoryParts:
    """One story from the hits of one item (several watchlists may have matched it)."""
    first = hits[0]
    matches = [m for h in hits for m in (h.matches or [])]
    by_field = _spans_by_field(matches)
    title_raw = first.title or ""
    if len(title_raw) > TITLE_MAX:
        title_raw = title_raw[: TITLE_MAX - 1] + "…"
    title = _segments(
        title_raw, _valid_spans(title_raw, by_field.get("title", [])), 0, len(title_raw)
    )
    if not title:
        title = [Segment("(untitled)")]
    snippet: list[Segment] = []
    for name in ("summary", "content"):
        text = getattr(first, name) or ""
        spans = _valid_spans(text, by_field.get(name, []))
        if spans:
            snippet = _snippet(text, spans)
            break
    if not snippet:
        text = first.summary or first.content or ""
        snippet = _snippet(text, [])
    when = (first.published_at or first.first_seen_at).astimezone(zone)
    return _StoryParts(
        title=tuple(title),
        title_text=collapse_ws("".join(s.text for s in title)),
        url=http_url_or_none(first.link),
        feed=_feed_name(first.feed_title, first.feed_url),
        when=f"{when:%a} {when.day} {when:%b %H:%M} {when:%Z}",
        when_iso=when.isoformat(timespec="minutes"),
        snippet=tuple(snippet),
        terms=_terms(matches),
        title_html=_html(title),
        snippet_html=_html(snippet),
        title_marked=_marked(title),
        snippet_wrapped=textwrap.fill(
            _marked(snippet),
            width=76,
            initial_indent="  ",
            subsequent_indent="  ",
            break_long_words=False,
            break_on_hyphens=False,
        ),
    )


def _feed_name(title: str | None, url: str | None) -> str:
    name = clean_header(title or "", FEED_NAME_MAX)
    if not name and url:
        try:
            name = urlsplit(url).hostname or ""
        except ValueError:
            name = ""
    return clean_header(name, FEED_NAME_MAX) or "unknown feed"


# --- volumes, feeds, subject ------------------------------------------------------------


def _volume(
    days: Sequence[tuple[date, int]], today: date
) -> tuple[tuple[VolumeDay, ...], int, str, bool]:
    if not days:
        return (), 0, "", False
    peak = max(n for _, n in days)
    bars = tuple(
        VolumeDay(
            day=d,
            label=f"{d:%a} {d.day} {d:%b}",
            count=n,
            height=max(2, math.ceil(n / peak * BAR_MAX_PX)) if n and peak else 1,
            today=d == today,
        )
        for d, n in days
    )
    spark = "".join(
        SPARK[min(len(SPARK) - 1, n * len(SPARK) // (peak + 1))] if peak else SPARK[0]
        for _, n in days
    )
    last = days[-1][1]
    before = [n for _, n in days[:-1]]
    average = sum(before) / len(before) if before else 0.0
    surge = last >= 3 and last >= 2 * max(average, 1.0)
    return bars, sum(n for _, n in days), spark, surge


def _feed_notes(
    feeds: Sequence[FeedHealthLike], zone: ZoneInfo
) -> tuple[tuple[FeedNote, ...], int]:
    notes: list[FeedNote] = []
    for f in feeds[:FAILING_FEEDS_SHOWN]:
        if f.retired_at is not None:
            status = f"retired {f.retired_at.astimezone(zone):%d %b %Y}"
            error = f.retired_reason or f.last_error or ""
        else:
            times = "time" if f.consecutive_failures == 1 else "times"
            status = f"failed {f.consecutive_failures} {times} in a row"
            if f.last_success_at is not None:
                status += f", last worked {f.last_success_at.astimezone(zone):%d %b %H:%M}"
            error = f.last_error or ""
        notes.append(
            FeedNote(
                name=_feed_name(f.title, f.url),
                url=http_url_or_none(f.url),
                status=status,
                error=clean_header(error, 200),
            )
        )
    return tuple(notes), max(0, len(feeds) - FAILING_FEEDS_SHOWN)


def _subject(groups: Sequence[Group], count: int) -> str:
    if count == 1 and groups and groups[0].stories:
        story = groups[0].stories[0]
        return clean_header(f"{groups[0].name}: {story.title_text}", 160)
    names = [g.name for g in groups]
    shown = ", ".join(names[:3])
    if len(names) > 3:
        shown += f" +{len(names) - 3} more"
    return f"{clean_header(shown, 110)}: {count} new stor{'ies' if count != 1 else 'y'}"


def _unsubscribe(options: DigestOptions, email: str) -> tuple[str, str]:
    raw = options.unsubscribe or parseaddr(options.sender)[1] or "postmaster@localhost"
    address = clean_header(raw.removeprefix("mailto:"), 200)
    href = f"mailto:{quote(address, safe='@')}?subject={quote('unsubscribe ' + email, safe='@')}"
    return address, href


def _schedule_text(schedule: str) -> str:
    s = " ".join(schedule.split())
    if s in ("immediate", "hourly"):
        return "as items arrive" if s == "immediate" else "hourly"
    parts = s.split(" ")
    if parts[0] == "daily" and len(parts) == 2:
        return f"daily at {parts[1]}"
    if parts[0] == "weekly" and len(parts) == 3:
        return f"weekly on {parts[1].capitalize()} at {parts[2]}"
    return f"on the schedule {s}"


# --- stories ------------------------------------------------------------------------


def _story_key(h: HitLike) -> int:
    """The story of a hit; a hit without one (built outside the store) is its own."""
    story = getattr(h, "story_id", None)
    return story if story is not None else -h.item_id


@dataclass(frozen=True, slots=True)
class _Member:
    id: int
    feed: str | None
    feed_title: str | None
    link: str | None
    first_seen: datetime


@dataclass(frozen=True, slots=True)
class _Facts:
    members: tuple[MemberLike, ...]  # oldest first
    outlets: int  # distinct feeds
    importance: tuple[Any, ...]  # sort key: smaller first


def _facts(
    key: int,
    hits: Sequence[HitLike],
    members: Mapping[int, Sequence[MemberLike]],
    priorities: Mapping[str, int],
) -> _Facts:
    """What orders a story within its group: the highest priority of the watchlists that
    hit it, then how many outlets carry it, then how recent its latest report is."""
    found: Sequence[MemberLike] | None = members.get(key)
    if not found:
        seen: dict[int, MemberLike] = {}
        for h in hits:
            seen.setdefault(
                h.item_id, _Member(h.item_id, h.feed_url, h.feed_title, h.link, h.first_seen_at)
            )
        found = list(seen.values())
    ordered = tuple(sorted(found, key=lambda m: (m.first_seen, m.id)))
    outlets = len({m.feed or m.link or m.id for m in ordered})
    priority = max((priorities.get(h.watchlist, 0) for h in hits), default=0)
    latest = max(m.first_seen for m in ordered)
    return _Facts(ordered, outlets, (-priority, -outlets, -latest.timestamp(), key))


def _others(rep: HitLike, members: Sequence[MemberLike]) -> tuple[Outlet, ...]:
    """The other outlets of a story, one per feed, oldest report first."""
    out: dict[str, Outlet] = {}
    for m in members:
        if m.id == rep.item_id or (m.feed is not None and m.feed == rep.feed_url):
            continue
        name = _feed_name(m.feed_title, m.feed or m.link)
        out.setdefault(m.feed or name, Outlet(name, http_url_or_none(m.link)))
    return tuple(out.values())


def _update_note(
    before: frozenset[str], hits: Sequence[HitLike], outlets: int, names: Mapping[str, str]
) -> str:
    """For a story mailed before: what is new (a watchlist, or more reports)."""
    if not before:
        return ""
    new = dict.fromkeys(
        names.get(h.watchlist, h.watchlist) for h in hits if h.watchlist not in before
    )
    if new:
        return "update: now also in " + ", ".join(new)
    return f"update: {outlets} outlet{'s' if outlets != 1 else ''} now"


# --- building -----------------------------------------------------------------------


def _order(
    subscriber: SubscriberLike, present: Sequence[str], names: Mapping[str, str]
) -> list[str]:
    explicit = [w for w in subscriber.watchlists if w != "*"]
    rest = sorted((w for w in present if w not in explicit), key=lambda w: names.get(w, w).lower())
    return [w for w in explicit if w in present] + rest


class DigestRenderer:
    """Templates compiled once; :meth:`render` per subscriber. Not thread-safe."""

    def __init__(self, options: DigestOptions) -> None:
        self.options = options
        self._html_env = self._environment(autoescape=True)
        self._text_env = self._environment(autoescape=False)
        self._html = self._load(self._html_env, HTML_TEMPLATE)
        self._text = self._load(self._text_env, TEXT_TEMPLATE)
        self._inliner = css_inline.CSSInliner(
            keep_style_tags=False, keep_at_rules=True, load_remote_stylesheets=False
        )
        self._parts: dict[tuple[tuple[int, ...], str], _StoryParts] = {}

    # templates

    def _environment(self, *, autoescape: bool) -> jinja2.Environment:
        loaders: list[jinja2.BaseLoader] = []
        directory = self.options.templates_dir
        if directory is not None:
            if not Path(directory).is_dir():
                raise TemplateError(f"{directory}: templates folder not found")
            loaders.append(jinja2.FileSystemLoader(str(directory)))
        loaders.append(jinja2.FileSystemLoader(str(SHIPPED_TEMPLATES)))
        return jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders),
            autoescape=autoescape,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            auto_reload=False,
        )

    def _load(self, env: jinja2.Environment, name: str) -> jinja2.Template:
        try:
            return env.get_template(name)
        except jinja2.TemplateSyntaxError as exc:
            where = exc.filename or name
            raise TemplateError(f"{where}:{exc.lineno}: {exc.message}") from exc
        except jinja2.TemplateNotFound as exc:
            raise TemplateError(f"{name}: template not found") from exc

    def _run(self, template: jinja2.Template, context: Mapping[str, Any]) -> str:
        try:
            return template.render(context)
        except jinja2.TemplateError as exc:
            raise TemplateError(f"{_where(template, exc)}: {exc}") from exc
        except Exception as exc:  # a template may fail any way Python can
            raise TemplateError(f"{_where(template, exc)}: {type(exc).__name__}: {exc}") from exc

    # building

    def _parts_for(self, hits: Sequence[HitLike], zone: ZoneInfo) -> _StoryParts:
        key = (tuple(h.id for h in hits), zone.key)
        parts = self._parts.get(key)
        if parts is None:
            if len(self._parts) > 20_000:
                self._parts.clear()
            parts = self._parts[key] = _story_parts(hits, zone)
        return parts

    def _page(self, story_key: int) -> str | None:
        """The story's page in the web view (a hit outside the store has none)."""
        base = self.options.web_base_url
        return f"{base}/stories/{story_key}" if base and story_key > 0 else None

    def _list_url(self, watchlist: str) -> str | None:
        base = self.options.web_base_url
        return f"{base}/?watchlist={quote(watchlist, safe='')}" if base else None

    def build(
        self,
        subscriber: SubscriberLike,
        hits: Sequence[HitLike],
        *,
        now: datetime,
        names: Mapping[str, str] | None = None,
        volumes: Mapping[str, Sequence[tuple[date, int]]] | None = None,
        failing_feeds: Sequence[FeedHealthLike] = (),
        pending_counts: Mapping[str, int] | None = None,
        caps: Mapping[str, int] | None = None,
        headline_caps: Mapping[str, int] | None = None,
        members: Mapping[int, Sequence[MemberLike]] | None = None,
        mailed: Mapping[int, Iterable[str]] | None = None,
        priorities: Mapping[str, int] | None = None,
    ) -> Digest:
        """Group ``hits`` (oldest first) into a digest of stories; see the module docstring.

        ``members``: every item of each story (for "also reported by"; default: the items
        of ``hits``). ``mailed``: per story, the watchlists it was already mailed under to
        this subscriber (such a story is shown as an update). ``priorities``: a rank per
        watchlist (higher first). ``pending_counts``: stories pending per watchlist.
        """
        names = names or {}
        volumes = volumes or {}
        members = members or {}
        mailed = mailed or {}
        priorities = priorities or {}
        zone = ZoneInfo(subscriber.timezone)
        by_story: dict[int, list[HitLike]] = {}
        in_group: dict[str, dict[int, list[HitLike]]] = {}
        for h in hits:
            key = _story_key(h)
            by_story.setdefault(key, []).append(h)
            in_group.setdefault(h.watchlist, {}).setdefault(key, []).append(h)
        order = _order(subscriber, list(in_group), names)
        rank = {w: i for i, w in enumerate(order)}
        facts = {k: _facts(k, hs, members, priorities) for k, hs in by_story.items()}
        shown: set[int] = set()
        delivered: set[int] = set()
        shown_in: dict[str, int] = {}  # stories with a hit of the watchlist, shown anywhere
        groups: list[Group] = []
        today = now.astimezone(zone).date()
        for watchlist in order:
            cap = (caps or {}).get(watchlist, self.options.max_items_per_watchlist)
            hcap = (headline_caps or {}).get(watchlist, self.options.max_headlines_per_watchlist)
            # Chosen by weight (priority, outlets), oldest first among equals so that a
            # backlog drains; shown by weight, newest first among equals.
            waiting = [k for k in in_group[watchlist] if k not in shown]
            waiting.sort(key=lambda k: facts[k].importance[:2])
            stories: list[Story] = []
            headlines: list[Headline] = []
            story_keys: list[int] = []
            headline_keys: list[int] = []
            for key in waiting[: cap + max(0, hcap)]:
                story_hits = by_story[key]
                rep = min(in_group[watchlist][key], key=lambda x: (x.first_seen_at, x.item_id))
                item_hits = sorted(
                    (x for x in story_hits if x.item_id == rep.item_id),
                    key=lambda x: rank.get(x.watchlist, 0),
                )
                parts = self._parts_for(item_hits, zone)
                before = frozenset(mailed.get(key, ()))
                update = _update_note(before, story_hits, facts[key].outlets, names)
                others = _others(rep, facts[key].members)
                ids = tuple(x.id for x in story_hits)
                if len(stories) < cap:
                    story_keys.append(key)
                    stories.append(
                        Story(
                            **_asdict(parts),
                            also_in=tuple(
                                dict.fromkeys(
                                    names.get(x.watchlist, x.watchlist)
                                    for x in sorted(
                                        story_hits, key=lambda x: rank.get(x.watchlist, 0)
                                    )
                                    if x.watchlist != watchlist
                                )
                            ),
                            hit_ids=ids,
                            others=others[:OUTLETS_SHOWN],
                            others_more=max(0, len(others) - OUTLETS_SHOWN),
                            outlets=facts[key].outlets,
                            page=self._page(key),
                            update=update,
                        )
                    )
                else:
                    headline_keys.append(key)
                    headlines.append(
                        Headline(
                            title_text=parts.title_text,
                            url=parts.url,
                            feed=parts.feed,
                            when=parts.when,
                            outlets=facts[key].outlets,
                            update=update,
                            hit_ids=ids,
                            page=self._page(key),
                        )
                    )
                shown.add(key)
                delivered.update(ids)
                for w in {x.watchlist for x in story_hits}:
                    shown_in[w] = shown_in.get(w, 0) + 1
            if not stories:
                continue
            stories = [
                stories[i]
                for i in sorted(range(len(stories)), key=lambda i: facts[story_keys[i]].importance)
            ]
            headlines = [
                headlines[i]
                for i in sorted(
                    range(len(headlines)), key=lambda i: facts[headline_keys[i]].importance
                )
            ]
            bars, total, spark, surge = _volume(volumes.get(watchlist, ()), today)
            groups.append(
                Group(
                    watchlist=watchlist,
                    name=clean_header(names.get(watchlist, watchlist), 80) or watchlist,
                    stories=tuple(stories),
                    more=0,  # set below, once every group is known
                    volume=bars,
                    volume_total=total,
                    sparkline=spark,
                    surge=surge,
                    headlines=tuple(headlines),
                    more_url=self._list_url(watchlist),
                )
            )
        # "more" counts stories; one shown under another group is not waiting.
        groups = [
            replace(
                g,
                more=max(
                    0,
                    (pending_counts or {}).get(g.watchlist, len(in_group[g.watchlist]))
                    - shown_in.get(g.watchlist, 0),
                ),
            )
            for g in groups
        ]
        story_count = sum(len(g.stories) + len(g.headlines) for g in groups)
        notes, notes_more = _feed_notes(failing_feeds, zone)
        unsub, unsub_href = _unsubscribe(self.options, subscriber.email)
        follows = [w for w in subscriber.watchlists if w != "*"]
        following = (
            "all watchlists"
            if "*" in subscriber.watchlists or not follows
            else ", ".join(clean_header(names.get(w, w), 80) for w in follows)
        )
        local_now = now.astimezone(zone)
        return Digest(
            email=subscriber.email,
            timezone=subscriber.timezone,
            schedule=_schedule_text(subscriber.schedule),
            following=following,
            date_text=f"{local_now:%A} {local_now.day} {local_now:%B %Y, %H:%M %Z}",
            groups=tuple(groups),
            failing_feeds=notes,
            failing_more=notes_more,
            story_count=story_count,
            more_count=sum(g.more for g in groups),
            subject=_subject(groups, story_count),
            unsubscribe=unsub,
            unsubscribe_href=unsub_href,
            hit_ids=frozenset(delivered),
        )

    # rendering

    def render_parts(self, digest: Digest) -> tuple[str, str]:
        """The (text, html) of a digest, CSS inlined."""
        context = {"digest": digest}
        text = self._run(self._text, context)
        html = self._run(self._html, context)
        try:
            html = self._inliner.inline(html)
        except ValueError as exc:
            raise TemplateError(f"{self._html.filename}: cannot inline CSS: {exc}") from exc
        return text, html

    def render(
        self,
        subscriber: SubscriberLike,
        hits: Sequence[HitLike],
        *,
        now: datetime,
        message_id: str,
        names: Mapping[str, str] | None = None,
        volumes: Mapping[str, Sequence[tuple[date, int]]] | None = None,
        failing_feeds: Sequence[FeedHealthLike] = (),
        pending_counts: Mapping[str, int] | None = None,
        members: Mapping[int, Sequence[MemberLike]] | None = None,
        mailed: Mapping[int, Iterable[str]] | None = None,
        priorities: Mapping[str, int] | None = None,
    ) -> RenderedDigest | None:
        """The digest of ``hits`` as a message, or None when there is nothing to say.

        Keeps the HTML under ``html_budget`` bytes by listing fewer headlines per group
        first, then fewer stories in full.
        """
        if not hits:
            return None
        kwargs: dict[str, Any] = {
            "now": now,
            "names": names,
            "volumes": volumes,
            "failing_feeds": failing_feeds,
            "pending_counts": pending_counts,
            "members": members,
            "mailed": mailed,
            "priorities": priorities,
        }
        caps: dict[str, int] = {}
        hcaps: dict[str, int] = {}
        digest = self.build(subscriber, hits, **kwargs)
        text, html = self.render_parts(digest)
        size = len(html.encode("utf-8"))
        while size > self.options.html_budget:
            factor = self.options.html_budget / size * 0.95
            if any(g.headlines for g in digest.groups):
                for g in digest.groups:
                    hcaps[g.watchlist] = min(len(g.headlines) - 1, int(len(g.headlines) * factor))
                    hcaps[g.watchlist] = max(0, hcaps[g.watchlist])
                digest = self.build(subscriber, hits, caps=caps, headline_caps=hcaps, **kwargs)
                text, html = self.render_parts(digest)
                size = len(html.encode("utf-8"))
                continue
            largest = max((len(g.stories) for g in digest.groups), default=1)
            if largest <= 1:
                log.warning(
                    "digest for %s is %d bytes of HTML even with one story per group",
                    subscriber.email,
                    size,
                )
                break
            # Shrink in proportion to the overshoot, at least by one story per group.
            for g in digest.groups:
                caps[g.watchlist] = max(1, min(len(g.stories) - 1, int(len(g.stories) * factor)))
                hcaps[g.watchlist] = 0
            digest = self.build(subscriber, hits, caps=caps, headline_caps=hcaps, **kwargs)
            text, html = self.render_parts(digest)
            size = len(html.encode("utf-8"))
            log.debug("digest for %s shrunk to %d bytes (caps %s)", subscriber.email, size, caps)
        if not digest.groups:
            return None
        data = self._serialise(digest, text, html, now=now, message_id=message_id)
        return RenderedDigest(
            data=data, digest=digest, html=html, text=text, message_id=clean_header(message_id)
        )

    def _serialise(
        self, digest: Digest, text: str, html: str, *, now: datetime, message_id: str
    ) -> bytes:
        """The whole message, written directly: the email package's generator takes
        several milliseconds per 90 KB digest, which a run of thousands feels."""
        name, address = parseaddr(clean_header(self.options.sender))
        boundary = f"=_monitor_{uuid.uuid4().hex}"
        headers = [
            ("From", formataddr((name, address), charset="utf-8") if address else "monitor"),
            ("To", clean_header(digest.email)),
            ("Date", format_datetime(now.astimezone(UTC))),
            ("Message-ID", clean_header(message_id)),
            ("Subject", digest.subject),
            ("List-Unsubscribe", f"<{digest.unsubscribe_href}>"),
            ("Auto-Submitted", "auto-generated"),
            ("X-Auto-Response-Suppress", "All"),
            ("MIME-Version", "1.0"),
            ("Content-Type", f'multipart/alternative; boundary="{boundary}"'),
        ]
        out = [_header(k, v) for k, v in headers]
        out.append(b"\r\n")
        for subtype, body in (("plain", text), ("html", html)):
            out.append(
                f'--{boundary}\r\nContent-Type: text/{subtype}; charset="utf-8"\r\n'
                "Content-Transfer-Encoding: quoted-printable\r\n\r\n".encode("ascii")
            )
            encoded = binascii.b2a_qp(body.replace("\r\n", "\n").encode("utf-8"), istext=True)
            out.append(encoded.replace(b"\n", b"\r\n"))
            out.append(b"\r\n")
        out.append(f"--{boundary}--\r\n".encode("ascii"))
        return b"".join(out)


def _header(name: str, value: str) -> bytes:
    """One header line, without bidi controls; values that are not ASCII become RFC 2047
    encoded words."""
    value = collapse_ws(strip_bidi(value))
    try:
        value.encode("ascii")
    except UnicodeEncodeError:
        value = Header(value, "utf-8", header_name=name).encode(linesep="\r\n")
    return f"{name}: {value}\r\n".encode("ascii")


def _asdict(parts: _StoryParts) -> dict[str, Any]:
    return {name: getattr(parts, name) for name in _StoryParts.__slots__}


def _where(template: jinja2.Template, exc: BaseException) -> str:
    """``file:line`` of the template frame where ``exc`` was raised (Jinja maps frames)."""
    filename = template.filename or template.name or "template"
    line: int | None = getattr(exc, "lineno", None)
    tb: TracebackType | None = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename.endswith(".j2") or code.co_filename == filename:
            filename, line = code.co_filename, tb.tb_lineno
        tb = tb.tb_next
    return f"{filename}:{line}" if line else filename
