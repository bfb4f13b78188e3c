import random
from datetime import datetime, timedelta, timezone

import pytest

from daemon.catch_up import MissedRun, missed_runs, newest_backup_by_job
from daemon.manifest import Manifest
from daemon.schedule import next_fire_times, parse_crontab

UTC = timezone.utc
DAILY = parse_crontab("0 3 * * *", UTC)
TODAY = datetime(2026, 12, 5, tzinfo=UTC)


def at(hours: float, day: datetime = TODAY) -> datetime:
    return day + timedelta(hours=hours)


def manifest(kind: str, started: datetime) -> Manifest:
    return Manifest(kind=kind, target="all", file=f"{kind}_{started:%Y%m%d_%H%M%S}", size_bytes=1, sha256="0" * 64,
                    started_at=started, finished_at=started, server_version="15", format="plain",
                    compression="gzip", pgbackup_version="0")


class TestMissedRuns:
    def test_a_daemon_restarted_across_the_scheduled_time_makes_it_up(self):
        """Down from 02:00 to 07:00: the 03:00 run is made up once, with the time it was due."""
        newest = at(3 + 5 / 3600, TODAY - timedelta(days=1))
        assert missed_runs({"full": DAILY}, {"full": newest}, at(7), at(7) + timedelta(minutes=1)) == [
            MissedRun("full", at(3), newest)]

    def test_nothing_when_the_newest_backup_is_from_the_last_scheduled_time(self):
        """Today's 03:00 backup exists: a restart at 07:00 runs nothing."""
        assert missed_runs({"full": DAILY}, {"full": at(3 + 1 / 3600)}, at(7), at(7, TODAY) + timedelta(minutes=1)) == []

    def test_a_backup_taken_by_hand_before_the_scheduled_time_does_not_count_for_it(self):
        """A backup at 01:00 is older than the 03:00 run that was missed."""
        assert [run.job_id for run in missed_runs({"full": DAILY}, {"full": at(1)}, at(7), at(7.1))] == ["full"]

    def test_a_kind_without_any_backup_waits_for_its_schedule(self):
        """A new install has missed nothing: its first backup comes at its scheduled time."""
        assert missed_runs({"full": DAILY}, {}, at(7), at(7.1)) == []

    def test_the_next_regular_run_makes_it_up_when_it_comes_first(self):
        """Started at 02:59:30 with yesterday's run missed: the 03:00 run is due before the catch-up would be."""
        newest = at(3, TODAY - timedelta(days=2))
        assert missed_runs({"full": DAILY}, {"full": newest}, at(3 - 30 / 3600), at(3 + 30 / 3600)) == []

    def test_each_job_is_judged_on_its_own(self):
        """Only the job whose schedule passed its newest backup runs again."""
        triggers = {"full": DAILY, "databases": parse_crontab("0 4 * * *", UTC)}
        newest = {"full": at(3.01), "databases": at(4.01, TODAY - timedelta(days=1))}
        assert [run.job_id for run in missed_runs(triggers, newest, at(7), at(7.1))] == ["databases"]

    @pytest.mark.parametrize("expression", ["0 3 * * *", "30 */6 * * *", "0 2 * * 0", "15 4 1 * *", "*/20 * * * *",
                                            "0 3 * * 1-5", "45 23 31 12 *"])
    def test_generated_times_agree_with_the_schedules_own_fire_times(self, expression):
        """For 200 random (newest backup, now) pairs a run is made up exactly when a fire time of the schedule
        lies after the newest backup and at or before now, and the next one is after the catch-up time."""
        trigger = parse_crontab(expression, UTC)
        chance = random.Random(expression)
        start = datetime(2025, 11, 1, tzinfo=UTC)
        fires = next_fire_times(trigger, start, 2000)
        for _ in range(200):
            newest = start + timedelta(minutes=chance.randrange(0, 400 * 24 * 60), seconds=chance.randrange(60))
            now = newest + timedelta(minutes=chance.randrange(1, 40 * 24 * 60))
            catch_up_at = now + timedelta(minutes=1)
            missed_fire = [fire for fire in fires if newest < fire <= now]
            regular_first = any(now <= fire <= catch_up_at for fire in fires)
            if now >= fires[-1]:
                continue  # beyond the oracle's horizon
            expected = bool(missed_fire) and not regular_first
            found = missed_runs({"job": trigger}, {"job": newest}, now, catch_up_at)
            assert bool(found) == expected, (newest, now)
            if found:
                assert found[0].due_at == missed_fire[0]


class TestNewestBackupByJob:
    def test_the_newest_of_the_jobs_kind_counts_and_no_other_kind(self):
        """`databases` reads `database` backups; a pre-migration backup is no full backup."""
        manifests = [manifest("full", at(3)), manifest("pre_migration", at(6)), manifest("database", at(4)),
                     manifest("database", at(5))]
        assert newest_backup_by_job(manifests, ["full", "databases", "tables"]) == {
            "full": at(3), "databases": at(5)}
