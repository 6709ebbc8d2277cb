"""Parse and match one fetched body: the CPU-bound part of a poll, run in worker processes.

Kept apart from :mod:`.poll` so that a worker imports the parser and the matcher only, not
the HTTP client, the database layer or the config loader (each worker is a fresh
interpreter: what it imports is paid once per worker per run). The parser itself is
imported on first use, so the polling process, which hands bodies to the workers, never
loads it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from monitor.models import Match, ParsedFeed

if TYPE_CHECKING:
    from monitor.match import Matcher
    from monitor.watchlists import Watchlist

log = logging.getLogger(__name__)

#: Matches of a parsed feed's items, by item identity.
ItemMatches = dict[str, list[Match]]

_worker_matcher: Matcher | None = None


def init_worker(watchlists: Sequence[Watchlist]) -> None:
    """A worker's initializer: compile the watchlists once for all its feeds."""
    from monitor.match import compile_watchlists

    global _worker_matcher
    _worker_matcher = compile_watchlists(watchlists)


def parse_and_match(
    body: bytes, headers: dict[str, str], url: str, matcher: Matcher | None = None
) -> tuple[ParsedFeed, ItemMatches]:
    """Parse a body and match every item.

    Bad input is data: even a parser crash becomes a warning on the feed, never an
    exception that stops the run.
    """
    from monitor.parse import parse

    matcher = matcher or _worker_matcher
    assert matcher is not None, "parse_and_match needs a matcher (or a worker initialised)"
    try:
        parsed = parse(body, headers, url=url)
    except Exception as exc:  # a feed must never stop the run
        log.exception("parser failed on %s", url)
        return ParsedFeed(items=[], warnings=[f"parser failed: {exc!r}"]), {}
    found: ItemMatches = {}
    for item in parsed.items:
        matches = matcher.match(item)
        if matches:
            found[item.identity] = matches
    return parsed, found
