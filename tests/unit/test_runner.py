"""Runs that cannot create or lock BACKUP_DIR, and scheduled jobs that raise."""

from __future__ import annotations

import io
import threading
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import structlog

from daemon.errors import LockBusy
from daemon.health import HealthState
from daemon.lock import LOCK_FILE, backup_lock
from daemon.metrics import Metrics
from daemon.runner import BackupRunner
from daemon.scheduler import ScheduledJob, build_scheduler
from daemon.settings import Settings
from daemon.volumes.snapshot import run_volume_snapshot

UTC = ZoneInfo("UTC")
NOW = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)


def below_a_regular_file(tmp_path):
    (tmp_path / "not-a-directory").write_text("")
    return tmp_path / "not-a-directory" / "backups"


def lock_file_is_a_directory(tmp_path):
    (tmp_path / LOCK_FILE).mkdir()
    return tmp_path


def runner_for(backup_dir, **settings) -> tuple[BackupRunner, list]:
    """A runner whose after-run hooks record the outcomes they are given."""
    settings = Settings(postgres_container="pg", backup_dir=backup_dir, **settings)
    runner = BackupRunner(settings, Metrics(), HealthState(NOW, timedelta(hours=24)), clock=lambda: NOW,
                          progress_stream=io.StringIO())
    outcomes = []
    runner.after_run_hooks.append(outcomes.append)
    return runner, outcomes


def runs_counted(runner: BackupRunner, kind: str, target: str, status: str) -> float | None:
    return runner.metrics.registry.get_sample_value(
        "pgbackup_runs_total", {"kind": kind, "target": target, "status": status})


def last_run_success(runner: BackupRunner, kind: str, target: str) -> float | None:
    return runner.metrics.registry.get_sample_value("pgbackup_last_run_success", {"kind": kind, "target": target})


@pytest.mark.parametrize("broken_backup_dir", [below_a_regular_file, lock_file_is_a_directory])
class TestRunWithoutUsableBackupDir:
    def test_backup_run_is_a_recorded_failure(self, tmp_path, broken_backup_dir):
        """The run returns a failed outcome for each expected target, counted and passed to the after-run hooks."""
        runner, outcomes = runner_for(broken_backup_dir(tmp_path), backup_databases=["authdb", "apidb"])
        with structlog.testing.capture_logs() as logs:
            outcome = runner.run("databases")
        assert [failure.target for failure in outcome.failures] == ["authdb", "apidb"]
        assert outcomes == [outcome] and not outcome.ok and outcome.finished_at == NOW
        for target in ("authdb", "apidb"):
            assert runs_counted(runner, "database", target, "failure") == 1
            assert last_run_success(runner, "database", target) == 0
        assert any(event["event"] == "run_not_started" for event in logs)

    def test_volume_snapshot_is_a_recorded_failure(self, tmp_path, broken_backup_dir):
        """A volume snapshot that cannot lock BACKUP_DIR fails the same way, before any container is touched."""
        runner, outcomes = runner_for(broken_backup_dir(tmp_path), volume_name="pgdata")
        outcome = run_volume_snapshot(runner)
        assert [failure.target for failure in outcome.failures] == ["pgdata"]
        assert outcomes == [outcome]
        assert runs_counted(runner, "volume", "pgdata", "failure") == 1
        assert last_run_success(runner, "volume", "pgdata") == 0


class TestLockBusy:
    def test_busy_lock_without_waiting_still_raises(self, tmp_path):
        """--no-wait with the lock held elsewhere is LockBusy for the CLI, not a recorded failure."""
        runner, outcomes = runner_for(tmp_path)
        held = threading.Event()
        release = threading.Event()

        def hold_lock():
            with backup_lock(tmp_path, {"run_id": "other"}):
                held.set()
                release.wait(10)

        holder = threading.Thread(target=hold_lock)
        holder.start()
        try:
            held.wait(10)
            with pytest.raises(LockBusy):
                runner.run("full", wait=False)
        finally:
            release.set()
            holder.join()
        assert outcomes == [] and runs_counted(runner, "full", "all", "failure") is None


class TestScheduledJobs:
    def test_a_job_that_raises_is_logged_and_does_not_raise(self, tmp_path):
        """An exception from a job is logged as scheduled_job_failed instead of reaching APScheduler."""
        def broken_job():
            raise OSError(30, "Read-only file system")

        settings = Settings(postgres_container="pg", backup_dir=tmp_path)
        scheduler, _ = build_scheduler(settings, [ScheduledJob("full", "0 3 * * *", broken_job, "full")])
        with structlog.testing.capture_logs() as logs:
            scheduler.get_job("full").func()
        (failure,) = [event for event in logs if event["event"] == "scheduled_job_failed"]
        assert failure["job"] == "full" and failure["log_level"] == "error"
