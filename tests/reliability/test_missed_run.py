"""A daemon stopped across a scheduled time: the real `pgbackup run` against real PostgreSQL,
with a schedule whose time passes while the daemon is down."""

from __future__ import annotations

import json
import signal
import time
from datetime import datetime, timedelta
from pathlib import Path

from tests.support.docker_env import free_port
from tests.support.pgbackup_cli import exec_env, log_events, pgbackup, start_pgbackup

FAR_AWAY = "0 3 1 1 *"  # once a year: never during a test


def full_manifests(directory: Path) -> list[dict]:
    return sorted((json.loads(path.read_text()) for path in directory.glob("backup_all_*.manifest.json")),
                  key=lambda manifest: manifest["started_at"])


def run_daemon_for(env: dict[str, str], until, timeout: float) -> list[dict]:
    """Run `pgbackup run` until ``until()`` is true (or ``timeout`` passes); its log events."""
    process = start_pgbackup("run", env=env)
    try:
        deadline = time.monotonic() + timeout
        while not until() and time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()[1]
            time.sleep(0.5)
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, _ = process.communicate(timeout=60)
    return log_events(stdout)


class TestDaemonDownAcrossTheScheduledTime:
    def test_the_missed_run_is_made_up_once_after_start(self, postgres_factory, tmp_path):
        """The full backup's scheduled minute passes while no daemon runs: started afterwards with
        CATCH_UP_DELAY_SECONDS=1 the daemon takes one full backup at once (logged as catch_up_scheduled with
        the missed time), and a second start, with that backup on disk, takes none."""
        server = postgres_factory(databases=["authdb"])
        server.psql("CREATE TABLE t AS SELECT generate_series(1, 1000) AS n", db="authdb")
        env = exec_env(server, tmp_path, METRICS_PORT=str(free_port()), SCHEDULE_FULL=FAR_AWAY,
                       SCHEDULE_DATABASES=FAR_AWAY, SCHEDULE_RETENTION=FAR_AWAY, CATCH_UP_DELAY_SECONDS="1")
        first = pgbackup("backup", "full", env=env)
        assert first.returncode == 0, first.stderr
        (before,) = full_manifests(tmp_path)
        due = datetime.fromisoformat(before["started_at"]).replace(second=0, microsecond=0) + timedelta(minutes=1)
        env["SCHEDULE_FULL"] = f"{due.minute} {due.hour} * * *"  # UTC, like the manifest's time
        while datetime.now(due.tzinfo) < due + timedelta(seconds=1):
            time.sleep(0.5)  # the scheduled time passes with no daemon running

        events = run_daemon_for(env, lambda: len(full_manifests(tmp_path)) == 2, 120)
        manifests = full_manifests(tmp_path)
        assert len(manifests) == 2, "the missed full backup was not made up"
        (scheduled,) = [event for event in events if event["event"] == "catch_up_scheduled"]
        assert scheduled["job"] == "full" and datetime.fromisoformat(scheduled["due_at"]) == due
        assert datetime.fromisoformat(manifests[1]["started_at"]) > due

        events = run_daemon_for(env, lambda: False, 8)
        assert not [event for event in events if event["event"] == "catch_up_scheduled"]
        assert len(full_manifests(tmp_path)) == 2
