"""Item 8: daylight-saving changes must not run a scheduled job twice or skip it.

APScheduler's own CronTrigger.get_next_fire_time is stepped over the 2026 changes in
Europe/Berlin (spring forward 2026-03-29 02:00 CET -> 03:00 CEST, fall back 2026-10-25
03:00 CEST -> 02:00 CET), exactly as the scheduler steps it from one run to the next.
"""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from daemon.schedule import next_fire_times, parse_crontab

BERLIN = ZoneInfo("Europe/Berlin")
BEFORE_FALL_BACK = datetime(2026, 10, 24, 12, 0, tzinfo=BERLIN)
FALL_BACK_DAY = date(2026, 10, 25)
BEFORE_SPRING_FORWARD = datetime(2026, 3, 28, 12, 0, tzinfo=BERLIN)
SPRING_FORWARD_DAY = date(2026, 3, 29)


def fires_on(expression: str, start: datetime, day: date, count: int = 40) -> list[datetime]:
    """The fire times that fall on ``day`` (Berlin wall clock), stepped as the scheduler does."""
    trigger = parse_crontab(expression, BERLIN)
    local = [fire.astimezone(BERLIN) for fire in next_fire_times(trigger, start, count)]
    return [fire for fire in local if fire.date() == day]


class TestAutumnFallBack:
    def test_weekly_job_in_the_repeated_hour_fires_once(self):
        """'0 2 * * 0' on the fall-back Sunday fires at 02:00 CEST only, not again at 02:00 CET
        (the weekly volume snapshot would stop the database twice)."""
        fires = fires_on("0 2 * * 0", BEFORE_FALL_BACK, FALL_BACK_DAY)
        assert [fire.isoformat() for fire in fires] == ["2026-10-25T02:00:00+02:00"]

    def test_the_following_week_is_unchanged(self):
        """After the skipped repeat the weekly job goes on at 02:00 CET the next Sunday."""
        trigger = parse_crontab("0 2 * * 0", BERLIN)
        fires = [f.astimezone(BERLIN).isoformat() for f in next_fire_times(trigger, BEFORE_FALL_BACK, 3)]
        assert fires == ["2026-10-25T02:00:00+02:00", "2026-11-01T02:00:00+01:00", "2026-11-08T02:00:00+01:00"]

    @pytest.mark.parametrize("expression", ["30 2 * * *", "*/30 2 * * *", "15 1-3 * * *"])
    def test_each_wall_clock_time_fires_once(self, expression):
        """Daily jobs whose minutes fall in the repeated hour run once per wall-clock time."""
        fires = fires_on(expression, BEFORE_FALL_BACK, FALL_BACK_DAY)
        wall_clock = [fire.strftime("%H:%M") for fire in fires]
        assert len(wall_clock) == len(set(wall_clock)), wall_clock

    def test_a_fire_time_outside_the_repeated_hour_is_untouched(self):
        """03:00 (after the repeat) fires once, at 03:00 CET."""
        fires = fires_on("0 3 * * *", BEFORE_FALL_BACK, FALL_BACK_DAY)
        assert [fire.isoformat() for fire in fires] == ["2026-10-25T03:00:00+01:00"]


class TestSpringForward:
    def test_job_in_the_skipped_hour_still_runs_once_that_day(self):
        """02:30 does not exist on 2026-03-29: the job runs once, at 03:30 CEST (01:30 UTC, 24 real
        hours after the day before's 02:30 CET), and at 02:30 again the next day."""
        trigger = parse_crontab("30 2 * * *", BERLIN)
        fires = [f.astimezone(BERLIN).isoformat() for f in next_fire_times(trigger, BEFORE_SPRING_FORWARD, 3)]
        assert fires == ["2026-03-29T03:30:00+02:00", "2026-03-30T02:30:00+02:00", "2026-03-31T02:30:00+02:00"]

    def test_weekly_job_in_the_skipped_hour_is_not_lost(self):
        """'0 2 * * 0' on the spring-forward Sunday runs once that Sunday."""
        assert len(fires_on("0 2 * * 0", BEFORE_SPRING_FORWARD, SPRING_FORWARD_DAY)) == 1

    def test_hourly_schedule_keeps_its_real_interval(self):
        """'0 * * * *' names no hour: as in cron it follows elapsed time and runs in both 02:00 hours."""
        fires = fires_on("0 * * * *", BEFORE_FALL_BACK, FALL_BACK_DAY)
        assert [fire.strftime("%H:%M%z") for fire in fires][:5] == [
            "00:00+0200", "01:00+0200", "02:00+0200", "02:00+0100", "03:00+0100"]
