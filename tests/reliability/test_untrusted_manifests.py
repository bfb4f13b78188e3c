"""Item 10: retention must not trust a manifest whose artifact is gone or truncated.

The newest manifest anchors the retention window. When its artifact was removed or cut short,
the window measured from it expired the older, good backups: the only restorable ones.
Real files in a real BACKUP_DIR, swept by the real `pgbackup prune`; the next run is a real
`pgbackup backup full` against a PostgreSQL container.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from daemon.manifest import Manifest, write_manifest
from daemon.naming import full_backup_name, manifest_name
from tests.support.pgbackup_cli import base_env, exec_env, log_events, pgbackup

UTC = ZoneInfo("UTC")
NOW = datetime.now(UTC).replace(microsecond=0)
GOOD_AGES = range(8, 15)  # a week of daily backups; the daemon was then down for six days


def make_full_backup(directory: Path, days_ago: float) -> str:
    started = NOW - timedelta(days=days_ago)
    name = full_backup_name(started)
    data = f"dump taken {days_ago} days ago".encode() * 10
    (directory / name).write_bytes(data)
    write_manifest(directory, Manifest(
        kind="full", target="all", file=name, size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest(),
        started_at=started, finished_at=started + timedelta(seconds=3), server_version="15.8", format="plain",
        compression="gzip", pgbackup_version="0.1.0",
    ))
    return name


def damage(directory: Path, name: str, how: str) -> None:
    if how == "removed":
        (directory / name).unlink()
    else:
        (directory / name).write_bytes((directory / name).read_bytes()[:7])


@pytest.fixture
def backup_dir(tmp_path):
    directory = tmp_path / "backups"
    directory.mkdir()
    good = [make_full_backup(directory, age) for age in GOOD_AGES]
    newest = make_full_backup(directory, 1)
    return directory, good, newest


def env_for(directory: Path) -> dict[str, str]:
    return base_env(directory, POSTGRES_CONTAINER="pgbackup-test-unused", RETENTION_FULL_DAYS="7")


class TestSweepWithAnUnusableNewestBackup:
    @pytest.mark.parametrize("how", ["removed", "truncated"])
    def test_older_good_backups_survive(self, backup_dir, how):
        """A newest manifest whose artifact is removed or truncated anchors nothing: the week of good
        backups before it stays, and the manifest itself is kept and reported."""
        directory, good, newest = backup_dir
        damage(directory, newest, how)

        result = pgbackup("prune", env=env_for(directory))

        assert [name for name in good if not (directory / name).exists()] == []
        assert (directory / manifest_name(newest)).exists()
        expected = "is missing" if how == "removed" else "bytes, its manifest says"
        events = [e for e in log_events(result.stdout + result.stderr) if e.get("event") == "retention_unusable_backup"]
        assert [e["file"] for e in events] == [newest] and expected in events[0]["problem"]
        assert expected in result.stderr and newest in result.stderr
        assert result.returncode == 1

    def test_dry_run_shows_the_unusable_backup_and_its_reason(self, backup_dir):
        """`pgbackup prune --dry-run` lists it as kept, with what is wrong with it."""
        directory, good, newest = backup_dir
        damage(directory, newest, "removed")
        result = pgbackup("prune", "--dry-run", env=env_for(directory))
        [line] = [line for line in result.stdout.splitlines() if newest in line]
        assert line.startswith("keep") and "is missing" in line and "not counted by retention" in line
        assert "WOULD DELETE" not in result.stdout


class TestNextRun:
    def test_a_real_run_after_it_works_and_reports_it_again(self, backup_dir, postgres_factory):
        """The next real backup succeeds and anchors the window; the unusable manifest is still kept and reported."""
        directory, good, newest = backup_dir
        damage(directory, newest, "truncated")
        server = postgres_factory(databases=["authdb"])
        result = pgbackup("backup", "full", env=exec_env(server, directory, RETENTION_FULL_DAYS="30"))
        assert result.returncode == 0, result.stderr
        assert [name for name in good if not (directory / name).exists()] == []
        assert (directory / manifest_name(newest)).exists()
        events = {e.get("event") for e in log_events(result.stdout + result.stderr)}
        assert {"retention_unusable_backup", "retention_sweep_finished"} <= events
