"""Cron expressions with standard crontab meaning, turned into APScheduler triggers.

APScheduler 3 numbers weekdays from Monday=0, so ``CronTrigger.from_crontab("0 2 * * 0")``
fires on Mondays. The runbook's "Sunday 02:00" is ``0 2 * * 0`` in crontab terms, so this
module parses the weekday field itself (0 and 7 are Sunday) and hands APScheduler day
names, which it reads unambiguously.

Daylight-saving changes follow crontab's rule that a job runs once per wall-clock time:
- autumn (the clock falls back and repeats an hour): a schedule with fixed hours fires at
  the first occurrence of a repeated time only. APScheduler alone fires it twice (02:00
  CEST and 02:00 CET), which made the weekly volume snapshot stop the database twice. A
  schedule whose hour field is ``*`` or ``*/n`` keeps its real interval (an hourly job runs
  in both 02:00 hours), as in cron, where such jobs follow elapsed time;
- spring (the clock jumps forward over an hour): a time in the skipped hour fires once,
  an hour later by the wall clock (02:30 runs at 03:30 summer time, the same instant as
  02:30 winter time: 24 real hours after the day before's run). Cronie runs such a job
  right after the gap (03:00) instead; either way it runs once that day and is not lost.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone, tzinfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger

DISABLED = "off"
_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_TERM = re.compile(r"^(?P<range>\*|[a-z0-9]+(?:-[a-z0-9]+)?)(?:/(?P<step>\d+))?$")


INTERVALS_CHECKED = 24  # enough to see a 31-day month in a monthly schedule, and a leap day


class ScheduleError(ValueError):
    """The expression is not a five-field crontab schedule this daemon accepts."""


def is_disabled(expression: str) -> bool:
    return expression.strip().lower() == DISABLED


class CrontabTrigger(CronTrigger):
    """A CronTrigger that fires once per wall-clock time across an autumn DST change
    (``once_per_wall_clock``: the schedule names its hours)."""

    def __init__(self, *, once_per_wall_clock: bool, **fields: str | tzinfo):
        super().__init__(**fields)
        self.once_per_wall_clock = once_per_wall_clock

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        fire = super().get_next_fire_time(previous_fire_time, now)
        while fire is not None and self.once_per_wall_clock and is_repeated_wall_clock(fire):
            # The same wall-clock time already came an hour earlier (fold=0): crontab runs
            # a job in the repeated hour once, so step past the repeat.
            fire = super().get_next_fire_time(fire, fire)
        return fire

    def __getstate__(self) -> dict:
        return {**super().__getstate__(), "once_per_wall_clock": self.once_per_wall_clock}

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self.once_per_wall_clock = state["once_per_wall_clock"]


def is_repeated_wall_clock(moment: datetime) -> bool:
    """Whether ``moment`` is the second occurrence of its wall-clock time (DST fall-back)."""
    if moment.fold == 0:
        return False
    return moment.replace(fold=0).utcoffset() != moment.utcoffset()


def parse_crontab(expression: str, timezone: tzinfo) -> CronTrigger:
    """Build a trigger from ``minute hour day-of-month month day-of-week``."""
    fields = expression.split()
    if len(fields) != 5:
        raise ScheduleError(
            f"{expression!r} has {len(fields)} fields; expected 5 (minute hour day-of-month month day-of-week)"
        )
    minute, hour, day, month, weekday = fields
    if day != "*" and weekday != "*":
        raise ScheduleError(
            f"{expression!r} restricts both day-of-month and day-of-week; cron would run on either, "
            "which is rarely meant: restrict only one of them"
        )
    try:
        return CrontabTrigger(
            once_per_wall_clock=not hour.startswith("*"),
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=_weekday_names(weekday),
            timezone=timezone,
        )
    except ValueError as error:
        raise ScheduleError(f"{expression!r}: {error}") from None


def _weekday_names(field: str) -> str:
    if field == "*":
        return "*"
    days: set[int] = set()
    for term in field.lower().split(","):
        days.update(_weekday_term(term))
    return ",".join(_DAY_NAMES[day] for day in sorted(days))


def _weekday_term(term: str) -> list[int]:
    match = _TERM.match(term)
    if match is None:
        raise ScheduleError(f"day-of-week {term!r} is not a number 0-7, a day name, a range or a step")
    step = int(match["step"] or 1)
    if step < 1:
        raise ScheduleError(f"day-of-week step in {term!r} must be at least 1")
    span = match["range"]
    if span == "*":
        first, last = 0, 6
    elif "-" in span:
        first, last = (_weekday_number(part) for part in span.split("-"))
    else:
        first = last = _weekday_number(span)
        if match["step"]:
            last = 6
    if first > last:
        raise ScheduleError(f"day-of-week range {term!r} runs backwards")
    return [day % 7 for day in range(first, last + 1, step)]


def _weekday_number(token: str) -> int:
    if token in _DAY_NAMES:
        return _DAY_NAMES.index(token)
    if token.isdigit() and 0 <= int(token) <= 7:
        return int(token)
    raise ScheduleError(f"day-of-week {token!r} is not 0-7 or one of {', '.join(_DAY_NAMES)}")


def longest_interval(trigger: BaseTrigger, now: datetime, count: int = INTERVALS_CHECKED) -> timedelta | None:
    """The longest gap between consecutive runs among the next ``count`` runs (None: fewer than two)."""
    fires = next_fire_times(trigger, now, count + 1)
    gaps = [later - earlier for earlier, later in zip(fires, fires[1:])]
    return max(gaps) if gaps else None


def next_fire_times(trigger: BaseTrigger, now: datetime, count: int) -> list[datetime]:
    """Up to ``count`` fire times after ``now``, in UTC so that differences are real durations."""
    fires: list[datetime] = []
    previous = None
    while len(fires) < count:
        following = trigger.get_next_fire_time(previous, now if previous is None else one_second_after(previous))
        if following is None:
            break
        fires.append(following.astimezone(timezone.utc))
        previous = following
    return fires


def one_second_after(moment: datetime) -> datetime:
    """Stepped in UTC: local arithmetic drops ``fold`` in the hour a DST fall-back repeats,
    which lands back on the same fire time."""
    return (moment.astimezone(timezone.utc) + timedelta(seconds=1)).astimezone(moment.tzinfo)


def allowed_age(trigger: BaseTrigger, now: datetime, max_age: timedelta) -> timedelta:
    """How old the newest result of a job with its own allowance (weekly volume snapshots, the
    monthly restore test) may be before it is overdue: its longest interval between runs plus
    ``max_age`` (BACKUP_MAX_AGE_HOURS) of slack, so it is not overdue a day after each run.
    A schedule that will not fire twice more gets ``max_age``."""
    interval = longest_interval(trigger, now)
    return max_age if interval is None else interval + max_age
