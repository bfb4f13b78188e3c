"""The long-running daemon (`pgbackup run`) against a real PostgreSQL container:
schedules, /metrics, /healthz, logs and shutdown."""

from __future__ import annotations

import json
import re
import signal
import time
import urllib.error
import urllib.request

import pytest

from tests.support.docker_env import free_port
from tests.support.mounts import read_only_mount
from tests.support.pgbackup_cli import exec_env, log_events, pgbackup, start_pgbackup

FAR_AWAY = "0 3 1 1 *"  # once a year: never during a test


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def sample(metrics_text: str, name: str, **labels: str) -> float | None:
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    for line in metrics_text.splitlines():
        match = re.match(r"^([a-z_]+)(?:\{(.*)\})? (\S+)$", line)
        if match and match[1] == name:
            found = ",".join(sorted(match[2].split(","))) if match[2] else ""
            if found == wanted:
                return float(match[3])
    return None


def stop(process) -> tuple[str, str]:
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    return stdout, stderr


@pytest.fixture
def daemon_env(postgres_factory, tmp_path):
    server = postgres_factory(databases=["authdb"])
    server.psql("CREATE TABLE t AS SELECT generate_series(1, 1000) AS n", db="authdb")
    port = free_port()
    env = exec_env(server, tmp_path, METRICS_PORT=str(port), SCHEDULE_FULL=FAR_AWAY,
                   SCHEDULE_DATABASES=FAR_AWAY, SCHEDULE_RETENTION=FAR_AWAY)
    return server, env, port


class TestDaemon:
    def test_metrics_survive_a_restart_and_follow_manual_backups(self, daemon_env, tmp_path):
        """On start the daemon reads the newest backups from the manifests; a manual backup shows on the next scrape."""
        server, env, port = daemon_env
        first = pgbackup("backup", "full", env=env)
        assert first.returncode == 0, first.stderr
        manifest = json.loads(next(tmp_path.glob("backup_all_*.manifest.json")).read_text())

        process = start_pgbackup("run", env=env)
        try:
            status, body = wait_until(lambda: _try_get(port, "/healthz"), 60, "/healthz")
            assert status == 200 and json.loads(body)["status"] == "ok"
            metrics = get(port, "/metrics")[1]
            started = sample(metrics, "pgbackup_last_success_timestamp_seconds", kind="full", target="all")
            assert started == pytest.approx(_epoch(manifest["started_at"]), abs=0.001)
            assert sample(metrics, "pgbackup_last_size_bytes", kind="full", target="all") == manifest["size_bytes"]
            assert sample(metrics, "pgbackup_scheduler_running") == 1
            assert sample(metrics, "pgbackup_max_age_seconds") == 24 * 3600
            # The alert rules' per-kind limits: the scheduled kinds, BACKUP_MAX_AGE_HOURS each.
            assert sample(metrics, "pgbackup_kind_max_age_seconds", kind="full") == 24 * 3600
            assert sample(metrics, "pgbackup_kind_max_age_seconds", kind="database") == 24 * 3600

            time.sleep(1.1)  # the next artifact gets a later second in its name
            second = pgbackup("backup", "full", env=env)
            assert second.returncode == 0, second.stderr
            newer = wait_until(
                lambda: (value := sample(get(port, "/metrics")[1], "pgbackup_last_success_timestamp_seconds",
                                         kind="full", target="all")) and value > started and value,
                30, "the manual backup on /metrics")
            assert newer > started
        finally:
            stdout, stderr = stop(process)
        assert process.returncode == 0, stderr
        events = log_events(stdout)
        assert [e["event"] for e in events][:1] == ["daemon_started"] or "daemon_started" in [e["event"] for e in events]
        assert events[-1]["event"] == "daemon_stopped"

    def test_scheduled_run_success_failure_health_and_logs(self, daemon_env):
        """A scheduled run backs up each database, counts a failing one, turns /healthz 503, and binds every line to its run."""
        server, env, port = daemon_env
        env.update(SCHEDULE_DATABASES="* * * * *", BACKUP_DATABASES="authdb,no_such_db")
        process = start_pgbackup("run", env=env)
        try:
            wait_until(lambda: _try_get(port, "/healthz"), 60, "the daemon to listen")

            def finished_run():
                text = get(port, "/metrics")[1]
                done = sample(text, "pgbackup_runs_total", kind="database", target="no_such_db", status="failure")
                return text if done else None

            metrics = wait_until(finished_run, 90, "a scheduled run")
            assert sample(metrics, "pgbackup_runs_total", kind="database", target="authdb", status="success") == 1
            assert sample(metrics, "pgbackup_runs_total", kind="database", target="authdb", status="failure") == 0
            assert sample(metrics, "pgbackup_last_run_success", kind="database", target="no_such_db") == 0
            assert sample(metrics, "pgbackup_last_run_success", kind="database", target="authdb") == 1
            status, body = wait_until(lambda: (r := get(port, "/healthz")) and r[0] == 503 and r, 30, "503")
            assert [item["kind"] for item in json.loads(body)["overdue"]] == ["database"]
        finally:
            stdout, _ = stop(process)
        events = log_events(stdout)
        run_lines = [e for e in events if e.get("logger", "").startswith("daemon.") and "run_id" in e]
        assert run_lines and {e["kind"] for e in run_lines} == {"database"}
        failed = [e for e in events if e["event"] == "backup_failed"]
        assert failed and failed[0]["target"] == "no_such_db" and "no_such_db" in failed[0]["error"]
        written = [e for e in events if e["event"] == "artifact_written"]
        assert written and written[0]["target"] == "authdb" and written[0]["run_id"] == failed[0]["run_id"]
        assert any(e.get("logger", "").startswith("apscheduler") for e in events), "APScheduler's records are JSON too"

    def test_invalid_settings_stop_start_up(self, tmp_path):
        """A bad setting stops `pgbackup run` with exit 2 and one line naming the variable."""
        env = exec_env(type("S", (), {"name": "pg", "user": "postgres"}), tmp_path, SCHEDULE_FULL="0 3 * *",
                       POSTGRES_PASSWORD="very-secret-pw")
        result = pgbackup("run", env=env, timeout=60)
        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [
            "pgbackup: configuration error: SCHEDULE_FULL: '0 3 * *' has 4 fields; expected 5 (minute hour "
            "day-of-month month day-of-week); use five crontab fields, e.g. '0 3 * * *', or 'off'"
        ]
        assert "very-secret-pw" not in result.stderr + result.stdout


class TestUnwritableBackupDir:
    def test_healthz_says_so_from_the_start(self, daemon_env, tmp_path):
        """A BACKUP_DIR the daemon cannot write (here a read-only mount; in production usually a host directory
        of another owner) makes /healthz unhealthy at once, naming the directory and the uid that needs write
        access, instead of staying healthy until the first backup fails at 03:00."""
        _, env, port = daemon_env
        (tmp_path / "rw").mkdir()
        with read_only_mount(tmp_path / "rw", tmp_path / "ro") as read_only:
            process = start_pgbackup("run", env={**env, "BACKUP_DIR": str(read_only)})
            try:
                status, body = wait_until(lambda: _try_get(port, "/healthz"), 60, "/healthz")
                verdict = json.loads(body)
                assert status == 503 and verdict["status"] == "unhealthy"
                (problem,) = verdict["problems"]
                assert problem["problem"] == "backup_dir_unwritable"
                assert f"BACKUP_DIR {read_only} is not writable by this process (uid 0" in problem["detail"]
                assert "Read-only file system" in problem["detail"]
            finally:
                logged, _ = stop(process)
        events = log_events(logged)
        assert [e["event"] for e in events].count("backup_dir_unwritable") == 1, logged


def _try_get(port: int, path: str):
    try:
        return get(port, path)
    except OSError:
        return None


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()
