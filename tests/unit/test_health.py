from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from daemon.monitoring.health import HealthState, KindStatus, overdue_kinds
from daemon.schedule import parse_crontab

UTC = ZoneInfo("UTC")
DAILY_3AM = parse_crontab("0 3 * * *", UTC)
STARTED = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
DAY = timedelta(hours=24)


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


class TestOverdueKinds:
    def test_fresh_install_is_healthy_until_the_first_run_is_due(self):
        """No backup yet, but none was due since start: not overdue."""
        status = KindStatus("full", DAILY_3AM)
        assert overdue_kinds([status], at(27, 2, 59), STARTED, DAY) == []

    def test_first_due_run_without_success_is_overdue(self):
        """Once the first run was due and nothing succeeded, the kind is overdue."""
        status = KindStatus("full", DAILY_3AM)
        assert overdue_kinds([status], at(27, 3, 5), STARTED, DAY) == [{"kind": "full", "last_success": None}]

    def test_a_run_in_progress_is_judged_when_it_ends(self):
        """While a run is in progress the kind is not reported overdue."""
        status = KindStatus("full", DAILY_3AM, last_success=at(26, 3), running=True)
        assert overdue_kinds([status], at(27, 3, 10), STARTED, DAY) == []

    def test_recent_success_is_healthy(self):
        """A success within the limit keeps the kind healthy."""
        status = KindStatus("full", DAILY_3AM, last_success=at(27, 3))
        assert overdue_kinds([status], at(28, 2), STARTED, DAY) == []

    def test_stale_success_is_overdue(self):
        """A success older than the limit makes the kind overdue and names its time."""
        status = KindStatus("full", DAILY_3AM, last_success=at(26, 3))
        (report,) = overdue_kinds([status], at(27, 3, 30), STARTED, DAY)
        assert report["kind"] == "full" and report["last_success"].startswith("2026-11-26T03:00")

    def test_a_known_stale_success_is_overdue_at_once_after_a_restart(self):
        """A restart at 03:05 skipped the 03:00 run: the success found in the manifests is judged at once."""
        status = KindStatus("full", DAILY_3AM, last_success=at(26, 3))
        (report,) = overdue_kinds([status], at(27, 3, 10), at(27, 3, 5), DAY)
        assert report == {"kind": "full", "last_success": "2026-11-26T03:00:00+00:00"}

    def test_a_known_recent_success_is_healthy_after_a_restart(self):
        """A success within the limit keeps a restarted daemon healthy before its first due run."""
        status = KindStatus("full", DAILY_3AM, last_success=at(26, 3))
        assert overdue_kinds([status], at(27, 2, 50), at(27, 2, 45), DAY) == []

    def test_a_known_success_is_judged_against_the_kind_allowance(self):
        """A weekly kind's own allowance applies to a success found at start-up too."""
        weekly = parse_crontab("0 2 * * 0", UTC)
        status = KindStatus("volume", weekly, last_success=at(20, 2), max_age=timedelta(days=8))
        assert overdue_kinds([status], at(27, 3), at(27, 2, 55), DAY) == []
        assert overdue_kinds([status], at(28, 3), at(27, 2, 55), DAY)[0]["kind"] == "volume"

    def test_disabled_schedule_is_never_overdue(self):
        """A kind whose schedule is off is not watched."""
        assert overdue_kinds([KindStatus("table", None)], at(30, 0), STARTED, DAY) == []


class TestHealthState:
    def test_unhealthy_until_the_scheduler_runs(self):
        """/healthz is 503 while the scheduler is not running."""
        health = HealthState(STARTED, DAY)
        healthy, body = health.verdict(STARTED)
        assert not healthy and body["scheduler_running"] is False

    def test_failed_run_leaves_the_old_success(self):
        """A failed run does not refresh the kind's last success; a successful one does."""
        health = HealthState(STARTED, DAY)
        health.scheduler_running = True
        health.schedule("full", DAILY_3AM, None)
        health.run_started("full")
        health.run_finished("full", None)
        healthy, body = health.verdict(at(27, 4))
        assert not healthy and body["overdue"][0]["kind"] == "full"
        health.run_finished("full", at(27, 4))
        assert health.verdict(at(27, 5)) == (True, {"status": "ok", "scheduler_running": True, "problems": [], "overdue": [],
                                                    "running": []})


class TestAllowances:
    def test_scheduled_kinds_get_their_own_or_the_daemon_limit(self):
        """What /metrics publishes as pgbackup_kind_max_age_seconds: per scheduled kind, in seconds."""
        state = HealthState(at(26, 0), timedelta(hours=24))
        state.schedule("full", parse_crontab("0 3 * * *", UTC), None)
        state.schedule("volume", parse_crontab("0 2 * * 0", UTC), None, max_age=timedelta(days=8))
        state.schedule("table", None, None)  # SCHEDULE_TABLES=off
        assert state.allowances() == {"full": 86400.0, "volume": 8 * 86400.0}


class TestProblems:
    def test_a_reported_problem_makes_healthz_unhealthy_until_cleared(self):
        """A condition that keeps the next backups from working (an unwritable BACKUP_DIR) is unhealthy at once,
        with its text, and healthy again once cleared."""
        health = HealthState(STARTED, DAY)
        health.scheduler_running = True
        health.set_problem("backup_dir_unwritable", "BACKUP_DIR /backups is not writable")
        healthy, body = health.verdict(at(26, 11))
        assert not healthy and body["problems"] == [
            {"problem": "backup_dir_unwritable", "detail": "BACKUP_DIR /backups is not writable"}]
        health.set_problem("backup_dir_unwritable", None)
        healthy, body = health.verdict(at(26, 11))
        assert healthy and body["problems"] == []
