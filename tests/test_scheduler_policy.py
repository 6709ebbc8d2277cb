"""The adaptive polling policy (monitor.schedule_policy): pure, so tested exhaustively."""

from __future__ import annotations

import random

import pytest

from monitor.schedule_policy import (
    BUSY_FACTOR,
    JITTER,
    QUIET_MAX_FACTOR,
    QUIET_STEP,
    Bounds,
    PollFacts,
    next_delay,
    next_poll_delay,
    quiet_polls_after,
    working_interval,
)

BOUNDS = Bounds(min_interval=120.0, max_interval=86400.0)


def facts(**kw: object) -> PollFacts:
    base: dict[str, object] = {
        "base_interval": 900.0,
        "ok": True,
        "new_items": 0,
        "first_poll": False,
        "quiet_polls": 0,
        "consecutive_failures": 0,
    }
    base.update(kw)
    return PollFacts(**base)  # type: ignore[arg-type]


def test_busy_feeds_are_polled_more_often() -> None:
    assert working_interval(facts(new_items=3), BOUNDS) == 900.0 * BUSY_FACTOR


def test_quiet_feeds_slow_down_step_by_step_up_to_a_cap() -> None:
    assert working_interval(facts(quiet_polls=0), BOUNDS) == 900.0
    assert working_interval(facts(quiet_polls=QUIET_STEP - 1), BOUNDS) == 1800.0
    assert working_interval(facts(quiet_polls=10 * QUIET_STEP), BOUNDS) == 900.0 * QUIET_MAX_FACTOR


def test_first_poll_is_neither_busy_nor_quiet() -> None:
    first = facts(first_poll=True, new_items=50)
    assert working_interval(first, BOUNDS) == 900.0
    assert quiet_polls_after(first) == 0


def test_quiet_count_moves_only_on_success() -> None:
    assert quiet_polls_after(facts(quiet_polls=2)) == 3
    assert quiet_polls_after(facts(quiet_polls=2, new_items=1)) == 0
    assert quiet_polls_after(facts(quiet_polls=2, ok=False)) == 2


def test_server_hints_are_floors_and_bounds_hold() -> None:
    assert working_interval(facts(new_items=1, server_hint=3600.0), BOUNDS) == 3600.0
    assert working_interval(facts(server_hint=10 * 86400.0), BOUNDS) == 86400.0
    tight = Bounds(min_interval=600.0, max_interval=1000.0)
    assert working_interval(facts(new_items=5), tight) == 600.0
    assert working_interval(facts(quiet_polls=100), tight) == 1000.0


def test_jitter_spreads_within_bounds() -> None:
    rng = random.Random(7)
    delays = [next_poll_delay(facts(), BOUNDS, rng) for _ in range(500)]
    assert min(delays) >= 900.0 * (1 - JITTER) and max(delays) <= 900.0 * (1 + JITTER)
    assert max(delays) - min(delays) > 900.0 * JITTER  # really spread, not constant
    floor = Bounds(min_interval=900.0, max_interval=86400.0)
    assert all(next_poll_delay(facts(), floor, rng) >= 900.0 for _ in range(200))


def test_retry_after_is_a_floor_capped_at_max_interval() -> None:
    assert next_poll_delay(facts(retry_after=7200.0), BOUNDS) >= 7200.0
    failing = facts(ok=False, consecutive_failures=0, retry_after=3600.0)
    assert next_poll_delay(failing, BOUNDS) >= 3600.0
    huge = facts(ok=False, retry_after=10 * 86400.0)
    assert next_poll_delay(huge, BOUNDS) == 86400.0


@pytest.mark.parametrize("failures", [0, 1, 3, 10, 60])
def test_failures_back_off_above_the_interval_up_to_max(failures: int) -> None:
    rng = random.Random(failures)
    for _ in range(100):
        delay = next_poll_delay(facts(ok=False, consecutive_failures=failures), BOUNDS, rng)
        assert 900.0 <= delay <= min(86400.0, 900.0 * 2 ** (failures + 1))


# - failure backoff


def test_next_delay_without_failures_is_the_interval() -> None:
    assert next_delay(consecutive_failures=0, interval=900, retry_after=None) == 900


def test_next_delay_grows_within_bounds() -> None:
    rng = random.Random(7)
    for failures in range(1, 8):
        for _ in range(50):
            delay = next_delay(
                consecutive_failures=failures, interval=60, retry_after=None, cap=1e9, rng=rng
            )
            assert 60 <= delay <= 60 * 2**failures


def test_next_delay_is_jittered_and_reproducible() -> None:
    def draws(seed: int) -> list[float]:
        rng = random.Random(seed)
        return [
            next_delay(consecutive_failures=4, interval=60, retry_after=None, rng=rng)
            for _ in range(20)
        ]

    assert draws(1) == draws(1)
    assert len(set(draws(1))) > 15


def test_next_delay_capped() -> None:
    for failures in (10, 100, 10_000):
        delay = next_delay(consecutive_failures=failures, interval=900, retry_after=None, cap=3600)
        assert 900 <= delay <= 3600
    default = next_delay(consecutive_failures=50, interval=900, retry_after=None)
    assert default <= 24 * 3600


def test_next_delay_retry_after_is_a_floor_but_capped() -> None:
    assert next_delay(consecutive_failures=0, interval=60, retry_after=600, cap=3600) == 600
    assert next_delay(consecutive_failures=1, interval=60, retry_after=600, cap=3600) == 600
    assert next_delay(consecutive_failures=1, interval=60, retry_after=10**9, cap=3600) == 3600


def test_next_delay_never_below_a_long_interval() -> None:
    assert next_delay(consecutive_failures=3, interval=7200, retry_after=None, cap=3600) == 7200


def test_next_delay_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        next_delay(consecutive_failures=1, interval=0, retry_after=None)
