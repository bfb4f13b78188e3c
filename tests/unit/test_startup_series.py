"""Counters exist at 0 from the daemon's start, so that increase() in the alert rules sees
their first failure (a series that appears already at 1 has not increased)."""

from __future__ import annotations

import io
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from daemon.health import HealthState
from daemon.manifest import Manifest, write_manifest
from daemon.metrics import Metrics
from daemon.runner import BackupRunner
from daemon.service import ManifestWatcher, install_features
from daemon.settings import Settings

UTC = ZoneInfo("UTC")
NOW = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)


def start_up(backup_dir, **values) -> Metrics:
    """What run_daemon does before it serves /metrics: install the features, scan the manifests."""
    settings = Settings(postgres_container="pg", backup_dir=backup_dir, **values)
    metrics = Metrics()
    health = HealthState(NOW, timedelta(hours=24))
    runner = BackupRunner(settings, metrics, health, clock=lambda: NOW, progress_stream=io.StringIO())
    install_features(settings, runner, metrics)
    ManifestWatcher(settings, metrics, health, runner).refresh()
    return metrics


def series(metrics: Metrics, name: str, *label_names: str) -> dict[tuple[str, ...], float]:
    """Every sample of ``name``, by its values of ``label_names``."""
    return {
        tuple(sample.labels[label] for label in label_names): sample.value
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.name == name
    }


def database_backup(directory, database: str) -> None:
    write_manifest(directory, Manifest(
        kind="database", target=database, file=f"{database}_20261125_040000.dump", size_bytes=10, sha256="ab",
        started_at=NOW - timedelta(days=1), finished_at=NOW - timedelta(days=1), server_version="15.8",
        format="custom", compression="pg_dump"))


class TestNotificationFailures:
    def test_each_configured_channel_starts_at_zero(self, tmp_path):
        """Slack and the webhook each have their failure counter at 0 before any notice is sent."""
        metrics = start_up(tmp_path, slack_webhook_url="https://hooks.slack.invalid/x",
                           webhook_url="https://hooks.invalid/pgbackup")
        assert series(metrics, "pgbackup_notification_failures_total", "channel") == {
            ("slack",): 0.0, ("webhook",): 0.0}

    def test_channels_not_configured_have_no_series(self, tmp_path):
        """Without a channel there is nothing to fail, and no series."""
        metrics = start_up(tmp_path, webhook_url="https://hooks.invalid/pgbackup")
        assert series(metrics, "pgbackup_notification_failures_total", "channel") == {("webhook",): 0.0}


class TestS3UploadFailures:
    def test_targets_known_at_start_up_start_at_zero(self, tmp_path):
        """Each uploaded kind's targets from the settings and the manifests on disk have their counter at 0."""
        database_backup(tmp_path, "admindb")  # BACKUP_DATABASES empty: a target seen in the manifests
        metrics = start_up(tmp_path, s3_bucket="backups", backup_tables="apidb:users", volume_name="pgdata")
        assert series(metrics, "pgbackup_s3_upload_failures_total", "kind", "target") == {
            ("full", "all"): 0.0, ("pre_migration", "all"): 0.0, ("database", "admindb"): 0.0,
            ("table", "apidb"): 0.0, ("volume", "pgdata"): 0.0}

    def test_listed_databases_start_at_zero(self, tmp_path):
        """With BACKUP_DATABASES the per-database targets are known before their first backup."""
        metrics = start_up(tmp_path, s3_bucket="backups", backup_databases="authdb,apidb", s3_upload_kinds="database")
        assert series(metrics, "pgbackup_s3_upload_failures_total", "kind", "target") == {
            ("database", "authdb"): 0.0, ("database", "apidb"): 0.0}

    def test_no_series_without_offsite_copies(self, tmp_path):
        """Without S3_BUCKET nothing is uploaded, and no upload can fail."""
        database_backup(tmp_path, "admindb")
        metrics = start_up(tmp_path, backup_databases="authdb")
        assert series(metrics, "pgbackup_s3_upload_failures_total", "kind", "target") == {}
