"""One retention sweep over real files in a backup directory, through the real `pgbackup prune`."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from daemon.housekeeping.runlog import HEADER_KEY
from daemon.manifest import Manifest, write_manifest
from daemon.naming import database_backup_name, full_backup_name, pre_migration_name
from tests.support.mounts import read_only_mount
from tests.support.pgbackup_cli import base_env, log_events, pgbackup

UTC = ZoneInfo("UTC")
NOW = datetime.now(UTC).replace(microsecond=0)


def make_backup(directory, name: str, kind: str, target: str, days_ago: float, keep_forever: bool = False) -> str:
    data = f"dump of {target} {days_ago}".encode()
    (directory / name).write_bytes(data)
    started = NOW - timedelta(days=days_ago)
    write_manifest(directory, Manifest(
        kind=kind, target=target, file=name, size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest(),
        started_at=started, finished_at=started + timedelta(seconds=3), server_version="15.8", format="plain",
        compression="gzip", keep_forever=keep_forever, pgbackup_version="0.1.0",
    ))
    # A fresh mtime on purpose: ages must come from the manifest, not from the file system.
    os.utime(directory / name)
    return name


def make_run_log(directory, days_ago: float, ours: bool = True) -> str:
    name = f"backup_{(NOW - timedelta(days=days_ago)).strftime('%Y%m%d_%H%M%S')}.log"
    first = json.dumps({HEADER_KEY: 1, "run_id": "x"}) if ours else "written by the old cron script"
    (directory / name).write_text(first + "\n")
    return name


@pytest.fixture
def backup_dir(tmp_path):
    directory = tmp_path / "backups"
    directory.mkdir()
    files = {
        "old_full": make_backup(directory, full_backup_name(NOW - timedelta(days=45)), "full", "all", 45),
        "recent_full": make_backup(directory, full_backup_name(NOW - timedelta(days=2)), "full", "all", 2),
        "newest_full": make_backup(directory, full_backup_name(NOW), "full", "all", 0),
        "old_db": make_backup(directory, database_backup_name("authdb", "custom", NOW - timedelta(days=20)),
                              "database", "authdb", 20),
        "new_db": make_backup(directory, database_backup_name("authdb", "custom", NOW - timedelta(days=1)),
                              "database", "authdb", 1),
        "lone_old_db": make_backup(directory, database_backup_name("apidb", "custom", NOW - timedelta(days=50)),
                                   "database", "apidb", 50),
        "pre_migration": make_backup(directory, pre_migration_name(NOW - timedelta(days=400)), "pre_migration",
                                     "all", 400, keep_forever=True),
        "old_log": make_run_log(directory, 100),
        "new_log": make_run_log(directory, 1),
        "foreign_log": make_run_log(directory, 200, ours=False),
    }
    # Files without this daemon's manifest, however much they look like backups.
    for foreign in ("backup_all_20200101_030000.sql.gz", "authdb_20200101_040000.dump", "notes.txt"):
        (directory / foreign).write_bytes(b"not ours")
        os.utime(directory / foreign, (0, 0))
        files[foreign] = foreign
    return directory, files


def env_for(directory) -> dict[str, str]:
    # prune never connects to PostgreSQL; the container name only satisfies the settings.
    return base_env(directory, POSTGRES_CONTAINER="pgbackup-test-unused")


class TestPruneCommand:
    def test_dry_run_explains_and_deletes_nothing(self, backup_dir):
        """`pgbackup prune --dry-run` prints each decision with its reason and leaves every file in place."""
        directory, files = backup_dir
        before = sorted(path.name for path in directory.iterdir())
        result = pgbackup("prune", "--dry-run", env=env_for(directory))
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        would = [line for line in lines if line.startswith("WOULD DELETE")]
        would_files = sorted(name for line in would for name in files.values() if f" {name} " in line)
        assert would_files == sorted(files[key] for key in ("old_full", "old_db", "old_log"))
        assert any(files["old_full"] in line and "older than 30 days" in line for line in would)
        assert any(files["pre_migration"] in line and "forever" in line for line in lines)
        assert any(files["lone_old_db"] in line and "newest" in line for line in lines)
        assert "3 would be deleted" in result.stdout
        assert sorted(path.name for path in directory.iterdir()) == before

    def test_sweep_deletes_only_expired_backups_with_manifests(self, backup_dir):
        """The real sweep removes expired artifacts with their manifests and old run logs, logs each deletion, and touches nothing else."""
        directory, files = backup_dir
        result = pgbackup("prune", env=env_for(directory))
        assert result.returncode == 0, result.stderr
        remaining = {path.name for path in directory.iterdir()}
        for key in ("old_full", "old_db"):
            assert files[key] not in remaining and files[key] + ".manifest.json" not in remaining
        assert files["old_log"] not in remaining
        for key in ("recent_full", "newest_full", "new_db", "lone_old_db", "pre_migration"):
            assert files[key] in remaining and files[key] + ".manifest.json" in remaining
        for key in ("new_log", "foreign_log", "backup_all_20200101_030000.sql.gz", "authdb_20200101_040000.dump",
                    "notes.txt"):
            assert files[key] in remaining
        deleted = [event for event in log_events(result.stderr) if event.get("event") == "retention_deleted"]
        assert sorted(event["file"] for event in deleted) == sorted(files[k] for k in ("old_full", "old_db", "old_log"))
        assert all(event.get("reason") for event in deleted)

    def test_a_read_only_backup_dir_is_a_clear_error(self, backup_dir, tmp_path):
        """`pgbackup prune` on a read-only BACKUP_DIR says what the OS refused, without a traceback, and
        deletes nothing."""
        directory, _ = backup_dir
        before = sorted(path.name for path in directory.iterdir())
        with read_only_mount(directory, tmp_path / "ro") as ro:
            result = pgbackup("prune", env=env_for(ro))
        assert result.returncode == 1
        assert "pgbackup: [Errno 30] Read-only file system" in result.stderr and ".pgbackup.lock" in result.stderr
        assert "Traceback" not in result.stderr
        assert sorted(path.name for path in directory.iterdir()) == before

    def test_list_shows_local_backups(self, backup_dir):
        """`pgbackup list` marks every backup's location; without S3 that is local."""
        directory, _ = backup_dir
        result = pgbackup("list", "--json", env=env_for(directory))
        assert result.returncode == 0, result.stderr
        records = json.loads(result.stdout)
        assert {record["location"] for record in records} == {"local"}
        assert len(records) == 7


class TestSweepAfterRuns:
    def test_failed_run_deletes_nothing_and_a_good_run_sweeps(self, postgres_factory, docker_client, tmp_path):
        """A failed run never triggers retention; the next successful run sweeps, and each run writes its own log file."""
        import io

        from daemon.backup.runner import BackupRunner
        from daemon.logs import configure_logging
        from daemon.monitoring.health import HealthState
        from daemon.monitoring.metrics import Metrics
        from daemon.service import equipped_runner
        from daemon.settings import Settings

        directory = tmp_path / "backups"
        directory.mkdir()
        expired = make_backup(directory, full_backup_name(NOW - timedelta(days=45)), "full", "all", 45)
        make_backup(directory, full_backup_name(NOW - timedelta(days=1)), "full", "all", 1)
        configure_logging("INFO", stream=io.StringIO())

        def runner_for(container: str) -> BackupRunner:
            settings = Settings(postgres_container=container, backup_dir=directory)
            runner, _ = equipped_runner(settings, Metrics(), HealthState(NOW, timedelta(hours=24)),
                                        docker_client=docker_client)
            runner.progress_stream = io.StringIO()
            return runner

        failed = runner_for("pgbackup-test-no-such-container").run("database", "authdb")
        assert not failed.ok and (directory / expired).exists()

        server = postgres_factory(databases=("authdb",))
        good = runner_for(server.name).run("database", "authdb")
        assert good.ok, good.failures
        assert not (directory / expired).exists()

        run_logs = sorted(directory.glob("backup_*.log"))
        assert run_logs
        events = [json.loads(line) for path in run_logs for line in path.read_text().splitlines()]
        for outcome, expected in ((failed, "backup_failed"), (good, "retention_deleted")):
            names = {event.get("event") for event in events if event.get("run_id") == outcome.run_id}
            assert {"run_started", "run_finished", expected} <= names
