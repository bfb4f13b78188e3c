"""The mode that needs no Docker socket: POSTGRES_HOST, no VOLUME_NAME, SCHEDULE_RESTORE_TEST=off.
The daemon starts, stays healthy, backs up and restores with no Docker engine to reach."""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request

from tests.support import docker_env
from tests.support.pgbackup_cli import artifact_paths, log_events, pgbackup, start_pgbackup, tcp_env

NO_ENGINE = "unix:///nonexistent/docker.sock"


def no_socket_env(server, backup_dir, **settings: str) -> dict[str, str]:
    port = docker_env.free_port()
    return tcp_env(server, backup_dir, DOCKER_HOST=NO_ENGINE, METRICS_PORT=str(port), **settings)


def healthz(env: dict[str, str], timeout: float = 60) -> int:
    """/healthz's status once the daemon listens."""
    url = f"http://127.0.0.1:{env['METRICS_PORT']}/healthz"
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"the daemon did not listen on {url} within {timeout} s") from None
            time.sleep(0.2)


def stopped(process: subprocess.Popen) -> list[dict]:
    process.terminate()
    stdout, stderr = process.communicate(timeout=60)
    return log_events(stdout + stderr)


class TestNoSocket:
    def test_daemon_backs_up_and_restores_without_docker(self, small_source, tmp_path):
        """With no engine at DOCKER_HOST the daemon starts healthy, a backup and a restore over TCP
        work, and nothing warns about Docker."""
        env = no_socket_env(small_source, tmp_path, SCHEDULE_RESTORE_TEST="off")
        daemon = start_pgbackup("run", env=env)
        try:
            assert healthz(env) == 200
            backup = pgbackup("backup", "databases", env=env)
            assert backup.returncode == 0, backup.stderr
            assert artifact_paths(backup)
            restore = pgbackup("restore", "database", "authdb", "--latest", "--yes", "--into", "authdb_no_socket",
                               env=env)
            assert restore.returncode == 0, restore.stderr
            assert small_source.psql("SELECT count(*) FROM notes", db="authdb_no_socket") == "100"
            assert healthz(env) == 200
        finally:
            events = stopped(daemon)
        assert "daemon_started" in [event["event"] for event in events]
        assert [event for event in events if event["level"] in ("warning", "error")] == []

    def test_a_restore_test_left_on_is_named_at_start(self, small_source, tmp_path):
        """Left scheduled, the restore test (the one feature here that needs Docker) is named in a
        warning at start, saying what to do; the daemon stays healthy."""
        env = no_socket_env(small_source, tmp_path)
        daemon = start_pgbackup("run", env=env)
        try:
            assert healthz(env) == 200
            time.sleep(1)  # the check runs beside the start
        finally:
            events = stopped(daemon)
        [warning] = [event for event in events if event["event"] == "restore_test_needs_docker"]
        assert NO_ENGINE in warning["error"] and "SCHEDULE_RESTORE_TEST=off" in warning["hint"]
