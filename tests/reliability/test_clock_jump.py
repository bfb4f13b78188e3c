"""Item 5: a clock that jumps ahead must not corrupt retention, health or backup selection.

The incident: one backup taken with the clock a year ahead made the sweep after it delete 14
of 14 earlier backups; its future time then kept PgBackupStale and /healthz quiet, and
`restore --latest` picked it. The skewed run is a real `pgbackup backup full` under
libfaketime ('+365 days') against a real PostgreSQL container; the pure policies get ``now``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from daemon.housekeeping import retention
from daemon.housekeeping.retention import decide
from daemon.manifest import Manifest, read_manifest, scan_manifests, write_manifest
from daemon.monitoring.health import HealthState, KindStatus, overdue_kinds
from daemon.monitoring.metrics import Metrics
from daemon.naming import full_backup_name
from daemon.restore.selection import Choice, SelectionError, select_backup
from daemon.schedule import parse_crontab
from tests.support.daemon_http import get, metric
from tests.support.docker_env import free_port
from tests.support.pgbackup_cli import (
    REPO_ROOT,
    exec_env,
    log_events,
    pgbackup,
    start_pgbackup,
)

UTC = ZoneInfo("UTC")
NOW = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)
YEAR = timedelta(days=365)
FAR_AWAY = "0 3 1 1 *"  # once a year: never during a test


def manifest(started: datetime, kind: str = "full", target: str = "all") -> Manifest:
    return Manifest(kind=kind, target=target, file=f"{kind}_{target}_{started:%Y%m%d_%H%M%S}", size_bytes=10,
                    sha256="ab", started_at=started, finished_at=started + timedelta(seconds=5),
                    server_version="15.8", format="plain", compression="gzip", databases=["authdb"])


def twice_daily_week(end: datetime) -> list[Manifest]:
    """Fourteen backups, one every 12 hours, the newest at ``end``."""
    return [manifest(end - timedelta(hours=12 * step)) for step in range(14)]


class TestRetentionPolicy:
    def test_a_future_backup_does_not_anchor_the_window(self):
        """With the clock right again, a backup dated a year ahead makes the policy refuse that
        kind and target (nothing deleted, a reason given) instead of expiring everything before it."""
        earlier = twice_daily_week(NOW - timedelta(days=10))  # 10 to 16.5 days old: the daemon was down
        decisions = decide([*earlier, manifest(NOW + YEAR)], NOW, {"full": 7}, 1)
        assert [d for d in decisions if d.delete] == []
        [reason] = retention.refusals(decisions).values()
        assert "in the future" in reason and "full" in reason

    def test_one_backup_far_ahead_of_the_rest_does_not_expire_them(self):
        """The sweep right after a backup taken a year ahead (its clock still wrong) deletes none of the
        earlier backups: a newest backup more than the window ahead of the one before it does not move it."""
        skewed_now = NOW + YEAR
        earlier = twice_daily_week(NOW - timedelta(hours=12))
        decisions = decide([*earlier, manifest(skewed_now)], skewed_now, {"full": 7}, 1)
        assert [d.manifest.file for d in decisions if d.delete] == []
        [reason] = retention.refusals(decisions).values()
        assert "365.5 days after the one before it" in reason and "14 backup(s)" in reason

    def test_weekly_backups_with_a_short_window_still_expire(self):
        """Backups a week apart with a one-day window are no jump: the old ones still go."""
        weekly = [manifest(NOW - timedelta(days=7 * week)) for week in range(4)]
        decisions = decide(weekly, NOW, {"full": 1}, 1)
        assert retention.refusals(decisions) == {} and len([d for d in decisions if d.delete]) == 3

    def test_a_small_clock_difference_is_tolerated(self):
        """A backup a minute 'ahead' (a manual run on a clock a little off) is no refusal."""
        decisions = decide([*twice_daily_week(NOW), manifest(NOW + timedelta(minutes=1))], NOW, {"full": 7}, 1)
        assert retention.refusals(decisions) == {}


class TestHealth:
    def test_a_future_success_is_not_fresh(self):
        """A newest success dated in the future means its time is unknown: overdue, and /healthz says why."""
        status = KindStatus("full", parse_crontab("0 3 * * *", UTC), last_success=NOW + YEAR)
        [overdue] = overdue_kinds([status], NOW, NOW - timedelta(days=2), timedelta(hours=24))
        assert overdue["kind"] == "full" and "in the future" in overdue["reason"]


    def test_moving_the_future_backup_away_restores_the_real_verdict(self):
        """Once the future-dated backup is gone from BACKUP_DIR, the newest one on disk counts again."""
        health = HealthState(NOW - timedelta(days=2), timedelta(hours=24))
        health.schedule("full", parse_crontab("0 3 * * *", UTC), NOW + YEAR)
        health.scheduler_running = True
        assert health.verdict(NOW)[0] is False
        health.settle_future_successes({"full": NOW - timedelta(hours=2)}, NOW)
        assert health.verdict(NOW) == (True, {"status": "ok", "scheduler_running": True, "problems": [], "overdue": [],
                                              "running": []})


class TestFreshnessMetrics:
    def test_a_future_backup_is_counted_not_published_as_fresh(self):
        """pgbackup_last_success_timestamp_seconds shows the newest believable backup; the future one
        is counted in pgbackup_future_dated_backups (PgBackupClockSkew)."""
        metrics = Metrics()
        good = manifest(NOW - timedelta(hours=30))
        metrics.load_manifests([good, manifest(NOW + YEAR)], NOW)
        labels = {"kind": "full", "target": "all"}
        sample = metrics.registry.get_sample_value
        assert sample("pgbackup_last_success_timestamp_seconds", labels) == good.started_at.timestamp()
        assert sample("pgbackup_future_dated_backups", labels) == 1


class TestSelection:
    def test_latest_skips_a_future_backup(self, tmp_path):
        """--latest picks the newest backup that is not dated in the future."""
        good, future = manifest(NOW - timedelta(hours=3)), manifest(NOW + YEAR)
        for m in (good, future):
            write_manifest(tmp_path, m)
        selected = select_backup(tmp_path, Choice(latest=True, now=NOW), lambda m: True, "the whole server")
        assert selected.manifest.file == good.file

    def test_only_future_backups_is_a_clear_error(self, tmp_path):
        """When every candidate is dated in the future, --latest names them instead of picking one."""
        write_manifest(tmp_path, manifest(NOW + YEAR))
        with pytest.raises(SelectionError, match="in the future.*--from"):
            select_backup(tmp_path, Choice(latest=True, now=NOW), lambda m: True, "the whole server")


# --- the incident, end to end -------------------------------------------------------------

def faketime_pgbackup(offset: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """``pgbackup ARGS`` with the wall clock shifted by ``offset`` (libfaketime). Without the
    faketime command the test fails: scripts/test installs Debian's faketime package.

    Only the wall clock moves, as when a host's clock is set wrong: the monotonic clock is left
    alone (FAKETIME_DONT_FAKE_MONOTONIC). Shifting it too would make every timed wait (a thread
    join, an Event.wait) sleep for the offset, because libfaketime does not translate the
    absolute deadline of ``sem_clockwait`` that CPython's timed lock waits use."""
    if shutil.which("faketime") is None:
        pytest.fail("no faketime command: install Debian's faketime package (scripts/test does)", pytrace=False)
    env = {**env, "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    return subprocess.run(["faketime", offset, sys.executable, "-m", "daemon", *args], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL, check=False)


def copy_backup(directory, source: Manifest, started: datetime) -> str:
    """A copy of a real backup, recorded as taken at ``started`` (a real artifact with its manifest)."""
    name = full_backup_name(started)
    shutil.copyfile(directory / source.file, directory / name)
    data = (directory / name).read_bytes()
    write_manifest(directory, Manifest(**{
        **source.__dict__, "file": name, "started_at": started, "finished_at": started + timedelta(seconds=3),
        "sha256": hashlib.sha256(data).hexdigest(), "size_bytes": len(data), "run_id": f"earlier-{name}",
    }))
    return name


class TestBackupTakenAYearAhead:
    def test_nothing_is_lost_and_every_reader_says_so(self, postgres_factory, tmp_path):
        """A backup taken a year ahead deletes nothing, is refused by prune, is not fresh for
        /healthz or /metrics, is not what --latest restores, and the next run works."""
        server = postgres_factory(databases=["authdb"])
        server.psql("CREATE TABLE t AS SELECT generate_series(1, 100) AS n", db="authdb")
        directory = tmp_path / "backups"
        port = free_port()
        env = exec_env(server, directory, RETENTION_FULL_DAYS="7", METRICS_PORT=str(port),
                       SCHEDULE_FULL="0 3 * * *", SCHEDULE_DATABASES=FAR_AWAY, SCHEDULE_RETENTION=FAR_AWAY)

        real = pgbackup("backup", "full", env=env)
        assert real.returncode == 0, real.stderr
        [source] = scan_manifests(directory).manifests
        now = datetime.now(UTC)
        earlier = {copy_backup(directory, source, now - timedelta(hours=12 * step)) for step in range(1, 14)}
        earlier.add(source.file)

        skewed = faketime_pgbackup("+365 days", "backup", "full", env=env)
        assert skewed.returncode == 0, skewed.stderr
        future = {m.file for m in scan_manifests(directory).manifests if m.started_at > now + timedelta(days=300)}
        assert len(future) == 1
        assert all((directory / name).exists() for name in earlier), "the sweep after the skewed run deleted backups"
        refused = [e for e in log_events(skewed.stdout + skewed.stderr) if e.get("event") == "retention_refused"]
        assert refused and "after the one before it" in refused[0]["reason"]

        # The clock is right again: prune refuses and says why; nothing goes.
        dry = pgbackup("prune", "--dry-run", env=env)
        assert "WOULD DELETE" not in dry.stdout.replace("would be deleted", "")
        assert "in the future" in dry.stdout and "in the future" in dry.stderr
        swept = pgbackup("prune", env=env)
        assert swept.returncode == 1 and "in the future" in swept.stderr
        assert all((directory / name).exists() for name in earlier | future)

        # --latest does not restore the future-dated backup.
        restore = pgbackup("restore", "full", "--latest", env=env)
        [chosen] = [line for line in restore.stderr.splitlines() if "restoring from" in line]
        assert not any(name in chosen for name in future), chosen
        [warning] = [line for line in restore.stderr.splitlines() if "warning: skipped" in line]
        assert min(future) in warning and "dated in the future" in warning

        # /healthz and /metrics do not call the future success fresh.
        process = start_pgbackup("run", env=env)
        try:
            deadline = time.monotonic() + 60
            while (answer := get(port, "/healthz"))[0] == 0 and time.monotonic() < deadline:
                time.sleep(0.25)
            status, body = answer
            assert status == 503, body
            [overdue] = json.loads(body)["overdue"]
            assert overdue["kind"] == "full" and "in the future" in overdue["reason"]
            published = metric(get(port, "/metrics")[1], "pgbackup_last_success_timestamp_seconds",
                               'kind="full",target="all"')
            assert published is not None and published <= time.time()
        finally:
            process.terminate()
            process.communicate(timeout=60)

        # The next run works and still loses nothing.
        time.sleep(1.1)
        after = pgbackup("backup", "full", env=env)
        assert after.returncode == 0, after.stderr
        assert all((directory / name).exists() for name in earlier | future)
        assert len(scan_manifests(directory).manifests) == len(earlier) + 2
        assert read_manifest(directory / f"{min(future)}.manifest.json").started_at > now + timedelta(days=300)
