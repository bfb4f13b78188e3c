"""The retention jobs housekeeping.install wires into the daemon, with an S3 client that cannot be built."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import structlog

from daemon.backup.extensions import RunExtensions
from daemon.backup.outcome import RunOutcome
from daemon.housekeeping.install import install
from daemon.housekeeping.runlog import HEADER_KEY, run_log_name
from daemon.manifest import Manifest, write_manifest
from daemon.monitoring.metrics import Metrics
from daemon.naming import full_backup_name, manifest_name
from daemon.notify import Notifier
from daemon.settings import Settings
from daemon.storage.s3 import Bucket

UTC = ZoneInfo("UTC")
NOW = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)


def make_full_backup(directory, days_ago: int) -> Manifest:
    started = NOW - timedelta(days=days_ago)
    name = full_backup_name(started)
    (directory / name).write_bytes(b"dump")
    manifest = Manifest(kind="full", target="all", file=name, size_bytes=4, sha256="ab", started_at=started,
                        finished_at=started + timedelta(seconds=3), server_version="15.8", format="plain",
                        compression="gzip", offsite={"status": "complete"})
    write_manifest(directory, manifest)
    return manifest


def make_run_log(directory, days_ago: int) -> str:
    name = run_log_name(NOW - timedelta(days=days_ago))
    (directory / name).write_text(json.dumps({HEADER_KEY: 1, "run_id": "x"}) + "\n")
    return name


@pytest.fixture
def unusable_endpoint(monkeypatch):
    """Building the S3 client fails as boto3 does for S3_ENDPOINT_URL=minio:9000."""
    def refuse(cls, settings):
        raise ValueError("Invalid endpoint: minio:9000")

    monkeypatch.setattr(Bucket, "from_settings", classmethod(refuse))


@pytest.fixture
def backup_dir(tmp_path):
    """Two expired full backups and today's; a run log past RETENTION_LOG_DAYS and yesterday's."""
    old = [make_full_backup(tmp_path, 10), make_full_backup(tmp_path, 5)]
    newest = make_full_backup(tmp_path, 0)
    make_run_log(tmp_path, 1)
    return tmp_path, old, newest, make_run_log(tmp_path, 100)


def housekeeping(directory):
    settings = Settings(postgres_container="pg", backup_dir=directory, s3_bucket="b", retention_full_days=1,
                        retention_log_days=30)
    metrics = Metrics()
    extensions = RunExtensions()
    notifier = Notifier([], metrics, timeout=1, on_success=False)
    (retention_job,) = install(settings, extensions, metrics, notifier, lambda: NOW, threading.Event())
    return extensions, retention_job, metrics


def assert_local_sweep_done(directory, old, newest, run_log) -> None:
    names = {path.name for path in directory.iterdir()}
    assert {newest.file, manifest_name(newest.file)} <= names
    expired = {m.file for m in old} | {manifest_name(m.file) for m in old} | {run_log}
    assert not names & expired


class TestRetentionWithUnusableS3:
    def test_scheduled_sweep_still_prunes_local_backups(self, backup_dir, unusable_endpoint):
        """The retention job deletes expired local backups and run logs, and logs the S3 part as failed."""
        directory, old, newest, run_log = backup_dir
        _, retention_job, metrics = housekeeping(directory)
        with structlog.testing.capture_logs() as logs:
            retention_job.func()
        assert_local_sweep_done(directory, old, newest, run_log)
        assert metrics.registry.get_sample_value(
            "pgbackup_retention_deleted_total", {"kind": "full", "location": "local"}) == 2
        failure = next(event for event in logs if event["event"] == "offsite_retention_failed")
        assert failure["error"] == "ValueError"
        finished = next(event for event in logs if event["event"] == "retention_sweep_finished")
        assert finished["errors"] == 1

    def test_sweep_after_a_good_run_still_prunes_local_backups(self, backup_dir, unusable_endpoint):
        """After a successful run the sweep deletes expired local backups even though S3 cannot be reached."""
        directory, old, newest, run_log = backup_dir
        extensions, _, _ = housekeeping(directory)
        with structlog.testing.capture_logs() as logs:
            extensions.run_ended(RunOutcome("run1", "full", NOW, NOW, artifacts=[newest]))
        assert_local_sweep_done(directory, old, newest, run_log)
        assert any(event["event"] == "offsite_retention_failed" for event in logs)
        assert not any(event["event"] == "after_run_hook_failed" for event in logs)
