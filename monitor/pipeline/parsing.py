"""Parse and match one fetched body: the CPU-bound part of a poll, run in worker processes.

Kept apart from :mod:`.poll` so that a worker imports the parser and the matcher only, not
the HTTP client, the database layer or the config loader (each worker is a fresh
interpreter: what it imports is paid once per worker per run). The parser itself is
imported on first use, so the polling process, which hands bodies to the workers, never
loads it.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Collection
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from monitor.lang import detect as detect_language
from monitor.models import Item, Match, ParsedFeed

if TYPE_CHECKING:
    from monitor.match import Matcher
    from monitor.watchlists import WatchlistRegistry

log = logging.getLogger(__name__)

#: Matches of a parsed feed's items, by item identity.
ItemMatches = dict[str, list[Match]]

_worker_matcher: Matcher | None = None

#: How often a parse worker checks that the process that started it is still there.
PARENT_CHECK_EVERY = 1.0
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def init_worker(matcher: Matcher, parent: int | None = None) -> None:
    """A worker's initializer: end with ``parent``, keep the compiled watchlists for all
    its feeds."""
    global _worker_matcher
    if parent is not None:
        _die_with_parent(parent)
    _worker_matcher = matcher


def worker_matcher() -> Matcher:
    """The matcher of this parse worker process (set when the worker started)."""
    assert _worker_matcher is not None, "not in a parse worker"
    return _worker_matcher


def _die_with_parent(parent: int) -> None:
    """End this worker when ``parent`` ends, however it ends (``kill -9`` included).

    On Linux the kernel sends SIGKILL when the parent dies (``PR_SET_PDEATHSIG``); on
    every system a thread also checks the parent pid, which changes when the worker is
    orphaned (and covers a parent that died before the signal was asked for).
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            log.debug("prctl(PR_SET_PDEATHSIG) unavailable; relying on the parent check")

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_EVERY)
        os._exit(1)

    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=watch, name="monitor-parent-check", daemon=True).start()


def parse_and_match(
    body: bytes,
    headers: dict[str, str],
    url: str,
    matcher: Matcher | None = None,
    max_items: int | None = None,
    known: Collection[str] = frozenset(),
) -> tuple[ParsedFeed, ItemMatches]:
    """Parse a body and match every item whose identity is not in ``known``.

    Items with a ``known`` identity are already stored (``store.feeds.recent_identities``)
    and would be skipped by the store: they are dropped as soon as their identity is
    worked out (most of them before their text is made, see :func:`monitor.parse.parse`),
    so that neither language detection, matching nor the trip back to the polling
    process is spent on them. Everything else the parser says of the body (its warnings,
    title, ``ttl``) stays as it is.

    Bad input is data: even a parser crash becomes a warning on the feed, never an
    exception that stops the run.
    """
    from monitor.parse import parse

    matcher = matcher or _worker_matcher
    assert matcher is not None, "parse_and_match needs a matcher (or a worker initialised)"
    try:
        parsed = parse(body, headers, url=url, max_items=max_items, known=known)
    except Exception as exc:  # a feed must never stop the run
        log.exception("parser failed on %s", url)
        return ParsedFeed(items=[], warnings=[f"parser failed: {exc!r}"]), {}
    found: ItemMatches = {}
    items = [with_language(item) for item in parsed.items if item.identity not in known]
    for item in items:
        matches = matcher.match(item)
        if matches:
            found[item.identity] = matches
    return replace(parsed, items=items), found


def with_language(item: Item) -> Item:
    """The item with its detected language (``monitor.lang``)."""
    if item.lang is not None:
        return item
    return replace(item, lang=detect_language(item.title, item.summary, item.content))


def watchlist_registry(directory: Path) -> WatchlistRegistry[Matcher]:
    """The watchlists of ``directory``, compiled for matching and reloaded on edit."""
    from monitor.match import compile_watchlists
    from monitor.watchlists import WatchlistRegistry

    return WatchlistRegistry(directory, compile_watchlists)
