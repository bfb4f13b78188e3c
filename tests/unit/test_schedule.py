from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from daemon.schedule import ScheduleError, is_disabled, longest_interval, next_fire_times, parse_crontab

UTC = ZoneInfo("UTC")
THURSDAY = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def next_fire(expression: str, after: datetime = THURSDAY, tz=UTC) -> datetime:
    return parse_crontab(expression, tz).get_next_fire_time(None, after)


class TestCrontabMeaning:
    @pytest.mark.parametrize("weekday", ["0", "7", "sun", "SUN"])
    def test_sunday_is_zero_or_seven(self, weekday):
        """'0 2 * * 0' fires on Sunday, as in crontab (APScheduler alone would pick Monday)."""
        fire = next_fire(f"0 2 * * {weekday}")
        assert fire.strftime("%a %H:%M") == "Sun 02:00"

    def test_weekday_range(self):
        """1-5 means Monday to Friday."""
        fire = next_fire("30 1 * * 1-5", datetime(2026, 11, 28, 12, 0, tzinfo=UTC))  # a Saturday
        assert fire.strftime("%a %H:%M") == "Mon 01:30"

    def test_range_ending_on_seven_includes_sunday(self):
        """5-7 means Friday, Saturday and Sunday."""
        days = set()
        moment = THURSDAY
        for _ in range(3):
            moment = next_fire("0 0 * * 5-7", moment + timedelta(seconds=1))
            days.add(moment.strftime("%a"))
        assert days == {"Fri", "Sat", "Sun"}

    def test_daily_schedule_follows_the_time_zone(self):
        """03:00 in Europe/Berlin is 02:00 UTC in winter."""
        berlin = ZoneInfo("Europe/Berlin")
        fire = next_fire("0 3 * * *", datetime(2026, 11, 26, 12, 0, tzinfo=berlin), berlin)
        assert fire.astimezone(UTC).strftime("%d %H:%M") == "27 02:00"

    def test_monthly(self):
        """'0 5 1 * *' is the first of the month at 05:00."""
        assert next_fire("0 5 1 * *").strftime("%m-%d %H:%M") == "12-01 05:00"


class TestCrontabErrors:
    @pytest.mark.parametrize(
        "expression",
        ["0 3 * *", "61 3 * * *", "0 25 * * *", "0 3 * * 8", "0 3 * * funday", "0 3 1 * 1", "every day"],
    )
    def test_invalid_expressions_are_refused(self, expression):
        """Wrong field counts, out-of-range values and ambiguous day restrictions are errors."""
        with pytest.raises(ScheduleError):
            parse_crontab(expression, UTC)

    def test_off_disables(self):
        """'off' (any case) disables a schedule."""
        assert is_disabled("off") and is_disabled(" OFF ") and not is_disabled("0 3 * * *")


class TestLongestInterval:
    BERLIN = ZoneInfo("Europe/Berlin")

    def test_weekly_schedule_across_the_autumn_dst_change(self):
        """A Sunday 02:00 schedule started the week before the fall-back Sunday still has a 7-day interval."""
        weekly = parse_crontab("0 2 * * 0", self.BERLIN)
        tuesday_before_fall_back = datetime(2026, 10, 20, 12, 0, tzinfo=self.BERLIN)
        assert longest_interval(weekly, tuesday_before_fall_back) >= timedelta(days=7)

    def test_repeated_hour_is_measured_in_real_time(self):
        """Across the fall-back night an hourly schedule's gaps are real hours, none of them zero."""
        fires = next_fire_times(parse_crontab("0 * * * *", self.BERLIN),
                                datetime(2026, 10, 25, 0, 30, tzinfo=self.BERLIN), 6)
        gaps = {later - earlier for earlier, later in zip(fires, fires[1:])}
        assert gaps == {timedelta(hours=1)}

    def test_gap_over_the_spring_change_is_a_real_duration(self):
        """Daily 03:00 around the spring-forward night: the gap is 23 hours of real time, not 24."""
        daily = parse_crontab("0 3 * * *", self.BERLIN)
        fires = next_fire_times(daily, datetime(2026, 3, 27, 12, 0, tzinfo=self.BERLIN), 2)
        assert fires[1] - fires[0] == timedelta(hours=23)
