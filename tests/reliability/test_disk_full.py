"""BACKUP_DIR full (ENOSPC) on a real, small file system (a tmpfs with size=), with real PostgreSQL."""

from __future__ import annotations

import hashlib
import io
import os
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from daemon.identity import INSTANCE_ID_FILE
from daemon.manifest import Manifest, scan_manifests, write_manifest
from daemon.monitoring.health import HealthState
from daemon.monitoring.metrics import Metrics
from daemon.naming import is_partial
from daemon.service import equipped_runner
from daemon.settings import Settings
from tests.support.pgbackup_cli import base_env, log_events, pgbackup
from tests.support.sample_data import seed
from tests.support.small_fs import FILLER, fill, free_bytes, tmpfs

UTC = ZoneInfo("UTC")
LOCK_FILE = ".pgbackup.lock"


@pytest.fixture
def backup_dir(tmp_path):
    """BACKUP_DIR on its own 32 MiB tmpfs, unmounted after the test."""
    with tmpfs(tmp_path / "backups", 32 * 1024 * 1024) as mount_point:
        yield mount_point


class FillDiskBeforeManifest:
    """A stream observer that fills the file system when the manifest is about to be written:
    the artifact is complete and committed, and the manifest meets a full disk."""

    def __init__(self, directory: Path):
        self.directory = directory

    def feed(self, chunk: bytes) -> None:
        pass

    def record(self, manifest: Manifest) -> None:
        fill(self.directory)


def daemon_runner(settings: Settings, docker_client):
    metrics = Metrics()
    runner, _ = equipped_runner(settings, metrics, HealthState(datetime.now(UTC), timedelta(hours=24)),
                                docker_client=docker_client)
    runner.progress_stream = io.StringIO()
    return runner, metrics


def files_without_manifest(directory: Path) -> list[str]:
    """Artifacts that no reader will ever see: files of ours with no manifest naming them."""
    described = {m.file for m in scan_manifests(directory).manifests}
    return sorted(
        path.name for path in directory.iterdir()
        if path.name not in described and not path.name.endswith(".manifest.json")
        and path.name not in (LOCK_FILE, FILLER, INSTANCE_ID_FILE) and not path.name.endswith(".log")
    )


class TestManifestOnAFullDisk:
    def test_no_invisible_artifact_and_the_next_run_works(self, postgres_factory, docker_client, backup_dir):
        """ENOSPC while writing the manifest leaves no artifact without a manifest, is a failed run whose
        message says the disk is full, loses no earlier backup, and the next run works once space is free."""
        source = postgres_factory()
        seed(source)
        settings = Settings(postgres_container=source.name, backup_dir=backup_dir)
        runner, metrics = daemon_runner(settings, docker_client)
        earlier = runner.run("database", "authdb")
        assert earlier.ok, earlier.failures
        (kept,) = earlier.artifacts
        kept_sha = hashlib.sha256((backup_dir / kept.file).read_bytes()).hexdigest()

        runner.extensions.add_observers(lambda plan: [FillDiskBeforeManifest(backup_dir)])
        full = runner.run("database", "authdb")

        assert files_without_manifest(backup_dir) == []
        assert not full.ok
        (failure,) = full.failures
        assert "full" in failure.error.lower() and "no space left" in failure.error.lower(), failure.error
        assert metrics.registry.get_sample_value(
            "pgbackup_runs_total", {"kind": "database", "target": "authdb", "status": "failure"}) == 1
        assert not [path for path in backup_dir.iterdir() if is_partial(path.name)]
        assert [m.file for m in scan_manifests(backup_dir).manifests] == [kept.file]
        assert hashlib.sha256((backup_dir / kept.file).read_bytes()).hexdigest() == kept_sha == kept.sha256

        runner.extensions.observer_factories.pop()
        (backup_dir / FILLER).unlink()
        after = runner.run("database", "authdb")
        assert after.ok, after.failures
        assert {m.file for m in scan_manifests(backup_dir).manifests} == {kept.file, after.artifacts[0].file}
        assert files_without_manifest(backup_dir) == []


class TestArtifactOnAFullDisk:
    def test_a_run_on_a_full_disk_is_a_failure_that_says_so(self, postgres_factory, docker_client, backup_dir):
        """A run started with BACKUP_DIR 100 % full fails with a message that says the disk is full,
        leaves no partial file and no artifact, and the earlier backup stays as it was."""
        source = postgres_factory()
        seed(source)
        runner, _ = daemon_runner(Settings(postgres_container=source.name, backup_dir=backup_dir), docker_client)
        earlier = runner.run("database", "authdb")
        assert earlier.ok, earlier.failures
        fill(backup_dir)

        full = runner.run("database", "authdb")

        (failure,) = full.failures
        assert f"BACKUP_DIR {backup_dir} is full (No space left on device)" in failure.error
        assert files_without_manifest(backup_dir) == []
        assert not [path for path in backup_dir.iterdir() if is_partial(path.name)]
        assert [m.file for m in scan_manifests(backup_dir).manifests] == [earlier.artifacts[0].file]
        assert hashlib.sha256((backup_dir / earlier.artifacts[0].file).read_bytes()).hexdigest() == \
            earlier.artifacts[0].sha256


def old_backup(directory: Path, days_ago: int, size: int = 2 * 1024 * 1024) -> Manifest:
    """A finished backup of ``days_ago`` days ago: artifact and manifest as the daemon writes them."""
    started = datetime.now(UTC) - timedelta(days=days_ago)
    file = f"backup_all_{started:%Y%m%d_%H%M%S}.sql.gz"
    data = os.urandom(size)
    (directory / file).write_bytes(data)
    manifest = Manifest(kind="full", target="all", file=file, size_bytes=size,
                        sha256=hashlib.sha256(data).hexdigest(), started_at=started,
                        finished_at=started + timedelta(seconds=5), server_version="15.8", format="plain",
                        compression="gzip", pgbackup_version="0.1.0")
    write_manifest(directory, manifest)
    return manifest


class TestPruneOnAFullDisk:
    @pytest.mark.parametrize("lock_file", ["left-by-an-earlier-run", "absent"])
    def test_prune_frees_space_on_a_100_percent_full_disk(self, backup_dir, lock_file):
        """With BACKUP_DIR 100 % full, `pgbackup prune` with a lowered retention still takes the lock,
        deletes the expired backups and frees their space; the newest backup stays."""
        oldest, older, newest = old_backup(backup_dir, 40), old_backup(backup_dir, 30), old_backup(backup_dir, 20)
        if lock_file != "absent":
            (backup_dir / LOCK_FILE).touch(mode=0o600)
        fill(backup_dir)

        env = base_env(backup_dir, POSTGRES_CONTAINER="pgbackup-test-unused", RETENTION_FULL_DAYS="1")
        result = pgbackup("prune", "--no-wait", env=env, timeout=60)

        assert result.returncode == 0, result.stderr
        assert [m.file for m in scan_manifests(backup_dir).manifests] == [newest.file]
        assert not (backup_dir / oldest.file).exists() and not (backup_dir / older.file).exists()
        assert free_bytes(backup_dir) >= 4 * 1024 * 1024
        assert "retention_deleted" in {event.get("event") for event in log_events(result.stderr + result.stdout)}
