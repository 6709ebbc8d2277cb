"""When to poll a feed next: the adaptive interval policy. Pure, no I/O.

The daemon keeps each feed's schedule in the database (``feeds.next_due_at``); this module
decides it after every poll, from what the poll and the feed's recent history say:

1. **Base interval**: the feed's own ``interval``, else ``[polling] interval``.
2. **Activity**: a feed that brought new items is polled twice as often
   (:data:`BUSY_FACTOR`); one that stays quiet is polled less often, doubling after every
   :data:`QUIET_STEP` quiet polls in a row, up to :data:`QUIET_MAX_FACTOR` times the base.
   A feed's first poll is neither busy nor quiet (every item is new then).
3. **Server hints** are floors: ``Cache-Control: max-age`` and RSS ``<ttl>`` (we never poll
   sooner than the server asked).
4. **Bounds**: the result is kept within ``[polling.min_interval, polling.max_interval]``.
5. **Jitter**: ±:data:`JITTER` of the interval, so feeds polled together drift apart and
   never hit their servers in lock-step (never below ``min_interval``).
6. **Failures** back off exponentially with full jitter above the interval
   (:func:`next_delay`), capped at ``max_interval``; a ``Retry-After`` is a
   floor (itself capped at ``max_interval``: a server cannot park a feed for a year).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

#: Interval multiplier for a feed whose last poll brought new items.
BUSY_FACTOR = 0.5
#: Quiet polls in a row before the interval doubles (again).
QUIET_STEP = 4
#: A quiet feed's interval grows to at most this many times its base.
QUIET_MAX_FACTOR = 4.0
#: Relative jitter applied to a working feed's interval.
JITTER = 0.1


#: Failure backoff never grows past this (unless a feed's own interval is longer): a day.
DEFAULT_BACKOFF_CAP = 24 * 60 * 60.0

#: One generator for the process: seeding a new one per poll costs ~1 ms (os.urandom).
_RNG = random.Random()


@dataclass(frozen=True, slots=True)
class PollFacts:
    """What one poll of a feed found, and the feed's history before it."""

    base_interval: float  # the feed's own interval or the [polling] default, seconds
    ok: bool  # the fetch worked (200 or 304)
    new_items: int  # items stored for the first time by this poll
    first_poll: bool  # the feed had never been polled before
    quiet_polls: int  # successful polls in a row without new items, before this one
    consecutive_failures: int  # failures in a row before this poll
    server_hint: float | None = None  # max-age / ttl, seconds
    retry_after: float | None = None  # Retry-After, seconds


@dataclass(frozen=True, slots=True)
class Bounds:
    min_interval: float
    max_interval: float


def quiet_polls_after(facts: PollFacts) -> int:
    """The feed's count of quiet polls in a row once this poll is recorded."""
    if not facts.ok:
        return facts.quiet_polls  # a failure says nothing about the feed's activity
    if facts.new_items > 0 or facts.first_poll:
        return 0
    return facts.quiet_polls + 1


def activity_factor(facts: PollFacts) -> float:
    """How much the activity seen stretches (>1) or shrinks (<1) the base interval."""
    if facts.first_poll:
        return 1.0
    if facts.new_items > 0:
        return BUSY_FACTOR
    quiet = quiet_polls_after(facts)
    return float(min(2.0 ** (quiet // QUIET_STEP), QUIET_MAX_FACTOR))


def working_interval(facts: PollFacts, bounds: Bounds) -> float:
    """The interval of a working feed before jitter: base × activity, hint as floor, bounded."""
    interval = facts.base_interval * activity_factor(facts)
    if facts.server_hint:
        interval = max(interval, facts.server_hint)
    return min(max(interval, bounds.min_interval), bounds.max_interval)


def next_poll_delay(facts: PollFacts, bounds: Bounds, rng: random.Random | None = None) -> float:
    """Seconds from now until the feed's next poll (see the module docstring)."""
    rng = rng or _RNG
    interval = working_interval(facts, bounds)
    if facts.ok:
        jittered = interval * rng.uniform(1.0 - JITTER, 1.0 + JITTER)
        delay = min(max(jittered, bounds.min_interval), bounds.max_interval)
        if facts.retry_after is not None:
            delay = max(delay, min(facts.retry_after, bounds.max_interval))
        return delay
    return next_delay(
        consecutive_failures=facts.consecutive_failures + 1,
        interval=interval,
        retry_after=facts.retry_after,
        cap=max(bounds.max_interval, interval),
        rng=rng,
    )


def next_delay(
    *,
    consecutive_failures: int,
    interval: float,
    retry_after: float | None,
    cap: float = DEFAULT_BACKOFF_CAP,
    rng: random.Random | None = None,
) -> float:
    """Seconds until the next poll of a feed.

    No failures: the interval. After n failures: drawn uniformly between the interval and
    ``interval * 2**n`` ("full jitter" above the interval, so failing feeds spread out
    and never poll more often than usual), that ceiling held at ``cap``. A Retry-After is a
    floor. Nothing exceeds ``max(cap, interval)``: a server cannot park a feed for a year.
    """
    if interval <= 0 or cap <= 0:
        raise ValueError("interval and cap must be positive")
    if consecutive_failures <= 0:
        delay = interval
    else:
        ceiling = max(interval, min(cap, interval * 2.0 ** min(consecutive_failures, 62)))
        delay = (rng or random).uniform(interval, ceiling)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return min(delay, max(cap, interval))
