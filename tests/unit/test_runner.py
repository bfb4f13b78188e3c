"""Runs that cannot create or lock BACKUP_DIR, runs stopped by a before-run check, and scheduled
jobs that raise."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import structlog

from daemon.backup.runner import BackupRunner
from daemon.errors import Cancelled, LockBusy, PgBackupError
from daemon.lock import LOCK_FILE, backup_lock
from daemon.monitoring.health import HealthState
from daemon.monitoring.metrics import Metrics
from daemon.schedule import parse_crontab
from daemon.scheduler import ScheduledJob, build_scheduler
from daemon.settings import Settings
from daemon.volumes.snapshot import run_volume_snapshot

UTC = ZoneInfo("UTC")
NOW = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)
DAY = timedelta(hours=24)


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
    runner.extensions.after_runs(outcomes.append)
    return runner, outcomes


@contextmanager
def lock_held_elsewhere(directory) -> Iterator[None]:
    """The backup lock on ``directory``, held by another thread for the duration of the block."""
    held = threading.Event()
    release = threading.Event()

    def hold_lock():
        with backup_lock(directory, {"run_id": "other"}):
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold_lock)
    holder.start()
    try:
        assert held.wait(10)
        yield
    finally:
        release.set()
        holder.join()


def eventually(condition: Callable[[], bool], timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


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
        assert runner.health.verdict(NOW)[1]["running"] == []

    def test_volume_snapshot_is_a_recorded_failure(self, tmp_path, broken_backup_dir):
        """A volume snapshot that cannot lock BACKUP_DIR fails the same way, before any container is touched."""
        runner, outcomes = runner_for(broken_backup_dir(tmp_path), volume_name="pgdata")
        outcome = run_volume_snapshot(runner, runner.settings)
        assert [failure.target for failure in outcome.failures] == ["pgdata"]
        assert outcomes == [outcome]
        assert runs_counted(runner, "volume", "pgdata", "failure") == 1
        assert last_run_success(runner, "volume", "pgdata") == 0
        assert runner.health.verdict(NOW)[1]["running"] == []


class TestLockBusy:
    def test_busy_lock_without_waiting_still_raises(self, tmp_path):
        """--no-wait with the lock held elsewhere is LockBusy for the CLI, not a recorded failure."""
        runner, outcomes = runner_for(tmp_path)
        runner.health.schedule("full", parse_crontab("0 3 * * *", UTC), None)
        with lock_held_elsewhere(tmp_path), pytest.raises(LockBusy):
            runner.run("full", wait=False)
        assert outcomes == [] and runs_counted(runner, "full", "all", "failure") is None
        assert runner.health.verdict(NOW)[1]["running"] == []


def run_databases(runner: BackupRunner) -> None:
    runner.run("databases")


def run_volume(runner: BackupRunner) -> None:
    run_volume_snapshot(runner, runner.settings)


class TestHealthWhileWaitingForTheLock:
    @pytest.mark.parametrize(("start_run", "kind"), [(run_databases, "database"), (run_volume, "volume")])
    def test_a_run_waiting_for_the_lock_counts_as_running(self, tmp_path, start_run, kind):
        """While a run waits for the lock its kind is running, not overdue; a run cancelled in the wait ends it."""
        runner, outcomes = runner_for(tmp_path, backup_databases=["authdb"], volume_name="pgdata")
        health = runner.health
        health.scheduler_running = True
        health.schedule(kind, parse_crontab("0 3 * * *", UTC), NOW - DAY)  # overdue unless running
        later = NOW + timedelta(minutes=10)
        raised = []

        def waiting_run():
            try:
                start_run(runner)
            except Cancelled as error:
                raised.append(error)

        with lock_held_elsewhere(tmp_path):
            waiter = threading.Thread(target=waiting_run)
            waiter.start()
            try:
                assert eventually(lambda: health.verdict(later)[1]["running"] == [kind])
                assert health.verdict(later)[0] is True
            finally:
                runner.cancel.set()
                waiter.join(10)
        assert len(raised) == 1 and outcomes == []
        healthy, body = health.verdict(later)
        assert not healthy and body["running"] == [] and [o["kind"] for o in body["overdue"]] == [kind]


class TestScheduledJobs:
    def test_a_job_that_raises_is_logged_and_does_not_raise(self, tmp_path):
        """An exception from a job is logged as scheduled_job_failed instead of reaching APScheduler."""
        def broken_job():
            raise OSError(30, "Read-only file system")

        settings = Settings(postgres_container="pg", backup_dir=tmp_path)
        scheduler, _ = build_scheduler(settings, [ScheduledJob("full", settings.trigger("0 3 * * *"), broken_job)])
        with structlog.testing.capture_logs() as logs:
            scheduler.get_job("full").func()
        (failure,) = [event for event in logs if event["event"] == "scheduled_job_failed"]
        assert failure["job"] == "full" and failure["log_level"] == "error"


class TestBeforeRunChecks:
    def test_a_failing_check_fails_each_expected_target_and_takes_nothing(self, tmp_path):
        """A check that raises (HOOK_BEFORE_BACKUP) fails every expected target with its message; no dump is tried."""
        runner, outcomes = runner_for(tmp_path, backup_databases="authdb,apidb")
        taken = []

        def refuse(outcome, targets) -> None:
            raise PgBackupError(f"HOOK_BEFORE_BACKUP failed (exit status 3) for {', '.join(targets)}")

        runner.extensions.check_before_runs(refuse)
        outcome = runner.run_kind("database", ["authdb", "apidb"], True, taken.append)
        assert taken == [] and outcomes == [outcome]
        assert [(f.target, f.error) for f in outcome.failures] == [
            ("authdb", "HOOK_BEFORE_BACKUP failed (exit status 3) for authdb, apidb"),
            ("apidb", "HOOK_BEFORE_BACKUP failed (exit status 3) for authdb, apidb")]

    def test_a_check_with_a_bug_fails_the_run_too(self, tmp_path):
        """A check that crashes is logged and fails the run: a hook that did not run must not be skipped over."""
        runner, _ = runner_for(tmp_path)
        taken = []

        def broken(outcome, targets) -> None:
            raise KeyError("bug")

        runner.extensions.check_before_runs(broken)
        with structlog.testing.capture_logs() as logs:
            outcome = runner.run_kind("full", ["all"], True, taken.append)
        assert taken == [] and [f.target for f in outcome.failures] == ["all"]
        assert "before_run_check_failed" in [event["event"] for event in logs]

    def test_a_passing_check_lets_the_run_take_its_artifacts(self, tmp_path):
        """A check that returns lets ``take_all`` run, with the targets it was told."""
        runner, _ = runner_for(tmp_path)
        told, taken = [], []
        runner.extensions.check_before_runs(lambda outcome, targets: told.append(list(targets)))
        runner.run_kind("full", ["all"], True, taken.append)
        assert told == [["all"]] and len(taken) == 1
