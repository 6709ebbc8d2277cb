"""Text and identity helpers shared by every stage: plain text from HTML, header-safe
strings, canonical URLs and the stable identity of a feed item.

Everything here is pure, never raises on bad input, and is cheap enough to run on every
title, summary and content of every item of every poll.
"""

from __future__ import annotations

import functools
import hashlib
import html
import re
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "TRACKING_PARAMS",
    "TRACKING_PREFIXES",
    "canonical_url",
    "clean_header",
    "collapse_ws",
    "html_to_text",
    "http_url_or_none",
    "identity_basis",
    "item_identity",
    "tidy_text",
]

# --- HTML to text -------------------------------------------------------------------

# Removed together with their content. Unclosed ones run to the end of the text, as an
# HTML parser would read them.
_INVISIBLE = re.compile(
    r"<!--.*?(?:-->|\Z)"
    r"|<!\[CDATA\[.*?(?:\]\]>|\Z)"
    r"|<(script|style)\b[^<>]*+>.*?(?:</\1\s*>|\Z)",
    re.DOTALL | re.IGNORECASE,
)

# One tag (or doctype / processing instruction). Quoted attribute values may hold '>'.
# Possessive quantifiers and stopping at an unquoted '<' keep stray '<'s in text from
# making the scan quadratic.
_TAG = re.compile(r"""<(?:/?([A-Za-z][A-Za-z0-9]*+)|[!?])(?:[^<>"']++|"[^"]*+"|'[^']*+')*+>""")
_TAG_START = re.compile(r"<[A-Za-z/!?]")

# Tags after which text starts on a new line.
_BLOCK_TAGS = frozenset(
    """address article aside blockquote br caption center dd details dialog div dl dt
    fieldset figcaption figure footer form h1 h2 h3 h4 h5 h6 header hr legend li main nav
    ol p pre section summary table tbody tfoot thead tr ul""".split()
)
# Tags that separate words without starting a line.
_SPACE_TAGS = frozenset("td th img".split())

# Control characters that str.split() does not take for whitespace; text never keeps them.
_TEXT_CONTROLS = re.compile("[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f]")

# Marks a line break while the text is rebuilt (input NULs are made spaces first).
_BREAK = "\x00"
_CONTROLS_BUT_BREAK = re.compile("[\x01-\x08\x0e-\x1b\x7f-\x84\x86-\x9f]")


def _tag_replacement(match: re.Match[str]) -> str:
    name = match.group(1)
    if name is None:  # "<!doctype ...>", "<?xml ...?>": nothing to show
        return ""
    name = name.lower()
    if name in _BLOCK_TAGS:
        return _BREAK
    if name in _SPACE_TAGS:
        return " "
    return ""


def tidy_text(text: str) -> str:
    """Plain text tidied: control characters made spaces, each line's whitespace collapsed
    and stripped, empty lines dropped."""
    lines = (" ".join(line.split()) for line in _TEXT_CONTROLS.sub(" ", text).splitlines())
    return "\n".join(line for line in lines if line)


def html_to_text(markup: str) -> str:
    """Readable plain text of an HTML fragment.

    Tags go; ``<script>``/``<style>`` elements, comments and CDATA sections go with their
    content; entities are decoded (``&nbsp;`` becomes a space); block elements (``p``,
    ``div``, ``br``, ``li``, ``h1``-``h6``, ``tr``, ``blockquote``, ...) start a new line;
    whitespace is collapsed as a browser would, then lines are stripped and empty lines
    dropped; control characters become spaces. Text without ``<`` or ``&`` is only
    tidied (:func:`tidy_text`).
    """
    if "<" not in markup and "&" not in markup:
        return tidy_text(markup)
    if _BREAK in markup:
        markup = markup.replace(_BREAK, " ")
    if "<" in markup and _TAG_START.search(markup) is not None:
        if "<!" in markup or "<s" in markup or "<S" in markup:
            markup = _INVISIBLE.sub("", markup)
        markup = _TAG.sub(_tag_replacement, markup)
    if "&" in markup:
        markup = html.unescape(markup)  # may yield C1 controls: "&#x81;" is "\x81"
    # Source line breaks are plain whitespace in HTML; only block tags break lines. Each
    # line's whitespace is collapsed and its edges trimmed; a line with no whitespace but
    # single spaces (once no-break spaces are spaces) and nothing unprintable (so no
    # control character either), the common case, only needs its edges trimmed.
    lines = []
    for part in markup.split(_BREAK):
        if "\xa0" in part:
            part = part.replace("\xa0", " ")
        if part.isprintable() and "  " not in part:
            line = part.strip(" ")
        else:
            line = " ".join(_CONTROLS_BUT_BREAK.sub(" ", part).split())
        if line:
            lines.append(line)
    return "\n".join(lines)


# --- header-safe text ---------------------------------------------------------------

# C0 and C1 control characters, DEL, and the Unicode line/paragraph separators.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


# Bidirectional formatting characters: marks (ALM, LRM, RLM), embeddings and overrides
# (LRE, RLE, PDF, LRO, RLO) and isolates (LRI, RLI, FSI, PDI). In a header they can make
# a subject or a name read backwards ("Trojan Source" spoofing); they are dropped there.
_BIDI_CONTROLS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def strip_bidi(text: str) -> str:
    """``text`` without bidirectional formatting characters."""
    return _BIDI_CONTROLS.sub("", text)


def collapse_ws(text: str) -> str:
    """One line: every run of whitespace and control characters becomes one space."""
    return " ".join(_CONTROLS.sub(" ", text).split())


def clean_header(text: str, max_len: int | None = None) -> str:
    """Text safe for a mail header: :func:`collapse_ws` and :func:`strip_bidi`, then cut
    to ``max_len`` characters (the last one an ellipsis) when longer."""
    text = collapse_ws(strip_bidi(text))
    if max_len is not None and len(text) > max_len:
        if max_len <= 1:
            return text[:max_len]
        text = text[: max_len - 1].rstrip() + "…"
    return text


# --- URLs ---------------------------------------------------------------------------

#: Query parameters that only track a click; removed by :func:`canonical_url`
#: (compared case-insensitively).
TRACKING_PARAMS: tuple[str, ...] = (
    "fbclid",
    "gclid",
    "dclid",
    "gbraid",
    "wbraid",
    "msclkid",
    "twclid",
    "ttclid",
    "li_fat_id",
    "mc_cid",
    "mc_eid",
    "yclid",
    "_hsenc",
    "_hsmi",
    "__hssc",
    "__hstc",
    "__hsfp",
    "hsctatracking",
    "mkt_tok",
    "igshid",
    "ref_src",
    "ref_url",
    "_ga",
    "_gl",
    "oly_anon_id",
    "oly_enc_id",
    "rb_clickid",
    "s_cid",
    "vero_conv",
    "vero_id",
    "wickedid",
)
#: Query parameter name prefixes that only track a click.
TRACKING_PREFIXES: tuple[str, ...] = ("utm_",)

_TRACKING = frozenset(TRACKING_PARAMS)
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _is_tracking(param: str) -> bool:
    name = param.partition("=")[0].lower()
    return name in _TRACKING or name.startswith(TRACKING_PREFIXES)


def canonical_url(url: str) -> str:
    """The URL in the one spelling we store and compare.

    For http(s) URLs: scheme and host lower-cased, default port dropped, empty path made
    ``/``, fragment dropped, tracking parameters (:data:`TRACKING_PARAMS`,
    :data:`TRACKING_PREFIXES`) removed; the remaining query keeps its order and spelling,
    and an empty query goes. Other URLs and anything unparsable come back stripped.
    """
    url = url.strip()
    if ":" not in url:  # no scheme, so nothing to change
        return url
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS or not parts.netloc:
            return url
        host = parts.hostname or ""
        port = parts.port
    except ValueError:  # a bad port, an unbalanced "[" in the host, ...
        return url
    if not host:
        return url
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    userinfo, at, _ = parts.netloc.rpartition("@")
    netloc = f"{userinfo}{at}{host}"
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc = f"{netloc}:{port}"
    query = parts.query
    if query:
        query = "&".join(p for p in query.split("&") if p and not _is_tracking(p))
    return urlunsplit((scheme, netloc, parts.path or "/", query, ""))


def http_url_or_none(url: str | None) -> str | None:
    """``url`` stripped if it is an absolute http or https URL with a host, else None."""
    if not url or ":" not in url:  # no scheme ("post-42", "/path"): the common guid
        return None
    url = url.strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in _DEFAULT_PORTS or not parts.netloc:
        return None
    return url


# --- item identity ------------------------------------------------------------------


def _is_global_id(guid: str) -> bool:
    """A guid that names the item world-wide: an http(s) URL, or a ``tag:``/``urn:`` URI."""
    lowered = guid[:6].lower()
    if lowered.startswith(("tag:", "urn:")):
        return len(guid) > 4
    return http_url_or_none(guid) is not None


def identity_basis(
    *, guid: str | None, link: str | None, title: str, text: str, feed_url: str
) -> str:
    """The readable string :func:`item_identity` hashes. The first rule that applies wins:

    ``guid:<guid>``
        a guid that is globally unique: an http(s) URL (canonicalised, so tracking
        variants collapse) or a ``tag:``/``urn:`` URI (as written). The same guid in two
        feeds is the same item.
    ``guid:<canonical feed url> <guid>``
        any other guid ("1", "post-42"), scoped by the feed so unrelated feeds differ.
    ``link:<canonical link>``
        no guid: the item's link.
    ``text:<canonical feed url> <sha256 of title and text>``
        neither: the item's content, within its feed.

    ``feed_url`` should be the feed's configured URL, which stays put across polls.
    """
    guid = guid.strip() if guid else ""
    if guid:
        if _is_global_id(guid):
            return f"guid:{canonical_url(guid)}"
        return f"guid:{_canonical_feed_url(feed_url)} {guid}"
    if link and link.strip():
        return f"link:{canonical_url(link)}"
    digest = hashlib.sha256(f"{title}\n{text}".encode("utf-8", "surrogatepass")).hexdigest()
    return f"text:{_canonical_feed_url(feed_url)} {digest}"


# Every item of a feed scopes its identity by the same feed URL.
_canonical_feed_url = functools.lru_cache(maxsize=1024)(canonical_url)


def item_identity(
    *, guid: str | None, link: str | None, title: str, text: str, feed_url: str
) -> str:
    """The stable key of an item: the SHA-256 hex digest (64 characters) of
    :func:`identity_basis`. Pass normalised plain text (as :mod:`monitor.parse` does) so
    that markup or whitespace changes do not make an item look new."""
    basis = identity_basis(guid=guid, link=link, title=title, text=text, feed_url=feed_url)
    return hashlib.sha256(basis.encode("utf-8", "surrogatepass")).hexdigest()
