from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from monitor.config import SubscriberConfig
from monitor.schedules import ScheduleError, in_quiet_hours, next_digest_time

LONDON = "Europe/London"
NEW_YORK = "America/New_York"


def sub(schedule: str, tz: str = "UTC", quiet: tuple[str, str] | None = None) -> SubscriberConfig:
    return SubscriberConfig(
        email="a@example.org", schedule=schedule, timezone=tz, quiet_hours=quiet
    )


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def local(tz: str, *args: int) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(tz))  # type: ignore[misc]


def series(s: SubscriberConfig, start: datetime, n: int) -> list[datetime]:
    out, at = [], start
    for _ in range(n):
        at = next_digest_time(s, at)
        out.append(at)
    return out


def test_immediate_is_due_at_once() -> None:
    at = utc(2025, 1, 1, 12, 0)
    assert next_digest_time(sub("immediate"), at) == at


def test_result_is_aware_utc_and_strictly_after() -> None:
    s = sub("daily 08:00", "Asia/Almaty")
    at = local("Asia/Almaty", 2025, 5, 1, 8, 0)
    nxt = next_digest_time(s, at)
    assert nxt.tzinfo is UTC
    assert nxt == local("Asia/Almaty", 2025, 5, 2, 8, 0)


def test_naive_datetime_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        next_digest_time(sub("hourly"), datetime(2025, 1, 1))


def test_daily_follows_london_wall_clock_across_spring_forward() -> None:
    # Clocks go forward on Sunday 30 March 2025 at 01:00 UTC.
    got = series(sub("daily 08:00", LONDON), utc(2025, 3, 28, 12), 4)
    assert got == [
        utc(2025, 3, 29, 8, 0),  # GMT
        utc(2025, 3, 30, 7, 0),  # BST from here on
        utc(2025, 3, 31, 7, 0),
        utc(2025, 4, 1, 7, 0),
    ]
    assert all(t.astimezone(ZoneInfo(LONDON)).hour == 8 for t in got)


def test_daily_follows_london_wall_clock_across_fall_back() -> None:
    got = series(sub("daily 08:00", LONDON), utc(2025, 10, 25, 12), 2)
    assert got == [utc(2025, 10, 26, 8, 0), utc(2025, 10, 27, 8, 0)]


def test_time_in_the_spring_gap_fires_once_after_the_gap() -> None:
    # 01:30 does not exist in London on 30 March 2025.
    got = series(sub("daily 01:30", LONDON), utc(2025, 3, 29, 12), 2)
    assert got[0] == utc(2025, 3, 30, 1, 30)  # 02:30 BST: the gap's length later, once
    assert got[1] == utc(2025, 3, 31, 0, 30)  # 01:30 BST
    assert got[0] < got[1]


def test_weekly_new_york_across_dst_start() -> None:
    # DST starts Sunday 9 March 2025 in New York.
    got = series(sub("weekly monday 09:30", NEW_YORK), utc(2025, 3, 1), 3)
    assert got == [
        utc(2025, 3, 3, 14, 30),  # EST, UTC-5
        utc(2025, 3, 10, 13, 30),  # EDT, UTC-4
        utc(2025, 3, 17, 13, 30),
    ]
    assert all(t.astimezone(ZoneInfo(NEW_YORK)).strftime("%a %H:%M") == "Mon 09:30" for t in got)


def test_fixed_time_in_the_repeated_hour_fires_once() -> None:
    # 01:30 happens twice in London on 26 October 2025 (BST, then GMT).
    got = series(sub("daily 01:30", LONDON), utc(2025, 10, 25, 12), 2)
    assert got == [utc(2025, 10, 26, 0, 30), utc(2025, 10, 27, 1, 30)]
    got = series(sub("30 1 * * *", LONDON), utc(2025, 10, 25, 12), 2)
    assert got == [utc(2025, 10, 26, 0, 30), utc(2025, 10, 27, 1, 30)]


def test_hourly_in_a_half_hour_zone() -> None:
    got = series(sub("hourly", "Asia/Kolkata"), utc(2025, 1, 1, 0, 10), 2)
    assert got == [utc(2025, 1, 1, 0, 30), utc(2025, 1, 1, 1, 30)]


def test_hourly_across_fall_back_counts_the_repeated_hour() -> None:
    # New York repeats 01:00-02:00 on 2 November 2025: 05:00 and 06:00 UTC are both 01:xx.
    got = series(sub("hourly", NEW_YORK), utc(2025, 11, 2, 4, 30), 3)
    assert got == [utc(2025, 11, 2, 5), utc(2025, 11, 2, 6), utc(2025, 11, 2, 7)]


@pytest.mark.parametrize(
    ("expr", "expected_days"),
    [
        ("0 9 * * 1-5", ["Mon", "Tue", "Wed", "Thu", "Fri", "Mon"]),
        ("0 9 * * 0", ["Sun", "Sun"]),
        ("0 9 * * 7", ["Sun", "Sun"]),
        ("0 9 * * sat,sun", ["Sat", "Sun", "Sat"]),
        ("0 9 * * 5-7", ["Fri", "Sat", "Sun", "Fri"]),
    ],
)
def test_cron_weekdays_read_as_crontab(expr: str, expected_days: list[str]) -> None:
    # 1 January 2025 is a Wednesday; start on the Sunday before.
    got = series(sub(expr, NEW_YORK), local(NEW_YORK, 2024, 12, 29, 10), len(expected_days))
    assert [t.astimezone(ZoneInfo(NEW_YORK)).strftime("%a") for t in got] == expected_days
    assert all(t.astimezone(ZoneInfo(NEW_YORK)).hour == 9 for t in got)


def test_cron_across_dst_keeps_local_time() -> None:
    got = series(sub("30 7 * * *", LONDON), utc(2025, 3, 29, 12), 2)
    assert got == [utc(2025, 3, 30, 6, 30), utc(2025, 3, 31, 6, 30)]


def test_cron_steps_and_lists() -> None:
    got = series(sub("*/20 8,17 * * *"), utc(2025, 1, 1, 8, 5), 4)
    assert got == [utc(2025, 1, 1, 8, 20), utc(2025, 1, 1, 8, 40), utc(2025, 1, 1, 17, 0),
                   utc(2025, 1, 1, 17, 20)]  # fmt: skip


def test_impossible_schedules_raise() -> None:
    with pytest.raises(ScheduleError):
        next_digest_time(sub("0 9 * * 9"), utc(2025, 1, 1))
    with pytest.raises(ScheduleError):
        next_digest_time(sub("fortnightly"), utc(2025, 1, 1))


def test_quiet_hours_overnight() -> None:
    s = sub("immediate", LONDON, ("22:00", "07:00"))
    assert in_quiet_hours(s, local(LONDON, 2025, 1, 10, 21, 59)) is None
    assert in_quiet_hours(s, local(LONDON, 2025, 1, 10, 22, 0)) == local(LONDON, 2025, 1, 11, 7)
    assert in_quiet_hours(s, local(LONDON, 2025, 1, 11, 3, 0)) == local(LONDON, 2025, 1, 11, 7)
    assert in_quiet_hours(s, local(LONDON, 2025, 1, 11, 7, 0)) is None
    end = in_quiet_hours(s, local(LONDON, 2025, 1, 11, 3, 0))
    assert end is not None and end.tzinfo is UTC


def test_quiet_hours_same_day_span_and_empty_span() -> None:
    s = sub("immediate", NEW_YORK, ("12:00", "13:30"))
    assert in_quiet_hours(s, local(NEW_YORK, 2025, 6, 1, 12, 45)) == local(
        NEW_YORK, 2025, 6, 1, 13, 30
    )
    assert in_quiet_hours(s, local(NEW_YORK, 2025, 6, 1, 14, 0)) is None
    assert in_quiet_hours(sub("immediate", quiet=("09:00", "09:00")), utc(2025, 1, 1, 9)) is None
    assert in_quiet_hours(sub("immediate"), utc(2025, 1, 1, 9)) is None


def test_quiet_hours_across_dst_end_in_local_time() -> None:
    # The night the clocks go back in London, quiet hours still end at 07:00 local (GMT).
    s = sub("immediate", LONDON, ("23:00", "07:00"))
    end = in_quiet_hours(s, utc(2025, 10, 25, 23, 30))  # 00:30 BST on the 26th
    assert end == utc(2025, 10, 26, 7, 0)
    # ... and the night they go forward, at 07:00 BST.
    end = in_quiet_hours(s, utc(2025, 3, 29, 23, 30))
    assert end == utc(2025, 3, 30, 6, 0)


def test_next_digest_time_waits_for_quiet_hours_to_end() -> None:
    s = sub("immediate", "Asia/Almaty", ("22:00", "07:00"))
    at = local("Asia/Almaty", 2025, 2, 1, 23, 15)
    assert next_digest_time(s, at) == local("Asia/Almaty", 2025, 2, 2, 7, 0)
    s = sub("daily 06:00", "Asia/Almaty", ("22:00", "07:00"))
    assert next_digest_time(s, at) == local("Asia/Almaty", 2025, 2, 2, 7, 0)
    s = sub("daily 08:00", "Asia/Almaty", ("22:00", "07:00"))
    assert next_digest_time(s, at) == local("Asia/Almaty", 2025, 2, 2, 8, 0)


@dataclass(frozen=True)
class Plain:
    schedule: str
    timezone: str
    quiet_hours: tuple[str, str] | None = None


def test_any_object_with_the_fields_will_do() -> None:
    at = utc(2025, 7, 1, 0, 0)
    assert next_digest_time(Plain("daily 00:00", "UTC"), at) == at + timedelta(days=1)
