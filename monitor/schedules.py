"""When a subscriber's next digest is due, in the subscriber's own time zone.

Pure functions, no I/O. Schedules (already checked by ``config.validate_schedule``):

``immediate``            as soon as something is pending
``hourly``               at the top of every local hour
``daily HH:MM``          every day at that local time
``weekly DAY HH:MM``     every week, ``DAY`` a weekday name (``mon`` or ``monday``)
5-field cron             ``minute hour day-of-month month day-of-week``, read as crontab(5)
                         reads it (day-of-week 0 and 7 are Sunday)

Times follow the subscriber's wall clock across DST changes: ``daily 08:00`` in
Europe/London is 08:00 UTC in winter and 07:00 UTC in summer. A local time that does not
exist on the day the clocks go forward fires once that day, the gap's length later
(``daily 01:30`` in London fires at 02:30 BST); a repeated hour on the day they go back
fires once.

Quiet hours (``"22:00-07:00"``) push a due time to the end of the quiet span.

Note: where cron restricts both day-of-month and day-of-week, a time must satisfy both
(APScheduler's reading), not either (crontab's).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from typing import Protocol
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

__all__ = ["ScheduleError", "cron_trigger", "in_quiet_hours", "next_digest_time"]

_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # crontab numbering, 0 = Sunday
_HHMM = re.compile(r"^(\d{1,2}):(\d{2})$")


class ScheduleError(ValueError):
    """A schedule the trigger cannot represent (the message says which part)."""


class Subscriber(Protocol):
    """What this module needs of a subscriber (``config.SubscriberConfig`` fits)."""

    @property
    def schedule(self) -> str: ...

    @property
    def timezone(self) -> str: ...

    @property
    def quiet_hours(self) -> tuple[str, str] | None: ...


def _require_aware(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("naive datetime; pass a timezone-aware one")
    return at.astimezone(UTC)


def _hhmm(text: str) -> tuple[int, int]:
    m = _HHMM.match(text.strip())
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        raise ScheduleError(f"expected HH:MM, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def _day_number(token: str) -> int:
    token = token.strip().lower()
    if token.isdigit():
        n = int(token)
        if n > 7:
            raise ScheduleError(f"day of week {n} is out of range 0-7")
        return n % 7
    if token[:3] in _WEEKDAYS:
        return _WEEKDAYS.index(token[:3])
    raise ScheduleError(f"unknown day of week {token!r}")


def _crontab_weekdays(field: str) -> str:
    """A crontab day-of-week field (0/7 = Sunday) as APScheduler weekday names.

    APScheduler 3 numbers weekdays from Monday = 0, so numbers are expanded to the set
    of days they mean and written back as names, which both read alike.
    """
    if field in ("*", "?"):
        return "*"
    days: set[int] = set()
    for part in field.split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text.isdigit() else 1
        if step_text and not step_text.isdigit():
            raise ScheduleError(f"bad step in day of week {part!r}")
        if base in ("*", "?"):
            first, last = 0, 6
        elif "-" in base:
            a, _, b = base.partition("-")
            first, last = _day_number(a), _day_number(b)
            if b.strip() == "7":
                last = 7
            if last < first:
                raise ScheduleError(f"day-of-week range {base!r} runs backwards")
        else:
            first = _day_number(base)
            last = 6 if step_text else first
        days.update(d % 7 for d in range(first, last + 1, step))
    return ",".join(_WEEKDAYS[d] for d in sorted(days))


@lru_cache(maxsize=256)
def cron_trigger(schedule: str, timezone: str) -> CronTrigger | None:
    """The trigger of a schedule in a zone; None for ``immediate``.

    Raises :class:`ScheduleError` for a schedule no trigger can represent.
    """
    text = " ".join(schedule.split()).lower()
    zone = ZoneInfo(timezone)
    try:
        if text == "immediate":
            return None
        if text == "hourly":
            return CronTrigger(minute=0, second=0, timezone=zone)
        parts = text.split(" ")
        if parts[0] == "daily" and len(parts) == 2:
            hour, minute = _hhmm(parts[1])
            return CronTrigger(hour=hour, minute=minute, second=0, timezone=zone)
        if parts[0] == "weekly" and len(parts) == 3:
            hour, minute = _hhmm(parts[2])
            day = _WEEKDAYS[_day_number(parts[1])]
            return CronTrigger(day_of_week=day, hour=hour, minute=minute, second=0, timezone=zone)
        if len(parts) == 5:
            minute_f, hour_f, dom_f, month_f, dow_f = parts
            return CronTrigger(
                minute=minute_f,
                hour=hour_f,
                day="*" if dom_f == "?" else dom_f,
                month=month_f,
                day_of_week=_crontab_weekdays(dow_f),
                second=0,
                timezone=zone,
            )
    except ScheduleError:
        raise
    except ValueError as exc:
        raise ScheduleError(f"schedule {schedule!r}: {exc}") from None
    raise ScheduleError(
        f"schedule {schedule!r}: expected immediate, hourly, daily HH:MM, weekly DAY HH:MM "
        "or a 5-field cron expression"
    )


def next_digest_time(subscriber: Subscriber, after: datetime) -> datetime:
    """The first time strictly after ``after`` at which the subscriber's digest is due,
    moved to the end of quiet hours if it falls inside them (aware UTC).

    ``immediate`` is due at once: ``after`` itself (or the end of quiet hours).
    """
    after = _require_aware(after)
    trigger = cron_trigger(subscriber.schedule, subscriber.timezone)
    due = after if trigger is None else _next_fire(trigger, after, subscriber.schedule)
    quiet_end = in_quiet_hours(subscriber, due)
    return quiet_end if quiet_end is not None else due


def _next_fire(trigger: CronTrigger, after: datetime, schedule: str) -> datetime:
    fire = trigger.get_next_fire_time(None, after + timedelta(microseconds=1))
    if fire is None:  # a cron expression that never fires, e.g. 30 February
        raise ScheduleError(f"schedule {schedule!r} never fires")
    fire_utc: datetime = fire.astimezone(UTC)
    if _hour_is_fixed(trigger) and _second_of_repeated(fire_utc, trigger.timezone):
        # A fixed time of day in the hour the clocks go back: fire only the first time.
        return _next_fire(trigger, fire_utc, schedule)
    return fire_utc


def _hour_is_fixed(trigger: CronTrigger) -> bool:
    hour = next(f for f in trigger.fields if f.name == "hour")
    return str(hour) != "*"


def _second_of_repeated(at: datetime, zone: ZoneInfo) -> bool:
    local = at.astimezone(zone)
    return local.fold == 1 and local.replace(fold=0).utcoffset() != local.utcoffset()


def in_quiet_hours(subscriber: Subscriber, at: datetime) -> datetime | None:
    """The end of the quiet span ``at`` falls in (aware UTC), or None when it does not.

    Spans are local wall-clock times and may run past midnight (``22:00-07:00``); the
    start is inside, the end is not. A span whose start equals its end is empty.
    """
    at = _require_aware(at)
    if not subscriber.quiet_hours:
        return None
    start_h, start_m = _hhmm(subscriber.quiet_hours[0])
    end_h, end_m = _hhmm(subscriber.quiet_hours[1])
    start, end = time(start_h, start_m), time(end_h, end_m)
    if start == end:
        return None
    zone = ZoneInfo(subscriber.timezone)
    local = at.astimezone(zone)
    now = local.time().replace(tzinfo=None)
    day = local.date()
    if start < end:
        if not start <= now < end:
            return None
        end_day = day
    elif now >= start:
        end_day = day + timedelta(days=1)
    elif now < end:
        end_day = day
    else:
        return None
    end_at = datetime.combine(end_day, end, tzinfo=zone).astimezone(UTC)
    # A quiet end that falls in a DST gap maps to the instant after the gap.
    return max(end_at, at)
