"""Dead-man pings from real backup runs against a real PostgreSQL container, received by a real
HTTP server in the test process: /start, success and /fail, a kind's own URL, and a receiver
that is down."""

from __future__ import annotations

import signal
import time

import structlog

from daemon.monitoring.metrics import Metrics
from tests.support.docker_env import free_port
from tests.support.pgbackup_cli import artifact_paths, exec_env, log_events, pgbackup, start_pgbackup
from tests.support.runner import equipped
from tests.support.webhook import RecordingServer

CHECK = "/ping/5f2a9c1e-secret-check"
FAR_AWAY = "0 3 1 1 *"  # once a year: never during a test


def ping_failures(metrics: Metrics) -> float:
    return metrics.registry.get_sample_value("pgbackup_notification_failures_total", {"channel": "ping"}) or 0


class TestPings:
    def test_a_good_run_pings_start_then_success(self, small_source, recording_servers, tmp_path):
        """`pgbackup backup full` POSTs <url>/start, then <url> naming the artifact; the URL is in no log."""
        receiver = recording_servers()
        result = pgbackup("backup", "full", env=exec_env(small_source, tmp_path, PING_URL=receiver.url(CHECK)))
        assert result.returncode == 0, result.stderr
        (artifact,) = artifact_paths(result)
        assert [request.path for request in receiver.requests] == [f"{CHECK}/start", CHECK]
        start, success = receiver.requests
        assert "full backup started" in start.body
        assert "full backup succeeded" in success.body and artifact.name in success.body
        assert success.headers["Content-Type"].startswith("text/plain")
        assert [event["event"] for event in log_events(result.stderr) if event["event"].startswith("ping_")] == [
            "ping_sent", "ping_sent"]
        run_logs = "".join(path.read_text() for path in tmp_path.glob("backup_*.log"))
        assert "5f2a9c1e" not in result.stdout + result.stderr + run_logs

    def test_a_failed_run_pings_fail_with_the_reason_at_its_kind_url(self, small_source, recording_servers, tmp_path):
        """A failed per-database run pings PING_URL_DATABASES/fail with the reason, and PING_URL not at all."""
        generic, databases = recording_servers(), recording_servers()
        env = exec_env(small_source, tmp_path, PING_URL=generic.url("/all"), PING_URL_DATABASES=databases.url("/db"))
        result = pgbackup("backup", "database", "no_such_db", env=env)
        assert result.returncode == 1
        assert [request.path for request in databases.requests] == ["/db/start", "/db/fail"]
        reason = databases.requests[1].body
        assert "database backup FAILED (no_such_db)" in reason and "pg_dump failed" in reason
        assert generic.requests == []

    def test_a_receiver_that_is_down_leaves_the_backup_alone_and_is_counted(self, small_source, tmp_path):
        """With the ping receiver down the backup still succeeds; each ping is logged and counted as failed."""
        gone = RecordingServer()
        url = gone.url(CHECK)
        gone.close()
        runner, metrics = equipped(small_source, tmp_path, ping_url=url)
        assert ping_failures(metrics) == 0  # the series exists before the first failure
        with structlog.testing.capture_logs() as logs:
            outcome = runner.run("full")
        assert outcome.ok
        (manifest,) = outcome.artifacts
        assert (tmp_path / manifest.file).stat().st_size == manifest.size_bytes
        assert ping_failures(metrics) == 2  # /start and the success ping
        failed = [event for event in logs if event["event"] == "ping_failed"]
        assert [(event["channel"], event["ping"]) for event in failed] == [("ping", "start"), ("ping", "success")]
        assert "5f2a9c1e" not in str(logs)


class TestScheduledPings:
    def test_a_scheduled_run_of_the_daemon_pings_and_runs_its_hook(self, small_source, recording_servers, tmp_path):
        """`pgbackup run` pings its scheduled per-database run's URL (/start, then success) and runs
        HOOK_AFTER_BACKUP with the artifact, as a backup taken by hand does."""
        receiver = recording_servers()
        backups, written = tmp_path / "backups", tmp_path / "hooks"
        written.mkdir()
        env = exec_env(
            small_source, backups, METRICS_PORT=str(free_port()), SCHEDULE_FULL=FAR_AWAY,
            SCHEDULE_RETENTION=FAR_AWAY, SCHEDULE_DATABASES="* * * * *", BACKUP_DATABASES="authdb",
            PING_URL_DATABASES=receiver.url(CHECK), HOOK_AFTER_BACKUP=f'echo "$PGBACKUP_FILES" > {written}/files',
        )
        daemon = start_pgbackup("run", env=env)
        try:
            deadline = time.monotonic() + 120  # the next whole minute, and the run
            while len(receiver.requests) < 2 and time.monotonic() < deadline and daemon.poll() is None:
                time.sleep(0.25)
        finally:
            daemon.send_signal(signal.SIGTERM)
            stdout, stderr = daemon.communicate(timeout=60)
        assert [request.path for request in receiver.requests][:2] == [f"{CHECK}/start", CHECK], stdout + stderr
        (artifact,) = (written / "files").read_text().split()
        assert artifact.startswith(str(backups / "authdb_")) and "database backup succeeded" in receiver.requests[1].body
        assert "5f2a9c1e" not in stdout + stderr
