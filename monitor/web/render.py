"""Rendering helpers of the web view: the Jinja2 environment, highlighted snippets and the
hits-per-day chart (an SVG drawn on the server, no script, no external asset).

Everything shown comes from feeds and is untrusted: templates autoescape, links pass
:func:`safe_href` (absolute http/https only), and the chart is built from numbers and
escaped labels.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from xml.sax.saxutils import escape

import jinja2
from markupsafe import Markup

from monitor.normalise import collapse_ws, http_url_or_none
from monitor.wording import plural

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["href"] = safe_href
    env.filters["when"] = when
    env.filters["one_line"] = lambda t: collapse_ws(t or "")
    env.filters["plural"] = plural
    return env


def safe_href(url: str | None) -> str | None:
    """``url`` if it is an absolute http(s) URL, else None (never ``javascript:`` & co)."""
    return http_url_or_none(url)


def when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if moment else "-"


def snippet(text: str, words: Sequence[str], width: int = 240) -> list[tuple[str, bool]]:
    """A window of ``text`` around the first of ``words`` found, cut into
    ``(part, highlighted)`` pieces; the template marks the highlighted ones."""
    text = collapse_ws(text)
    wanted = [w for w in words if w]
    if not wanted:
        return [(_cut(text, 0, width), False)] if text else []
    pattern = re.compile(
        r"(?<!\w)(" + "|".join(re.escape(w) for w in sorted(wanted, key=len, reverse=True)) + r")",
        re.IGNORECASE,
    )
    first = pattern.search(text)
    start = max(0, (first.start() if first else 0) - width // 3)
    if start:
        space = text.find(" ", start)
        start = space + 1 if 0 <= space < start + 20 else start
    window = text[start : start + width]
    pieces: list[tuple[str, bool]] = []
    if start:
        pieces.append(("…", False))
    pos = 0
    for m in pattern.finditer(window):
        if m.start() > pos:
            pieces.append((window[pos : m.start()], False))
        pieces.append((m.group(0), True))
        pos = m.end()
    pieces.append((window[pos:], False))
    if start + width < len(text):
        pieces.append(("…", False))
    return [p for p in pieces if p[0]]


def _cut(text: str, start: int, width: int) -> str:
    return text[start : start + width] + ("…" if len(text) > start + width else "")


def bar_chart(series: Sequence[tuple[date, int]], *, label: str) -> Markup:
    """Hits per day as an accessible SVG bar chart (title, axis, every bar with its count)."""
    width, height, left, bottom, top = 720, 200, 40, 30, 12
    plot_w, plot_h = width - left - 10, height - bottom - top
    peak = max((n for _, n in series), default=0)
    scale_max = _nice(peak)
    n = max(1, len(series))
    step = plot_w / n
    bar_w = max(1.0, step * 0.8)
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="chart-title" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="chart-title">{escape(label)}</title>',
    ]
    for frac in (0.0, 0.5, 1.0):
        y = top + plot_h - frac * plot_h
        value = round(scale_max * frac)
        parts.append(
            f'<line class="grid" x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="axis" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{value}</text>'
        )
    for i, (day, count) in enumerate(series):
        h = plot_h * count / scale_max if scale_max else 0
        x = left + i * step + (step - bar_w) / 2
        y = top + plot_h - h
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}">'
            f"<title>{day.isoformat()}: {count} hits</title></rect>"
        )
        if i % max(1, n // 6) == 0 or i == n - 1:
            parts.append(
                f'<text class="axis" x="{x + bar_w / 2:.1f}" y="{height - 10}" '
                f'text-anchor="middle">{day.strftime("%d %b")}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def _nice(peak: int) -> int:
    """The smallest 1, 2 or 5 times a power of ten that is at least ``peak`` (4 for 0-4)."""
    if peak <= 4:
        return 4
    magnitude = 1
    while True:
        for m in (1, 2, 5):
            if m * magnitude >= peak:
                return m * magnitude
        magnitude *= 10
