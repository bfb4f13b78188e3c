from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from daemon.schedule import ScheduleError, is_disabled, parse_crontab

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
